"""Real servers for integration tests: a throwaway PostgreSQL cluster, and `make server`'s
MLflow tracking server. Each runs in a temporary folder on a free port of 127.0.0.1 and is
stopped whatever happens, a failing test included.

    with postgres_cluster() as pg:                    # skips the test without PostgreSQL
        with tracking_server(folder, "--db", pg.url("mlflow")) as server:
            MlflowClient(tracking_uri=server.url) ...

They are context managers rather than fixtures, so that any test module (the Dask sweeps
too) wraps them in fixtures of the scope it needs: `from servers import tracking_server`
(tests/ is on sys.path when pytest runs, as for `from helpers import ...`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import shared_tmp

LOOPBACK = "127.0.0.1"
PG_USER = "postgres"  # the cluster's superuser; as root, also the OS user it runs as


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group `proc` leads (started with start_new_session=True),
    then SIGKILL to whatever of it is left."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            time.sleep(0.2)  # the group's other processes (uvicorn) exit with it
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


# -- PostgreSQL ------------------------------------------------------------------------------

def postgres_bindir() -> Path | None:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl): `pg_config --bindir`,
    else the newest /usr/lib/postgresql/<version>/bin (Debian's layout); None if absent."""
    found: list[Path] = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            found.append(Path(out.stdout.strip()))
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    found += sorted(versions, key=lambda p: int(p.parent.name) if p.parent.name.isdigit()
                    else 0, reverse=True)
    for folder in found:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


@dataclass
class PostgresCluster:
    """A running cluster: trust authentication, on 127.0.0.1:`port` only."""

    bindir: Path
    folder: Path  # data/, the server log and the Unix socket
    port: int
    run_as: list[str]  # the command prefix that runs a program as the cluster's OS user

    def url(self, database: str, password: str | None = None) -> str:
        """The SQLAlchemy URL of `database` for `make server DB=...`. Trust authentication
        accepts any password, so a test can check that one is never shown."""
        auth = PG_USER + (f":{password}" if password else "")
        return f"postgresql+psycopg://{auth}@{LOOPBACK}:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        subprocess.run([str(self.bindir / "createdb"), "-h", LOOPBACK, "-p", str(self.port),
                        "-U", PG_USER, name], check=True, capture_output=True, text=True)

    @property
    def log(self) -> str:
        path = self.folder / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _run_as() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` OS user."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        pytest.skip("running as root without runuser to start PostgreSQL as another user")
    try:
        import pwd

        pwd.getpwnam(PG_USER)
    except KeyError:
        pytest.skip(f"running as root and there is no {PG_USER!r} OS user to run "
                    "PostgreSQL as (PostgreSQL refuses to run as root)")
    return ["runuser", "-u", PG_USER, "--"]


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A fresh PostgreSQL cluster in a temporary folder (initdb, pg_ctl start), listening
    on 127.0.0.1 and a free port only, its socket in that folder; stopped (pg_ctl stop -m
    fast) and deleted afterwards. Skips the test when PostgreSQL is not installed."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql; "
                    ".ci/run does)")
    run_as = _run_as()
    folder = Path(tempfile.mkdtemp(prefix="sweeplab-pg-", dir=shared_tmp()))
    if run_as:
        import pwd

        user = pwd.getpwnam(PG_USER)
        os.chown(folder, user.pw_uid, user.pw_gid)
    data, port = folder / "data", free_port()
    cluster = PostgresCluster(bindir, folder, port, run_as)

    def pg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*run_as, *args], capture_output=True, text=True, timeout=120)

    started = False
    try:
        init = pg(str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
        assert init.returncode == 0, f"initdb failed:\n{init.stdout}\n{init.stderr}"
        options = (f"-c listen_addresses={LOOPBACK} -p {port} "
                   f"-c unix_socket_directories={folder} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=40")
        start = pg(str(bindir / "pg_ctl"), "start", "-D", str(data), "-w", "-t", "60",
                   "-l", str(folder / "postgres.log"), "-o", options)
        started = start.returncode == 0
        assert started, f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{cluster.log}"
        yield cluster
    finally:
        if started:
            pg(str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w")
        shutil.rmtree(folder, ignore_errors=True)


# -- the MLflow tracking server (make server) --------------------------------------------------

@dataclass
class TrackingServer:
    url: str  # the tracking URI: http://127.0.0.1:<port>
    port: int
    folder: Path  # its working folder: mlflow-server.db and mlartifacts/ by default
    artifacts: Path  # where it keeps the artifacts it is sent
    log_path: Path  # its stdout and stderr
    proc: subprocess.Popen

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def processes(self) -> list[int]:
        """The PIDs of the server's process group (the `mlflow server` CLI and uvicorn)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError):
                    if os.getpgid(int(entry.name)) == self.proc.pid:
                        pids.append(int(entry.name))
        return pids


def answers(url: str, timeout: float = 2) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def tracking_server(folder: Path, *args: str, env: dict[str, str] | None = None,
                    start_timeout: float = 120) -> Iterator[TrackingServer]:
    """`make server`'s command, ``python -m sweeplab.cli.server --port <free port> *args``,
    run in `folder` in a process group of its own; yields once GET /health answers, and
    stops the group afterwards. Fails the test, with the server's output, if it exits or
    does not answer within `start_timeout` seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sweeplab.cli.server", "--port", str(port), *args],
            cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=env)
    url = f"http://{LOOPBACK}:{port}"
    artifacts = folder / (args[args.index("--artifacts") + 1] if "--artifacts" in args
                          else "mlartifacts")
    try:
        deadline = time.monotonic() + start_timeout
        while not answers(url + "/health"):
            if proc.poll() is not None:
                pytest.fail(f"make server exited with {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"make server did not answer on {url} within {start_timeout:g} s:"
                            f"\n{log.read_text()}")
            time.sleep(0.25)
        yield TrackingServer(url, port, folder, artifacts.absolute(), log, proc)
    finally:
        stop_process_group(proc)
