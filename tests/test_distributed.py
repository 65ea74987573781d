"""Sweeps beyond one machine, with real parts: a Dask scheduler and two `dask worker`
processes started as the user would (each in an empty folder of its own, no access to the
controller's), a throwaway PostgreSQL cluster and `make server`'s MLflow tracking server
backed by it. Everything listens on 127.0.0.1 and free ports, and is stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from servers import free_port, postgres_cluster, stop_process_group, tracking_server
from sweeplab.names import TrialAttr
from sweeplab.sweep.study import open_storage

SMALL = ["sweep.confirm.top_k=0",  # no confirmation stage: trials only
         "data=moons", "data.n_samples=300", "train.epochs=40", "train.log_every=5",
         "train.batch_size=null", "tracking.log_plots=false", "sweep.register_model=null",
         "sweep.pruner=median", "+sweep.pruner_args.n_startup_trials=3",
         "++sweep.params.optim.lr='tag(log, interval(1e-3, 0.05))'"]  # rates that learn


# Long trials (seconds each, a log point every 50 epochs), so that a kill lands mid-run.
LONG = ["data.n_samples=1000", "train.epochs=8000", "train.log_every=50",
        "++sweep.pruner_args.n_startup_trials=100"]


def confirming(top_k: int, seeds: int) -> list[str]:
    """SMALL with a confirmation stage: the best `top_k` configurations x `seeds` seeds."""
    return [o for o in SMALL if not o.startswith("sweep.confirm.")] + [
        f"sweep.confirm.top_k={top_k}", f"sweep.confirm.seeds={seeds}"]


@dataclass
class DaskCluster:
    address: str
    worker_folders: list[Path]
    procs: list[subprocess.Popen]  # the scheduler's, then each `dask worker`'s

    def kill_worker(self, k: int) -> None:
        """SIGKILL the process under `dask worker` k that runs its tasks (its nanny starts
        a new one, and the scheduler would rerun the task there: allowed-failures=3)."""
        import psutil

        worker = [p for p in psutil.Process(self.procs[1 + k].pid).children(recursive=True)
                  if "spawn_main" in " ".join(p.cmdline())]
        assert len(worker) == 1, [p.cmdline() for p in worker]
        worker[0].kill()


def _wait_for_workers(address: str, n: int, timeout: float = 120) -> None:
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(n, timeout=timeout)


@contextlib.contextmanager
def dask_cluster(root: Path, n_workers: int = 2) -> Iterator[DaskCluster]:
    """`dask scheduler` and `n_workers` single-threaded `dask worker`s, each process in its
    own empty working folder, as a user starts them on their hosts."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    folders = []
    try:
        sched_dir = root / "scheduler"
        sched_dir.mkdir(parents=True)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port",
             str(port), "--no-dashboard"], cwd=sched_dir, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True))
        for k in range(n_workers):
            folder = root / f"worker-{k}"
            folder.mkdir()
            folders.append(folder)
            scratch = root / f"scratch-{k}"  # Dask's own spill space, outside the folder
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1",
                 "--nworkers", "1", "--name", f"w{k}", "--no-dashboard", "--local-directory",
                 str(scratch)], cwd=folder, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True))
        _wait_for_workers(address, n_workers)
        yield DaskCluster(address, folders, procs)
    finally:
        for proc in reversed(procs):
            stop_process_group(proc)


