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
set looked at, for the champion alone: its test accuracy's mean and interval.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mlflow.entities import Metric as MetricPoint
from mlflow.entities import RunTag
from omegaconf import DictConfig
from optuna.trial import FrozenTrial

from sweeplab.config import MAX_SEED, Config, SweepConfig
from sweeplab.data import Dataset
from sweeplab.names import (
    CONFIRM_STATS,
    Metric,
    MlflowTag,
    Role,
    Tag,
    confirm_metric,
)
from sweeplab.sweep.worker import (
    DiskFull,
    TrackingUnavailable,
    TrialTask,
    execute,
    make_task,
    short,
)
from sweeplab.tracking.writer import TrackingWriter, WriterDied
from sweeplab.train import DataKey
from sweeplab.train.interrupt import StopRequest

LEVEL = 0.95  # of every confidence interval
ALPHA = 0.05  # a paired p-value below this: the champion is significantly better
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


def done_replicates(runs: Sequence[Any]) -> dict[tuple[str, int], Any]:
    """(config hash, replicate) -> its run, for replicates that ran to their end."""
    done: dict[tuple[str, int], Any] = {}
    for r in sorted(runs, key=lambda r: r.info.start_time or 0):  # the latest wins
        tags = r.data.tags
        if r.info.status in DONE_STATUSES and tags.get(Tag.REPLICATE, "").isdigit():
            done[(tags.get(Tag.CONFIG_HASH, ""), int(tags[Tag.REPLICATE]))] = r
    return done


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
    todo = [(c, i, seed) for c in cands for i, seed in enumerate(seeds, 1)
            if (c.hash, i) not in done]
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
        value = f"{out.values[0]:.4g}" if out.values else "-"
        print(f"confirm {k}/{len(todo)}  trial {c.trial.number:>3} replicate {i} (seed {seed})"
              f"  {'/'.join(c.task.objectives)}={value}  {out.status}"
              f"  {time.time() - started:5.1f}s", flush=True)
        ran += 1
    if writer is not None and ran:
        _written(writer)
    return ran


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


@dataclass(frozen=True)
class Stats:
    """Mean, standard deviation (n - 1) and 95% t interval of n values."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    def text(self) -> str:
        """``0.0841 ± 0.0123`` (the half-width of the interval)."""
        if self.n == 0:
            return "-"
        if math.isnan(self.ci_low):
            return f"{self.mean:.4g}"
        return f"{self.mean:.4g} ± {(self.ci_high - self.ci_low) / 2:.2g}"


def describe(values: Sequence[float]) -> Stats:
    """Stats of `values` (non-finite ones left out): the interval is Student's t, from
    scipy.stats; with fewer than two values there is none (nan)."""
    from scipy import stats

    a = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    n = len(a)
    if n == 0:
        return Stats(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(a.mean())
    if n == 1:
        return Stats(1, mean, math.nan, math.nan, math.nan)
    std = float(a.std(ddof=1))
    if std == 0:  # t.interval's scale would be 0: the interval is the point
        return Stats(n, mean, 0.0, mean, mean)
    lo, hi = stats.t.interval(LEVEL, n - 1, loc=mean, scale=stats.sem(a))
    return Stats(n, mean, std, float(lo), float(hi))


@dataclass(frozen=True)
class Paired:
    """A paired t-test of a configuration against another over their shared seeds."""

    n: int  # shared seeds with a value for both
    p_value: float
    mean_diff: float  # this one's objective minus the other's
    ci_low: float
    ci_high: float


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Paired:
    """scipy.stats.ttest_rel of `a` against `b` (replicate -> objective) over the seeds
    both have a finite value for; p is nan below two shared seeds."""
    from scipy import stats

    shared = sorted(k for k in a.keys() & b.keys()
                    if math.isfinite(a[k]) and math.isfinite(b[k]))
    x = np.array([a[k] for k in shared])
    y = np.array([b[k] for k in shared])
    d = x - y
    n = len(shared)
    if n < 2:
        diff = float(d.mean()) if n else math.nan
        return Paired(n, math.nan, diff, math.nan, math.nan)
    if np.all(d == d[0]):  # no spread: the t statistic is 0/0 or infinite
        diff = float(d[0])
        return Paired(n, 1.0 if diff == 0 else 0.0, diff, diff, diff)
    res = stats.ttest_rel(x, y)
    ci = res.confidence_interval(LEVEL)
    return Paired(n, float(res.pvalue), float(d.mean()), float(ci.low), float(ci.high))


@dataclass
class Confirmed:
    """A configuration's replicates and their statistics."""

    trial: int
    params: dict[str, Any]
    hash: str
    objective: dict[int, float] = field(default_factory=dict)  # replicate -> value
    val_accuracy: dict[int, float] = field(default_factory=dict)
    test_accuracy: dict[int, float] = field(default_factory=dict)
    run_ids: dict[int, str] = field(default_factory=dict)
    stats: Stats | None = None
    val_stats: Stats | None = None
    vs_champion: Paired | None = None  # None for the champion itself

    @property
    def failed(self) -> int:
        """Replicates that ran and have no objective value: diverged or did not learn."""
        return len(self.run_ids) - len(self.objective)


