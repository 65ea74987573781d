"""sweeplab installed from a wheel works outside the checkout: the wheel carries the Hydra
configs, and the console scripts and `python -m` entry points run from an empty folder.

The wheel is built from a copy of the sources (building writes build/ and *.egg-info beside
them) and installed, without dependencies, into a fresh venv. The dependencies come from
this environment's site-packages through a .pth line: Python processes .pth files in site
directories only, so an editable sweeplab there (its .pth points at a checkout's src/) does
not follow, and only the installed copy is importable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import REPO

pytestmark = pytest.mark.slow

SOURCES = ("pyproject.toml", "README.md", "src")
OFFLINE = ("data=planar", "train.epochs=3", "tracking.enabled=false", "train.progress=false")


@dataclass
class Venv:
    python: Path
    package: Path  # the installed sweeplab/ folder

    def script(self, name: str) -> Path:
        return self.python.parent / name


def run(cmd: list[str | Path], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`cmd` in `cwd`, with nothing of this session on the path: no $PYTHONPATH (the test
    suite runs with the checkout's src/ on it), no tracking store of the user's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME") and not k.startswith("MLFLOW_")}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def files_under(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    root = tmp_path_factory.mktemp("packaging")
    # The venv sits in a git repository with uncommitted changes, as a project's .venv/ does.
    (root / "project.txt").write_text("another project\n")
    identity = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for git in (["init", "-q"], ["add", "project.txt"],
                [*identity, "commit", "-q", "--no-verify", "-m", "another project"]):
        assert run(["git", *git], cwd=root).returncode == 0
    (root / "project.txt").write_text("changed\n")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, source / name)
    dist = root / "dist"
    # pip's default build isolation: the build backend named in pyproject.toml, as
    # `pip install .` gets it (the project's own venv may hold an older setuptools).
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source],
                cwd=root)
    assert built.returncode == 0, built.stderr
    wheel, = dist.glob("sweeplab-*.whl")

    venv = root / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # Installed before the dependencies' .pth exists, so pip sees an empty environment.
    installed = run([sys.executable, "-m", "pip", "--python", python, "install", "-q",
                     "--no-deps", "--no-index", wheel], cwd=root)
    assert installed.returncode == 0, installed.stderr
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                    cwd=root).stdout.strip())
    (site / "sweeplab_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return Venv(python, site / "sweeplab")


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def test_the_installed_package_is_imported(venv: Venv, empty: Path) -> None:
    code = ("import sys, pathlib, sweeplab; print(sweeplab.__file__); "
            "print(*[p for p in sys.path if (pathlib.Path(p, 'sweeplab').is_dir())], sep=',')")
    proc = run([venv.python, "-c", code], empty)
    assert proc.returncode == 0, proc.stderr
    module, folders = proc.stdout.splitlines()
    assert Path(module) == venv.package / "__init__.py"
    assert folders.split(",") == [str(venv.package.parent)]  # no checkout's src/ on the path
    assert (venv.package / "conf" / "config.yaml").is_file()


def test_train_from_any_folder(venv: Venv, empty: Path) -> None:
    before = files_under(venv.package)
    for cmd in ([venv.script("sweeplab-train"), *OFFLINE],
                [venv.python, "-m", "sweeplab.train", *OFFLINE]):
        proc = run(cmd, empty)
        assert proc.returncode == 0, proc.stderr
        assert "finished after 3 epochs" in proc.stdout
    bad = run([venv.script("sweeplab-train"), "model.depth=-1", *OFFLINE], empty)
    assert bad.returncode == 2 and "model.depth=-1" in bad.stderr
    assert files_under(venv.package) == before  # outputs/ and data/ go to the working folder
    assert {p.name for p in empty.iterdir()} == {"outputs", "data"}


def test_sweep_from_any_folder(venv: Venv, empty: Path) -> None:
    before = files_under(venv.package)
    for n, cmd in enumerate(([venv.python, "-m", "sweeplab.sweep"],
                             [venv.script("sweeplab-sweep")]), start=1):
        proc = run([*cmd, f"sweep.n_trials={2 * n}", "train.epochs=2", "train.progress=false",
                    "tracking.log_model=false"], empty)
        assert proc.returncode == 0, proc.stderr
        assert "trials" in proc.stdout
    assert (empty / "mlflow.db").is_file() and (empty / ".sweeplab").is_dir()
    assert files_under(venv.package) == before


def test_rerun_ui_and_dashboard_scripts_exit_with_their_status(venv: Venv, empty: Path) -> None:
    # No store here: both refuse with exit code 2, and create none.
    rerun = run([venv.script("sweeplab-rerun"), "0123456789abcdef"], empty)
    assert rerun.returncode == 2, rerun.stdout + rerun.stderr
    ui = run([venv.script("sweeplab-ui"), "--port", "0"], empty)
    assert ui.returncode == 2 and "--port 0" in ui.stderr
    dashboard = run([venv.script("sweeplab-dashboard")], empty)
    assert dashboard.returncode == 2 and "no Optuna study" in dashboard.stderr
    assert list(empty.iterdir()) == []


def test_runs_of_an_installed_copy_claim_no_git_commit(venv: Venv, empty: Path) -> None:
    """The repository around the venv is not the code that ran: no commit tag, no diff."""
    from mlflow.tracking import MlflowClient

    from sweeplab.names import MlflowTag, Tag

    proc = run([venv.script("sweeplab-train"), "data=planar", "train.epochs=3",
                "train.progress=false", "tracking.log_model=false"], empty)
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(f"sqlite:///{empty / 'mlflow.db'}")
    logged, = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert logged.data.tags[Tag.VERSION + "sweeplab"] == "0.1.0"
    assert not {Tag.GIT_COMMIT, Tag.GIT_DIRTY, MlflowTag.GIT_COMMIT} & logged.data.tags.keys()
    assert "git_diff.patch" not in {a.path for a in client.list_artifacts(logged.info.run_id)}
