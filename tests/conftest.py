"""Shared pytest fixtures; the helpers the test modules import are in helpers.py."""

from __future__ import annotations

import os
import subprocess
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


# --- the repository stays as it was -------------------------------------------------------

# Caches of Python and the tools, which may appear while the tests run.
_CACHES = ("__pycache__/", ".pytest_cache/", ".ruff_cache/")


def _untracked_files() -> set[str] | None:
    """The repository's untracked files, ignored ones included (data/, mlruns/ and mlflow.db
    are git-ignored), less .venv/ and caches; None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "-z", "--untracked-files=all", "--ignored",
             "--", ".", ":(exclude).venv"],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {entry for entry in out.split("\0")
            if entry[:3] in ("?? ", "!! ") and not any(c in entry for c in _CACHES)}


@pytest.fixture(scope="session", autouse=True)
def repository_stays_clean() -> Iterator[None]:
    """Fail the session if the tests left files in the repository (a run's outputs, cached
    data, an MLflow store): tests write into temporary folders only."""
    before = _untracked_files()
    yield
    after = _untracked_files()
    if before is not None and after is not None and after - before:
        pytest.fail("files appeared in the repository while the tests ran (a test should "
                    "write to a temporary folder):\n  " + "\n  ".join(sorted(after - before)),
                    pytrace=False)


# The environment variable naming the system's temporary folder while the tests run.
SHARED_TMP = "SWEEPLAB_TESTS_SHARED_TMP"


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory: pytest.TempPathFactory,
               repository_stays_clean: None) -> Iterator[Path]:
    """The session's working directory, a temporary folder: built-in datasets are cached in
    its data/builtin/ once, and whatever a test writes to a relative path (MLflow's default
    ./mlruns, Hydra's outputs/) lands here, never in the repository. sweeplab's cache
    (the empty MLflow store new stores are copied from) is a session folder too, not the
    user's ~/.cache; and so is the temporary folder of this process and the ones it starts
    (what a killed process leaves there, MLflow's downloads of a model it loads, Dask's
    scratch space go with pytest's own folders)."""
    import tempfile

    folder = tmp_path_factory.mktemp("workdir")
    scratch = tmp_path_factory.mktemp("tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("SWEEPLAB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        # where a folder for another user goes (PostgreSQL's, `nobody`'s): this session's
        # folders are root's alone
        mp.setenv(SHARED_TMP, tempfile.gettempdir())
        mp.setenv("TMPDIR", str(scratch))
        mp.setattr(tempfile, "tempdir", str(scratch))
        yield folder


# --- config, data cache and tracking-store fixtures (config/train/tracking tests) ----------


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
