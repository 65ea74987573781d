"""make server: a real MLflow tracking server, no mocks. A tracked run and a sweep log
through it (SQLite; PostgreSQL in a throwaway cluster, marked slow), and their artifacts
land in the server's folder, not the client's; make train and make sweep stop with one
line when it does not answer; the server's own errors are one line, a password never shown.

The servers are `tests/servers.py`'s: each on a free port of 127.0.0.1, in a temporary
folder, stopped whatever happens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import mlflow.pyfunc
import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from helpers import compose_config
from servers import (
    PostgresCluster,
    TrackingServer,
    free_port,
    postgres_cluster,
    stop_process_group,
    tracking_server,
)
from sweeplab import train
from sweeplab.cli import server as cli
from sweeplab.config import to_config
from sweeplab.names import Role, Tag, TrialAttr
from sweeplab.sweep import study as st
from sweeplab.tracking import MlflowTracker, TrackingServerError, check_server
from sweeplab.tracking.store import redact

# Trust authentication takes any password: a distinctive one shows if it is ever printed.
PASSWORD = "pw-4f9c1e-not-for-print"
RUN = ["data=moons", "data.n_samples=200", "train.epochs=9", "train.log_every=3",
       "train.batch_size=null", "train.progress=false", "tracking.log_model=true",
       "tracking.log_plots=true"]
SWEEP = ["sweep.confirm.top_k=0",  # no confirmation stage: trials only
         "data=moons", "data.n_samples=200", "train.epochs=12", "train.log_every=3",
         "train.batch_size=null", "tracking.log_model=true", "tracking.log_plots=false",
         "sweep.n_trials=4",
         # rates that learn: a trial that does not is FAILED (not_learning), its own test
         "++sweep.params.optim.lr='tag(log, interval(1e-3, 0.05))'"]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this module's own, with an empty database `mlflow`."""
    with postgres_cluster() as pg:
        pg.create_database("mlflow")
        yield pg


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql",
                                                               marks=pytest.mark.slow)])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """`make server` in a temporary folder: its default SQLite store, or PostgreSQL in a
    cluster of its own (the URL carries a password, which trust authentication ignores).
    It takes requests addressed to 127.0.0.1 only, not to localhost (MLflow's allowed
    hosts, set as a team would for its server's name)."""
    folder = tmp_path_factory.mktemp(f"server-{request.param}")
    env = {**os.environ, "MLFLOW_SERVER_ALLOWED_HOSTS": "127.0.0.1:*"}
    if request.param == "sqlite":
        with tracking_server(folder, env=env) as s:
            yield s
        return
    pg = request.getfixturevalue("postgres")
    with tracking_server(folder, "--db", pg.url("mlflow", password=PASSWORD), env=env) as s:
        yield s


@pytest.fixture
def client_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder for the client, which must stay free of runs and artifacts."""
    folder = tmp_path / "client"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def local_store_files(folder: Path) -> list[Path]:
    """What a run would have left in `folder` had it logged locally. Not counted: the
    built-in datasets made in data/, and Hydra's own record of a command in outputs/."""
    names = {"mlruns", "mlartifacts", "mlflow.db", "config.yaml", "MLmodel", "network.h5",
             "cost_curve.png", "trials.csv"}
    return [p for p in folder.rglob("*") if p.name in names
            and p.relative_to(folder).parts[0] not in ("data", "outputs")]


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


# -- a tracked run through the server -------------------------------------------------------

