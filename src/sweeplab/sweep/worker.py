"""One sweep trial, on whichever process or host runs it: a `TrialTask` (plain data) in, a
tracked `train.run`, a `TrialOutcome` (plain data) out.

A worker never touches the study: the controller asks for trials and tells their results.
While training, the trial reports the pruner's metric through a `Reporter` (in the
controller's process it is the Optuna trial itself; on a Dask worker, a round trip to the
controller), which answers whether to stop.

On Dask, a worker gets the trial's data from the controller (sent once per worker and
kept), so it needs no ``data.dir`` of its own and writes nothing into its working folder;
it logs to the tracking URI in the task: for workers on other hosts, a tracking server.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import socket
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import Metric as MetricPoint
from mlflow.entities import RunTag
from omegaconf import DictConfig, OmegaConf

from sweeplab.config import Config, SweepConfig, objectives_of, to_config, validate
from sweeplab.data import Dataset
from sweeplab.names import (
    HISTORY_METRICS,
    MLFLOW_STATUS,
    OBJECTIVE_METRICS,
    Metric,
    MlflowTag,
    Role,
    RunStatus,
    Tag,
)
from sweeplab.sweep.space import apply
from sweeplab.tracking import MlflowTracker
from sweeplab.tracking.errors import no_space, unavailable_reason
from sweeplab.tracking.writer import TrackingWriter
from sweeplab.train import (
    Callback,
    DataKey,
    RunResult,
    StopTraining,
    data_key,
    load_data,
    run,
)
from sweeplab.train.interrupt import StopOnRequest, StopRequest

# (step, value) -> whether the pruner says stop now
Reporter = Callable[[int, float], bool]
# What a trial keeps of a run's final metrics, as Optuna user attributes.
KEPT_METRICS = (Metric.TEST_ACCURACY, Metric.VAL_ACCURACY, Metric.TRAIN_ACCURACY,
                Metric.TRAIN_SECONDS)


class SweepAborted(Exception):
    """The whole sweep must stop (a trial's config is invalid); carries the message."""


class TrialStopped(KeyboardInterrupt):
    """The controller stopped this trial (Ctrl-C or SIGTERM there), or was lost: the run is
    closed as KILLED, as an interrupted one, and the trial is queued again."""


class TrackingUnavailable(SweepAborted):
    """The tracking store stopped answering during a trial: the trial is queued again and
    the sweep stops, to be resumed once the store is back."""

    reason = "the tracking store stopped answering"  # what the trials still out are told


class DiskFull(TrackingUnavailable):
    """A disk filled up (ENOSPC, EDQUOT) under a trial's writes: like a store that stopped
    answering, the trial is queued again and the sweep stops, to be resumed once there is
    room; it is not counted as a failed trial."""

    reason = "no space left on the device"


@dataclass(frozen=True)
class TrialTask:
    """One trial as plain data: everything a worker on any host needs to run it."""

    number: int
    params: dict[str, Any]
    config: dict[str, Any]  # the run config with the trial's params applied, resolved
    study: str
    parent_run_id: str
    objectives: tuple[str, ...]
    prune_metric: str | None  # the history metric the pruner judges; None: no pruning
    pruner: str
    threads: int | None = None  # BLAS threads; None leaves the library's default
    # the data the config asks for, so that an executor that sends each dataset once need
    # not check the config a second time to know which it is (~20 ms a trial)
    data: DataKey | None = None
    generation: int = 1  # of the study's name (sweep/generation.py), tagged on the run
    tags: dict[str, str] = field(default_factory=dict)  # more tags of the run (Hydra's choices)
    role: str = Role.TRIAL  # a search trial, or a confirmation replicate of one
    # `config` as the checked Config, when make_task has it: the worker then skips
    # OmegaConf's pass over the dict (tens of milliseconds a trial)
    typed: Config | None = None


@dataclass
class TrialOutcome:
    """How a trial ended, for the controller to tell the study."""

    number: int
    status: str  # a RunStatus
    reason: str | None = None
    values: list[float] | None = None  # the objectives' values, for a completed trial
    attrs: dict[str, Any] = field(default_factory=dict)  # kept metrics, epochs run
    run_id: str | None = None
    host: str = ""
    worker: str = "controller"
    pending_run: Any = None  # with a tracking writer: a Ref to the run, until it is written


def make_task(number: int, params: dict[str, Any], base: DictConfig, s: SweepConfig,
              parent_run_id: str, threads: int | None = None,
              typed_base: Config | None = None, *, generation: int = 1,
              tags: Mapping[str, str] | None = None) -> TrialTask:
    """The task of trial `number`; raises ConfigError when its config is invalid.

    With `typed_base` (`to_config(base)`, done once per sweep) the trial's params are set on
    a copy of it and only the value checks run again: a few hundred microseconds instead of
    OmegaConf's tens of milliseconds. A param the fast path cannot place or type exactly as
    OmegaConf would takes the full path."""
    objectives, _ = objectives_of(s)
    run_name = f"trial {number}: {short(params)}"
    typed = _with_params(typed_base, params, run_name) if typed_base is not None else None
    if typed is None:
        cfg = apply(base, params)
        OmegaConf.update(cfg, "tracking.run_name", run_name, merge=False)
        typed = to_config(cfg)
    prune = objectives[0] if len(objectives) == 1 and objectives[0] in HISTORY_METRICS \
        and s.pruner != "none" else None
    config = dataclasses.asdict(typed)
    return TrialTask(number, dict(params), config, s.name, parent_run_id,
                     tuple(objectives), prune, s.pruner, threads, data_key(typed), generation,
                     dict(tags or {}), typed=typed)


class _Unfit(Exception):
    """A param the fast path leaves to OmegaConf (a conversion it would make, a key into a
    mapping)."""


def _with_params(typed_base: Config, params: Mapping[str, Any], run_name: str
                 ) -> Config | None:
    """`typed_base` with `params` set and checked (ConfigError), or None for the full path."""
    typed = copy.deepcopy(typed_base)
    try:
        for key, value in params.items():
            *path, leaf = key.split(".")
            node: Any = typed
            for part in path:
                node = getattr(node, part)
            if not dataclasses.is_dataclass(node) or leaf not in _hints(type(node)):
                raise _Unfit(key)
            setattr(node, leaf, _fit(value, _hints(type(node))[leaf]))
    except (_Unfit, AttributeError):
        return None
    typed.tracking.run_name = run_name
    validate(typed)
    return typed


@functools.cache
def _hints(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


def _fit(value: Any, hint: Any) -> Any:
    """`value` as a field typed `hint` holds it, where OmegaConf would keep it as it is (or
    only widen an int to a float); else _Unfit."""
    allowed = typing.get_args(hint) or (hint,)
    kind = type(value)
    if value is None and type(None) in allowed:
        return value
    if kind in (bool, str, float) and kind in allowed:
        return value
    if kind is int and int in allowed:
        return value
    if kind is int and float in allowed:
        return float(value)
    raise _Unfit(hint)


class PruningReporter(Callback):
    """Reports the pruner's metric at every log point and stops the run when told to.

    It must come after the tracker among the callbacks: `StopTraining` ends the log point
    for the callbacks after it, and the point the pruner judged belongs in the history. A
    verdict at `last_step` (the run's last epoch) is ignored: the trial ran its whole
    budget and is complete, whatever the pruner thinks of it."""

    def __init__(self, report: Reporter, metric: str, pruner_name: str,
                 last_step: int | None = None) -> None:
        self.report, self.metric, self.pruner_name = report, metric, pruner_name
        self.last_step = last_step

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        value = metrics.get(self.metric)
        if value is None:
            return
        # Reported even at the last step: other trials are judged against it.
        if self.report(step, value) and (self.last_step is None or step < self.last_step):
            raise StopTraining(RunStatus.PRUNED, f"pruned by the {self.pruner_name} pruner "
                                                 f"at epoch {step} ({self.metric}={value:.4g})")


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


def execute(task: TrialTask, report: Reporter | None = None, stop: StopRequest | None = None,
            data_cache: dict[DataKey, Dataset] | None = None,
            data: Dataset | None = None, writer: TrackingWriter | None = None,
            also: tuple[Callback, ...] = ()) -> TrialOutcome:
    """Run trial `task` as a tracked run and say how it ended: on `data` when given (sent
    by the controller), else loaded as its config says (through `data_cache`). A crash
    inside the run is an outcome (status error), not an exception; Ctrl-C (through `stop`)
    is raised.

    With `writer`, the run is logged by that process, and the outcome's run id is None
    until the writer's ack for group `task.number` fills it in."""
    from threadpoolctl import get_cached_controller

    host = socket.gethostname()
    typed = task.typed if task.typed is not None else to_config(task.config)
    if data is None:
        data = load_data(typed, data_cache)
    tracker = MlflowTracker(typed.tracking, parent_run_id=task.parent_run_id,
                            overrides=[f"{k}={v}" for k, v in task.params.items()],
                            tags={**task.tags,
                                  Tag.TRIAL_NUMBER: str(task.number), Tag.STUDY: task.study,
                                  Tag.ROLE: task.role, Tag.GENERATION: str(task.generation)},
                            sink=writer)
    callbacks: list[Callback] = [tracker, *also]
    if stop is not None:
        callbacks.insert(0, StopOnRequest(stop))
    if task.prune_metric is not None and report is not None:
        # after the tracker, so that the point the pruner judged is logged
        callbacks.append(PruningReporter(report, task.prune_metric, task.pruner,
                                         last_step=typed.train.epochs - 1))
    # threadpoolctl's cached controller: a new one looks through every loaded library,
    # 3 ms a trial in a process that has imported MLflow
    limits = get_cached_controller().limit(limits=task.threads) if task.threads \
        else contextlib.nullcontext()
    try:
        with limits, tracker:
            result = run(typed, callbacks, data)
    except KeyboardInterrupt:
        raise
    except Exception as err:  # a crash in one trial is recorded; the sweep goes on
        full = no_space(err)
        if full is not None:
            raise DiskFull(
                f"no space left on the device during {what(task)} ({full}; the tracking "
                f"store is {tracker.uri}); free space, then run the same command to "
                f"resume") from None
        why = unavailable_reason(err)
        if why is not None:
            raise TrackingUnavailable(
                f"the tracking store {tracker.uri} stopped answering during {what(task)} "
                f"({why}); start it again, then run the same command to resume") from None
        _tag_run(tracker, "FAIL")
        return TrialOutcome(task.number, RunStatus.ERROR, f"{type(err).__name__}: {err}",
                            run_id=tracker.run_id, host=host, pending_run=_pending(tracker))
    out = TrialOutcome(task.number, result.status, result.reason, run_id=tracker.run_id,
                       host=host, attrs={k: result.metrics[k] for k in KEPT_METRICS
                                         if k in result.metrics},
                       pending_run=_pending(tracker))
    if result.status == RunStatus.PRUNED:
        _tag_run(tracker, "PRUNED", pruned_at=result.epochs_run - 1)
        out.attrs["pruned_at_epoch"] = result.epochs_run - 1
    elif result.status in (RunStatus.DIVERGED, RunStatus.NOT_LEARNING):
        _tag_run(tracker, "FAIL")
    else:
        out.values = [objective_value(result, o) for o in task.objectives]
        _tag_run(tracker, "COMPLETE", objective=(out.values[0], result.epochs_run))
    return out


def what(task: TrialTask) -> str:
    """"trial 7", or "replicate 2 of trial 7" for a confirmation replicate."""
    if task.role == Role.CONFIRM:
        return f"replicate {task.tags.get(Tag.REPLICATE, '?')} of trial {task.number}"
    return f"trial {task.number}"


def _pending(tracker: MlflowTracker) -> Any:
    """The writer's Ref to the run, when a writer logs it."""
    return tracker.started if tracker.run_id is None else None


def _tag_run(tracker: MlflowTracker, state: str, pruned_at: int | None = None,
             objective: tuple[float, int] | None = None) -> None:
    """The trial's Optuna state (and where it was pruned) on its run; a completed trial's
    (objective value, step) as the metric the sweep's saved view sorts by."""
    tags = {Tag.TRIAL_STATE: state}
    if pruned_at is not None:
        tags[Tag.PRUNED_AT_EPOCH] = str(pruned_at)
    metrics = [] if objective is None else [
        MetricPoint(Metric.OBJECTIVE, objective[0], int(time.time() * 1000), objective[1])]
    tracker.tag(tags, metrics)


def close_trial_runs(client: Any, parent_run_id: str, number: int, reason: str,
                     statuses: tuple[str, ...] = ("RUNNING",)) -> int:
    """Close trial `number`'s MLflow runs under the parent whose status is one of
    `statuses` (by default those still RUNNING) as KILLED, with `reason`; returns how many.
    Found by trial number, since a kill can come before anyone learnt the run's id; the
    trial's own runs only, not its confirmation replicates (tagged with its number too)."""
    return close_runs(client, parent_run_id,
                      {Tag.ROLE: Role.TRIAL, Tag.TRIAL_NUMBER: str(number)}, reason, statuses)


def close_runs(client: Any, parent_run_id: str, where: Mapping[str, str], reason: str,
               statuses: tuple[str, ...] = ("RUNNING",)) -> int:
    """Close the parent's child runs with the tags `where` whose status is one of
    `statuses` as KILLED, with `reason`; returns how many."""
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    query = " and ".join([f"tags.`{MlflowTag.PARENT_RUN_ID}` = '{parent_run_id}'",
                          *(f"tags.`{k}` = '{v}'" for k, v in where.items())])
    runs = [r for r in client.search_runs([experiment_id], query, max_results=1000)
            if r.info.status in statuses]
    for r in runs:
        client.log_batch(r.info.run_id, tags=[
            RunTag(Tag.STATUS, RunStatus.INTERRUPTED), RunTag(Tag.REASON, reason),
            RunTag(Tag.TRIAL_STATE, "FAIL")])
        client.set_terminated(r.info.run_id, MLFLOW_STATUS[RunStatus.INTERRUPTED])
    return len(runs)