def _long_trials(name: str, n_trials: int, cluster: DaskCluster, uri: str,
                 journal: str) -> list[str]:
    """The command of a sweep of `n_trials` LONG trials on `cluster`, tracked at `uri`."""
    return [sys.executable, "-m", "sweeplab.sweep", *SMALL, *LONG, f"sweep.name={name}",
            f"sweep.n_trials={n_trials}", f"sweep.cluster={cluster.address}",
            f"tracking.uri={uri}", f"sweep.storage={journal}"]


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.slow
def test_a_sweep_on_dask_workers_with_postgresql_for_the_server_and_the_study(
        tmp_path: Path, data_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with postgres_cluster() as pg:
        pg.create_database("mlflow")
        pg.create_database("optuna")  # the study too, as a team would keep it
        with tracking_server(tmp_path / "server", "--db", pg.url("mlflow")) as server, \
                dask_cluster(tmp_path / "dask") as cluster:
            journal = pg.url("optuna")
            env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
            cmd = [sys.executable, "-m", "sweeplab.sweep", *confirming(2, 2),
                   "sweep.name=dist", "sweep.n_trials=12", f"sweep.cluster={cluster.address}",
                   f"tracking.uri={server.url}", f"sweep.storage={journal}"]
            proc = subprocess.run(cmd, cwd=data_cache, env=env, capture_output=True,
                                  text=True, timeout=900)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
            assert f"trials run in the Dask cluster of the scheduler at {cluster.address}" \
                in proc.stdout
            # the confirmation's replicates too, on the workers, not in the controller
            assert f"replicates run on the Dask cluster of the scheduler at " \
                f"{cluster.address}" in proc.stdout
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("confirm ")]
            assert len(lines) == 4 and all(
                re.search(r"  finished .*s  on worker w[01]$", ln) for ln in lines), lines

            study = optuna.load_study(study_name="dist", storage=open_storage(journal))
            done = [t for t in study.trials if t.state in (TrialState.COMPLETE,
                                                          TrialState.PRUNED)]
            assert len(done) == 12 and len(study.trials) == 12
            assert {t.user_attrs[TrialAttr.WORKER] for t in study.trials} == {"w0", "w1"}
            assert any(t.state == TrialState.PRUNED for t in study.trials) or \
                all(len(t.intermediate_values) > 1 for t in study.trials)  # reports arrived

            client = MlflowClient(tracking_uri=server.url)
            parent = study.user_attrs[TrialAttr.PARENT_RUN_ID]
            exp = client.get_run(parent).info.experiment_id
            children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'")
            runs = [r for r in children if r.data.tags["sweeplab.role"] == "trial"]
            assert sorted(int(r.data.tags["sweeplab.trial_number"]) for r in runs) == \
                list(range(12))
            reps = [r for r in children if r.data.tags["sweeplab.role"] == "confirm"]
            assert len(reps) == 4 and {r.info.status for r in reps} == {"FINISHED"}
            assert len({(r.data.tags["sweeplab.config_hash"], r.data.tags["sweeplab.replicate"])
                        for r in reps}) == 4
            assert "confirm.md" in {a.path for a in client.list_artifacts(parent)}
            for r in reps:  # through the server, as the trials' runs
                assert "config.yaml" in {a.path for a in client.list_artifacts(r.info.run_id)}
            monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
            for r in runs:
                t = study.trials[int(r.data.tags["sweeplab.trial_number"])]
                assert r.info.run_id == t.user_attrs[TrialAttr.RUN_ID]
                steps = {m.step for m in client.get_metric_history(r.info.run_id, "val_cost")}
                assert steps, f"trial {t.number} logged no val_cost history"
                if t.state == TrialState.COMPLETE:  # every point the pruner saw was logged
                    assert set(t.intermediate_values) <= steps
                paths = {a.path for a in client.list_artifacts(r.info.run_id)}
                assert "config.yaml" in paths
            complete = [r for r in runs if r.data.tags["sweeplab.trial_state"] == "COMPLETE"]
            import mlflow.pyfunc

            model = mlflow.pyfunc.load_model(complete[0].data.tags["sweeplab.model_uri"])
            assert model.metadata.get_input_schema() is not None
            # artifacts went through the server into its folder, nothing to the workers'
            assert list(server.artifacts.rglob("config.yaml"))
            for folder in cluster.worker_folders:
                assert files_in(folder) == [], files_in(folder)