def test_a_run_logs_through_the_server_and_its_artifacts_stay_there(
        server: TrackingServer, client_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # models:/ URIs are read through MLflow's tracking URI: the server's, for this test.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    typed = to_config(compose_config(*RUN, f"tracking.uri={server.url}"))
    with MlflowTracker(typed.tracking) as tracker:
        result = train.run(typed, [tracker])
    assert tracker.run_id is not None and result.ok

    client = MlflowClient(tracking_uri=server.url)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.depth"] == str(typed.model.depth)
    assert run.data.params["train.epochs"] == "9"
    history = client.get_metric_history(tracker.run_id, "train_cost")
    assert [m.step for m in history] == result.history.step == [0, 3, 6, 8]
    np.testing.assert_allclose([m.value for m in history], result.history.train_cost,
                               rtol=1e-12)
    config = OmegaConf.load(client.download_artifacts(tracker.run_id, "config.yaml",
                                                      str(client_folder.parent)))
    assert config.train.epochs == 9 and config.data.name == "moons"

    [output] = run.outputs.model_outputs
    model = mlflow.pyfunc.load_model(f"models:/{output.model_id}")
    X = result.dataset.X_test
    np.testing.assert_array_equal(np.asarray(model.predict(np.ascontiguousarray(X.T))),
                                  result.network.predict(X))

    # Proxied: the server wrote every artifact into its own folder.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    stored = server.artifacts / run.info.experiment_id / tracker.run_id / "artifacts"
    assert (stored / "config.yaml").is_file()
    assert (stored / "plots" / "cost_curve.png").is_file()
    assert [p for p in server.artifacts.rglob("MLmodel") if output.model_id in str(p)]
    assert local_store_files(client_folder) == []


def test_the_server_is_lean_says_where_to_log_and_never_shows_a_password(
        server: TrackingServer) -> None:
    log = server.log
    assert f"MLFLOW_TRACKING_URI={server.url} make sweep" in log
    assert f'make train ARGS="tracking.uri={server.url}"' in log
    assert PASSWORD not in log
    if "--db" in server.proc.args:
        assert "postgres:***@" in log
    else:
        assert (server.folder / cli.DEFAULT_DB_FILE).is_file()
    cmdlines = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                for pid in server.processes()}
    assert not [c for c in cmdlines.values() if PASSWORD in c]
    # One worker and no job runner: the `mlflow server` command and its uvicorn.
    assert len(cmdlines) == 2, cmdlines
    assert all("--workers 1" in c for c in cmdlines.values()), cmdlines


# -- a sweep through the server ------------------------------------------------------------

