"""What a batch scheduler does to a program: SIGTERM on pre-emption or at a time limit.

SIGTERM gets the treatment Ctrl-C gets: the run stops at a safe point and is closed as
KILLED, a sweep queues its running trials again, prints its summary and says how to
resume, Dask workers stop with their sweep, and the command exits with 143. Real
processes, real signals, temporary stores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sweeplab.sweep.study import open_storage, tally

FAST = ["data=moons", "data.n_samples=1000", "train.batch_size=null",
        "tracking.log_model=false", "tracking.log_plots=false", "train.progress=false"]


def stores(tmp_path: Path) -> tuple[str, str, dict[str, str]]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, f"journal:{tmp_path / 'optuna.journal'}", {**os.environ,
                                                           "MLFLOW_TRACKING_URI": uri}


def runs(uri: str, status: str | None = None) -> list:
    client = MlflowClient(tracking_uri=uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(exps, max_results=500) if exps else []
    return [r for r in found if status is None or r.info.status == status]


def launch(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """`cmd` started in a session of its own (a signal to its group reaches it alone), its
    output piped as text."""
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def load(journal: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(journal))


def wait_until(what: str, ok, proc: subprocess.Popen,  # type: ignore[no-untyped-def]
               seconds: float = 240) -> None:
    """Poll `ok()` until it holds; fail at once, with its output, if `proc` ends first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the process ended (exit {proc.returncode}) before: "
                                 f"{what}\n{(out or '')[-1500:]}\n{(err or '')[-1500:]}")
        try:
            if ok():
                return
        except Exception:  # the store or the study does not exist yet
            continue
    raise AssertionError(f"never saw: {what}")


