"""Where a run came from: git commit and dirty state, the versions that computed it, and the
BLAS (library, CPU kernel, thread count) that summed its matrix products."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

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
    """The BLAS library NumPy's matrix products call (``openblas 0.3.31 SkylakeX``) and its
    thread count now; {} if none is found. Another library, CPU kernel or thread count
    splits the sums of a matrix product differently, which changes float64 results in
    their last bits, so a bit-identical rerun needs the same.

    NumPy's alone: a process also holds the BLAS of other packages that sweeplab never
    calls (SciPy's, once scikit-learn or an Optuna sampler imports it), and which of them
    are loaded depends on what ran before, not on how the run computed."""
    lib = numpy_blas()
    if lib is None:
        return {}
    name = " ".join(str(lib[k]) for k in ("internal_api", "version", "architecture")
                    if lib.get(k))
    return {"blas": name, "blas_threads": str(lib["num_threads"])}


def numpy_blas() -> dict[str, Any] | None:
    """threadpoolctl's record of the BLAS library NumPy links: the one inside NumPy's own
    installation (a wheel bundles it in ``numpy.libs/``), else the one whose version NumPy's
    build names (a NumPy built against the system's BLAS); None if no BLAS is loaded."""
    import numpy
    from threadpoolctl import get_cached_controller

    # Finds only libraries already loaded. The cached controller is made again when a
    # module was imported since; a new one looks through every loaded library (4 ms a run).
    libs = [i for i in get_cached_controller().info() if i.get("user_api") == "blas"]
    if len(libs) <= 1:
        return libs[0] if libs else None
    home = Path(numpy.__file__).resolve().parent
    own = [i for i in libs if _inside(i.get("filepath"), home, home.with_name("numpy.libs"))]
    if len(own) == 1:
        return own[0]
    built = _numpy_build_blas_version()
    named = [i for i in libs if built and i.get("version") and str(i["version"]) in built]
    return named[0] if len(named) == 1 else libs[0]


def _inside(path: str | None, *folders: Path) -> bool:
    if not path:
        return False
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(f) for f in folders)


def _numpy_build_blas_version() -> str:
    """The BLAS version NumPy was built against ("" if its build does not say)."""
    import numpy

    try:  # NumPy >= 1.26; mode="dicts" returns the record instead of printing it
        config = numpy.show_config(mode="dicts")
        return str(config["Build Dependencies"]["blas"].get("version", ""))
    except (TypeError, KeyError, AttributeError):
        return ""
