"""`make sweep`: an Optuna study over the run config, tracked as one MLflow parent run.

Usage: python -m sweeplab.sweep [overrides]   (or: make sweep ARGS="sweep.n_trials=60" JOBS=2)
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from typing import TYPE_CHECKING

# Light on purpose: `main` starts the tracking writer before the heavy imports below.
from sweeplab.tracking.writer import discard_prestarted, prestart

if TYPE_CHECKING:
    from omegaconf import DictConfig


def main() -> None:
    # The writer a sweep in this process logs through (sweep.n_jobs=1, the default) starts
    # now: its start-up (importing MLflow) runs on another core while this process
    # imports and composes its config, instead of after. A sweep that does not use it
    # stops it (sweep/controller.py).
    prestart()
    # Until the job starts, a Ctrl-C or SIGTERM ends the command quietly with its usual
    # exit code, after stopping the early writer, not with a traceback from an import or
    # by the signal itself (which would leave the writer).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _end_quietly)
    # No collector passes over what the imports build (five passes, a quarter second):
    # modules live as long as the process, and `settle` then freezes them.
    gc.disable()
    from sweeplab.cli.common import hydra_app, quote_space_overrides
    from sweeplab.tracking.quick_exit import settle, skip_final_collection

    skip_final_collection()
    settle()
    gc.enable()
    sys.argv = quote_space_overrides(sys.argv)
    hydra_app("sweep_app", _sweep_cli)()


def _end_quietly(signum: int, frame: object) -> None:
    # Not by raising SystemExit: raised inside OmegaConf while Hydra composes the config,
    # it broke OmegaConf's flag handling on its way out (an AttributeError traceback, exit
    # 1). Nothing of the job exists yet: the early writer is stopped, the rest just ends.
    discard_prestarted()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(128 + signum)


def _sweep_cli(cfg: DictConfig) -> None:
    # The job's own handling from here: Ctrl-C as KeyboardInterrupt (SIGTERM is already
    # hydra_app's), so a sweep stops between trials and says how to resume.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from sweeplab.cli.common import hydra_run_tags
    from sweeplab.sweep.controller import sweep_job

    code = sweep_job(cfg, run_tags=hydra_run_tags())
    if code:
        raise SystemExit(code)