@dataclass
class Confirmation:
    """The confirmation stage's outcome: configurations best mean first."""

    objective: str
    direction: str
    seeds: list[int]
    configs: list[Confirmed]
    test: Stats | None = None  # the champion's test accuracy over its replicates
    best_run_id: str | None = None  # the champion's replicate with the best objective

    @property
    def champion(self) -> Confirmed | None:
        return self.configs[0] if self.configs and self.configs[0].stats and \
            self.configs[0].stats.n else None

    def verdict(self) -> str:
        """One plain sentence: is the champion better than the runner-up?"""
        c = self.champion
        if c is None:
            return "no configuration completed a replicate"
        if len(self.configs) < 2 or self.configs[1].vs_champion is None:
            return f"trial {c.trial} is the only configuration confirmed"
        r, p = self.configs[1], self.configs[1].vs_champion
        if math.isnan(p.p_value):
            return (f"trial {c.trial} cannot be compared with trial {r.trial}: {p.n} shared "
                    f"seed(s) with a value for both")
        how = (f"paired t-test over {p.n} seeds: p={p.p_value:.3g}, mean difference in "
               f"{self.objective} {p.mean_diff:+.4g} [{p.ci_low:+.4g}, {p.ci_high:+.4g}]")
        if p.p_value < ALPHA:
            return f"trial {c.trial} is significantly better than trial {r.trial} ({how})"
        return f"trial {c.trial} is not significantly better than trial {r.trial} ({how})"


def analyse(cands: Sequence[Candidate], runs: Mapping[tuple[str, int], Any], objective: str,
            direction: str, seeds: Sequence[int]) -> Confirmation:
    """The statistics of the replicates `runs` of `cands`: per configuration, champion by
    best mean, paired tests against it, and the champion's test accuracy."""
    configs = []
    for c in cands:
        conf = Confirmed(c.trial.number, dict(c.trial.params), c.hash)
        for i in range(1, len(seeds) + 1):
            r = runs.get((c.hash, i))
            if r is None:
                continue
            m = r.data.metrics
            conf.run_ids[i] = r.info.run_id
            # Metric.OBJECTIVE is logged for a replicate that completed (not diverged)
            if Metric.OBJECTIVE in m:
                conf.objective[i] = float(m[Metric.OBJECTIVE])
            for key, into in ((Metric.VAL_ACCURACY, conf.val_accuracy),
                              (Metric.TEST_ACCURACY, conf.test_accuracy)):
                if key in m:
                    into[i] = float(m[key])
        conf.stats = describe(list(conf.objective.values()))
        conf.val_stats = describe(list(conf.val_accuracy.values()))
        configs.append(conf)
    sign = -1.0 if direction == "maximize" else 1.0
    # best mean first, among the configurations none of whose replicates failed (diverged,
    # did not learn): a failure counts against a configuration rather than dropping out
    # of its mean; one with no completed replicate last
    configs.sort(key=lambda k: (k.stats is None or k.stats.n == 0, k.failed > 0,
                                sign * (k.stats.mean if k.stats and k.stats.n else 0.0)))
    out = Confirmation(objective, direction, list(seeds), configs)
    champ = out.champion
    if champ is None:
        return out
    for other in configs[1:]:
        # the champion minus the other: negative is better for a cost
        other.vs_champion = paired(champ.objective, other.objective)
    out.test = describe(list(champ.test_accuracy.values()))
    best = min(champ.objective, key=lambda i: sign * champ.objective[i])
    out.best_run_id = champ.run_ids[best]
    return out


