"""The confirmation stage of a sweep: its best configurations retrained across seeds, and a
champion chosen on their means, with confidence intervals and a paired test.

A search picks the trial with the single best validation value; on small data one lucky
initialisation or validation split can win. After a search that ended normally, the
`sweep.confirm.top_k` best distinct configurations (completed trials, by the objective)
are each trained again with `sweep.confirm.seeds` run seeds: the run's ``seed`` draws the
initialisation, the validation split, the mini-batch order and the dropout masks, so the
replicates are repeated hold-out. The seeds are the search's seed + 1, + 2, ...: never the
seed the trials were chosen on (whose values carry the winner's luck), and the same for
every configuration, so that configurations are compared seed by seed (paired).

Each replicate is an MLflow run nested under the sweep's parent, tagged with its role
(``confirm``), the configuration's hash (the resolved config without seed and run name),
its replicate number and its search trial. Replicates already in the store (finished or
failed, not killed) are not run again: a resumed sweep runs only the missing ones.

The champion is the configuration with the best mean objective; a paired t-test over the
shared seeds says whether it is distinguishable from the runner-up. Only then is the test
set looked at, for the champion alone: its test accuracy's mean and interval. The
statistics are `sweep/stats.py`'s, what they say and how it is told `sweep/confirmed.py`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig
from optuna.trial import FrozenTrial

from sweeplab.config import MAX_SEED, Config, SweepConfig
from sweeplab.data import Dataset
from sweeplab.names import (
    MlflowTag,
    Role,
    RunStatus,
    Tag,
)
from sweeplab.sweep.confirmed import (
    Confirmation,
    analyse,
    log_plot,
    parent_metrics,
    report_md,
    test_line,
)
from sweeplab.sweep.executors import WORKER_DIED, DaskPool, killed_worker
from sweeplab.sweep.worker import (
    DiskFull,
    SweepAborted,
    TrackingUnavailable,
    TrialOutcome,
    TrialTask,
    close_runs,
    execute,
    make_task,
    short,
)
from sweeplab.tracking.writer import TrackingWriter, WriterDied
from sweeplab.train import DataKey
from sweeplab.train.interrupt import StopRequest, interruption

# MLflow statuses of a replicate that need not run again: it ran to its end (a diverged
# one fails the same way with the same seed). KILLED ones were interrupted.
DONE_STATUSES = ("FINISHED", "FAILED")


def config_hash(config: Mapping[str, Any]) -> str:
    """12 hex digits naming a resolved run config without its seed and run name: the same
    for every replicate of a configuration, different for any other setting."""
    c = json.loads(json.dumps(dict(config), default=str))  # a deep, plain copy
    c.pop("seed", None)
    c.pop("sweep", None)
    c.get("tracking", {}).pop("run_name", None)
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:12]


def replicate_seeds(base_seed: int, n: int) -> list[int]:
    """The run seeds of replicates 1..n: the search's seed + 1 .. + n (wrapping at 2**32)."""
    return [(base_seed + i) % (MAX_SEED + 1) for i in range(1, n + 1)]


@dataclass(frozen=True)
class Candidate:
    """A configuration to confirm: the search trial it came from, and its task."""

    trial: FrozenTrial
    hash: str
    task: TrialTask


def candidates(ranked: Sequence[FrozenTrial], top_k: int, base: DictConfig, s: SweepConfig,
               parent_run_id: str, typed_base: Config, *, generation: int,
               tags: Mapping[str, str]) -> list[Candidate]:
    """The first `top_k` distinct configurations among `ranked` (completed trials, best
    first): a trial whose config equals a better one's (the same params drawn twice) adds
    nothing."""
    out: list[Candidate] = []
    seen: set[str] = set()
    for t in ranked:
        if len(out) >= top_k:
            break
        task = make_task(t.number, t.params, base, s, parent_run_id, None, typed_base,
                         generation=generation, tags=tags)
        h = config_hash(task.config)
        if h not in seen:
            seen.add(h)
            out.append(Candidate(t, h, task))
    return out


