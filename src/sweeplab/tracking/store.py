"""The MLflow store sweeplab logs to: which one, created once, with the experiment in it.

No function here sets MLflow's process-wide tracking URI: every client is an explicit
``MlflowClient(tracking_uri=...)``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from mlflow.tracking import MlflowClient

from sweeplab.config import TrackingConfig


def default_uri() -> str:
    """$MLFLOW_TRACKING_URI, else the embedded store: sqlite mlflow.db in the working dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def resolve_uri(cfg: TrackingConfig) -> str:
    return cfg.uri or default_uri()


def prepare_store(uri: str) -> MlflowClient:
    """A client on `uri`, with the store created now, by this one process: several processes
    creating a fresh SQLite store at once corrupt it. SQLite gets write-ahead logging, so
    parallel sweep workers read while one writes instead of failing with "database is
    locked"."""
    client = MlflowClient(uri)
    client.search_experiments(max_results=1)  # creates and migrates the database
    if uri.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(uri.removeprefix("sqlite:///"))) as con:
            con.execute("PRAGMA journal_mode=WAL")
    return client


def get_experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    """The id of experiment `name`, created (artifacts under ./mlruns for SQLite) if needed."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        location = (db.parent / "mlruns").resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
