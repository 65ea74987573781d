"""What `train.run` tells the outside world, and the callbacks of its own that listen.

A callback sees three moments: the start (network built, nothing trained), every
`train.log_every` epochs (the metrics so far), and the end (the result). To stop a run
early (an Optuna pruner, or `EarlyStopping`) a callback raises `StopTraining`; `train.run`
then ends the run cleanly with that status and reason, and every callback still sees the
end. `ProgressBar` draws a bar; `EarlyStopping` is train.early_stopping.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweeplab.names import Metric, RunStatus

if TYPE_CHECKING:
    from sweeplab.config import Config
    from sweeplab.data import Dataset
    from sweeplab.nn import Network
    from sweeplab.train.loop import RunResult


class StopTraining(Exception):
    """Raised by a callback to end training now with `status` and a human `reason`."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class RunStart:
    """What a callback learns when training starts."""

    config: Config
    dataset: Dataset
    network: Network  # updated in place; W[1] is current at log points with validation
    #                   and at the end, and may lag in between (sweeplab.nn.steppers)
    summary: str
    run_name: str
    stepper: str = "direct"  # the name of the stepper that trains it (sweeplab.nn.STEPPERS)


class Callback:
    """Base class: override the moments you care about."""

    def on_train_start(self, start: RunStart) -> None:
        """Before epoch 0."""

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        """At epoch `step` (every log_every epochs, and the last): train_cost, val_* ..."""

    def on_train_end(self, result: RunResult) -> None:
        """After the last epoch (or a stop), with final metrics computed."""


class ProgressBar(Callback):
    """A tqdm bar over epochs, shown on a terminal once a run has taken `delay` seconds."""

    def __init__(self, enabled: bool | None = None, delay: float = 2.0) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.delay = delay
        self._bar: Any = None
        self._done = 0

    def on_train_start(self, start: RunStart) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(total=start.config.train.epochs, desc=start.run_name, unit="epoch",
                         delay=self.delay, leave=False, dynamic_ncols=True)
        self._done = 0

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        if self._bar is None:
            return
        self._bar.update(step + 1 - self._done)
        self._done = step + 1
        shown = {k: f"{v:.4g}" for k, v in metrics.items()
                 if k in (Metric.TRAIN_COST, Metric.VAL_ACCURACY)}
        self._bar.set_postfix(shown, refresh=False)

    def on_train_end(self, result: RunResult) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class EarlyStopping(Callback):
    """Stop with status early_stopped once val_cost has not fallen below its best so far by
    more than `min_delta` for `patience` log points in a row (runs without validation go on).
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best, self.since_best = math.inf, 0

    def on_train_start(self, start: RunStart) -> None:
        self.best, self.since_best = math.inf, 0

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        val_cost = metrics.get(Metric.VAL_COST)
        if val_cost is None:
            return
        if val_cost < self.best - self.min_delta:
            self.best, self.since_best = val_cost, 0
            return
        self.since_best += 1
        if self.since_best >= self.patience:
            raise StopTraining(RunStatus.EARLY_STOPPED,
                               f"val_cost did not improve by {self.min_delta} for "
                               f"{self.patience} log points (best {self.best:.6g})")