def replicate_task(c: Candidate, replicate: int, seed: int) -> TrialTask:
    """Candidate `c`'s task for one replicate: its config with `seed`, no pruning (a
    replicate runs its whole budget), tagged as a replicate of its trial."""
    config = json.loads(json.dumps(c.task.config))  # a deep copy of plain data
    config["seed"] = seed
    config["tracking"]["run_name"] = (f"confirm trial {c.trial.number} seed {seed}: "
                                      f"{short(c.trial.params)}")
    return dataclasses.replace(
        c.task, config=config, prune_metric=None, role=Role.CONFIRM, data=None, typed=None,
        tags={**c.task.tags, Tag.CONFIG_HASH: c.hash, Tag.REPLICATE: str(replicate)})


def replicate_runs(client: Any, experiment_id: str, parent_run_id: str) -> list[Any]:
    """Every confirmation replicate's run under the parent (all pages)."""
    query = (f"tags.`{MlflowTag.PARENT_RUN_ID}` = '{parent_run_id}' and "
             f"tags.`{Tag.ROLE}` = '{Role.CONFIRM}'")
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], query, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def done_replicates(runs: Sequence[Any], seeds: Sequence[int]) -> dict[tuple[str, int], Any]:
    """(config hash, replicate) -> its run, for replicates that ran to their end with the
    replicate's seed in `seeds` (a sweep resumed with another `seed` runs its own)."""
    done: dict[tuple[str, int], Any] = {}
    for r in sorted(runs, key=lambda r: r.info.start_time or 0):  # the latest wins
        tags = r.data.tags
        if r.info.status not in DONE_STATUSES or not tags.get(Tag.REPLICATE, "").isdigit():
            continue
        i = int(tags[Tag.REPLICATE])
        if 1 <= i <= len(seeds) and r.data.params.get("seed") == str(seeds[i - 1]):
            done[(tags.get(Tag.CONFIG_HASH, ""), i)] = r
    return done


Replicate = tuple[Candidate, int, int]  # a configuration, its replicate number, its seed


def missing(cands: Sequence[Candidate], seeds: Sequence[int],
            done: Mapping[tuple[str, int], Any]) -> list[Replicate]:
    """The replicates of `cands` over `seeds` not in `done`, configuration by configuration."""
    return [(c, i, seed) for c in cands for i, seed in enumerate(seeds, 1)
            if (c.hash, i) not in done]


def _line(k: int, n: int, r: Replicate, out: TrialOutcome, seconds: float) -> str:
    c, i, seed = r
    value = f"{out.values[0]:.4g}" if out.values else "-"
    where = f"  on worker {out.worker}" if out.worker != "controller" else ""
    return (f"confirm {k}/{n}  trial {c.trial.number:>3} replicate {i} (seed {seed})"
            f"  {'/'.join(c.task.objectives)}={value}  {out.status}  {seconds:5.1f}s{where}")


def run_replicates(cands: Sequence[Candidate], seeds: Sequence[int], done: Mapping[
                   tuple[str, int], Any], stop: StopRequest | None,
                   writer: TrackingWriter | None = None) -> int:
    """Run, in this process, every replicate not in `done`; returns how many ran. Their
    runs are logged by `writer` when given (while the next replicate trains), and all
    written before this returns; else inline. Ctrl-C (through `stop`) is raised, its run
    closed as KILLED; a full disk or a store gone while writing raises DiskFull or
    TrackingUnavailable, as for trials."""
    cache: dict[DataKey, Dataset] = {}  # one dataset per seed, shared by the configurations
    ran = 0
    todo = missing(cands, seeds, done)
    for k, (c, i, seed) in enumerate(todo, 1):
        if stop is not None:
            stop.check()
        started = time.time()
        if writer is None:
            out = execute(replicate_task(c, i, seed), stop=stop, data_cache=cache)
        else:
            # one core is the writer's (as for the search's trials)
            task = dataclasses.replace(replicate_task(c, i, seed),
                                       threads=max(1, (os.cpu_count() or 1) - 1))
            with writer.group(REPLICATE_GROUPS + k):
                out = execute(task, stop=stop, data_cache=cache, writer=writer)
            writer.barrier(REPLICATE_GROUPS + k)
        print(_line(k, len(todo), (c, i, seed), out, time.time() - started), flush=True)
        ran += 1
    if writer is not None and ran:
        _written(writer)
    return ran


