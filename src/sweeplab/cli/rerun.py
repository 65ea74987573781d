"""Rerun a logged run from its config.yaml, and say whether it came out the same, or why not.

Usage: python -m sweeplab.cli.rerun <run id> [key=value ...] [--allow-data-change]
                                [--tracking-uri URI]
       (or: make rerun RUN=<run id> ARGS="train.epochs=5000")

1. fetch the run and its ``config.yaml``; apply the overrides (existing keys only)
   (`sweeplab.logged_run`);
2. check provenance before running: the data fingerprint (a change is an error unless
   --allow-data-change), the git commit and dirty state, package versions, BLAS (warnings);
3. run the config through `train.run` with an `MlflowTracker` in the original's
   experiment, tagged ``sweeplab.rerun_of`` and ``sweeplab.rerun_overrides``, with the
   original's BLAS thread count, stopping where a pruner stopped the original;
4. compare both runs' metric histories point by point (`sweeplab.compare`).

Exit status: 0 = identical, or overrides were given (the comparison is then for
information); 1 = not identical without overrides; 2 = nothing was rerun (unknown run,
not a sweeplab run, no config.yaml, bad override, changed data).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import replace

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from threadpoolctl import threadpool_limits

from sweeplab import train
from sweeplab.cli.common import draw_into_files, environment_failure, out_of_memory
from sweeplab.config import Config, ConfigError
from sweeplab.data import DataError, Dataset
from sweeplab.names import ExitCode, Metric, MlflowTag, RunStatus, Tag
from sweeplab.nn import ShapeError
from sweeplab.tracking import MlflowTracker, compare, default_uri, provenance
from sweeplab.tracking.links import ui_hint
from sweeplab.tracking.logged_run import (
    RunError,
    apply_overrides,
    fetch_run,
    logged_config,
    open_store,
    typed_config,
)
from sweeplab.tracking.store import TrackingServerError, TrackingStoreError
from sweeplab.train.callbacks import Callback, ProgressBar, StopTraining
from sweeplab.train.interrupt import exit_code, interruption, sigterm_as_interrupt

DIFF_ARTIFACT = "git_diff.patch"
# Statuses a callback (an Optuna pruner, say) gave the original; the rerun replays the stop.
STOPPED_BY_CALLBACK = (RunStatus.PRUNED, RunStatus.STOPPED)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sweeplab.cli.rerun",
        description="Rerun a logged sweeplab run from its config.yaml and compare the result.")
    # Optional to argparse only: it would say the overrides are required too when it is
    # missing (intermixed parsing).
    p.add_argument("run_id", nargs="?", help="the MLflow run id to rerun")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config values to change, e.g. train.epochs=5000 (recorded on the rerun)")
    p.add_argument("--allow-data-change", action="store_true",
                   help="rerun even if the data's fingerprint differs from the original's")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    # Intermixed: flags may come after the overrides, as `make rerun ARGS=...` puts them.
    args = p.parse_intermixed_args(argv)
    if args.run_id is None:
        p.error("the run id to rerun is required (make rerun RUN=<run id>)")
    return args


def check_data(run: Run, original: Config, allow_change: bool) -> tuple[Dataset, bool]:
    """Load the data as the original config asks and compare its fingerprint with the
    recorded one. Returns (data, changed); a change is an error unless `allow_change`."""
    tags = run.data.tags
    try:
        data = train.load_data(original)
    except DataError as err:  # moved since: an override says where it is now
        raise DataError(f"{err} (if the data moved, give its folder now: data.dir=<folder>)"
                        ) from None
    recorded = tags.get(Tag.DATA_FINGERPRINT)
    if recorded is None:
        _warn("the original run recorded no data fingerprint: the data cannot be checked")
        return data, False
    if recorded == data.fingerprint:
        print(f"  data:      same fingerprint {recorded[:12]} ({data.source})")
        return data, False
    then = f"{recorded} ({tags.get(Tag.DATA_SOURCE, 'source not recorded')})"
    if not allow_change:  # one line, as every refusal
        raise RunError(f"the data changed since run {run.info.run_id}: fingerprint {then} "
                       f"then, {data.fingerprint} ({data.source}) now, so the rerun "
                       f"could not be the same run; pass --allow-data-change to rerun on "
                       f"today's data anyway")
    _warn(f"the data changed since run {run.info.run_id}:\n"
          f"    then: {recorded} ({tags.get(Tag.DATA_SOURCE, 'source not recorded')})\n"
          f"    now:  {data.fingerprint} ({data.source})\n"
          f"  (--allow-data-change: rerunning on today's data)")
    return data, True


def provenance_report(client: MlflowClient, run: Run) -> None:
    """Print what differs between the original's code and packages and today's."""
    tags, run_id = run.data.tags, run.info.run_id
    then_commit = tags.get(Tag.GIT_COMMIT)
    now_commit, now_dirty, _ = provenance.git_state()
    if then_commit is None:
        _warn("the original run recorded no git commit (not run from a git checkout)")
    elif now_commit is None:
        _warn(f"not in a git checkout now; the original ran at commit {then_commit[:10]}")
    elif then_commit != now_commit:
        _warn(f"git commit {then_commit[:10]} -> {now_commit[:10]} (the code changed)")
    else:
        print(f"  code:      same git commit {now_commit[:10]}")
    if tags.get(Tag.GIT_DIRTY) == "true":
        where = (f"its artifact {DIFF_ARTIFACT} (mlflow artifacts download -r {run_id} "
                 f"-a {DIFF_ARTIFACT})"
                 if DIFF_ARTIFACT in {a.path for a in client.list_artifacts(run_id)}
                 else f"no {DIFF_ARTIFACT} artifact was logged")
        _warn(f"the original ran from a dirty tree (uncommitted changes on "
              f"{(then_commit or '?')[:10]}): {where}")
    if now_dirty:
        _warn("the working tree has uncommitted changes now (the rerun logs them as "
              f"{DIFF_ARTIFACT})")
    then = {k.removeprefix(Tag.VERSION): v for k, v in tags.items()
            if k.startswith(Tag.VERSION)}
    now = provenance.versions()
    changed = [f"{name} {then.get(name, 'not recorded')} -> {now.get(name, 'not installed')}"
               for name in sorted(then.keys() | now.keys()) if then.get(name) != now.get(name)]
    if changed:
        _warn("versions changed: " + ", ".join(changed))
    else:
        print(f"  versions:  same (python {now['python']}, numpy {now['numpy']}, "
              f"and {len(now) - 2} more)")


def blas_threads(run: Run) -> int | None:
    """The BLAS thread count the original ran with (None if not recorded), after reporting
    how NumPy's BLAS then compares with NumPy's BLAS now. The rerun uses the same count:
    another one sums float64 matrix products in another order."""
    tags = run.data.tags
    now = provenance.blas()
    then_lib, then_threads = tags.get(Tag.BLAS), tags.get(Tag.BLAS_THREADS)
    index = 0
    if then_lib is not None:
        # Runs logged before sweeplab recorded NumPy's BLAS alone list every BLAS loaded
        # in their process ("a, b"), with a thread count each: NumPy's is among them.
        libs = then_lib.split(", ")
        if now.get("blas") in libs:
            index = libs.index(now["blas"])
        else:
            _warn(f"BLAS {then_lib} -> {now.get('blas', 'not found')} (float sums can "
                  f"differ)")
    if then_threads is None:
        _warn(f"the original recorded no BLAS thread count; using today's "
              f"({now.get('blas_threads', '?')}), float64 results can differ in the last bits")
        return None
    counts = then_threads.split(",")
    threads = int(counts[index] if index < len(counts) else counts[0])
    print(f"  blas:      {now.get('blas', '?')}, {threads} thread(s) as the original"
          + ("" if str(threads) == now.get("blas_threads")
             else f" (default here: {now.get('blas_threads', '?')})"))
    return threads


class ReplayStop(Callback):
    """Stop at the epoch where a callback (a pruner) stopped the original, with its status,
    so that a pruned sweep trial reruns to the same point instead of to the end."""

    def __init__(self, step: int, status: str, reason: str) -> None:
        self.step, self.status, self.reason = step, status, reason

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        if step >= self.step:
            raise StopTraining(self.status, f"replayed from the original: {self.reason}")


def callbacks_for(client: MlflowClient, run: Run, tracker: MlflowTracker,
                  replay: bool) -> list[Callback]:
    """The rerun's callbacks: the tracker, and when the original was stopped by a callback
    (and `replay`), a ReplayStop at the same epoch, placed before the tracker if the
    original's tracker did not log that epoch (the pruner ran first), else after it."""
    tags = run.data.tags
    status = tags.get(Tag.STATUS, "")
    if status not in STOPPED_BY_CALLBACK:
        if status not in (RunStatus.FINISHED, RunStatus.EARLY_STOPPED, RunStatus.DIVERGED,
                          RunStatus.NOT_LEARNING):  # these ran their whole history
            _warn(f"the original run ended as {status or 'unknown'!r}: its history may be "
                  f"partial, so the rerun can differ from it")
        return [tracker]
    stop_at = int(tags.get(Tag.EPOCHS_RUN, "0")) - 1
    if not replay:
        print(f"  note:      the original was {status} at epoch {stop_at}; with overrides the "
              f"rerun runs to its own end")
        return [tracker]
    print(f"  note:      the original was {status} at epoch {stop_at}; the rerun stops there")
    stop = ReplayStop(stop_at, status, tags.get(Tag.REASON, status))
    logged = any(m.step == stop_at
                 for m in client.get_metric_history(run.info.run_id, Metric.TRAIN_COST))
    return [tracker, stop] if logged else [stop, tracker]


