"""Where a run came from: git commit and dirty state, and the versions that computed it."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("sweeplab", "numpy", "h5py", "mlflow", "optuna", "hydra-core", "omegaconf",
            "scikit-learn", "threadpoolctl")


def _git(*args: str, cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def git_state(cwd: Path | None = None) -> tuple[str | None, bool | None, str]:
    """(commit, dirty, diff against HEAD); (None, None, "") outside a git checkout."""
    root = Path(__file__).resolve().parents[2] if cwd is None else cwd
    commit = _git("rev-parse", "HEAD", cwd=root)
    if commit is None:
        return None, None, ""
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=root) or ""
    diff = _git("diff", "HEAD", cwd=root) or "" if status.strip() else ""
    return commit.strip(), bool(status.strip()), diff


def versions() -> dict[str, str]:
    """Python and package versions, by distribution name."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
