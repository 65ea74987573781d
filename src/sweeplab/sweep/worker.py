"""One sweep trial: a tracked `train.run` of the base config with the trial's parameters,
and the worker loop that pulls trials from the shared study until enough are done."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import Trial, TrialState

from sweeplab.config import ConfigError, SweepConfig, objectives_of, to_config
from sweeplab.data import Dataset
from sweeplab.names import (
    HISTORY_METRICS,
    OBJECTIVE_METRICS,
    ExitCode,
    Metric,
    Role,
    RunStatus,
    Tag,
    TrialAttr,
)
from sweeplab.sweep import study as st
from sweeplab.sweep.space import apply, parse_space
from sweeplab.tracking import MlflowTracker
from sweeplab.train import Callback, DataKey, RunResult, RunStart, StopTraining, load_data, run
from sweeplab.train.interrupt import StopOnRequest, StopRequest, deferred_interrupt


class PruningReporter(Callback):
    """Reports the objective's history to Optuna and stops the run when the pruner says so."""

    def __init__(self, trial: Trial, metric: str, pruner_name: str) -> None:
        self.trial, self.metric, self.pruner_name = trial, metric, pruner_name

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        value = metrics.get(self.metric)
        if value is None:
            return
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise StopTraining(RunStatus.PRUNED, f"pruned by the {self.pruner_name} pruner "
                                                 f"at epoch {step} ({self.metric}={value:.4g})")


class RecordRunId(Callback):
    """Puts the child run's id on the Optuna trial as soon as the run exists, so that a
    killed sweep can close the run it left open."""

    def __init__(self, trial: Trial, tracker: MlflowTracker) -> None:
        self.trial, self.tracker = trial, tracker

    def on_train_start(self, start: RunStart) -> None:
        self.trial.set_user_attr(TrialAttr.RUN_ID, self.tracker.run_id)


def objective_value(result: RunResult, name: str) -> float:
    """A trial's value for objective `name`: a metric after the last update, or n_params."""
    if name == "n_params":
        return float(result.network.n_params)
    return float(result.metrics[OBJECTIVE_METRICS.get(name, name)])


def short(params: Mapping[str, Any]) -> str:
    """``depth=3 width=45 lr=0.0123``: the trial's params as a run name says them."""
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    return " ".join(f"{k.rsplit('.', 1)[-1]}={fmt(v)}" for k, v in params.items())


class SweepAborted(Exception):
    """The whole sweep must stop (a config error in a trial); carries the message."""


@dataclass
class Job:
    """Everything a worker needs, as plain data (it crosses a process boundary)."""

    base: dict[str, Any]  # the run config without `sweep`
    sweep: dict[str, Any]
    storage: str
    parent_run_id: str | None
    worker: int = 0
    threads: int | None = None
    started: float = 0.0


def run_trial(trial: Trial, job: Job, base: DictConfig, data_cache: dict[DataKey, Dataset],
              s: SweepConfig, stop: StopRequest | None = None) -> None:
    """Run and tell one trial; pruned and diverged trials are told as such. A requested
    stop (Ctrl-C) ends it at its next log point, and it is queued again."""
    objectives, _ = objectives_of(s)
    cfg = apply(base, trial.params)
    OmegaConf.update(cfg, "tracking.run_name",
                     f"trial {trial.number}: {short(trial.params)}", merge=False)
    try:
        typed = to_config(cfg)
    except ConfigError as err:
        job_fail(trial, RunStatus.ERROR, str(err))
        raise SweepAborted(f"trial {trial.number} has an invalid config: {err}") from None
    data = load_data(typed, data_cache)
    tracker = MlflowTracker(typed.tracking, parent_run_id=job.parent_run_id,
                            overrides=[f"{k}={v}" for k, v in trial.params.items()],
                            tags={Tag.TRIAL_NUMBER: str(trial.number), Tag.STUDY: s.name,
                                  Tag.ROLE: Role.TRIAL})
    callbacks: list[Callback] = [tracker, RecordRunId(trial, tracker)]
    if stop is not None:
        callbacks.insert(0, StopOnRequest(stop))
    if len(objectives) == 1 and objectives[0] in HISTORY_METRICS and s.pruner != "none":
        callbacks.insert(0, PruningReporter(trial, objectives[0], s.pruner))
    try:
        with tracker:
            result = run(typed, callbacks, data)
    except KeyboardInterrupt:
        trial.set_user_attr(TrialAttr.STATUS, RunStatus.INTERRUPTED)
        trial.set_user_attr(TrialAttr.REASON, "interrupted (Ctrl-C)")
        st.requeue(trial.study, trial.number, trial.params, "interrupted (Ctrl-C)")
        raise
    except Exception as err:  # a crash in one trial is recorded; the sweep goes on
        job_fail(trial, RunStatus.ERROR, f"{type(err).__name__}: {err}")
        _tag_run(tracker, "FAIL")
        return
    for key in (Metric.TEST_ACCURACY, Metric.VAL_ACCURACY, Metric.TRAIN_ACCURACY,
                Metric.TRAIN_SECONDS):
        if key in result.metrics:
            trial.set_user_attr(key, result.metrics[key])
    trial.set_user_attr(TrialAttr.STATUS, result.status)
    if result.reason:
        trial.set_user_attr(TrialAttr.REASON, result.reason)
    if result.status == RunStatus.PRUNED:
        trial.set_user_attr(TrialAttr.PRUNED_AT_EPOCH, result.epochs_run - 1)
        trial.study.tell(trial, state=TrialState.PRUNED)
        _tag_run(tracker, "PRUNED", pruned_at=result.epochs_run - 1)
    elif result.status == RunStatus.DIVERGED:
        trial.study.tell(trial, state=TrialState.FAIL)
        _tag_run(tracker, "FAIL")
    else:
        trial.study.tell(trial, [objective_value(result, o) for o in objectives])
        _tag_run(tracker, "COMPLETE")


