"""Helpers the test modules import (`from helpers import compose_config`); the fixtures are in
conftest.py. tests/ is on sys.path through pytest's `pythonpath` setting (pyproject.toml)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from omegaconf import DictConfig

import sweeplab.conf

REPO = Path(__file__).resolve().parents[1]
# The configs the app reads (pkg://sweeplab.conf): src/sweeplab/conf/ in the checkout.
CONF_DIR = Path(sweeplab.conf.__file__).parent


def shared_tmp() -> str | None:
    """The system's temporary folder, where a folder another user must reach goes (a
    PostgreSQL cluster's, `nobody`'s): the session's own (conftest.py) is root's alone."""
    return os.environ.get("SWEEPLAB_TESTS_SHARED_TMP")


def compose_config(*overrides: str, config_name: str = "config") -> DictConfig:
    """<config_name>.yaml composed with Hydra's compose API from the packaged configs, as
    `python -m sweeplab.train` would compose it (schema registered first; Hydra's global
    state cleared before and after)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from sweeplab.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="sweeplab.conf", version_base="1.3"):
            return compose(config_name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def use_mlflow_store(folder: Path, mp: pytest.MonkeyPatch, template: Path | None = None) -> str:
    """Point MLflow at a fresh SQLite store in `folder` (artifacts in folder/mlruns) through
    $MLFLOW_TRACKING_URI, which `mp` restores. `template`: an empty database to copy instead
    of letting MLflow create one. sweeplab never sets MLflow's process-wide URI (every
    client is an explicit MlflowClient(uri)), so the variable is all MLflow reads, the
    tests' own `mlflow.pyfunc.load_model` included."""
    db = folder / "mlflow.db"
    if template is not None:
        shutil.copyfile(template, db)
    uri = f"sqlite:///{db}"
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
