"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """Folder of the course data (catvnoncat/, football/): $SWEEPLAB_SHARED_DATASETS, else
    <repo>/../shared/datasets. Tests that need it are skipped when it is absent."""
    folder = Path(os.environ.get("SWEEPLAB_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
    if not folder.is_dir():
        pytest.skip(f"course data not found at {folder} (set SWEEPLAB_SHARED_DATASETS)")
    return folder


# --- config, data cache and tracking-store fixtures (config/train/tracking tests) ----------

CONF_DIR = REPO / "conf"


def compose_config(*overrides: str, config_name: str = "config") -> DictConfig:
    """conf/<config_name>.yaml composed with Hydra's compose API, as `python -m sweeplab.train`
    would compose it (schema registered first; Hydra's global state cleared before and after)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sweeplab.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


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


def use_mlflow_store(folder: Path, mp: pytest.MonkeyPatch, template: Path | None = None) -> str:
    """Point MLflow at a fresh SQLite store in `folder` (artifacts in folder/mlruns) through
    $MLFLOW_TRACKING_URI, undoing MLflow's process-wide URI; `mp` restores both. `template`:
    an empty database to copy instead of letting MLflow create one."""
    import shutil

    import mlflow.tracking._tracking_service.utils as tracking_utils

    db = folder / "mlflow.db"
    if template is not None:
        shutil.copyfile(template, db)
    uri = f"sqlite:///{db}"
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    # mlflow.set_tracking_uri (which logging a model calls) sets a process-wide URI that
    # would outlive this store: start from none, and restore the old one afterwards.
    mp.setattr(tracking_utils, "_tracking_uri", None)
    return uri


@pytest.fixture
def tmp_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_db: Path) -> str:
    """A temporary tracking URI sqlite:///<tmp>/mlflow.db (artifacts in <tmp>/mlruns), also
    set as $MLFLOW_TRACKING_URI: nothing reaches the user's store."""
    return use_mlflow_store(tmp_path, monkeypatch, empty_mlflow_db)