@pytest.mark.slow
def test_an_unreachable_scheduler_fails_before_any_study_or_run(tmp_path: Path,
                                                                 data_cache: Path) -> None:
    journal = tmp_path / "optuna.journal"
    with tracking_server(tmp_path / "server") as server:
        cmd = [sys.executable, "-m", "sweeplab.sweep", *SMALL, "sweep.name=nosched",
               f"sweep.cluster=tcp://127.0.0.1:{free_port()}", f"tracking.uri={server.url}",
               f"sweep.storage=journal:{journal}"]
        proc = subprocess.run(cmd, cwd=data_cache, capture_output=True, text=True,
                              timeout=120)
        assert MlflowClient(tracking_uri=server.url).search_runs(
            [e.experiment_id for e in MlflowClient(tracking_uri=server.url)
             .search_experiments()]) == []
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach the Dask scheduler" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not journal.exists()


@contextlib.contextmanager
def server_on(folder: Path, port: int) -> Iterator[str]:
    """`make server` on a given port (to bring the same server back), in `folder`."""
    from servers import answers

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "server.log").open("a") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sweeplab.cli.server", "--port",
                                 str(port)], cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not answers(url + "/health"):
            assert proc.poll() is None, (folder / "server.log").read_text()
            assert time.monotonic() < deadline, "the tracking server did not start"
            time.sleep(0.25)
        yield url
    finally:
        stop_process_group(proc)


