"""The sweep's tracking writer (sweep.writer=process): a trial's MLflow run is written by a
process of its own while the next trial trains. What a user finds in MLflow must be what
the trial would have logged itself, and no kill may leave a run that claims to be finished
without its model, or a trial told to the study without its run.

Everything is read back through MlflowClient; sweeps run on small data in temporary stores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pytest
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from helpers import compose_config, use_mlflow_store
from sweeplab.names import TrialAttr
from sweeplab.sweep import study as st
from sweeplab.sweep.controller import sweep_job

FAST = ["sweep.confirm.top_k=0",  # no confirmation stage: trials only
        "data=moons", "data.n_samples=200", "train.epochs=12", "train.log_every=3",
        "train.batch_size=null", "tracking.log_model=true", "sweep.register_model=null",
        "sweep.pruner=none", "++sweep.params.optim.lr='tag(log, interval(1e-3, 0.05))'"]


def _load(journal: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=st.open_storage(journal))


def _children(client: MlflowClient, parent: str) -> list:
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps, f"tags.mlflow.parentRunId = '{parent}'", max_results=500)


def _shape(client: MlflowClient, run) -> dict:
    """What a user sees of a run, without its values: keys and artifact names."""
    run_id = run.info.run_id
    return {"status": run.info.status,
            "params": sorted(run.data.params),
            "metrics": sorted(run.data.metrics),
            "tags": sorted(k for k in run.data.tags if k != "mlflow.runName"),
            "artifacts": sorted(a.path for a in client.list_artifacts(run_id)),
            "inputs": sorted(i.tags[0].value for i in run.inputs.dataset_inputs),
            "history": len(client.get_metric_history(run_id, "val_cost"))}


def _sweep(writer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple:
    folder = tmp_path / writer
    folder.mkdir()
    uri = use_mlflow_store(folder, monkeypatch)
    journal = f"journal:{folder / 'optuna.journal'}"
    cfg = compose_config(*FAST, f"sweep.storage={journal}", "sweep.name=w",
                         "sweep.n_trials=3", f"sweep.writer={writer}",
                         config_name="sweep_app")
    assert sweep_job(cfg) == 0
    return MlflowClient(uri), _load(journal, "w")


def test_a_sweeps_writer_logs_what_its_trials_would_log_themselves(
        in_data_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = {}
    for writer in ("inline", "process"):
        client, study = _sweep(writer, tmp_path, monkeypatch)
        runs = {r.info.run_id: r for r in _children(client, study.user_attrs[
            TrialAttr.PARENT_RUN_ID])}
        assert len(runs) == 3
        for t in study.trials:
            assert t.state == TrialState.COMPLETE
            run = runs[t.user_attrs[TrialAttr.RUN_ID]]  # the study names the run it made
            assert run.data.tags["sweeplab.trial_number"] == str(t.number)
            assert run.data.metrics["final_val_cost"] == pytest.approx(t.values[0])
            model = mlflow.pyfunc.load_model(run.data.tags["sweeplab.model_uri"])
            X = np.zeros((4, 2))
            assert model.predict(X).shape == (4,)
        shapes[writer] = [_shape(client, r) for r in sorted(
            runs.values(), key=lambda r: int(r.data.tags["sweeplab.trial_number"]))]
    assert shapes["process"] == shapes["inline"]
    assert all(s["status"] == "FINISHED" and "config.yaml" in s["artifacts"]
               and s["inputs"] == ["test", "train", "validation"]
               for s in shapes["process"])


def _cmd(journal: str, *overrides: str) -> list[str]:
    # trials of seconds: the tests act between two trials' ends, seen by polling the journal
    return [sys.executable, "-m", "sweeplab.sweep", *FAST, f"sweep.storage={journal}",
            "data.n_samples=1000", "train.epochs=2000", "train.log_every=20", *overrides]


def _writer_of(pid: int):
    """The sweep's writer process (multiprocessing's spawn child that is no resource
    tracker), once it runs."""
    import psutil

    deadline = time.time() + 120
    while time.time() < deadline:
        for p in psutil.Process(pid).children():
            line = " ".join(p.cmdline())
            if "spawn_main" in line and "resource_tracker import main" not in line:
                return p
        time.sleep(0.2)
    raise AssertionError("the sweep started no writer process")


def _wait_done(journal: str, name: str, done: int, proc: subprocess.Popen) -> None:
    """Return once study `name` has `done` trials finished and the sweep `proc` still runs."""
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.3)
        assert proc.poll() is None, f"the sweep ended (exit {proc.returncode}) before " \
                                    f"study {name} had {done} trials done"
        try:
            if st.tally(_load(journal, name)).done >= done:
                return
        except KeyError:
            continue
    raise AssertionError(f"study {name} never had {done} trials done")


def _check_store(uri: str, journal: str, name: str, n_trials: int) -> None:
    """Exactly n_trials complete, each with one FINISHED run whose model is READY; nothing
    RUNNING; no FINISHED run of a trial the study does not count as complete."""
    study = _load(journal, name)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials
    client = MlflowClient(uri)
    runs = _children(client, study.user_attrs[TrialAttr.PARENT_RUN_ID])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    numbers = Counter(int(r.data.tags["sweeplab.trial_number"]) for r in finished)
    assert sorted(numbers) == sorted(t.number for t in complete)
    assert max(numbers.values()) == 1
    for r in finished:  # none claims to be finished without its model
        model_id = r.data.tags["sweeplab.model_uri"].split("/")[-1]
        assert client.get_logged_model(model_id).status == LoggedModelStatus.READY


@pytest.mark.slow
def test_a_sigkilled_controller_leaves_no_run_finished_without_its_model(
        tmp_path: Path, data_cache: Path) -> None:
    """SIGKILL the controller alone mid-sweep: its writer closes the runs it held open and
    exits; the same command then resumes to exactly n_trials, each with one finished run
    and its model."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    journal = f"journal:{tmp_path / 'optuna.journal'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = _cmd(journal, "sweep.name=k", "sweep.n_trials=6")
    proc = subprocess.Popen(cmd, cwd=data_cache, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        writer = _writer_of(proc.pid)
        _wait_done(journal, "k", 2, proc)
        assert proc.poll() is None  # killed mid-sweep, not after it
        proc.kill()
        proc.wait()
        writer.wait(timeout=60)  # it noticed and stopped by itself
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    again = subprocess.run(cmd, cwd=data_cache, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    _check_store(uri, journal, "k", 6)


@pytest.mark.slow
def test_a_dead_writer_stops_the_sweep_with_one_line_and_it_resumes(
        tmp_path: Path, data_cache: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    journal = f"journal:{tmp_path / 'optuna.journal'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = _cmd(journal, "sweep.name=d", "sweep.n_trials=6")
    proc = subprocess.Popen(cmd, cwd=data_cache, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        writer = _writer_of(proc.pid)
        _wait_done(journal, "d", 1, proc)
        writer.kill()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 2, err[-3000:]
    assert "Traceback" not in out + err
    said = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(said) == 1 and "tracking writer process died" in said[0] \
        and "run the same command" in said[0], err[-3000:]
    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    assert not client.search_runs(exps, "attributes.status = 'RUNNING'")
    again = subprocess.run(cmd, cwd=data_cache, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    _check_store(uri, journal, "d", 6)


def _mlflow_packages_mapped(client: MlflowClient) -> bool:
    """In the writer: whether MLflow has its map of installed distributions (built at a
    process's first saved model, unless built before)."""
    from mlflow.utils import requirements_utils

    return requirements_utils._MODULES_TO_PACKAGES is not None


def test_the_resource_tracker_a_writer_starts_prints_no_leak_warnings(tmp_path: Path) -> None:
    """A semaphore whose unregister never reached multiprocessing's resource tracker (a
    killed process, an exit that raced it) made the tracker print two warnings at its
    shutdown, after a command's one error line. The tracker the writer starts is quiet;
    it still unlinks what is left (here a name that does not exist)."""
    code = (
        "from multiprocessing import resource_tracker\n"
        "from sweeplab.tracking.writer import prestart\n"
        "prestart()\n"
        "resource_tracker.register('/sweeplab-test-never-made', 'semaphore')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr


def test_the_writer_builds_mlflows_package_map_before_its_first_model(tmp_path: Path) -> None:
    """About a second of MLflow's that the sweep's first trial waited for, before its result
    was told: the writer builds it while the sweep starts."""
    from sweeplab.tracking import prepare_store
    from sweeplab.tracking.writer import TrackingWriter

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_store(uri)
    writer = TrackingWriter(uri)
    try:
        writer.barrier(1, writer.call(_mlflow_packages_mapped))
        acks = writer.acks(timeout=120)
    finally:
        writer.close()
    assert [(a.group, a.value, a.failure) for a in acks] == [(1, True, None)]


def _imported(client: MlflowClient, names: list[str]) -> list[str]:
    """In the writer: which of `names` it has imported."""
    return [n for n in names if n in sys.modules]


def test_the_writer_imports_what_later_ops_need_while_it_has_nothing_to_write(
        tmp_path: Path) -> None:
    """The sweep's plots need seconds of imports, which the end of the sweep used to wait
    for: the writer imports them between ops instead. One that cannot be imported is
    passed over, and the writer goes on answering."""
    from sweeplab.tracking import prepare_store
    from sweeplab.tracking.writer import TrackingWriter

    # modules nothing in the writer imports otherwise
    wanted = ["wave", "xml.dom.minidom"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_store(uri)
    writer = TrackingWriter(uri, idle_imports=["sweeplab_no_such_module", *wanted])
    try:
        # the first answer comes before any idle import: ops go first
        writer.barrier(1, writer.call(_imported, wanted))
        first = writer.acks(timeout=120)
        got: list[str] = []
        deadline = time.monotonic() + 60
        while got != wanted and time.monotonic() < deadline:
            time.sleep(0.2)  # the writer imports one module whenever its queue is empty
            writer.barrier(2, writer.call(_imported, wanted))
            got = [a.value for a in writer.acks(timeout=30)][-1]
    finally:
        writer.close()
    assert [(a.group, a.value, a.failure) for a in first] == [(1, [], None)]
    assert got == wanted


def _pid(client: MlflowClient) -> int:
    return os.getpid()


def test_a_prestarted_writer_is_taken_over_by_the_next_one(tmp_path: Path) -> None:
    """The sweep command starts its writer before its own imports; the controller's
    TrackingWriter then uses that process, told its store then, rather than a new one."""
    from sweeplab.tracking import prepare_store
    from sweeplab.tracking import writer as w

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_store(uri)
    w.prestart()
    early = w._prestarted[0].pid
    writer = w.TrackingWriter(uri)
    later = w.TrackingWriter(uri)  # the early one is taken: a process of its own
    try:
        assert w._prestarted is None
        for one in (writer, later):
            one.barrier(1, one.call(_pid))
        pids = [a.value for one in (writer, later) for a in one.acks(timeout=120)]
    finally:
        writer.close()
        later.close()
    assert pids[0] == early and pids[1] not in (early, os.getpid())


EARLY_SCRIPT = """
import sys, time
from sweeplab.tracking import writer as w
w.prestart()
print(w._prestarted[0].pid, flush=True)
if sys.argv[1] == "discard":
    w.discard_prestarted()
    print(w._prestarted, flush=True)
else:
    time.sleep(4)  # the writer is up and waiting to be told its store
"""


@pytest.mark.parametrize("how", ["discard", "exit"])
def test_a_prestarted_writer_no_one_takes_over_is_stopped(how: str) -> None:
    """A sweep on Dask (or inline) discards it; a command that ends before its sweep starts
    (a config error) leaves it to the exit, which stops it rather than wait for it."""
    import psutil

    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", EARLY_SCRIPT, how], capture_output=True,
                          text=True, timeout=60, check=True)
    took, out = time.monotonic() - start, done.stdout.split()
    assert out[1:] == (["None"] if how == "discard" else [])
    assert done.stderr == ""
    assert not psutil.pid_exists(int(out[0])) or \
        psutil.Process(int(out[0])).status() == psutil.STATUS_ZOMBIE
    assert took < 30  # not the writer's wait for a caller that never sends it anything


def test_the_sweep_command_starts_its_writer_before_it_imports_mlflow() -> None:
    """What makes the early start early: importing the command's module loads no MLflow,
    Optuna or Hydra (the tracking package loads its names when first used)."""
    code = ("import sys, sweeplab.cli.sweep; "
            "print(sorted({m.split('.')[0] for m in sys.modules}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    for name in ("mlflow", "optuna", "hydra", "omegaconf", "numpy"):
        assert f"'{name}'" not in loaded, f"import sweeplab.cli.sweep loaded {name}"
    assert "'sweeplab'" in loaded


@pytest.mark.slow
def test_the_writer_draws_the_sweeps_plots_while_the_confirmation_trains(
        in_data_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sweeplab.sweep import report

    def not_here(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("the sweep's plots were drawn in the controller")

    # the writer is a process of its own: this patch reaches the controller alone
    monkeypatch.setattr(report, "log_plots", not_here)
    uri = use_mlflow_store(tmp_path, monkeypatch)
    journal = f"journal:{tmp_path / 'optuna.journal'}"
    fast = [o for o in FAST if not o.startswith("sweep.confirm.top_k")]
    cfg = compose_config(*fast, f"sweep.storage={journal}", "sweep.name=p",
                         "sweep.n_trials=4", "sweep.writer=process", "sweep.confirm.top_k=2",
                         "sweep.confirm.seeds=2", config_name="sweep_app")
    assert sweep_job(cfg) == 0
    client = MlflowClient(uri)
    parent = client.get_run(_load(journal, "p").user_attrs[TrialAttr.PARENT_RUN_ID])
    assert parent.info.status == "FINISHED"
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/parallel_coordinate.png",
            "plots/study.html", "plots/confirm.png"} <= logged
    assert "plots/skipped.txt" not in logged
    html = Path(client.download_artifacts(parent.info.run_id, "plots/study.html",
                                          str(tmp_path))).read_text()
    assert "<title>Optuna study p</title>" in html


ORPHAN_SCRIPT = """
import os, signal, struct, sys, time
from sweeplab.tracking import prepare_store
from sweeplab.tracking.tracker import op_create
from sweeplab.tracking.writer import TrackingWriter

uri = sys.argv[1]
prepare_store(uri)
writer = TrackingWriter(uri)
writer.barrier(1, writer.call(op_create, "orphans", uri, "half", {}, int(time.time() * 1000)))
assert writer.acks(timeout=120)[0].failure is None  # its run is open in the writer
print(writer._proc.pid, flush=True)
# what a caller killed while sending an op leaves: a message's length, and less than that
os.write(writer._ops._writer.fileno(), struct.pack("!i", 100_000) + b"x" * 10)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_a_writer_orphaned_in_the_middle_of_an_op_closes_its_runs_and_exits(
        tmp_path: Path) -> None:
    """Its caller SIGKILLed while sending it an op: the writer, stuck reading the rest,
    still notices, closes the run it held open as KILLED and exits."""
    import psutil

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:  # not a pipe: the orphan would hold it open
        proc = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT, uri],
                                stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    pid = proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=180) == -signal.SIGKILL, log.read_text()[-3000:]
    writer = psutil.Process(int(pid))
    try:
        writer.wait(timeout=60)
    except psutil.TimeoutExpired:
        writer.kill()
        raise AssertionError("the orphaned writer is still running a minute later") from None
    [run] = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("orphans").experiment_id])
    assert run.info.status == "KILLED"
    assert run.data.tags["sweeplab.status"] == "interrupted"


STOP_SCRIPT = """
import sys
from pathlib import Path
from sweeplab.tracking import prepare_store
from sweeplab.tracking.writer import TrackingWriter
import writer_ops

uri = "sqlite:///" + sys.argv[1]
client = prepare_store(uri)  # write-ahead logging on
run_id = client.create_run(client.create_experiment("e")).info.run_id
client._tracking_client.store.engine.dispose()  # the writer's the only connection left
writer = TrackingWriter(uri)
writer.barrier(1, writer.call(writer_ops.log_and_mark, run_id, sys.argv[2]))
print("acked", [(a.group, a.value) for a in writer.acks(timeout=120)], flush=True)
writer.close()
print("exit code", writer._proc.exitcode, flush=True)
"""

WRITER_OPS = '''
import atexit
from pathlib import Path


def log_and_mark(client, run_id, marker):
    """In the writer: a param on the run, and an exit handler that leaves `marker`."""
    client.log_param(run_id, "p", "1")
    atexit.register(Path(marker).write_text, "exit handlers ran")
    return "logged"
'''


def test_a_stopped_writer_runs_its_exit_handlers_and_leaves_the_store_closed(
        tmp_path: Path) -> None:
    """Told to stop, the writer ends at once (the interpreter's teardown skipped), yet as a
    clean exit ends: its acks reach the caller, every exit handler runs (one an op
    registered, and the one that closes the store, whose -wal file is then folded into
    the database), and its exit code is 0."""
    import sqlite3

    db, marker = tmp_path / "mlflow.db", tmp_path / "marker"
    (tmp_path / "writer_ops.py").write_text(WRITER_OPS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", STOP_SCRIPT, str(db), str(marker)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "acked [(1, 'logged')]" in proc.stdout, proc.stdout
    assert "exit code 0" in proc.stdout, proc.stdout
    assert marker.read_text() == "exit handlers ran"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("mlflow.db")) \
        == ["mlflow.db"]
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        assert con.execute("select key, value from params").fetchall() == [("p", "1")]
