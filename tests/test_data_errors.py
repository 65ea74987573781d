"""Data files that cannot be used, at the command line (issue 12): a file or folder the user
may not read, a damaged HDF5 file, a file that is not HDF5, and a dataset too small for its
validation split are each one `error: ...` line naming the file, exit code 2, no traceback,
and no run or study started."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO, compose_config, shared_tmp
from sweeplab.data.h5 import write_course_h5
from test_input_errors import _env, assert_no_run, one_error_line, run_cli

# Every test runs the real command in a subprocess (seconds each): the slow suite.
pytestmark = pytest.mark.slow

TRAIN = ["train.epochs=1", "tracking.log_model=false", "tracking.log_plots=false"]


def course_file(path: Path, m: int = 40) -> Path:
    """A valid course-layout training file with m examples of 3 features, 2 classes."""
    rng = np.random.default_rng(0)
    return write_course_h5(path, rng.random((m, 3)), np.arange(m) % 2, ["a", "b"], "train")


def h5_args(path: Path, *more: str) -> list[str]:
    return ["data=h5", f"data.dir={path.parent}", f"data.train_file={path.name}", *more]


# -- files and folders the user may not read -------------------------------------------------

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def nobody_folder() -> Iterator[Path]:
    """A working folder owned by the unprivileged user `nobody`, who runs the command (tests
    run as root, whom file modes do not stop). Skipped when that is not possible."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the command as an unprivileged user")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' to run the command as")
    probe = subprocess.run([*NOBODY, sys.executable, "-c", "import sweeplab.data"],
                           env={**os.environ, "PYTHONPATH": str(REPO / "src")},
                           cwd="/", capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"user 'nobody' cannot import sweeplab from {sys.executable} and "
                    f"{REPO / 'src'}: {probe.stderr.strip()[-200:]}")
    folder = Path(tempfile.mkdtemp(prefix="sweeplab-nobody-", dir=shared_tmp()))
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    try:
        yield folder
    finally:
        for p in folder.rglob("*"):  # give back x to any folder a test took it from
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(folder)


def run_as_nobody(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = _env(folder) | {"HOME": str(folder)}
    return subprocess.run([*NOBODY, sys.executable, "-m", "sweeplab.train", *args],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_a_data_file_the_user_cannot_read_is_one_line(nobody_folder: Path) -> None:
    path = course_file(nobody_folder / "train.h5")
    path.chmod(0)
    line = one_error_line(run_as_nobody(nobody_folder, *h5_args(path), *TRAIN))
    assert f"{path}: permission denied" in line, line
    assert_no_run(nobody_folder)


@pytest.mark.parametrize("dataset", ["h5", "moons"])
def test_a_data_folder_the_user_cannot_read_is_one_line(nobody_folder: Path,
                                                        dataset: str) -> None:
    """data.dir without read and search rights: the course files in it, or the cache of a
    built-in dataset, cannot even be looked for."""
    folder = nobody_folder / "data"
    path = course_file(folder / "train.h5")
    folder.chmod(stat.S_IWUSR)  # root made it; mode 0200 stops nobody too
    args = h5_args(path) if dataset == "h5" else ["data=moons", f"data.dir={folder}"]
    line = one_error_line(run_as_nobody(nobody_folder, *args, *TRAIN))
    assert "permission denied" in line and str(folder) in line, line
    assert_no_run(nobody_folder)


# -- damaged files and files that are not HDF5 ------------------------------------------------

def _overwrite(data: bytes, marker: bytes) -> bytes:
    i = data.index(marker)  # a signature inside the file's internal structure
    return data[:i] + b"XXXX" + data[i + len(marker):]


DAMAGE = {
    "bad-local-heap": (lambda b: _overwrite(b, b"HEAP"), "damaged (bad local heap signature)"),
    "bad-symbol-table": (lambda b: _overwrite(b, b"SNOD"), "damaged (bad symbol table node"),
    "truncated": (lambda b: b[:1000], "damaged (truncated file"),
    "random-bytes": (lambda b: np.random.default_rng(1).bytes(len(b)), "not an HDF5 file"),
    "empty": (lambda b: b"", "not an HDF5 file"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_or_foreign_data_file_is_one_line(tmp_path: Path, damage: str) -> None:
    change, expected = DAMAGE[damage]
    path = course_file(tmp_path / "data" / "train.h5")
    path.write_bytes(change(path.read_bytes()))
    line = one_error_line(run_cli(tmp_path, *h5_args(path), *TRAIN))
    assert f"{path}: " in line and expected in line, line
    if expected.startswith("damaged"):
        assert "copy it again" in line, line
    assert_no_run(tmp_path)


def test_a_damaged_built_in_cache_says_to_delete_it(tmp_path: Path) -> None:
    """A cached built-in is sweeplab's own file: the way out is to let it be generated."""
    from sweeplab.config import to_config
    from sweeplab.data.builtin import ensure_builtin

    data = to_config(compose_config("data=moons")).data  # the file the command will read
    train, _ = ensure_builtin(data, tmp_path / "cache")
    train.write_bytes(_overwrite(train.read_bytes(), b"HEAP"))
    line = one_error_line(run_cli(tmp_path, "data=moons", "data.dir=cache", *TRAIN))
    assert f"{train.name}: the HDF5 file is damaged" in line and "delete it" in line, line


# -- too few examples for a validation split ------------------------------------------------

@pytest.mark.parametrize(("m", "module"), [(1, "sweeplab.train"), (2, "sweeplab.train"),
                                           (1, "sweeplab.sweep")],
                         ids=["1-example", "2-examples-2-classes", "sweep-1-example"])
def test_too_few_examples_for_the_validation_split_is_one_line(tmp_path: Path, m: int,
                                                               module: str) -> None:
    path = course_file(tmp_path / "data" / "train.h5", m=m)
    journal = tmp_path / "optuna.journal"
    line = one_error_line(run_cli(tmp_path, *h5_args(path, "data.val_fraction=0.5"), *TRAIN,
                                  *([f"sweep.storage=journal:{journal}", "sweep.n_trials=1"]
                                    if module == "sweeplab.sweep" else []), module=module))
    assert "data.val_fraction=0.5" in line and f"has {m} example" in line, line
    assert "data.val_fraction=0" in line and "at least 2 examples of a class" in line, line
    assert not journal.exists()
    assert_no_run(tmp_path)


def test_too_few_generated_examples_is_one_line(tmp_path: Path) -> None:
    """The built-in generators: data.n_samples is checked with the config, before any
    file is generated."""
    line = one_error_line(run_cli(tmp_path, "data=moons", "data.n_samples=2",
                                  "data.val_fraction=0.5", *TRAIN))
    assert "data.n_samples=2" in line and ">= 20" in line, line
    assert_no_run(tmp_path)