def test_sigterm_to_make_train_closes_its_run_as_killed(tmp_path: Path,
                                                        data_cache: Path) -> None:
    uri, _, env = stores(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "sweeplab.train", *FAST,
                             "train.epochs=1000000", "train.log_every=100"],
                            cwd=data_cache, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until("the run training", lambda: runs(uri, "RUNNING"), proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    [run] = runs(uri)
    assert run.info.status == "KILLED"
    assert run.data.tags["sweeplab.status"] == "interrupted"


@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                   (signal.SIGINT, 130, "interrupted (Ctrl-C)")])
def test_a_signal_to_make_rerun_closes_its_run_as_killed_in_one_line(
        tmp_path: Path, data_cache: Path, sig: int, code: int, said: str) -> None:
    """The rerun was killed by SIGTERM with its run left RUNNING, and Ctrl-C printed a
    KeyboardInterrupt traceback: as `make train` now."""
    uri, _, env = stores(tmp_path)
    subprocess.run([sys.executable, "-m", "sweeplab.train", *FAST, "train.epochs=3"],
                   cwd=data_cache, env=env, check=True, capture_output=True, timeout=120)
    [original] = runs(uri)
    proc = launch([sys.executable, "-m", "sweeplab.cli.rerun", original.info.run_id,
                   "train.epochs=1000000", "train.log_every=100"], data_cache, env)
    try:
        wait_until("the rerun training", lambda: runs(uri, "RUNNING"), proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err[-2000:]
    assert err.strip() == said, err[-2000:]
    rerun = [r for r in runs(uri) if r.info.run_id != original.info.run_id]
    assert [r.info.status for r in rerun] == ["KILLED"]


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "group", "code", "said"), [
    # a batch scheduler's SIGTERM to the controller alone
    (signal.SIGTERM, False, 143, "terminated (SIGTERM)"),
    # a terminal's Ctrl-C, which reaches the whole process group, Dask workers included
    (signal.SIGINT, True, 130, "interrupted (Ctrl-C)"),
    # `timeout`, `kill -- -<pgid>`, a batch scheduler's pre-emption of the job: the workers
    # died of it, the scheduler's warnings printed, trials and replicates reported lost
    # to dead workers (or the command ended "the Dask scheduler stopped answering", exit 2)
    (signal.SIGTERM, True, 143, "terminated (SIGTERM)"),
], ids=["sigterm", "ctrl-c", "sigterm-to-group"])
def test_a_signal_to_a_dask_sweep_stops_it_cleanly_and_the_resume_finishes(
        tmp_path: Path, data_cache: Path, signum: int, group: bool, code: int,
        said: str) -> None:
    import psutil

    uri, journal, env = stores(tmp_path)
    cmd = [sys.executable, "-m", "sweeplab.sweep", *FAST, "train.epochs=8000",
           "train.log_every=50", "sweep.n_trials=5", "sweep.n_jobs=2", "sweep.name=term",
           "+sweep.pruner_args.n_startup_trials=100", "sweep.register_model=null",
           "sweep.confirm.top_k=0",
           f"sweep.storage={journal}"]
    proc = launch(cmd, data_cache, env)

    def study() -> optuna.Study:
        return load(journal, "term")

    try:
        wait_until("two trials training", lambda: sum(
            t.state == TrialState.RUNNING and bool(t.intermediate_values)
            for t in study().trials) == 2, proc)
        family = psutil.Process(proc.pid).children(recursive=True)
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=180)
        _, alive = psutil.wait_procs(family, timeout=60)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err and "distributed." not in err, err[-3000:]
    assert f"stopped: {said}; run the same command again to resume" in out
    trials = study().trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    cut = [t for t in trials if t.user_attrs.get("sweeplab_status") == "interrupted"]
    assert len(cut) == 2
    assert all(t.user_attrs["sweeplab_reason"] == said for t in cut)
    assert not runs(uri, "RUNNING")  # every run closed, the parent's too
    assert {r.info.status for r in runs(uri) if r.data.tags.get("sweeplab.trial_number")
            in {str(t.number) for t in cut}} == {"KILLED"}

    again = subprocess.run(cmd, cwd=data_cache, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert sum(t.state == TrialState.COMPLETE for t in study().trials) == 5
    assert not runs(uri, "RUNNING")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_the_sweep_starts_ends_it_quietly_with_its_writer(
        tmp_path: Path, sig: signal.Signals, code: int) -> None:
    """The sweep command starts its tracking writer before its own imports: a SIGTERM or
    Ctrl-C in those first seconds ends the command with its exit code, no traceback, and
    the writer stopped with it (it used to outlive it by seconds, and the semaphores of its
    queues were reported leaked)."""
    import psutil

    _, journal, env = stores(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeplab.sweep", *FAST, "sweep.n_trials=2",
         f"sweep.storage={journal}", f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    children: list[psutil.Process] = []
    while not children and time.monotonic() < deadline:
        time.sleep(0.05)
        # the tracker's command; the writer's names it too, in its -W option
        children = [c for c in psutil.Process(proc.pid).children()
                    if "resource_tracker import main" not in " ".join(c.cmdline())]
    assert children, "the sweep started no writer"
    time.sleep(0.3)  # within its imports: its first line comes after about two seconds
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-2000:]
    assert "sweep 'digits" not in out and "trial " not in out  # it was still starting
    assert "Traceback" not in err and "leaked" not in err, err[-2000:]
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left running: {[p.pid for p in alive]}"


@pytest.mark.parametrize("streams", ["stdout", "both"])
def test_a_sweep_whose_reader_goes_away_stops_like_ctrl_c(tmp_path: Path, data_cache: Path,
                                                          streams: str) -> None:
    """`make sweep | head -1` (and `2>&1 | head -1`): after the first line, nothing reads the
    pipe. The sweep stops at its next safe point with exit code 141, without a traceback,
    its runs closed (the parent's reason says why) and its trials queued again; the same
    command then resumes it."""
    uri, journal, env = stores(tmp_path)
    cmd = [sys.executable, "-m", "sweeplab.sweep", *FAST, "train.epochs=300",
           "sweep.n_trials=40", "sweep.name=piped", "sweep.register_model=null",
           "sweep.confirm.top_k=0", f"sweep.storage={journal}"]
    err_to = subprocess.STDOUT if streams == "both" else subprocess.PIPE
    proc = subprocess.Popen(cmd, cwd=data_cache, env=env, stdout=subprocess.PIPE,
                            stderr=err_to, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # what `head -1` does
        err = proc.stderr.read() if proc.stderr is not None else ""
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert first.startswith("sweep 'piped'"), first
    assert proc.returncode == 141, err[-3000:]
    assert "Traceback" not in err and "BrokenPipe" not in err, err[-3000:]
    if streams == "stdout":  # the terminal still has stderr: why it stopped
        assert "sweep 'piped' stopped: its output was closed" in err.splitlines()[-1]
    study = optuna.load_study(study_name="piped", storage=open_storage(journal))
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    done = sum(t.state.is_finished() for t in study.trials)
    assert done < 40  # it stopped, rather than run on with nowhere to print
    assert not runs(uri, "RUNNING")
    (parent,) = [r for r in runs(uri) if r.data.tags.get("sweeplab.role") == "sweep"]
    assert parent.info.status == "KILLED"
    assert "its output was closed" in parent.data.tags["sweeplab.stopped_because"]

    again = subprocess.run(cmd, cwd=data_cache, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    study = optuna.load_study(study_name="piped", storage=open_storage(journal))
    assert tally(study).done == 40  # complete, pruned or failed (diverged): none twice
    assert not runs(uri, "RUNNING")


def test_a_second_ctrl_c_while_the_sweep_reports_closes_its_parent_run(
        in_data_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the search has ended, a first Ctrl-C is let be (the summary takes a second); a
    second one raises inside the summary. The parent run is then closed as KILLED with
    the reason, not left RUNNING; the exit code is 130; the same command logs the summary
    (the parent FINISHED). The second Ctrl-C is simulated: the summary raises it."""
    from mlflow.entities import Run

    from helpers import compose_config, use_mlflow_store
    from sweeplab.sweep import controller

    uri = use_mlflow_store(tmp_path, monkeypatch)
    cfg = compose_config(
        "sweep.confirm.top_k=0", "data=moons", "data.n_samples=200", "train.epochs=12",
        "train.log_every=3", "train.batch_size=null", "tracking.log_model=false",
        "sweep.register_model=null", "sweep.n_trials=3", "sweep.name=cut",
        f"sweep.storage=journal:{tmp_path / 'optuna.journal'}", config_name="sweep_app")
    real = controller.summarize
    calls: list[int] = []

    def cut_short(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(controller, "summarize", cut_short)
    assert controller.sweep_job(cfg) == 130

    def parent() -> Run:
        (p,) = [r for r in runs(uri) if r.data.tags.get("sweeplab.role") == "sweep"]
        return p

    assert parent().info.status == "KILLED"
    assert "interrupted (Ctrl-C) while the sweep reported" in \
        parent().data.tags["sweeplab.stopped_because"]
    assert not runs(uri, "RUNNING")
    assert controller.sweep_job(cfg) == 0
    assert parent().info.status == "FINISHED"


BORN_DEAF = """
import json, os, signal
from sweeplab.sweep.executors import start_local_cluster

mine = lambda *_: None
signal.signal(signal.SIGINT, mine)

def ignored(pid):
    with open(f"/proc/{pid}/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
    return bool(mask & (1 << (signal.SIGINT - 1)))

import socket
taken = socket.socket()  # Dask's default HTTP port, as another sweep's cluster holds it
try:
    taken.bind(("127.0.0.1", 8787))
    taken.listen()
except OSError:  # held already: the same case
    pass

from distributed import Client
cluster = start_local_cluster(2)
try:
    with Client(cluster) as client:  # no plugin registered: the workers as they were born
        workers = [ignored(pid) for pid in client.run(os.getpid).values()]
finally:
    cluster.close()
print(json.dumps({"workers": workers, "controller": ignored(os.getpid()),
                  "handler kept": signal.getsignal(signal.SIGINT) is mine}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_the_local_workers_are_born_ignoring_ctrl_c() -> None:
    """A Ctrl-C while the LocalCluster's workers were still importing killed them ("Nanny
    failed to start", a traceback, exit 1): they are now forked from a fork server started
    ignoring SIGINT, before any plugin runs; the controller keeps its own handler. Two
    sweeps' clusters at once no longer warn about Dask's HTTP port."""
    import json

    proc = subprocess.run([sys.executable, "-c", BORN_DEAF], capture_output=True, text=True,
                          timeout=180, env={**os.environ, "PYTHONPATH": str(
                              Path(__file__).resolve().parents[1] / "src")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {"workers": [True, True], "controller": False, "handler kept": True}
    assert "Port 8787 is already in use" not in proc.stderr  # its HTTP routes: a free port


def test_a_second_controller_of_a_running_sweep_is_refused_and_the_first_ends_as_alone(
        tmp_path: Path, data_cache: Path) -> None:
    """The same command twice at once, in one folder: the second used to run too, and the
    two overshot n_trials, shared the parent run and ran every replicate twice. It is now
    one line, before it touches the study's trials or MLflow; the first ends as if alone."""
    uri, journal, env = stores(tmp_path)
    cmd = [sys.executable, "-m", "sweeplab.sweep", *FAST, "train.epochs=3000",
           "train.log_every=50", "sweep.n_trials=3", "sweep.name=twice",
           "+sweep.pruner_args.n_startup_trials=100", "sweep.confirm.top_k=2",
           "sweep.confirm.seeds=2", f"sweep.storage={journal}"]
    first = launch(cmd, data_cache, env)

    def study() -> optuna.Study:
        return load(journal, "twice")

    try:
        wait_until("a trial training", lambda: any(
            t.state == TrialState.RUNNING and t.intermediate_values for t in study().trials),
            first)
        second = subprocess.run(cmd, cwd=data_cache, env=env, capture_output=True, text=True,
                                timeout=300)
        _, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert second.returncode == 2, second.stderr[-2000:]
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert lines == [f"error: sweep.name='twice': another sweep controls this study now "
                     f"(process {first.pid} on this host); wait for it to end or stop it "
                     f"(Ctrl-C, or kill {first.pid}), or choose another sweep.name"]
    assert first.returncode == 0, err[-2000:]
    trials = study().trials
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    assert study().user_attrs["sweeplab_run_by"] == ""  # released at its end
    every = runs(uri)
    assert len([r for r in every if r.data.tags.get("sweeplab.role") == "sweep"]) == 1
    replicates = [(r.data.tags["sweeplab.config_hash"], r.data.tags["sweeplab.replicate"])
                  for r in every if r.data.tags.get("sweeplab.role") == "confirm"]
    assert len(replicates) == 4 == len(set(replicates))
    assert not runs(uri, "RUNNING")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_sweep_whose_output_cannot_be_written_stops_like_a_closed_pipe(
        tmp_path: Path, data_cache: Path) -> None:
    """stdout on a full disk (`> sweep.log`, here /dev/full): its first line failed with
    ENOSPC, the command said "no space left ... free space" about its stores and left its
    parent run RUNNING. It now stops as for a closed pipe and says what could not be
    written."""
    uri, journal, env = stores(tmp_path)
    cmd = [sys.executable, "-m", "sweeplab.sweep", *FAST, "train.epochs=300",
           "sweep.n_trials=5", "sweep.name=full", "sweep.register_model=null",
           "sweep.confirm.top_k=0", f"sweep.storage={journal}"]
    with open("/dev/full", "w") as full:
        proc = subprocess.run(cmd, cwd=data_cache, env=env, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 141, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "sweep 'full' stopped: its output could not be written (No space left on device); "
        "run the same command again to resume")
    assert not runs(uri, "RUNNING")
    (parent,) = [r for r in runs(uri) if r.data.tags.get("sweeplab.role") == "sweep"]
    assert parent.info.status == "KILLED"
    assert "its output could not be written" in parent.data.tags["sweeplab.stopped_because"]