def _warn(msg: str) -> None:
    print(f"  warning:   {msg}")


def rerun(run_id: str, overrides: Sequence[str], *, uri: str,
          allow_data_change: bool = False) -> int:
    """Rerun `run_id` from the store at `uri`; print the comparison; return the exit status."""
    client = open_store(uri)
    original = fetch_run(client, run_id, uri)
    logged = logged_config(client, original)
    before = typed_config(logged, run_id)
    cfg = apply_overrides(logged, overrides)
    tags = original.data.tags
    experiment = client.get_experiment(original.info.experiment_id)
    print(f"rerun of {run_id} ({original.info.run_name}) in experiment {experiment.name!r}"
          + (f" with {' '.join(overrides)}" if overrides else ""))
    if MlflowTag.PARENT_RUN_ID in tags:
        print(f"  sweep:     trial {tags.get(Tag.TRIAL_NUMBER, '?')} of run "
              f"{tags[MlflowTag.PARENT_RUN_ID]}; the rerun is a run of its own, not in the sweep")

    # Provenance, before any run is created.
    if train.data_key(cfg) != train.data_key(before):
        # The data as the overrides say, not the original's first: data.dir=<where the
        # files are now> is how a rerun finds data that moved.
        data = train.load_data(cfg)
        data_changed = data.fingerprint != tags.get(Tag.DATA_FINGERPRINT)
        moved = replace(cfg, data=replace(cfg.data, dir=before.data.dir))
        if data_changed and train.data_key(moved) == train.data_key(before) \
                and not allow_data_change:  # only data.dir changed: it must be that data
            raise RunError(f"the data in data.dir={cfg.data.dir!r} is not the data of run "
                           f"{run_id} (fingerprint {data.fingerprint} against "
                           f"{tags.get(Tag.DATA_FINGERPRINT)}); point data.dir at a copy of "
                           f"that data, or pass --allow-data-change to rerun on this one")
        print("  data:      the overrides " + (
            f"change the data: now {data.fingerprint[:12]}" if data_changed else
            f"find the same data, fingerprint {data.fingerprint[:12]}") + f" ({data.source})")
    else:
        data, data_changed = check_data(original, before, allow_data_change)
    provenance_report(client, original)
    threads = blas_threads(original)

    # The rerun goes where the original is: this store, that experiment. Only the tracker
    # sees this; the logged config stays the original's (plus overrides).
    tracking = replace(cfg.tracking, uri=uri, experiment=experiment.name)
    tracker = MlflowTracker(tracking, overrides=list(overrides), tags={
        Tag.RERUN_OF: run_id, Tag.RERUN_OVERRIDES: json.dumps(list(overrides))})
    callbacks = [ProgressBar(cfg.train.progress),
                 *callbacks_for(client, original, tracker, replay=not overrides)]
    limits = threadpool_limits(threads, user_api="blas") if threads else nullcontext()
    with tracker, limits:
        result = train.run(cfg, callbacks, data)
    new_id = tracker.run_id
    assert new_id is not None
    print(f"\n{result.run_name}: {result.status} after {result.epochs_run} epochs")

    diffs = compare.compare_runs(client, run_id, new_id)
    worst = compare.largest(diffs)
    client.set_tag(new_id, Tag.RERUN_IDENTICAL, str(worst is None).lower())
    if not overrides:  # is it the same run? point by point
        print(f"compared with the original {run_id}:\n{compare.format_table(diffs)}")
    if worst is not None:  # how it differs: the values, and the config that made them
        print_side_by_side(client, run_id, new_id)
    if worst is None:
        print("identical: every compared point is bit-identical to the original's")
    else:
        why = (" (expected: overrides given)" if overrides
               else " (expected: the data changed)" if data_changed else "")
        print(f"NOT identical{why}: largest difference {compare.describe_largest(worst)}")
    print(f"\nnew run:  {new_id}   (tag {Tag.RERUN_OF}={run_id})")
    print(f"look:     {ui_hint(uri, tracker.experiment_id, new_id)}")
    return 0 if worst is None or overrides else 1