@pytest.mark.slow
def test_a_tracking_server_lost_mid_sweep_queues_the_trial_and_the_resume_finishes(
        tmp_path: Path, data_cache: Path) -> None:
    port, folder = free_port(), tmp_path / "server"
    journal = f"journal:{tmp_path / 'optuna.journal'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cmd = [sys.executable, "-m", "sweeplab.sweep", *SMALL, "sweep.name=outage",
           "sweep.n_trials=4", "data.n_samples=1000", "train.epochs=6000",
           "train.log_every=20", "++sweep.pruner_args.n_startup_trials=100",
           f"tracking.uri=http://127.0.0.1:{port}", f"sweep.storage={journal}"]
    with server_on(folder, port):
        proc = subprocess.Popen(cmd, cwd=data_cache, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while True:  # one trial done, the next one training
                time.sleep(0.3)
                assert proc.poll() is None, proc.communicate()[1][-2000:]
                assert time.monotonic() < deadline, "the sweep never got to its second trial"
                with contextlib.suppress(KeyError):
                    trials = optuna.load_study(study_name="outage",
                                               storage=open_storage(journal)).trials
                    if any(t.state == TrialState.RUNNING and t.intermediate_values
                           for t in trials) and any(t.state.is_finished() for t in trials):
                        break
        except BaseException:
            stop_process_group(proc)
            raise
    # the server is gone now, mid-trial
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, out[-2000:] + err[-2000:]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "stopped answering" in errors[0], err[-2000:]
    study = optuna.load_study(study_name="outage", storage=open_storage(journal))
    assert not [t for t in study.trials if t.user_attrs.get(TrialAttr.STATUS) == "error"]
    # the trial training; with the writer process (JOBS=1) also the one whose run it was
    # writing: neither run was complete, so both are queued again
    lost = [t for t in study.trials if t.state == TrialState.FAIL]
    assert 1 <= len(lost) <= 2
    for t in lost:
        assert t.user_attrs[TrialAttr.STATUS] == "interrupted"
        assert [r.state for r in study.trials if r.user_attrs.get(TrialAttr.RETRY_OF)
                == t.number] == [TrialState.WAITING]

    with server_on(folder, port) as url:  # back, with the same store
        again = subprocess.run(cmd, cwd=data_cache, env=env, capture_output=True, text=True,
                               timeout=600)
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
        study = optuna.load_study(study_name="outage", storage=open_storage(journal))
        assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 4
        client = MlflowClient(tracking_uri=url)
        parent = study.user_attrs[TrialAttr.PARENT_RUN_ID]
        runs = client.search_runs([client.get_run(parent).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent}'")
        assert not [r for r in runs if r.info.status == "RUNNING"]
        for t in lost:  # its run closed as KILLED (none if the store went before it began)
            assert set(r.info.status for r in runs if r.data.tags["sweeplab.trial_number"]
                       == str(t.number)) <= {"KILLED"}
        assert "KILLED" in {r.info.status for r in runs}
        assert sum(r.info.status == "FINISHED" for r in runs) == 4


@pytest.mark.slow
def test_a_worker_killed_on_a_users_cluster_has_its_trial_queued_once(
        tmp_path: Path, data_cache: Path) -> None:
    """SIGKILL the worker process under one `dask worker` (its nanny starts a new one, and
    the user's scheduler would rerun the task there, allowed-failures=3): the trial is
    failed and queued again by the controller alone, its run closed with the reason; no
    trial runs twice, and Optuna and MLflow agree trial by trial."""
    journal = f"journal:{tmp_path / 'optuna.journal'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with tracking_server(tmp_path / "server") as server, \
            dask_cluster(tmp_path / "dask") as cluster:
        cmd = _long_trials("ukill", 4, cluster, server.url, journal)
        proc = subprocess.Popen(cmd, cwd=data_cache, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while True:  # both workers training
                time.sleep(0.2)
                assert proc.poll() is None, proc.communicate()[0][-3000:]
                assert time.monotonic() < deadline, "the sweep never had two trials training"
                with contextlib.suppress(KeyError):
                    trials = optuna.load_study(study_name="ukill",
                                               storage=open_storage(journal)).trials
                    training = [t for t in trials
                                if t.state == TrialState.RUNNING and t.intermediate_values]
                    if len(training) == 2:
                        break
            cluster.kill_worker(0)
            out, _ = proc.communicate(timeout=600)
        finally:
            stop_process_group(proc)
        assert proc.returncode == 0, out[-3000:]
        study = optuna.load_study(study_name="ukill", storage=open_storage(journal))
        complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
        assert len(complete) == 4
        lost = [t for t in study.trials if t.state == TrialState.FAIL]
        assert len(lost) == 1 and lost[0].user_attrs[TrialAttr.STATUS] == "interrupted"
        retry = [t for t in study.trials
                 if t.user_attrs.get(TrialAttr.RETRY_OF) == lost[0].number]
        assert len(retry) == 1 and retry[0].params == lost[0].params
        assert retry[0].state == TrialState.COMPLETE
        assert len(study.trials) == 5

        client = MlflowClient(tracking_uri=server.url)
        parent = study.user_attrs[TrialAttr.PARENT_RUN_ID]
        runs = client.search_runs([client.get_run(parent).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent}'")
        by_trial: dict[int, list[str]] = {}
        for r in runs:
            by_trial.setdefault(int(r.data.tags["sweeplab.trial_number"]), []).append(
                r.info.status)
        # one run per trial: Dask's own rerun of the killed task never started a second
        assert by_trial == {t.number: ["FINISHED" if t in complete else "KILLED"]
                            for t in study.trials}, by_trial
        killed = next(r for r in runs
                  if r.data.tags["sweeplab.trial_number"] == str(lost[0].number))
        assert killed.data.tags["sweeplab.reason"] == "its Dask worker died"
        for t in complete:
            assert t.user_attrs[TrialAttr.RUN_ID] in {r.info.run_id for r in runs}


@pytest.mark.slow
def test_a_sigkilled_controllers_trial_on_a_users_cluster_stops_at_its_next_log_point(
        tmp_path: Path, data_cache: Path) -> None:
    """SIGKILL the controller while its trial trains on a user's `dask worker`: the task
    trained on, its run RUNNING, until its wait for a verdict timed out (120 s), and held
    the worker from the resumed sweep's trials meanwhile. Dask cancels it once the
    scheduler has dropped the controller's client: it stops at its next log point, its run
    closed KILLED saying why, and the same command then finishes the sweep."""
    from sweeplab.sweep.executors import RELEASED, VERDICT_TIMEOUT

    journal = f"journal:{tmp_path / 'optuna.journal'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with tracking_server(tmp_path / "server") as server, \
            dask_cluster(tmp_path / "dask", n_workers=1) as cluster:
        cmd = _long_trials("ckill", 2, cluster, server.url, journal)
        proc = subprocess.Popen(cmd, cwd=data_cache, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while True:  # its trial training, its reports arriving
                time.sleep(0.2)
                assert proc.poll() is None, "the sweep ended before its trial trained"
                assert time.monotonic() < deadline, "the sweep's trial never trained"
                with contextlib.suppress(KeyError):
                    trials = optuna.load_study(study_name="ckill",
                                               storage=open_storage(journal)).trials
                    if any(t.state == TrialState.RUNNING and t.intermediate_values
                           for t in trials):
                        break
            proc.kill()  # the controller alone: the worker and the scheduler live on
            proc.wait(timeout=30)
        finally:
            stop_process_group(proc)
        client = MlflowClient(tracking_uri=server.url)
        # the run closed before the verdict's own timeout would have closed it
        deadline = time.monotonic() + VERDICT_TIMEOUT * 0.75
        while True:
            runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                      "tags.`sweeplab.role` = 'trial'")
            if runs and all(r.info.status != "RUNNING" for r in runs):
                break
            assert time.monotonic() < deadline, [r.info.status for r in runs]
            time.sleep(0.5)
        [run] = runs
        assert run.info.status == "KILLED"
        assert run.data.tags["sweeplab.reason"] == RELEASED
        done = subprocess.run(cmd, cwd=data_cache, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        study = optuna.load_study(study_name="ckill", storage=open_storage(journal))
        assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 2
        runs = client.search_runs([run.info.experiment_id], "tags.`sweeplab.role` = 'trial'")
        assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED", "KILLED"]


def _replicate_runs(client: MlflowClient, status: str | None = None,
                    role: str = "confirm") -> list:
    """Every confirmation replicate's run in the store (or every run of `role`), of any
    status or of `status`."""
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, f"tags.`sweeplab.role` = '{role}'", max_results=500)
    return [r for r in runs if status is None or r.info.status == status]


def _wait_for_replicates_training(proc: subprocess.Popen, client: MlflowClient, n: int,
                                  role: str = "confirm") -> None:
    """Until `n` replicates' runs (or runs of `role`) are RUNNING at once (each worker
    training one)."""
    deadline = time.monotonic() + 300
    while True:
        time.sleep(0.2)
        assert proc.poll() is None, (proc.communicate()[0] or "")[-3000:]
        assert time.monotonic() < deadline, f"the sweep never had {n} {role} runs training"
        with contextlib.suppress(Exception):  # the store may not exist yet
            if len(_replicate_runs(client, "RUNNING", role)) == n:
                return


def _sigterm_while_training(cmd: list[str], env: dict[str, str], cwd: Path,
                            client: MlflowClient, role: str
                            ) -> tuple[subprocess.Popen, str, list]:
    """Run the sweep `cmd`, SIGTERM it once two runs of `role` train at once, and wait:
    (its process, its output, its child processes when signalled)."""
    import psutil

    client.search_experiments(max_results=1)  # the store made before the sweep opens it
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for_replicates_training(proc, client, 2, role)
        family = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        stop_process_group(proc)
    return proc, out, family


@pytest.mark.slow
def test_a_worker_killed_mid_replicate_has_its_replicate_run_again(
        tmp_path: Path, data_cache: Path) -> None:
    """The confirmation on the user's cluster, both workers training a replicate: SIGKILL
    the worker process under one `dask worker`. Its replicate's run is closed with the
    reason and the replicate runs again (Dask's own rerun of the task never starts a
    second run); each replicate ends FINISHED exactly once."""
    journal = f"journal:{tmp_path / 'optuna.journal'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with tracking_server(tmp_path / "server") as server, \
            dask_cluster(tmp_path / "dask") as cluster:
        cmd = [sys.executable, "-m", "sweeplab.sweep", *confirming(1, 2), *LONG,
               "sweep.name=rkill", "sweep.n_trials=2", f"sweep.cluster={cluster.address}",
               f"tracking.uri={server.url}", f"sweep.storage={journal}"]
        proc = subprocess.Popen(cmd, cwd=data_cache, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        client = MlflowClient(tracking_uri=server.url)
        try:
            _wait_for_replicates_training(proc, client, 2)
            cluster.kill_worker(0)
            out, _ = proc.communicate(timeout=600)
        finally:
            stop_process_group(proc)
        assert proc.returncode == 0, out[-3000:]
        reps = _replicate_runs(client)
    finished = [r for r in reps if r.info.status == "FINISHED"]
    assert Counter(r.data.tags["sweeplab.replicate"] for r in finished) == {"1": 1, "2": 1}
    killed = [r for r in reps if r.info.status == "KILLED"]
    assert len(killed) == 1 and killed[0].data.tags["sweeplab.reason"] == \
        "its Dask worker died", [(r.info.status, r.data.tags) for r in reps]
    assert len(reps) == 3
    assert "its Dask worker died: queued again" in out


@pytest.mark.slow
def test_sigterm_mid_replicates_on_dask_closes_them_and_the_resume_runs_each_once(
        tmp_path: Path, data_cache: Path) -> None:
    """`JOBS=2` (a local Dask cluster), SIGTERM while both workers train a replicate: the
    replicates stop at their next log point, their runs closed as KILLED, the command exits
    143 with nothing left running; the same command runs each missing replicate once."""
    import psutil

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = [sys.executable, "-m", "sweeplab.sweep", *confirming(2, 2), *LONG,
           "sweep.name=rterm", "sweep.n_trials=2", "sweep.n_jobs=2",
           f"sweep.storage=journal:{tmp_path / 'optuna.journal'}"]
    client = MlflowClient(uri)
    proc, out, family = _sigterm_while_training(cmd, env, data_cache, client, "confirm")
    assert proc.returncode == 143, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    reps = _replicate_runs(client)
    assert len([r for r in reps if r.info.status == "KILLED"]) == 2, \
        [(r.info.status, r.data.tags) for r in reps]
    assert "RUNNING" not in {r.info.status for r in reps}

    again = subprocess.run(cmd, cwd=data_cache, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    finished = _replicate_runs(client, "FINISHED")
    assert Counter((r.data.tags["sweeplab.config_hash"], r.data.tags["sweeplab.replicate"])
                   for r in finished).most_common(1)[0][1] == 1
    assert len(finished) == 4


@pytest.mark.slow
def test_sigterm_stops_trials_without_a_pruner_on_dask_at_their_next_log_point(
        tmp_path: Path, data_cache: Path) -> None:
    """sweep.pruner=none on a local Dask cluster: the trials report to no pruner, yet
    SIGTERM stops each at its next log point (it used to train to its end, the controller
    waiting up to 30 s); their runs closed as KILLED, exit 143."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    plain = [o for o in SMALL if "pruner" not in o]
    cmd = [sys.executable, "-m", "sweeplab.sweep", *plain, "sweep.pruner=none",
           "data.n_samples=1000", "train.epochs=8000", "train.log_every=50",
           "sweep.name=nopruner", "sweep.n_trials=2", "sweep.n_jobs=2",
           f"sweep.storage=journal:{tmp_path / 'optuna.journal'}"]
    client = MlflowClient(uri)
    proc, out, _ = _sigterm_while_training(cmd, env, data_cache, client, "trial")
    assert proc.returncode == 143, out[-3000:]
    runs = _replicate_runs(client, role="trial")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"KILLED"}, \
        [(r.info.status, r.data.tags) for r in runs]
    for r in runs:  # stopped mid-run: the last epoch (7999) never logged
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "val_cost")]
        assert steps and max(steps) < 7999, (r.data.tags, max(steps, default=None))


@pytest.mark.slow
def test_a_scheduler_lost_mid_sweep_stops_it_in_one_line_and_another_finishes_it(
        tmp_path: Path, data_cache: Path) -> None:
    """SIGKILL the user's Dask scheduler while both its workers train: the controller
    queues the trials out again, closes their runs and stops with one line naming the
    scheduler (exit 2, no traceback); the same command on another scheduler finishes the
    sweep with exactly n_trials."""
    journal = f"journal:{tmp_path / 'optuna.journal'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with tracking_server(tmp_path / "server") as server:
        cmd = [sys.executable, "-m", "sweeplab.sweep", *SMALL, *LONG, "sweep.name=slost",
               "sweep.n_trials=2", f"tracking.uri={server.url}", f"sweep.storage={journal}"]
        client = MlflowClient(tracking_uri=server.url)
        with dask_cluster(tmp_path / "dask") as cluster:
            proc = subprocess.Popen([*cmd, f"sweep.cluster={cluster.address}"],
                                    cwd=data_cache, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
            try:
                _wait_for_replicates_training(proc, client, 2, role="trial")
                cluster.procs[0].kill()  # the scheduler
                out, err = proc.communicate(timeout=300)
            finally:
                stop_process_group(proc)
        assert proc.returncode == 2, out[-2000:] + err[-3000:]
        assert "Traceback" not in out + err, err[-3000:]
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "the Dask scheduler stopped answering" in errors[0] \
            and f"scheduler at {cluster.address}" in errors[0], err[-3000:]
        assert "Failed to reconnect" not in err, err[-3000:]  # Dask's line, said already
        runs = _replicate_runs(client, role="trial")
        assert runs and "RUNNING" not in {r.info.status for r in runs}
        for r in runs:  # a run's status and its tags agree (no FINISHED run "interrupted")
            assert (r.info.status == "KILLED") == \
                (r.data.tags.get("sweeplab.status") == "interrupted"), r.data.tags
            # the scheduler went away, not the controller
            assert "controller" not in r.data.tags.get("sweeplab.reason", ""), r.data.tags
        study = optuna.load_study(study_name="slost", storage=open_storage(journal))
        assert not [t for t in study.trials if t.state == TrialState.RUNNING]

        with dask_cluster(tmp_path / "dask-again") as cluster:
            again = subprocess.run([*cmd, f"sweep.cluster={cluster.address}"],
                                   cwd=data_cache, env=env, capture_output=True, text=True,
                                   timeout=600)
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
        study = optuna.load_study(study_name="slost", storage=open_storage(journal))
        done = [t for t in study.trials if t.state in (TrialState.COMPLETE,
                                                      TrialState.PRUNED)]
        assert len(done) == 2
        assert not _replicate_runs(client, "RUNNING", role="trial")


@pytest.mark.slow
def test_a_cluster_address_that_is_not_a_dask_scheduler_fails_in_seconds(
        tmp_path: Path, data_cache: Path) -> None:
    """An HTTP server where the scheduler should be (its dashboard's port, say): one line,
    exit 2, within the probe's few seconds, instead of a hung handshake."""
    with tracking_server(tmp_path / "server") as server:
        port = int(server.url.rsplit(":", 1)[1])
        journal = tmp_path / "optuna.journal"
        cmd = [sys.executable, "-m", "sweeplab.sweep", *SMALL, "sweep.name=notdask",
               f"sweep.cluster=tcp://127.0.0.1:{port}", f"tracking.uri={server.url}",
               f"sweep.storage=journal:{journal}"]
        proc = subprocess.run(cmd, cwd=data_cache, capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "did not answer as a Dask scheduler" in lines[0], proc.stderr
    assert not journal.exists()