def parent_metrics(c: Confirmation) -> tuple[list[MetricPoint], list[RunTag]]:
    """The parent run's confirmation metrics and tags (names: sweeplab.names)."""
    now = int(time.time() * 1000)
    points: dict[str, float] = {}
    for k in c.configs:
        for metric, s in ((c.objective, k.stats), (Metric.VAL_ACCURACY, k.val_stats)):
            if s is None or s.n == 0:
                continue
            for stat in CONFIRM_STATS:
                points[confirm_metric(k.trial, stat, metric)] = getattr(s, stat)
        points[confirm_metric(k.trial, "n")] = float(k.stats.n if k.stats else 0)
        if k.vs_champion is not None:
            points[confirm_metric(k.trial, "p_value")] = k.vs_champion.p_value
    tags = [RunTag(Tag.CONFIRM_VERDICT, c.verdict()[:5000])]
    champ = c.champion
    if champ is not None:
        tags.append(RunTag(Tag.CONFIRM_CHAMPION, str(champ.trial)))
        points[confirm_metric(None, "champion_trial")] = float(champ.trial)
        if len(c.configs) > 1 and c.configs[1].vs_champion is not None:
            p = c.configs[1].vs_champion
            points.update({confirm_metric(None, "p_value"): p.p_value,
                           confirm_metric(None, "mean_diff"): p.mean_diff,
                           confirm_metric(None, "mean_diff_ci_low"): p.ci_low,
                           confirm_metric(None, "mean_diff_ci_high"): p.ci_high})
        if c.test is not None and c.test.n:
            for stat in CONFIRM_STATS:
                points[confirm_metric(None, stat, Metric.TEST_ACCURACY)] = getattr(c.test, stat)
    # MLflow stores NaN; an interval that does not exist (one replicate) is left out instead
    metrics = [MetricPoint(k, float(v), now, 0) for k, v in points.items() if math.isfinite(v)]
    return metrics, tags


def table(c: Confirmation) -> list[str]:
    """The confirmed table, one line per configuration (the terminal's and confirm.md's)."""
    # val_accuracy beside the objective, unless it is the objective
    val = c.objective != Metric.VAL_ACCURACY
    head = (f"| trial | config | {c.objective} mean ± 95% CI | "
            + ("val_accuracy mean ± 95% CI | " if val else "") + "n | p vs best | config hash |")
    lines = [head, "|---|---|---|" + ("---|" if val else "") + "---|---|---|"]
    for k in c.configs:
        p = "best" if k.vs_champion is None else (
            "-" if math.isnan(k.vs_champion.p_value) else f"{k.vs_champion.p_value:.3g}")
        vals = f"{k.val_stats.text() if k.val_stats else '-'} | " if val else ""
        lines.append(f"| {k.trial} | {short(k.params)} | {k.stats.text() if k.stats else '-'} "
                     f"| {vals}{k.stats.n if k.stats else 0} | {p} | {k.hash} |")
    return lines


def report_md(c: Confirmation, test_line: str) -> str:
    """The parent run's ``confirm.md``."""
    return "\n".join([
        f"# Confirmation: the top {len(c.configs)} configurations, {len(c.seeds)} seeds each",
        "", f"Run seeds: {', '.join(map(str, c.seeds))} (each draws the initialisation, the "
        "validation split, the mini-batch order and dropout). Objective: "
        f"{c.objective} ({c.direction}). Best mean first.", "", *table(c), "",
        f"**Verdict**: {c.verdict()}.", "", test_line, ""])


def test_line(c: Confirmation) -> str:
    """The champion's test accuracy over its replicates, said once the champion is chosen."""
    champ = c.champion
    if champ is None or c.test is None or c.test.n == 0:
        return "No test accuracy: no champion."
    return (f"Test accuracy of the champion (trial {champ.trial}), looked at only after it was "
            f"chosen: {c.test.text()} over {c.test.n} replicates (mean ± 95% CI).")


