"""Where a run came from: git commit and dirty state, the versions that computed it, and the
BLAS (library, CPU kernel, thread count) that summed its matrix products."""

from __future__ import annotations

import functools
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


# Cached per process: the code a process runs is the code it imported at the start, and a
# sweep worker would otherwise ask git three times per trial.
@functools.cache
def git_state(cwd: Path | None = None) -> tuple[str | None, bool | None, str]:
    """(commit, dirty, diff against HEAD) of the checkout sweeplab runs from; (None, None, "")
    when it runs from elsewhere (an installed copy), even one inside another repository,
    such as a project's .venv/."""
    here = Path(__file__).resolve()
    root = here.parents[2] if cwd is None else cwd
    if cwd is None and _git("ls-files", "--error-unmatch", "--", str(here), cwd=root) is None:
        return None, None, ""  # this file is not part of that repository
    commit = _git("rev-parse", "HEAD", cwd=root)
    if commit is None:
        return None, None, ""
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=root) or ""
    diff = _git("diff", "HEAD", cwd=root) or "" if status.strip() else ""
    return commit.strip(), bool(status.strip()), diff


@functools.cache
def versions() -> dict[str, str]:
    """Python and package versions, by distribution name."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def blas() -> dict[str, str]:
    """The BLAS libraries loaded (``openblas 0.3.31 SkylakeX``) and their thread counts now,
    comma-separated if several; {} if none is found. Another library, CPU kernel or thread
    count splits the sums of a matrix product differently, which changes float64 results
    in their last bits, so a bit-identical rerun needs the same."""
    import numpy  # noqa: F401 - threadpoolctl only finds libraries already loaded
    from threadpoolctl import threadpool_info

    libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    if not libs:
        return {}
    names = [" ".join(str(i[k]) for k in ("internal_api", "version", "architecture")
                      if i.get(k)) for i in libs]
    return {"blas": ", ".join(names), "blas_threads": ",".join(str(i["num_threads"])
                                                               for i in libs)}
