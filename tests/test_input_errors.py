"""Input and environment errors at the command line (issue 12): each is one line on stderr
(`error: ...`) naming what was wrong and what is allowed, exit code 2, no traceback, and
nothing started (no MLflow run, no Optuna study)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

# Every test runs the real command in a subprocess (seconds each): the slow suite.
pytestmark = pytest.mark.slow


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env["PYTHONPATH"] = str(REPO / "src")
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_cli(tmp_path: Path, *args: str, module: str = "sweeplab.train",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path,
                          env=env or _env(tmp_path), capture_output=True, text=True,
                          timeout=120)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single `error: ...` line of a refused command, after checking exit code 2, one
    non-empty stderr line and no traceback."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def assert_no_run(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlflow.db"
    if db.exists():
        client = MlflowClient(f"sqlite:///{db}")
        exps = [e.experiment_id for e in client.search_experiments()]
        assert client.search_runs(exps) == []


# -- overrides Hydra cannot compose ----------------------------------------------------------

COMPOSITION = [
    ("nosuch=1", ["nosuch: no such key", "seed, data, model"]),
    ("model.deph=3", ["model.deph: no such key", "did you mean model.depth"]),
    ("data=nosuch", ["data=nosuch", "config group 'data'", "digits", "planar"]),
    ("experiment=nosuch", ["experiment=nosuch", "course_4layer"]),
    ("model.depth=abc", ["model.depth=abc", "Integer"]),
    ("model.depth=[1,", ["'model.depth=[1,'", "override_grammar"]),
    ("model.depth=1,2", ["model.depth=1,2", "--multirun"]),
    ("~nosuch", ["nosuch"]),
    # was "hydra: no such key; the config has seed, data, ...": Hydra's node is not ours
    ("hydra.callbacks.x._target_=a.B", ["hydra.callbacks.x._target_", "+hydra.callbacks.x",
                                        "not in struct"]),
]


@pytest.mark.parametrize(("override", "expected"), COMPOSITION, ids=[c[0] for c in COMPOSITION])
def test_an_override_hydra_cannot_compose_is_one_line(tmp_path: Path, override: str,
                                                      expected: list[str]) -> None:
    line = one_error_line(run_cli(tmp_path, override))
    for text in expected:
        assert text in line, line
    assert "HYDRA_FULL_ERROR" not in line
    assert_no_run(tmp_path)


def test_a_sweep_override_hydra_cannot_compose_starts_no_study(tmp_path: Path) -> None:
    journal = tmp_path / "j.journal"
    line = one_error_line(run_cli(tmp_path, "sweep.n_trails=3",
                                  f"sweep.storage=journal:{journal}", module="sweeplab.sweep"))
    assert "sweep.n_trails: no such key (did you mean sweep.n_trials?)" in line
    assert not journal.exists()
    assert_no_run(tmp_path)


@pytest.mark.parametrize("space", ["range(1,3)", "range(1, 3)"], ids=["no-space", "spaces"])
def test_a_search_space_key_set_without_plus_says_to_use_plus_plus(tmp_path: Path,
                                                                   space: str) -> None:
    """Hydra's own message pointed at `+`, which cannot change a key already searched; the
    ++ given back is the whole override (it was cut at the expression's first space)."""
    line = one_error_line(run_cli(tmp_path, f"sweep.params.model.depth={space}",
                                  module="sweeplab.sweep"))
    assert line == ("error: sweep.params.model.depth: a search-space key is set with ++ (add "
                    f"or change: ++sweep.params.model.depth='{space}') or + (add only); see "
                    "`--cfg job` for the keys searched now")
    assert_no_run(tmp_path)


def test_a_sweep_without_tracking_is_refused_before_any_study_or_run(tmp_path: Path) -> None:
    """A sweep lives in MLflow (each trial's run, its summary, its champion): with
    tracking.enabled=false it used to log every trial all the same."""
    journal = tmp_path / "j.journal"
    line = one_error_line(run_cli(tmp_path, "tracking.enabled=false",
                                  f"sweep.storage=journal:{journal}", module="sweeplab.sweep"))
    assert "tracking.enabled=false" in line and "tracking.uri=sqlite:///" in line
    assert not journal.exists()
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("module", ["sweeplab.train", "sweeplab.sweep"])
def test_shell_completion_without_a_subcommand_is_one_line(tmp_path: Path,
                                                           module: str) -> None:
    line = one_error_line(run_cli(tmp_path, "--shell-completion", module=module))
    assert line.startswith("error: --shell-completion needs install=<shell> or uninstall=")
    done = run_cli(tmp_path, "--shell-completion", "install=bash", module=module)
    assert done.returncode == 0 and "complete" in done.stdout, done.stderr[-2000:]


def test_hydra_flags_still_work_with_the_check(tmp_path: Path) -> None:
    cfg = run_cli(tmp_path, "--cfg", "job", "model.depth=3", "hydra.run.dir=out")
    assert cfg.returncode == 0, cfg.stderr
    assert "depth: 3" in cfg.stdout
    helped = run_cli(tmp_path, "--help")
    assert helped.returncode == 0 and "Configuration groups" in helped.stdout
    # each app is named for what it does (Hydra would name both after cli/common.py)
    assert helped.stdout.startswith("train is powered by Hydra")
    swept = run_cli(tmp_path, "--help", module="sweeplab.sweep")
    assert swept.returncode == 0 and swept.stdout.startswith("sweep is powered by Hydra")


STUDY_DATA = {"course1_week4": "train_catvnoncat.h5", "course2_regularization": "train_football.h5"}


@pytest.mark.parametrize(("study", "args", "said"), [
    ("course1_week4", ["--trials", "0"], "sweep-course1_week4-val_cost: invalid config: "
                                         "sweep.n_trials=0"),
    ("course1_week4", ["--sweep-jobs", "0"], "sweep-course1_week4-val_cost: invalid config: "
                                             "sweep.n_jobs=0"),
    ("course1_week4", ["--seeds", "1", "-1"], "course_2layer-seed-1: invalid config: seed=-1"),
    ("course2_regularization", ["--seeds", "-1"], "course2_baseline-seed-1: invalid config: "
                                                  "seed=-1"),
    ("course1_week4", ["--jobs", "0"], "--jobs 0: must be between 1 and this machine's"),
    ("course2_regularization", ["--jobs", "4096"], "--jobs 4096: must be between 1 and"),
    ("course1_week4", ["--tracking-uri", "sqlite:///:memory:"],
     "--tracking-uri='sqlite:///:memory:' is an in-memory database"),
    ("course2_regularization", ["--workdir", "{tmp}/afile"],
     "--workdir {tmp}/afile: cannot use it (it is a file, not a folder)"),
    ("course1_week4", ["--results", "{tmp}/afile/r.md"],
     "--results {tmp}/afile/r.md: cannot write the tables there"),
    ("course2_regularization", ["--seeds", "3", "4", "3"],
     "--seeds 3 4 3: 3 given twice; give each seed once"),
    ("course1_week4", ["--table-only", "--tracking-uri", "sqlite:///{tmp}/none.db"],
     "no MLflow store at {tmp}/none.db"),
], ids=["trials", "sweep-jobs", "seeds-1", "seeds-2", "jobs-0", "jobs-many", "in-memory",
        "workdir-file", "results-unwritable", "seeds-twice", "tables-of-no-store"])
def test_a_studys_bad_option_is_one_line_before_anything_runs(
        tmp_path: Path, study: str, args: list[str], said: str) -> None:
    """Each was a traceback (the store, the workdir, the results file), a refusal once the
    course's presets had trained (trials, sweep jobs), the same error from each parallel
    job (seeds), or taken as it came (jobs 0 ran one, 4096 ran as many at once)."""
    (tmp_path / STUDY_DATA[study]).write_bytes(b"")  # found; nothing gets to read it
    (tmp_path / "afile").write_text("a file\n")
    env = _env(tmp_path) | {"PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    args = [a.format(tmp=tmp_path) for a in args]
    if "--tracking-uri" not in args:
        args += ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    if "--results" not in args:
        args += ["--results", str(tmp_path / "results.md")]
    proc = subprocess.run(
        [sys.executable, "-m", f"experiments.{study}.study", "--data-dir", str(tmp_path),
         *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    line = one_error_line(proc)
    assert line.startswith(f"error: {said.format(tmp=tmp_path)}"), line
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / ".sweeplab").exists()
    assert not (tmp_path / "results.md").exists() and not (tmp_path / "none.db").exists()


def test_a_studys_tables_are_read_from_a_read_only_store(tmp_path: Path) -> None:
    """--table-only only reads MLflow: a store it may not write was refused by the probe."""
    import shutil

    from sweeplab.tracking import prepare_store

    db = tmp_path / "mlflow.db"
    prepare_store(f"sqlite:///{db}")
    (tmp_path / STUDY_DATA["course2_regularization"]).write_bytes(b"")
    if shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a read-only file: chattr +i is unavailable or refused")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "from experiments.studylib import Study; "
             f"Study('e', 'sqlite:///{db}', __import__('pathlib').Path({str(tmp_path)!r}), "
             "read_only=True).finished(); print('read')"],
            cwd=tmp_path, env=_env(tmp_path) | {"PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"},
            capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "read", proc.stderr[-2000:]


@pytest.mark.parametrize("study", ["course1_week4", "course2_regularization"])
def test_a_study_with_a_wrong_data_folder_is_one_line(tmp_path: Path, study: str) -> None:
    """`make experiment NAME=... ARGS="--data-dir ..."` with no data there: nothing runs, and
    no MLflow store is created."""
    env = _env(tmp_path) | {"PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    proc = subprocess.run(
        [sys.executable, "-m", f"experiments.{study}.study", "--data-dir", str(tmp_path),
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    line = one_error_line(proc)
    assert str(tmp_path) in line and "--data-dir" in line
    assert not (tmp_path / "mlflow.db").exists()


# -- stores: the Optuna storage and the MLflow store -----------------------------------------

# the run's part first: a test of `make train` takes RUN alone
RUN = ["data=planar", "data.val_fraction=0.2", "train.epochs=5"]
SWEEP = [*RUN, "train.log_every=1", "sweep.n_trials=1", "tracking.log_model=false",
         "tracking.log_plots=false",
         "sweep.confirm.top_k=0"]  # no confirmation stage: trials only


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A folder nobody may write, root included (tests run as root, whom chmod does not
    stop): `chattr +i`, removed afterwards."""
    import shutil

    folder = tmp_path / "ro"
    folder.mkdir()
    if shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a read-only folder: chattr +i is unavailable or refused "
                    "on this filesystem, and chmod does not stop root")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize(("storage", "expected"), [
    ("nosuch://x", "sweep.storage='nosuch://x'"),
    ("postgresql+psycopg://u:secret@127.0.0.1:1/db", "sweep.storage='postgresql+psycopg://u:***@"),
], ids=["unknown-scheme", "unreachable-postgres"])
def test_a_storage_optuna_cannot_open_is_one_line(tmp_path: Path, data_cache: Path,
                                                  storage: str, expected: str) -> None:
    line = one_error_line(run_cli(data_cache, *SWEEP, f"sweep.storage={storage}",
                                  module="sweeplab.sweep", env=_env(tmp_path)))
    assert expected in line and "journal:<path>" in line
    assert "secret" not in line
    assert_no_run(tmp_path)


def test_a_journal_in_a_read_only_folder_is_one_line(tmp_path: Path, data_cache: Path,
                                                     read_only_folder: Path) -> None:
    journal = read_only_folder / "optuna.journal"
    line = one_error_line(run_cli(data_cache, *SWEEP, f"sweep.storage=journal:{journal}",
                                  module="sweeplab.sweep", env=_env(tmp_path)))
    assert f"sweep.storage='journal:{journal}'" in line and "cannot write" in line
    assert_no_run(tmp_path)


@pytest.mark.parametrize("module", ["sweeplab.train", "sweeplab.sweep"])
def test_an_mlflow_store_in_a_read_only_folder_is_one_line(
        tmp_path: Path, data_cache: Path, read_only_folder: Path, module: str) -> None:
    journal = tmp_path / "j.journal"
    uri = f"sqlite:///{read_only_folder / 'mlflow.db'}"
    line = one_error_line(run_cli(data_cache, *SWEEP, f"tracking.uri={uri}",
                                  f"sweep.storage=journal:{journal}", module=module,
                                  env=_env(tmp_path)) if module == "sweeplab.sweep" else
                          run_cli(data_cache, *RUN, f"tracking.uri={uri}",
                                  env=_env(tmp_path)))
    assert f"tracking.uri='{uri}'" in line and "cannot open the tracking store" in line
    assert not journal.exists()


@pytest.mark.parametrize("module", ["sweeplab.train", "sweeplab.sweep"])
def test_a_key_the_chosen_optimizer_ignores_is_refused_before_any_run(
        tmp_path: Path, module: str) -> None:
    """optim.beta=0.5 with Adam was logged as a param and never used."""
    line = one_error_line(run_cli(tmp_path, "optim.beta=0.5", module=module))
    assert line == ("error: invalid config: optim.beta=0.5: optim=adam does not use it (used "
                    "only by optim=momentum); drop it, or choose optim=momentum"), line
    assert_no_run(tmp_path)
    assert not (tmp_path / ".sweeplab").exists()


def test_a_read_only_mlflow_database_is_one_line_for_train_sweep_and_rerun(
        tmp_path: Path, data_cache: Path) -> None:
    """A database that may be read but not written (chmod a-w; here chattr +i, since tests
    run as root) passed the folder's probe: each command failed at its first write with
    ~130 lines of traceback, the sweep after creating its study."""
    import shutil

    from mlflow.tracking import MlflowClient

    env = _env(tmp_path)
    proc = run_cli(data_cache, *RUN, env=env)  # a run to rerun
    assert proc.returncode == 0, proc.stderr[-3000:]
    db = tmp_path / "mlflow.db"
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    if shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a read-only file: chattr +i is unavailable or refused")
    try:
        journal = tmp_path / "j.journal"
        for proc in (run_cli(data_cache, *RUN, env=env),
                     run_cli(data_cache, *SWEEP, f"sweep.storage=journal:{journal}",
                             module="sweeplab.sweep", env=env),
                     run_cli(data_cache, run.info.run_id, module="sweeplab.cli.rerun",
                             env=env)):
            line = one_error_line(proc)
            assert f"cannot write the database file {db}" in line, line
            assert "read-only" in line and "sqlite:///<path>" in line, line
        assert not journal.exists()
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_a_store_folder_that_is_a_file_names_where_the_uri_came_from(
        tmp_path: Path, data_cache: Path) -> None:
    """It said tracking.uri (the user set $MLFLOW_TRACKING_URI) and "File exists"."""
    (tmp_path / "afile").write_text("not a folder\n")
    uri = f"sqlite:///{tmp_path / 'afile' / 'mlflow.db'}"
    line = one_error_line(run_cli(data_cache, *RUN,
                                  env=_env(tmp_path) | {"MLFLOW_TRACKING_URI": uri}))
    assert line.startswith(f"error: $MLFLOW_TRACKING_URI='{uri}': cannot open"), line
    assert f"cannot write its folder {tmp_path / 'afile'}: it is a file, not a folder" in line


# -- the environment -------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["sweeplab.train", "sweeplab.sweep"])
def test_an_mplbackend_matplotlib_does_not_know_still_draws_the_plots(
        tmp_path: Path, data_cache: Path, module: str) -> None:
    """sweeplab draws into files only: a $MPLBACKEND that names no backend (a desktop
    session's leftover, a typo) failed the run at `import matplotlib`, with a traceback."""
    from mlflow.tracking import MlflowClient

    env = _env(tmp_path) | {"MPLBACKEND": "nonsense"}
    args = [*RUN, "sweep.n_trials=2", "sweep.confirm.top_k=0", "tracking.log_model=false",
            f"sweep.storage=journal:{tmp_path / 'j.journal'}"] \
        if module == "sweeplab.sweep" else RUN
    proc = run_cli(data_cache, *args, module=module, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    # the run's cost curve, or the sweep's plots on its parent run
    drawn = {"sweeplab.train": "plots/cost_curve.png", "sweeplab.sweep": "plots/study.html"}
    plotted = [r for r in runs
               if drawn[module] in {a.path for a in client.list_artifacts(r.info.run_id,
                                                                          "plots")}]
    assert len(plotted) == 1
    pngs = {a.path for a in client.list_artifacts(plotted[0].info.run_id, "plots")}
    assert any(p.endswith(".png") for p in pngs) and "plots/skipped.txt" not in pngs


# -- config values checked before any run ----------------------------------------------------

CONFIG_VALUES = [
    (["tracking.uri=ftp://u:secret@x"], ["tracking.uri='ftp://...'", "sqlite:///",
                                         "http(s)://"]),
    (["tracking.experiment=" + "x" * 1000], ["tracking.experiment=", "1000 characters",
                                             "at most 256"]),
    (["model.depth=3", "model.hidden=[7]"], ["model.hidden=[7]", "model.depth=3"]),
    (["experiment=course_2layer", "model.width=5"], ["model.hidden=[7]", "model.width=5"]),
    (["tracking.uri=sqlite:///:memory:"], ["tracking.uri='sqlite:///:memory:'",
                                          "in-memory database", "sqlite:///<path>"]),
    # was called a folder (MLflow's file store)
    (["tracking.uri=databricks"], ["tracking.uri='databricks'", "a Databricks workspace",
                                   "sqlite:///<path>"]),
]


@pytest.mark.parametrize(("overrides", "expected"), CONFIG_VALUES,
                         ids=["tracking-scheme", "long-experiment", "depth-and-hidden",
                              "preset-hidden-and-width", "in-memory-store", "databricks"])
def test_a_value_refused_before_any_run_is_one_line(tmp_path: Path, overrides: list[str],
                                                    expected: list[str]) -> None:
    line = one_error_line(run_cli(tmp_path, *overrides, "train.epochs=1"))
    for text in expected:
        assert text in line, line
    assert "secret" not in line
    assert_no_run(tmp_path)


@pytest.mark.parametrize(("overrides", "expected"), [
    (["tracking.uri=sqlite:///"], "tracking.uri='sqlite:///' is an in-memory database"),
    (["sweep.pruner=hyperband", "+sweep.pruner_args.reduction_factor=1"],
     "pruner 'hyperband' cannot work with them (ZeroDivisionError"),
    (["sweep.timeout=0"], "sweep.timeout=0.0: must be a number of seconds > 0"),
], ids=["in-memory-store", "hyperband-factor-1", "zero-timeout"])
def test_a_sweep_refused_for_its_store_or_settings_starts_nothing(
        tmp_path: Path, data_cache: Path, overrides: list[str], expected: str) -> None:
    """Each of these used to run: every run lost to an in-memory store, every trial failed
    by the pruner, or a study with no trial; each exited 0. The journal's folder, made to
    check it can be written, is gone again (as .sweeplab/ by default)."""
    journal = tmp_path / "state" / "j.journal"
    line = one_error_line(run_cli(data_cache, *SWEEP, *overrides,
                                  f"sweep.storage=journal:{journal}",
                                  module="sweeplab.sweep", env=_env(tmp_path)))
    assert expected in line, line
    assert not journal.parent.exists()
    assert_no_run(tmp_path)


def test_a_working_folder_that_cannot_be_written_is_one_line(tmp_path: Path,
                                                             read_only_folder: Path) -> None:
    """Hydra's output folder, then the built-in data's cache, in a folder the command may
    not write: each was a traceback (exit 1) from Hydra or h5py."""
    env = _env(tmp_path)
    journal = f"sweep.storage=journal:{tmp_path / 'j.journal'}"
    line = one_error_line(run_cli(read_only_folder, "sweep.n_trials=1", journal,
                                  module="sweeplab.sweep", env=env))
    assert line.startswith("error: hydra.run.dir='outputs/") and \
        f"({read_only_folder} may not be written" in line, line
    line = one_error_line(run_cli(read_only_folder, "sweep.n_trials=1", journal,
                                  f"hydra.run.dir={tmp_path / 'out'}",
                                  module="sweeplab.sweep", env=env))
    assert line.startswith("error: data.dir='data/builtin': cannot write the digits cache "
                           "there"), line
    (tmp_path / "file").write_text("")
    line = one_error_line(run_cli(tmp_path, "train.epochs=1",
                                  f"hydra.run.dir={tmp_path / 'file' / 'x'}", env=env))
    assert f"({tmp_path / 'file'} is not a folder)" in line, line
    assert not (tmp_path / "j.journal").exists()
    assert_no_run(tmp_path)


@pytest.mark.parametrize("module", ["sweeplab.train", "sweeplab.sweep"])
def test_a_multirun_folder_that_cannot_be_created_is_one_line(
        tmp_path: Path, read_only_folder: Path, module: str) -> None:
    """`-m` from a folder the command may not write: Hydra's OSError traceback (exit 1) when
    it made multirun/... for the first job; its sweep overrides are still a sweep."""
    env = _env(tmp_path)
    line = one_error_line(run_cli(read_only_folder, "-m", "train.epochs=1,2",
                                  module=module, env=env))
    assert line.startswith("error: hydra.sweep.dir='multirun/") and \
        f"({read_only_folder} may not be written" in line, line
    (tmp_path / "file").write_text("")
    line = one_error_line(run_cli(tmp_path, "-m", "train.epochs=1,2",
                                  f"hydra.sweep.dir={tmp_path / 'file' / 'x'}",
                                  module=module, env=env))
    assert f"({tmp_path / 'file'} is not a folder)" in line, line
    assert_no_run(tmp_path)


def test_a_deleted_experiment_is_one_line_for_train_sweep_and_rerun(
        tmp_path: Path, data_cache: Path) -> None:
    """An experiment deleted in the UI: MLflow refused the run with a traceback (exit 1),
    the sweep after it had created its study."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    env = _env(tmp_path)
    uri = env["MLFLOW_TRACKING_URI"]
    done = run_cli(data_cache, *RUN, "tracking.experiment=gone", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("gone")
    [original] = client.search_runs([exp.experiment_id])
    client.delete_experiment(exp.experiment_id)
    journal = tmp_path / "state" / "j.journal"
    for module, args in [("sweeplab.train", RUN),
                         ("sweeplab.sweep", [*SWEEP, f"sweep.storage=journal:{journal}"])]:
        done = run_cli(data_cache, *args, "tracking.experiment=gone", module=module, env=env)
        assert "Network: layer_dims" not in done.stdout, done.stdout  # said before training
        line = one_error_line(done)
        assert line.startswith("error: tracking.experiment='gone': the experiment is "
                               "deleted") and f"restore -x {exp.experiment_id}" in line, line
    line = one_error_line(run_cli(data_cache, original.info.run_id, env=env,
                                  module="sweeplab.cli.rerun"))
    assert "which is deleted" in line and f"restore -x {exp.experiment_id}" in line, line
    assert not journal.parent.exists()
    assert len(client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)) == 1


def test_a_network_larger_than_memory_is_one_line(tmp_path: Path, data_cache: Path) -> None:
    """NumPy's MemoryError was a traceback (exit 1); its message names the size."""
    line = one_error_line(run_cli(data_cache, *RUN, "model.width=10000000000",
                                  env=_env(tmp_path)))
    assert line.startswith("error: not enough memory (Unable to allocate ") and \
        "model.width" in line, line


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
def test_hydra_job_chdir_is_refused_before_any_run(tmp_path: Path, multirun: bool) -> None:
    """With it, each run had new stores in its output folder: a sweep never resumed, and
    said its journal was in .sweeplab/ of the folder it started in."""
    line = one_error_line(run_cli(tmp_path, *(["-m"] if multirun else []),
                                  "hydra.job.chdir=true", "sweep.n_trials=1",
                                  module="sweeplab.sweep"))
    assert line.startswith("error: hydra.job.chdir=True: ") and "never resume" in line, line
    assert not (tmp_path / ".sweeplab").exists()
    assert_no_run(tmp_path)


@pytest.mark.parametrize(("module", "sweep", "said"), [
    ("sweeplab.train", "model.depth=1,-1", "multirun job #1 (model.depth=-1): invalid config: "
                                           "model.depth=-1: must be an integer >= 0"),
    ("sweeplab.train", "data=moons,nope", "multirun job #1 (data=nope): data=nope: no such "
                                          "option in config group 'data'"),
    ("sweeplab.sweep", "sweep.n_trials=1,0", "multirun job #1 (sweep.n_trials=0): invalid "
                                             "config: sweep.n_trials=0"),
], ids=["bad-value", "bad-option", "bad-sweep-value"])
def test_a_multirun_with_a_bad_job_runs_none(tmp_path: Path, module: str, sweep: str,
                                              said: str) -> None:
    """Job #0 trained and was logged, then job #1 stopped on its config (or Hydra's
    multi-line error, exit 1)."""
    line = one_error_line(run_cli(tmp_path, "-m", sweep, module=module))
    assert line.startswith(f"error: {said}") and line.endswith("no job ran"), line
    assert not (tmp_path / "multirun").exists()
    assert_no_run(tmp_path)


@pytest.mark.parametrize(("args", "said"), [
    (["--help", "model.nope=1"], "error: model.nope: no such key"),
    (["-m", "--cfg", "job"], "error: --cfg prints one job's config"),
    (["--experimental-rerun", "nothing.pickle"], "error: --experimental-rerun 'nothing.pickle'"),
    (["--experimental-rerun", "text.pickle"], "error: --experimental-rerun 'text.pickle': "
                                               "not a config Hydra saved"),
    (["--experimental-rerun", "config.pickle"], "error: --experimental-rerun 'config.pickle': "
                                                 "not a config Hydra saved (it reads as a "
                                                 "config without Hydra's own node)"),
    (["--experimental-rerun", "."], "error: --experimental-rerun '.' is a folder"),
    (["--experimental-rerun", "/dev/null"], "error: --experimental-rerun '/dev/null' is not "
                                             "a regular file"),
    (["--experimental-rerun", "shallow.pickle"], "error: --experimental-rerun "
                                                 "'shallow.pickle': not a config Hydra saved"),
    (["-sc", "query=bash"], "error: --shell-completion query=... is what the shell's"),
    (["--config-dir", "/nonexistent"], "error: --config-dir '/nonexistent': no such folder"),
    (["-m", "--info"], "error: --help and --info show one config"),
    (["--run", "-m", "model.depth=1"], "error: --run (-r) and --multirun (-m)"),
    (["--resolve"], "error: --resolve goes with --cfg"),
    (["--info", "-sc", "install=bash"], "error: --info and --shell-completion"),
], ids=["help-bad-override", "multirun-cfg", "rerun-no-file", "rerun-not-pickle",
        "rerun-not-hydras", "rerun-folder", "rerun-device", "rerun-shallow", "query-no-shell",
        "config-dir",
        "multirun-info", "run-and-multirun", "resolve-alone", "info-and-completion"])
def test_hydra_flags_that_would_end_in_a_traceback_are_one_line(
        tmp_path: Path, args: list[str], said: str) -> None:
    """Each was Hydra's traceback (or several lines), exit 1."""
    import pickle

    from omegaconf import OmegaConf

    (tmp_path / "text.pickle").write_text("not a pickle\n")
    (tmp_path / "config.pickle").write_bytes(pickle.dumps(OmegaConf.create({"a": 1})))
    (tmp_path / "shallow.pickle").write_bytes(pickle.dumps(OmegaConf.create({"hydra": 1})))
    env = {k: v for k, v in _env(tmp_path).items() if k != "COMP_LINE"}
    for module in ("sweeplab.train", "sweeplab.sweep"):
        line = one_error_line(run_cli(tmp_path, *args, module=module, env=env))
        assert line.startswith(said), line


@pytest.mark.parametrize(("args", "said"), [
    (["model=mine", "model.dept=3"], "error: model.dept: no such key (did you mean "
                                     "model.depth?)"),
    (["model=mne"], "error: model=mne: no such option in config group 'model'; choose one "
                    "of default, mine"),
    (["-m", "model=mine", "model.depth=1,-1"], "error: multirun job #1 (model=mine "
                                               "model.depth=-1): invalid config: "
                                               "model.depth=-1"),
], ids=["unknown-key", "unknown-option", "multirun-bad-job"])
def test_overrides_beside_a_config_dir_are_checked_with_its_configs(
        tmp_path: Path, args: list[str], said: str) -> None:
    """With --config-dir the check was skipped: Hydra's lines, exit 1, and a multirun's
    bad job found only when its turn came. The folder's own options count as Hydra's do."""
    mine = tmp_path / "mine" / "model"
    mine.mkdir(parents=True)
    (mine / "mine.yaml").write_text("defaults:\n  - default\n  - _self_\nwidth: 17\n")
    line = one_error_line(run_cli(tmp_path, "--config-dir", str(tmp_path / "mine"), *args))
    assert line.startswith(said), line
    assert_no_run(tmp_path)
    shown = run_cli(tmp_path, "--config-dir", str(tmp_path / "mine"), "model=mine", "--cfg",
                    "job")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "width: 17" in shown.stdout


def test_help_still_shows_the_config_its_overrides_make(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "--help", "data=moons")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "name: moons" in proc.stdout