def test_a_sweep_logs_the_parent_and_every_trial_to_the_server(
        server: TrackingServer, client_folder: Path) -> None:
    name = f"on-server-{server.port}"
    journal = f"journal:{client_folder.parent / 'optuna.journal'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-m", "sweeplab.sweep", *SWEEP, f"sweep.name={name}",
                           f"tracking.uri={server.url}", f"sweep.storage={journal}"],
                          cwd=client_folder, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"look: open {server.url}/#/experiments/" in proc.stdout
    # MLflow's own two lines a run, between the trials' (MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT)
    assert "View run" not in proc.stdout and "View experiment" not in proc.stdout

    client = MlflowClient(tracking_uri=server.url)
    exp = client.get_experiment_by_name("sweeplab")
    [parent] = client.search_runs(
        [exp.experiment_id],
        f"tags.`{Tag.ROLE}` = '{Role.SWEEP}' and tags.`{Tag.STUDY}` = '{name}'")
    trials = client.search_runs([exp.experiment_id],
                                f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    study = optuna.load_study(study_name=name, storage=st.open_storage(journal))
    assert len(trials) == len(study.trials) == 4
    assert {t.info.run_id for t in trials} == \
        {t.user_attrs[TrialAttr.RUN_ID] for t in study.trials}
    for run in trials:
        assert run.info.status in ("FINISHED", "KILLED")  # KILLED: pruned
        assert run.data.params["train.epochs"] == "12"
        assert client.get_metric_history(run.info.run_id, "val_cost")
        assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert parent.info.status == "FINISHED"
    assert "best_val_cost" in parent.data.metrics
    assert "trials.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    champion = client.get_model_version_by_alias(f"sweeplab-{name}", "champion")
    assert champion.run_id in {t.info.run_id for t in trials}
    assert (server.artifacts / exp.experiment_id / parent.info.run_id / "artifacts"
            / "trials.csv").is_file()
    assert local_store_files(client_folder) == []


# -- a server that does not answer ------------------------------------------------------------

@pytest.mark.parametrize("command,how", [("sweeplab.train", "override"),
                                         ("sweeplab.train", "environment"),
                                         ("sweeplab.sweep", "override")])
def test_a_server_that_is_down_stops_train_and_sweep_with_one_line(
        command: str, how: str, tmp_path: Path, data_cache: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    args = [*RUN[:5]]
    if how == "override":
        args.append(f"tracking.uri={uri}")
    else:
        env["MLFLOW_TRACKING_URI"] = uri
    journal = tmp_path / "optuna.journal"
    if command == "sweeplab.sweep":
        args += [f"sweep.storage=journal:{journal}", "sweep.n_trials=2"]
    # MLflow's own client would retry for minutes; the timeout makes a hang fail the test.
    proc = subprocess.run([sys.executable, "-m", command, *args], cwd=data_cache, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = one_line(proc.stderr)
    assert line.startswith("error: no tracking server answers at ") and uri in line
    assert "make server" in line
    assert not journal.exists()  # the sweep stopped before its study was created
    assert "Network:" not in proc.stdout  # nor did a run start


def test_check_server_names_the_uri_without_its_password() -> None:
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{free_port()}/"
    with pytest.raises(TrackingServerError, match="connection refused") as info:
        check_server(uri)
    assert "alice:***@127.0.0.1" in str(info.value) and PASSWORD not in str(info.value)
    check_server("sqlite:///nowhere/mlflow.db")  # not a server: nothing to check


def test_a_host_name_the_server_refuses_stops_the_run_before_it_starts(
        server: TrackingServer) -> None:
    # /health answers whatever the host name; MLflow's API would refuse every request.
    uri = f"http://localhost:{server.port}"
    with pytest.raises(TrackingServerError) as info:
        check_server(uri)
    assert f"{uri} refuses requests addressed to localhost:{server.port}" in str(info.value)
    assert f"MLFLOW_SERVER_ALLOWED_HOSTS=localhost:{server.port}" in str(info.value)
    check_server(server.url)  # 127.0.0.1 is allowed


def test_redact_hides_only_the_password() -> None:
    assert redact(f"postgresql+psycopg://bob:{PASSWORD}@db:5432/mlflow") == \
        "postgresql+psycopg://bob:***@db:5432/mlflow"
    assert redact("postgresql+psycopg://p%40ss:x@y@db/mlflow") == \
        "postgresql+psycopg://p%40ss:***@db/mlflow"
    for uri in ("http://127.0.0.1:5000", "postgresql+psycopg://bob@db:5432/mlflow",
                "sqlite:////tmp/mlflow.db"):
        assert redact(uri) == uri


# -- the server's own errors: one line, exit 2, nothing started -------------------------------

@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def run_server_cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sweeplab.cli.server", *args], cwd=folder,
                          capture_output=True, text=True, timeout=60)


def test_a_taken_port_is_one_line_with_another_port(tmp_path: Path, listening: int) -> None:
    proc = run_server_cli(tmp_path, "--port", str(listening))
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert f"port {listening} on 127.0.0.1 is taken" in line
    assert f"make server PORT={listening + 1}" in line
    assert proc.stdout == "" and not (tmp_path / cli.DEFAULT_DB_FILE).exists()


def test_an_unreachable_postgresql_names_where_and_hides_the_password(tmp_path: Path) -> None:
    port = free_port()
    proc = run_server_cli(tmp_path, "--port", str(free_port()), "--db",
                          f"postgresql+psycopg://alice:{PASSWORD}@127.0.0.1:{port}/mlflow")
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert f"PostgreSQL at 127.0.0.1:{port} (database 'mlflow', user 'alice')" in line
    assert "connection refused" in line
    assert PASSWORD not in proc.stdout + proc.stderr
    assert proc.stdout == ""


@pytest.mark.slow
def test_a_database_that_does_not_exist_says_how_to_create_it(
        postgres: PostgresCluster, tmp_path: Path) -> None:
    proc = run_server_cli(tmp_path, "--port", str(free_port()), "--db",
                          postgres.url("nosuchdb", password=PASSWORD))
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert f"PostgreSQL at 127.0.0.1:{postgres.port} (database 'nosuchdb', user 'postgres')" \
        in line
    assert "no such database: create it (createdb -h HOST -p PORT -U USER nosuchdb)" in line
    assert PASSWORD not in proc.stdout + proc.stderr


@pytest.mark.parametrize("db,message", [
    (f"mysql://alice:{PASSWORD}@127.0.0.1/mlflow",
     "DB=mysql://alice:***@127.0.0.1/mlflow: unsupported database 'mysql'"),
    ("sqlite://", "in-memory database"),
    ("sqlite:///no/such/folder/mlflow.db", "does not exist"),
    ("postgresql+psycopg://alice@127.0.0.1:5432", "names no database"),
], ids=["mysql", "sqlite-in-memory", "sqlite-no-folder", "postgresql-no-database"])
def test_a_database_the_server_cannot_use_is_one_line(no_exec: list[tuple], tmp_path: Path,
                                                      db: str, message: str) -> None:
    assert cli.main(["--port", str(free_port()), "--db", db]) == 2
    assert no_exec == []  # no server started
    proc = run_server_cli(tmp_path, "--port", str(free_port()), "--db", db)
    assert proc.returncode == 2
    assert message in one_line(proc.stderr)
    assert PASSWORD not in proc.stdout + proc.stderr


def test_an_artifacts_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    proc = run_server_cli(tmp_path, "--port", str(free_port()),
                          "--artifacts", str(tmp_path / "a-file" / "artifacts"))
    assert proc.returncode == 2
    assert f"cannot create the artifacts folder {tmp_path / 'a-file' / 'artifacts'}" in \
        one_line(proc.stderr)


# -- the command it becomes -------------------------------------------------------------------

@pytest.fixture
def no_exec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple]:
    """os.execve recorded instead of run, in an empty working folder."""
    calls: list[tuple] = []
    monkeypatch.setattr(cli.os, "execve", lambda path, args, env: calls.append((path, args,
                                                                                env)))
    monkeypatch.chdir(tmp_path)
    return calls


def test_the_server_command_is_lean_and_the_store_goes_in_its_environment(
        no_exec: list[tuple], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert cli.main(["--port", str(port)]) == 0
    [(_, args, env)] = no_exec
    assert args[1:4] == ["-m", "mlflow", "server"]
    assert args[args.index("--host") + 1] == "127.0.0.1"
    assert args[args.index("--port") + 1] == str(port)
    assert args[args.index("--workers") + 1] == "1"
    assert "--serve-artifacts" in args and "--dev" not in args
    assert args[args.index("--artifacts-destination") + 1] == str(tmp_path / "mlartifacts")
    assert (tmp_path / "mlartifacts").is_dir()
    assert env["MLFLOW_BACKEND_STORE_URI"] == f"sqlite:///{tmp_path / 'mlflow-server.db'}"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    out, err = capsys.readouterr()
    assert err == ""  # loopback: no warning
    assert f"MLFLOW_TRACKING_URI=http://127.0.0.1:{port} make sweep" in out


def test_a_host_other_than_loopback_warns_in_one_line(
        no_exec: list[tuple], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--port", str(free_port()), "--host", "0.0.0.0"]) == 0
    out, err = capsys.readouterr()
    assert one_line(err).startswith("warning: --host 0.0.0.0 is not a loopback address: the "
                                    "server is reachable from other machines and has no "
                                    "authentication")
    assert "MLFLOW_SERVER_ALLOWED_HOSTS" in out


def test_postgresql_urls_get_the_psycopg_driver() -> None:
    assert cli.backend_uri("postgresql://bob@db:5432/mlflow") == \
        "postgresql+psycopg://bob@db:5432/mlflow"
    assert cli.backend_uri("postgresql+psycopg://bob@db/mlflow") == \
        "postgresql+psycopg://bob@db/mlflow"


def options(cmd: list[str]) -> set[str]:
    """The command's options (values that look like options, as --uvicorn-opts', left out)."""
    return {a for before, a in zip(["", *cmd], cmd, strict=False)
            if a.startswith("--") and not before.endswith("-opts")}


def test_the_command_uses_only_options_the_installed_mlflow_server_has() -> None:
    from mlflow import environment_variables
    from mlflow.cli import cli as mlflow_cli

    command = mlflow_cli.get_command(click.Context(mlflow_cli), "server")
    assert command is not None
    known = {opt for param in command.params for opt in param.opts}
    used = options(cli.server_command("127.0.0.1", 5000, Path("/x")))
    assert used <= known, f"mlflow server has no {sorted(used - known)}"
    backend = next(p for p in command.params if "--backend-store-uri" in p.opts)
    assert backend.envvar == "MLFLOW_BACKEND_STORE_URI"
    assert hasattr(environment_variables, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION")


def test_a_password_in_the_tracking_uri_is_never_logged(server: TrackingServer,
                                                        client_folder: Path) -> None:
    """MLflow reads credentials from MLFLOW_TRACKING_USERNAME / _PASSWORD; one written into
    tracking.uri still works, but must not end up in the run's params or config.yaml."""
    with_password = server.url.replace("http://", "http://alice:s3cret@")
    typed = to_config(compose_config(*RUN, f"tracking.uri={with_password}"))
    with MlflowTracker(typed.tracking) as tracker:
        train.run(typed, [tracker])
    client = MlflowClient(tracking_uri=server.url)
    run = client.get_run(tracker.run_id)
    assert run.data.params["tracking.uri"] == server.url.replace("http://", "http://alice:***@")
    config = Path(client.download_artifacts(tracker.run_id, "config.yaml",
                                            str(client_folder))).read_text()
    assert "s3cret" not in config and "alice:***@" in config


@pytest.mark.slow
def test_a_server_gone_as_the_sweep_reports_ends_it_with_code_2_and_the_resume_reports(
        in_data_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The search ran to its end, then the tracking server stopped answering: the sweep's
    outcome (its summary, the champion's registration, the parent's end) is not in MLflow,
    so the command must not exit 0. The same command, once the server answers, logs it."""
    import signal

    from sweeplab.names import ExitCode
    from sweeplab.sweep import controller

    # a request to a server that does not answer fails within 2 s, without retries
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    journal = f"journal:{tmp_path / 'optuna.journal'}"
    overrides = ["data=moons", "data.n_samples=200", "train.epochs=12", "train.log_every=3",
                 "train.batch_size=null", "sweep.pruner=none", "sweep.confirm.top_k=0",
                 "sweep.n_trials=2", "sweep.name=gone", f"sweep.storage={journal}"]
    real = controller.summarize
    with tracking_server(tmp_path / "server") as server:
        def server_stops_first(*args: object, **kwargs: object) -> None:
            os.killpg(server.proc.pid, signal.SIGSTOP)  # its processes hang, port open
            real(*args, **kwargs)

        monkeypatch.setattr(controller, "summarize", server_stops_first)
        cfg = compose_config(*overrides, f"tracking.uri={server.url}", config_name="sweep_app")
        try:
            assert controller.sweep_job(cfg) == ExitCode.USAGE
        finally:
            os.killpg(server.proc.pid, signal.SIGCONT)
        err = capsys.readouterr().err
        assert "error: the sweep's summary was not logged" in err
        assert "run the same command" in err
        monkeypatch.setattr(controller, "summarize", real)
        assert controller.sweep_job(cfg) == ExitCode.OK
        client = MlflowClient(server.url)
        parent_id = optuna.load_study(study_name="gone", storage=st.open_storage(journal)) \
            .user_attrs[TrialAttr.PARENT_RUN_ID]
        parent = client.get_run(parent_id)
        assert parent.info.status == "FINISHED"
        assert parent.data.metrics["n_done"] == 2
        versions = client.search_model_versions("name='sweeplab-gone'")
        assert [v.run_id for v in versions] == [parent.data.tags[Tag.BEST_RUN_ID]]


def _until_printed(proc: subprocess.Popen, text: str, timeout: float = 120) -> str:
    """What `proc` printed on stdout up to the line holding `text` (fails the test at its
    end or after `timeout` seconds without it)."""
    import selectors
    import time

    seen = ""
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while text not in seen:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {text!r} printed:\n{seen[-2000:]}\n{proc.communicate()[1][-3000:]}")
        if sel.select(timeout=1):
            seen += proc.stdout.readline()
    return seen


def _until_logging(proc: subprocess.Popen, url: str, known: set[str],
                   timeout: float = 120) -> None:
    """Until a run not in `known` is RUNNING on the server at `url` with a metric logged:
    past its start-up checks of the server, in the middle of its training."""
    import time

    deadline = time.monotonic() + timeout
    client = MlflowClient(url)
    while True:
        runs = client.search_runs(["0", "1"], "attributes.status = 'RUNNING'")
        if any(r.info.run_id not in known and r.data.metrics for r in runs):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no run logged a metric: {proc.communicate()[1][-3000:]}")
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "rerun"])
def test_a_server_gone_mid_run_ends_train_and_rerun_with_one_line(
        command: str, tmp_path: Path, data_cache: Path) -> None:
    """The server goes away while the run trains: one line and exit 2. The rerun printed
    a traceback (exit 1); both printed urllib3's warning at each retry before it. The
    server stops once the run has logged a metric: stopped before the run's own check of
    it, the error is rightly "no tracking server answers" (a race the CI hit)."""
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
           "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    long = ["train.epochs=200000", "train.log_every=10"]
    with tracking_server(tmp_path / "server") as server:
        known: set[str] = set()
        if command == "train":
            argv = ["-m", "sweeplab.train", *RUN, *long, f"tracking.uri={server.url}"]
            started = "Network:"
        else:
            with_server = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
            done = subprocess.run([sys.executable, "-m", "sweeplab.train", *RUN],
                                  cwd=data_cache, env=with_server, capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-3000:]
            original = MlflowClient(server.url).search_runs(["0", "1"])[0].info.run_id
            known.add(original)
            argv = ["-m", "sweeplab.cli.rerun", original, *long,
                    "--tracking-uri", server.url]
            started = "blas:"
        proc = subprocess.Popen([sys.executable, *argv], cwd=data_cache, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _until_printed(proc, started)
            _until_logging(proc, server.url, known)
            stop_process_group(server.proc)
            _, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
    assert proc.returncode == 2, err[-3000:]
    line = one_line(err)
    assert line.startswith("error: the tracking server stopped answering: ") and \
        server.url in line, line
