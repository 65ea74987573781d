"""`make ui`: the MLflow UI over sweeplab's store, on loopback only.

Usage: python -m sweeplab.cli.ui [--port 5000] [--uri sqlite:///mlflow.db]   (or: make ui PORT=5001)

The store is ``--uri``, else $MLFLOW_TRACKING_URI, else ``mlflow.db`` in the working
directory, as for ``make train`` and ``make sweep``. The server is ``mlflow ui`` bound to
127.0.0.1 with one worker and no job runner: 2 processes under 0.5 GB instead of ~15 and
~3 GB. This process becomes the server (exec), so Ctrl-C or SIGTERM stops all of it.
Each sweep's saved view (`sweeplab.sweep.view`) is listed with its address.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from sweeplab.names import ExitCode
from sweeplab.sweep.view import VIEW_KEY_PREFIX, VIEW_TAG
from sweeplab.tracking.links import HOST, runs_url, ui_route
from sweeplab.tracking.store import default_uri

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# Stores `mlflow ui` serves besides SQLite and folders (SQLAlchemy URLs).
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")


def port_free(port: int, host: str = HOST) -> bool:
    """Whether a server can listen on `host`:`port` now (as uvicorn binds: SO_REUSEADDR, so
    a port left in TIME_WAIT by a stopped server counts as free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError:
            return False
    return True


def store_problem(uri: str) -> str | None:
    """Why `mlflow ui` cannot show the store at `uri` (None when it can)."""
    no_store = f"no MLflow store at {uri} yet: run `make sweep` (or `make train`) first"
    scheme = urlparse(uri).scheme.split("+")[0] if "://" in uri or uri.startswith("file:") else ""
    if scheme == "sqlite":
        path = uri.removeprefix("sqlite:///").split("?")[0]
        if uri.startswith("sqlite:///") and path and path != ":memory:":
            return None if Path(path).is_file() else no_store
        return f"{uri} is an in-memory store: it holds no runs to show"
    if scheme in ("", "file"):
        path = Path(urlparse(uri).path if scheme else uri)
        return None if path.is_dir() else no_store
    if scheme in ("http", "https"):
        return f"{uri} is a tracking server already: open it in a browser instead"
    if scheme in DATABASE_SCHEMES:
        return None
    return f"`mlflow ui` cannot serve the store {uri}: give a sqlite:/// URI or a folder"


# MLflow's ASGI lifespan only tidies up its assistant's Docker sandboxes, and on Ctrl-C
# uvicorn cancels it mid-wait and logs a CancelledError traceback: off.
UVICORN = ["--uvicorn-opts", "--lifespan off"]


def server_command(uri: str, port: int) -> list[str]:
    """`mlflow ui` lean enough for a laptop: one worker, on loopback. For SQLite, artifacts
    of experiments made in the UI go to mlruns/ beside the database, as sweeplab's do."""
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", HOST, "--port", str(port), "--workers", "1", *UVICORN]
    if uri.startswith("sqlite:///"):
        root = Path(uri.removeprefix("sqlite:///").split("?")[0]).parent / "mlruns"
        cmd += ["--default-artifact-root", root.resolve().as_uri()]
    return cmd


def server_env() -> dict[str, str]:
    """The environment for `mlflow ui`: no job runner (it starts a dozen more processes)."""
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


# -- the command ----------------------------------------------------------------------------

def pages(client: MlflowClient, experiment: str, port: int) -> list[str]:
    """What to open: the experiment's runs (parent runs with their trials nested), and each
    sweep's view; or the experiment list when there is no such experiment yet."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return [f"MLflow UI: http://{HOST}:{port}/{ui_route('#/experiments')}   (no experiment "
                f"{experiment!r} in this store yet)"]
    base = f"http://{HOST}:{port}"
    lines = [f"MLflow UI: {runs_url(base, exp.experiment_id)}"]
    for tag in sorted(exp.tags):
        if tag.startswith(VIEW_TAG + VIEW_KEY_PREFIX):
            name = json.loads(exp.tags[tag]).get("name", tag)
            lines.append(f"  {name}, best first: "
                         f"{runs_url(base, exp.experiment_id, tag.removeprefix(VIEW_TAG))}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeplab.cli.ui",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1")
    parser.add_argument("--uri", default=None,
                        help="tracking store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    parser.add_argument("--experiment", default="sweeplab", help="experiment to open")
    args = parser.parse_args(argv)
    uri = args.uri or default_uri()
    if not 0 < args.port < 65536:
        print(f"error: --port {args.port} is not a port (1-65535)", file=sys.stderr)
        return ExitCode.USAGE
    problem = store_problem(uri)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    if not port_free(args.port):
        print(f"error: port {args.port} on {HOST} is taken (another `make ui`?): stop it, or "
              f"use another port: make ui PORT={args.port + 1}", file=sys.stderr)
        return ExitCode.USAGE
    from mlflow.tracking import MlflowClient

    try:
        lines = pages(MlflowClient(uri), args.experiment, args.port)
    except Exception as err:  # e.g. not an MLflow database
        print(f"error: cannot read the MLflow store at {uri}: {err}", file=sys.stderr)
        return ExitCode.USAGE
    print("\n".join(lines))
    print(f"store: {uri}\nstarting `mlflow ui` (ready in a few seconds; Ctrl-C stops it) ...",
          flush=True)
    cmd = server_command(uri, args.port)
    os.execve(cmd[0], cmd, server_env())
    return 0  # not reached: this process is now the server


if __name__ == "__main__":
    raise SystemExit(main())
