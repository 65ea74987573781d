"""Shared pytest fixtures; the helpers the test modules import are in helpers.py."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from omegaconf import DictConfig

from helpers import REPO, compose_config, use_mlflow_store


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """Folder of the course data (catvnoncat/, football/): $SWEEPLAB_SHARED_DATASETS, else
    <repo>/../shared/datasets. Tests that need it are skipped when it is absent."""
    folder = Path(os.environ.get("SWEEPLAB_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
    if not folder.is_dir():
        pytest.skip(f"course data not found at {folder} (set SWEEPLAB_SHARED_DATASETS)")
    return folder


# --- config, data cache and tracking-store fixtures (config/train/tracking tests) ----------

@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide working directory: built-in datasets are cached in its data/builtin/
    once, and nothing is written into the repository."""
    return tmp_path_factory.mktemp("workdir")


@pytest.fixture
def in_data_cache(data_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test with the working directory in `data_cache` (restored afterwards)."""
    monkeypatch.chdir(data_cache)
    return data_cache


@pytest.fixture
def compose(in_data_cache: Path) -> Callable[..., DictConfig]:
    """compose("data=planar", "train.epochs=5", ...) -> the composed DictConfig.

    The test runs in the session's data cache directory, so built-ins are generated once."""
    return compose_config


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow SQLite database, made once: creating one takes MLflow ~1.5 s,
    copying it a millisecond."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments(max_results=1)
    return db


@pytest.fixture
def tmp_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               empty_mlflow_db: Path) -> Iterator[str]:
    """A temporary tracking URI sqlite:///<tmp>/mlflow.db (artifacts in <tmp>/mlruns), also
    set as $MLFLOW_TRACKING_URI: nothing reaches the user's store."""
    import mlflow

    uri = use_mlflow_store(tmp_path, monkeypatch, empty_mlflow_db)
    yield uri
    # A process-wide URI (mlflow.set_tracking_uri) would win over the variable in every
    # later test: the library must not set one.
    assert mlflow.get_tracking_uri() == uri, "MLflow's process-wide tracking URI was set"
