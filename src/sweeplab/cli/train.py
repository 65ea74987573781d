"""`make train`: one run of the composed config, tracked in MLflow, printed on the terminal.

Usage: python -m sweeplab.train [hydra overrides]   (or: make train ARGS="model.depth=3")
"""

from __future__ import annotations

import contextlib

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sweeplab.cli.common import hydra_app, hydra_run_tags, report_run
from sweeplab.config import check_used, to_config
from sweeplab.names import ExitCode, RunStatus
from sweeplab.tracking import MlflowTracker, prepare_store, resolve_uri
from sweeplab.tracking.store import check_experiment, source_key
from sweeplab.train import Callback, ProgressBar, RunStart, load_data, run


def main() -> None:
    """The Hydra app behind `python -m sweeplab.train` / `make train`."""
    hydra_app("config", _train_job)()


def _train_job(cfg: DictConfig) -> None:
    typed = to_config(cfg)  # fails before any run is created
    check_used(typed)
    if typed.tracking.enabled:
        # A tracking server that does not answer, a store that cannot be opened or written,
        # an experiment deleted: said before the network's table and its training.
        uri = resolve_uri(typed.tracking)
        client = prepare_store(uri, source_key(typed.tracking))
        check_experiment(client, typed.tracking.experiment, uri)
    data = load_data(typed)
    callbacks: list[Callback] = [PrintSummary(), ProgressBar(typed.train.progress)]
    tracker = MlflowTracker(typed.tracking, overrides=_hydra_overrides(),
                            tags=hydra_run_tags()) if typed.tracking.enabled else None
    if tracker is not None:
        callbacks.append(tracker)
    with tracker if tracker is not None else contextlib.nullcontext():
        result = run(typed, callbacks, data)
    report_run(result, tracker)
    if result.status in (RunStatus.DIVERGED, RunStatus.NOT_LEARNING):
        raise SystemExit(ExitCode.FAILED)


def _hydra_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


class PrintSummary(Callback):
    """Print the network's dimensions before training, as the course checks them."""

    def on_train_start(self, start: RunStart) -> None:
        print(start.summary, flush=True)