def print_side_by_side(client: MlflowClient, original_id: str, rerun_id: str) -> None:
    """The config keys that differ, then the original's and the rerun's final metrics and
    their histories at the steps both logged, side by side."""
    changed = compare.config_difference(client, original_id, rerun_id)
    print("config, original -> rerun:" + ("".join(f"\n  {c}" for c in changed) if changed
                                         else " the same"))
    print(f"original {original_id} vs rerun {rerun_id}:\n"
          f"{compare.final_table(client, original_id, rerun_id)}")
    steps = compare.steps_table(client, original_id, rerun_id)
    print(f"logged histories at the steps both runs have:\n{steps}" if steps
          else "the two runs logged no step in common")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sweeplab.cli.rerun`: returns the exit status (see the module docstring)."""
    draw_into_files()
    args = parse_args(argv)
    uri = args.tracking_uri or default_uri()
    try:
        with sigterm_as_interrupt():  # the rerun's run is closed as KILLED, as on Ctrl-C
            return rerun(args.run_id, args.overrides, uri=uri,
                         allow_data_change=args.allow_data_change)
    except (RunError, ConfigError, DataError, ShapeError, TrackingServerError,
            TrackingStoreError) as err:  # the server may go between the checks and the run
        print(f"error: {err}", file=sys.stderr)
        return ExitCode.USAGE
    except (OSError, MlflowException) as err:  # a full disk, a server gone mid-run
        line = environment_failure(err, uri)
        if line is None:
            raise
        print(f"error: {line.removesuffix(' to resume')}", file=sys.stderr)
        return ExitCode.USAGE
    except MemoryError as err:  # an override that asks for too large a network
        print(f"error: {out_of_memory(err)}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt as err:
        print(interruption(err), file=sys.stderr)
        return exit_code(err)


if __name__ == "__main__":
    raise SystemExit(main())