def run_replicates_on(pool: DaskPool, todo: Sequence[Replicate], stop: StopRequest | None,
                      client: Any, parent_run_id: str, threads: int | None = None) -> int:
    """Run the replicates `todo` on the Dask workers of `pool`, as many at once as it has
    slots (each run logs itself, as the search's trials do there); returns how many ran.

    A replicate whose worker died has its run closed as KILLED and runs again, at most
    MAX_WORKER_DEATHS times. Ctrl-C or SIGTERM (through `stop`) stops every replicate out
    at its next log point (its run closed as KILLED, to run again on resume) and is raised;
    so are a full disk and a store gone (DiskFull, TrackingUnavailable), as for trials."""
    queue = list(enumerate(todo, 1))
    out: dict[int, tuple[int, Replicate, float]] = {}  # channel -> (k, replicate, started)
    deaths: dict[tuple[str, int], int] = {}
    channels = itertools.count(REPLICATE_GROUPS)
    ran = 0
    try:
        while queue or out:
            if stop is not None:
                stop.check()
            while queue and pool.busy < pool.slots:
                k, r = queue.pop(0)
                task = dataclasses.replace(replicate_task(*r), threads=threads)
                channel = next(channels)
                pool.submit(task, None, channel=channel)
                out[channel] = (k, r, time.time())
            for f in pool.wait(timeout=0.5):
                k, r, started = out.pop(f.number)
                c, i, seed = r
                if f.outcome is not None and f.outcome.status != RunStatus.INTERRUPTED:
                    print(_line(k, len(todo), r, f.outcome, time.time() - started),
                          flush=True)
                    ran += 1
                    continue
                if f.outcome is None and not killed_worker(f.error):
                    err = f.error
                    if isinstance(err, DiskFull | TrackingUnavailable):
                        raise err
                    raise SweepAborted(f"replicate {i} of trial {c.trial.number} could not "
                                       f"run on its worker: {type(err).__name__}: {err}")
                # its worker died (or it lost the controller): its run closed, run again
                why = WORKER_DIED if f.outcome is None else str(f.outcome.reason)
                close_replicate_runs(client, parent_run_id, why, (c.hash, i))
                deaths[c.hash, i] = deaths.get((c.hash, i), 0) + 1
                if deaths[c.hash, i] >= MAX_WORKER_DEATHS:
                    raise SweepAborted(
                        f"replicate {i} of trial {c.trial.number} (seed {seed}) was stopped "
                        f"{MAX_WORKER_DEATHS} times ({why}): look at the workers' logs "
                        f"(memory?), then run the same command to resume")
                print(f"confirm {k}/{len(todo)}  trial {c.trial.number:>3} replicate {i} "
                      f"(seed {seed})  {why}: queued again", flush=True)
                queue.insert(0, (k, r))
    except BaseException as err:
        pool.stop_all()
        reason = interruption(err) if isinstance(err, KeyboardInterrupt) else getattr(
            err, "reason", f"the confirmation stopped: {err}"[:1000])
        with contextlib.suppress(Exception):  # the store may be what failed
            close_replicate_runs(client, parent_run_id, reason)
        raise
    return ran


# How many times a replicate may lose its worker before the sweep stops (a replicate that
# kills its worker each time, by memory say, would otherwise run forever).
MAX_WORKER_DEATHS = 3


def close_replicate_runs(client: Any, parent_run_id: str, reason: str,
                         which: tuple[str, int] | None = None) -> int:
    """Close the parent's replicate runs still RUNNING as KILLED with `reason` (only the
    replicate `which`, (config hash, replicate number), when given); returns how many."""
    where = {Tag.ROLE: Role.CONFIRM}
    if which is not None:
        where |= {Tag.CONFIG_HASH: which[0], Tag.REPLICATE: str(which[1])}
    return close_runs(client, parent_run_id, where, reason)


