"""`make sweep`: an Optuna study over the run config, tracked as one MLflow parent run.

Usage: python -m sweeplab.sweep [overrides]   (or: make sweep ARGS="sweep.n_trials=60" JOBS=2)
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from sweeplab.cli.common import hydra_app, hydra_run_tags, quote_space_overrides
from sweeplab.sweep.controller import sweep_job


def main() -> None:
    sys.argv = quote_space_overrides(sys.argv)
    hydra_app("sweep_app", _sweep_cli)()


def _sweep_cli(cfg: DictConfig) -> None:
    code = sweep_job(cfg, run_tags=hydra_run_tags())
    if code:
        raise SystemExit(code)
