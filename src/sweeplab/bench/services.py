"""The servers the distributed bench starts, as tests/servers.py starts them for the tests:
`make server`'s tracking server, a Dask scheduler with `dask worker`s, and a throwaway
PostgreSQL cluster. Each listens on 127.0.0.1 and a free port, runs in a temporary folder
in a process group of its own, and is stopped (the whole group) when its block ends.
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

LOOPBACK = "127.0.0.1"
PG_USER = "postgres"


class ServiceError(RuntimeError):
    """A server did not start; the message carries what it printed."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the process group `proc` leads."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            time.sleep(0.2)
            return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def cpu_seconds(groups: list[int]) -> float:
    """CPU seconds (user + system) used so far by the live processes of these process
    groups (each server here runs in a group of its own)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) in groups:  # pgrp; then utime and stime, in clock ticks
            total += int(fields[11]) + int(fields[12])
    return total / tick


@dataclass
class Server:
    url: str
    group: int  # its process group, for cpu_seconds


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def tracking_server(folder: Path, *args: str, timeout: float = 120) -> Iterator[Server]:
    """`make server` (``python -m sweeplab.cli.server --port <free> *args``) in `folder`;
    yields it once /health answers."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sweeplab.cli.server", "--port",
                                 str(port), *args], cwd=folder, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _answers(url + "/health"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(f"make server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield Server(url, proc.pid)
    finally:
        stop_group(proc)


@dataclass
class DaskCluster:
    address: str
    workers: list[str]  # their names
    groups: list[int]  # the workers' process groups (nanny and worker), for cpu_seconds


@contextlib.contextmanager
def dask_cluster(folder: Path, worker_envs: list[dict[str, str]], warm: bool = True
                 ) -> Iterator[DaskCluster]:
    """`dask scheduler` and one single-threaded `dask worker` per entry of `worker_envs`
    (extra environment for that worker), each in an empty folder of its own, as README's
    "From one machine to many" starts them. Dask's nanny gives each worker one BLAS thread
    (its default OPENBLAS_NUM_THREADS=1). With `warm`, the workers have imported what a
    trial needs before the block starts, as a cluster that has run a sweep before."""
    from distributed import Client

    port = free_port()
    address = f"tcp://{LOOPBACK}:{port}"
    procs: list[subprocess.Popen] = []
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
             "start_new_session": True}
    names = [f"w{k}" for k in range(len(worker_envs))]
    try:
        (folder / "scheduler").mkdir(parents=True)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dask", "scheduler", "--host", LOOPBACK, "--port",
             str(port), "--no-dashboard"], cwd=folder / "scheduler", **quiet))
        for name, extra in zip(names, worker_envs, strict=True):
            (folder / name).mkdir()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1",
                 "--nworkers", "1", "--name", name, "--no-dashboard", "--local-directory",
                 str(folder / f"{name}-scratch")], cwd=folder / name,
                env={**os.environ, **extra}, **quiet))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(len(names), timeout=120)
            if warm:  # what a worker imports for its first trial (executors._warm_up)
                client.run(_warm_up)
        yield DaskCluster(address, names, [p.pid for p in procs[1:]])
    finally:
        for proc in reversed(procs):
            stop_group(proc)


def _warm_up() -> None:
    import mlflow.pyfunc
    import mlflow.tracking  # noqa: F401

    import sweeplab.sweep.worker  # noqa: F401


def postgres_bindir() -> Path | None:
    """PostgreSQL's server programs (initdb, pg_ctl): Debian's newest, or pg_config's."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                   reverse=True)
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            found.append(Path(out.stdout.strip()))
    return next((f for f in found if (f / "initdb").is_file() and (f / "pg_ctl").is_file()),
                None)


@contextlib.contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A fresh PostgreSQL cluster on 127.0.0.1 and a free port (trust authentication, run
    as the `postgres` OS user when we are root), with database `name`; yields its
    SQLAlchemy URL. Raises ServiceError when PostgreSQL is not installed."""
    bindir = postgres_bindir()
    if bindir is None:
        raise ServiceError("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)")
    run_as: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="sweeplab-bench-pg-"))
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam(PG_USER)
        os.chown(folder, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", PG_USER, "--"]
    data, port = folder / "data", free_port()

    def pg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*run_as, *args], capture_output=True, text=True, timeout=120)

    started = False
    try:
        init = pg(str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
        if init.returncode:
            raise ServiceError(f"initdb failed: {init.stderr[-2000:]}")
        # PostgreSQL's default durability (fsync on), as SQLite's: unlike the tests, which
        # turn it off, the bench compares stores as a team would run them.
        options = (f"-c listen_addresses={LOOPBACK} -p {port} -c unix_socket_directories="
                   f"{folder} -c max_connections=60")
        start = pg(str(bindir / "pg_ctl"), "start", "-D", str(data), "-w", "-t", "60", "-l",
                   str(folder / "postgres.log"), "-o", options)
        started = start.returncode == 0
        if not started:
            raise ServiceError(f"pg_ctl start failed: {start.stderr[-2000:]}")
        made = subprocess.run([str(bindir / "createdb"), "-h", LOOPBACK, "-p", str(port),
                               "-U", PG_USER, name], capture_output=True, text=True)
        if made.returncode:
            raise ServiceError(f"createdb failed: {made.stderr[-2000:]}")
        yield f"postgresql+psycopg://{PG_USER}@{LOOPBACK}:{port}/{name}"
    finally:
        if started:
            pg(str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w")
        shutil.rmtree(folder, ignore_errors=True)