def description(c: Confirmation, study: str, parent_run_id: str) -> str:
    """The registered model version's description, for the champion's best replicate."""
    champ = c.champion
    assert champ is not None and champ.stats is not None
    return (f"The confirmed champion of Optuna study `{study}`: trial {champ.trial} "
            f"({short(champ.params)}, config {champ.hash}), {c.objective} "
            f"{champ.stats.text()} (mean ± 95% CI over {champ.stats.n} seeds); "
            f"{c.verdict()}. {test_line(c)} This version is its replicate run "
            f"{c.best_run_id} (the best of its seeds); the sweep's parent run: "
            f"{parent_run_id}. Registered by sweeplab.")


def log_plot(client: Any, parent_run_id: str, c: Confirmation) -> None:
    """A strip plot of the replicates' objective per configuration, with the mean and its
    95% interval, as the parent's ``plots/confirm.png``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.2 + 1.1 * max(2, len(c.configs)), 4), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # jitter only: the same picture every time
    for x, k in enumerate(c.configs):
        ys = list(k.objective.values())
        ax.scatter(x + rng.uniform(-0.12, 0.12, len(ys)), ys, s=18, alpha=0.7)
        if k.stats is not None and k.stats.n >= 2 and not math.isnan(k.stats.ci_low):
            ax.errorbar(x + 0.25, k.stats.mean, color="black", capsize=4, fmt="o",
                        yerr=[[k.stats.mean - k.stats.ci_low], [k.stats.ci_high - k.stats.mean]])
    ax.set_xticks(range(len(c.configs)), [f"trial {k.trial}" for k in c.configs])
    ax.set_ylabel(c.objective)
    ax.set_title(f"{len(c.seeds)} seeds per configuration; mean and 95% CI in black")
    client.log_figure(parent_run_id, fig, "plots/confirm.png")


def confirm_sweep(ranked_trials: Sequence[FrozenTrial], base: DictConfig, cfg: Config,
                  typed_base: Config, parent_run_id: str, client: Any, experiment_id: str,
                  stop: StopRequest | None, *, generation: int,
                  tags: Mapping[str, str],
                  writer: TrackingWriter | None = None) -> Confirmation | None:
    """The whole stage after a search that ended normally: run the missing replicates, then
    put the statistics, ``confirm.md`` and ``plots/confirm.png`` on the parent run. None
    when there is nothing to confirm (off, several objectives, no tracking, no trial)."""
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
    if not cfg.tracking.enabled:
        print("confirmation skipped: it keeps its replicates in MLflow, and "
              "tracking.enabled=false", flush=True)
        return None
    cands = candidates(ranked_trials, s.confirm.top_k, base, s, parent_run_id, typed_base,
                       generation=generation, tags=tags)
    if not cands:
        return None
    seeds = replicate_seeds(cfg.seed, s.confirm.seeds)
    done = done_replicates(replicate_runs(client, experiment_id, parent_run_id))
    wanted = {(c.hash, i) for c in cands for i in range(1, len(seeds) + 1)}
    already = len(wanted & done.keys())
    which = "the best configuration" if len(cands) == 1 \
        else f"the top {len(cands)} configurations"
    print(f"confirmation: {which} x {len(seeds)} seeds "
          f"({', '.join(map(str, seeds))})"
          + (f"; {already} of {len(wanted)} replicates already done" if already else ""),
          flush=True)
    run_replicates(cands, seeds, done, stop, writer)
    result = analyse(cands, done_replicates(replicate_runs(client, experiment_id,
                                                           parent_run_id)),
                     objectives[0], directions[0], seeds)
    metrics, run_tags = parent_metrics(result)
    for i in range(0, max(1, len(metrics)), 1000):  # MLflow's limit per batch
        client.log_batch(parent_run_id, metrics=metrics[i:i + 1000],
                         tags=run_tags if i == 0 else [])
    client.log_text(parent_run_id, report_md(result, test_line(result)), "confirm.md")
    log_plot(client, parent_run_id, result)
    return result