def job_fail(trial: Trial, status: str, reason: str) -> None:
    trial.set_user_attr(TrialAttr.STATUS, status)
    trial.set_user_attr(TrialAttr.REASON, reason[:2000])
    trial.study.tell(trial, state=TrialState.FAIL)


def _tag_run(tracker: MlflowTracker, state: str, pruned_at: int | None = None) -> None:
    if tracker.run_id is None:
        return
    tracker.client.set_tag(tracker.run_id, Tag.TRIAL_STATE, state)
    if pruned_at is not None:
        tracker.client.set_tag(tracker.run_id, Tag.PRUNED_AT_EPOCH, str(pruned_at))


def work(job: Job, on_trial_done: Callable[[optuna.Study], None] | None = None) -> str:
    """Pull trials until the study has enough done; returns why it stopped."""
    from threadpoolctl import threadpool_limits

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = SweepConfig(**job.sweep)
    base = OmegaConf.create(job.base)
    typed = to_config(base)
    space = parse_space(s.params, base)
    storage = st.open_storage(job.storage)
    existing = len(optuna.load_study(study_name=s.name, storage=storage).trials)
    study = optuna.load_study(
        study_name=s.name, storage=storage,
        sampler=st.make_sampler(s, space, seed_salt=(job.worker, existing)),
        pruner=st.make_pruner(s, typed.train.epochs, typed.train.log_every))
    data_cache: dict[DataKey, Dataset] = {}
    limits = threadpool_limits(job.threads) if job.threads else contextlib.nullcontext()
    with limits, deferred_interrupt() as stop:
        while True:
            stop.check()
            if s.timeout is not None and time.time() - job.started > s.timeout:
                return f"timeout of {s.timeout}s reached"
            with st.file_lock(st.lock_path(s)):
                t = st.tally(study)
                if t.done >= s.min_trials_for_failure_rate and \
                        t.failed / t.done >= s.max_failure_rate:
                    return (f"{t.failed} of {t.done} finished trials failed "
                            f"(sweep.max_failure_rate={s.max_failure_rate})")
                if t.done + t.running >= s.n_trials:
                    return "enough trials"
                if st.grid_exhausted(study):
                    return "every point of the grid was tried"
                # Asked and claimed under the lock, so study.orphaned can tell a trial
                # whose process died between the two writes.
                trial = study.ask(space)
                trial.set_user_attr(TrialAttr.PID, os.getpid())
                trial.set_user_attr(TrialAttr.HOST, socket.gethostname())
            run_trial(trial, job, base, data_cache, s, stop)
            if on_trial_done is not None:
                on_trial_done(study)


def worker_main(job: Job) -> None:
    """Entry point of a worker process: exit code ExitCode.ABORT stops the sweep."""
    import sys

    try:
        work(job)
    except SweepAborted as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(ExitCode.ABORT) from None
    except KeyboardInterrupt:
        raise SystemExit(ExitCode.INTERRUPTED) from None
