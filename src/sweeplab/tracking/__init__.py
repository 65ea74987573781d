"""MLflow tracking: the tracker callback, the store, the model file, provenance, and
reading logged runs back (`logged_run`, `compare`). Above `sweeplab.train`, below sweeps
and the command line.

The names below are loaded when first used (PEP 562), so that importing one light module
of this package (`tracking.writer`, which a sweep imports first to start its writer
process) does not import MLflow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweeplab.tracking.store import (
        TrackingServerError,
        TrackingStoreError,
        check_server,
        default_uri,
        get_experiment_id,
        prepare_store,
        resolve_uri,
    )
    from sweeplab.tracking.tracker import MlflowTracker, dataset_inputs

# name -> the module of this package that defines it
_HOMES = {"MlflowTracker": "tracker", "dataset_inputs": "tracker",
          **dict.fromkeys(("TrackingServerError", "TrackingStoreError", "check_server",
                           "default_uri", "get_experiment_id", "prepare_store",
                           "resolve_uri"), "store")}

__all__ = [
    "MlflowTracker",
    "TrackingServerError",
    "TrackingStoreError",
    "check_server",
    "dataset_inputs",
    "default_uri",
    "get_experiment_id",
    "prepare_store",
    "resolve_uri",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value  # once: later uses find it without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
