"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """Folder of the course data (catvnoncat/, football/): $SWEEPLAB_SHARED_DATASETS, else
    <repo>/../shared/datasets. Tests that need it are skipped when it is absent."""
    folder = Path(os.environ.get("SWEEPLAB_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
    if not folder.is_dir():
        pytest.skip(f"course data not found at {folder} (set SWEEPLAB_SHARED_DATASETS)")
    return folder