# Writer groups of replicates: apart from trial numbers (and the writer's own syncs).
REPLICATE_GROUPS = 1_000_000_000


def _written(writer: TrackingWriter) -> None:
    """Wait until the writer has written every replicate's run; raise as a trial would when
    one could not be (a replicate that failed otherwise is a FAILED run, analysed as one)."""
    try:
        acks = writer.sync()
    except WriterDied as err:
        raise TrackingUnavailable(f"{err}; run the same command to resume") from None
    for ack in acks:
        if ack.failure is not None and ack.failure.kind == "no_space":
            raise DiskFull(f"no space left on the device while a replicate's run was written "
                           f"({ack.failure.message}; the tracking store is {writer.uri}); "
                           f"free space, then run the same command to resume")
        if ack.failure is not None and ack.failure.kind == "unavailable":
            raise TrackingUnavailable(
                f"the tracking store {writer.uri} stopped answering while a replicate's run "
                f"was written ({ack.failure.message}); start it again, then run the same "
                f"command to resume")


def confirm_sweep(ranked_trials: Sequence[FrozenTrial], base: DictConfig, cfg: Config,
                  typed_base: Config, parent_run_id: str, client: Any, experiment_id: str,
                  stop: StopRequest | None, *, generation: int,
                  tags: Mapping[str, str], writer: TrackingWriter | None = None,
                  pool: DaskPool | None = None, threads: int | None = None
                  ) -> Confirmation | None:
    """The whole stage after a search that ended normally: run the missing replicates (on
    `pool`'s Dask workers when given, with `threads` BLAS threads each, as the search's
    trials; else here, logged by `writer` when given), then put the statistics,
    ``confirm.md`` and ``plots/confirm.png`` on the parent run. None when there is nothing
    to confirm (off, several objectives, no tracking, no trial)."""
    s = cfg.sweep
    assert s is not None
    objectives, directions = (list(s.objectives), list(s.directions or [])) \
        if s.objectives is not None else ([s.objective], [s.direction])
    if s.confirm.top_k == 0:
        return None
    if len(objectives) > 1:
        print("confirmation skipped: it ranks one objective, and this sweep has "
              f"{len(objectives)} (its Pareto front is reported as it is)", flush=True)
        return None
    cands = candidates(ranked_trials, s.confirm.top_k, base, s, parent_run_id, typed_base,
                       generation=generation, tags=tags)
    if not cands:
        return None
    seeds = replicate_seeds(cfg.seed, s.confirm.seeds)
    done = done_replicates(replicate_runs(client, experiment_id, parent_run_id), seeds)
    wanted = {(c.hash, i) for c in cands for i in range(1, len(seeds) + 1)}
    already = len(wanted & done.keys())
    which = "the best configuration" if len(cands) == 1 \
        else f"the top {len(cands)} configurations"
    print(f"confirmation: {which} x {len(seeds)} seeds "
          f"({', '.join(map(str, seeds))})"
          + (f"; {already} of {len(wanted)} replicates already done" if already else "")
          + (f"; replicates run on {pool.where}" if pool is not None else ""), flush=True)
    if pool is None:
        run_replicates(cands, seeds, done, stop, writer)
    else:
        run_replicates_on(pool, missing(cands, seeds, done), stop, client, parent_run_id,
                          threads)
    result = analyse(cands, done_replicates(replicate_runs(client, experiment_id,
                                                           parent_run_id), seeds),
                     objectives[0], directions[0], seeds)
    metrics, run_tags = parent_metrics(result)
    for i in range(0, max(1, len(metrics)), 1000):  # MLflow's limit per batch
        client.log_batch(parent_run_id, metrics=metrics[i:i + 1000],
                         tags=run_tags if i == 0 else [])
    client.log_text(parent_run_id, report_md(result, test_line(result)), "confirm.md")
    log_plot(client, parent_run_id, result)
    return result
