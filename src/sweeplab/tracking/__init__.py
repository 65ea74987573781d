"""MLflow tracking: the tracker callback, the store, the model file, provenance, and
reading logged runs back (`logged_run`, `compare`). Above `sweeplab.train`, below sweeps
and the command line.
"""

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
