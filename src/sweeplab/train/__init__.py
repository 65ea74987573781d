"""One training run as a pure function of its config: ``run(cfg, callbacks) -> RunResult``.

`run` knows nothing of MLflow, Optuna or a command line; they listen through callbacks
(`sweeplab.train.callbacks`). ``python -m sweeplab.train`` is the command-line app
(`sweeplab.cli.train`), loaded only when run as one.
"""

from sweeplab.train.callbacks import (
    Callback,
    EarlyStopping,
    ProgressBar,
    RunStart,
    StopTraining,
)
from sweeplab.train.loop import (
    DataKey,
    History,
    RunResult,
    build_network,
    data_key,
    describe,
    evaluate,
    final_metrics,
    load_data,
    output_for,
    run,
    stepper_name,
)

__all__ = [
    "Callback",
    "DataKey",
    "EarlyStopping",
    "History",
    "ProgressBar",
    "RunResult",
    "RunStart",
    "StopTraining",
    "build_network",
    "data_key",
    "describe",
    "evaluate",
    "final_metrics",
    "load_data",
    "output_for",
    "run",
    "stepper_name",
]
