"""Open the MLflow UI over sweeplab's store, on loopback only.

Usage: python -m sweeplab.ui [--port 5000] [--uri sqlite:///mlflow.db]   (or: make ui PORT=5001)
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

from sweeplab.tracking import default_uri

HOST = "127.0.0.1"


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def server_command(uri: str, port: int) -> list[str]:
    """`mlflow ui` lean enough for a laptop: one worker, no job runner."""
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", HOST, "--port", str(port), "--workers", "1"]
    if uri.startswith("sqlite:///"):
        root = Path(uri.removeprefix("sqlite:///")).parent / "mlruns"
        cmd += ["--default-artifact-root", root.resolve().as_uri()]
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--uri", default=None, help="tracking URI (default: the local store)")
    parser.add_argument("--experiment", default="sweeplab")
    args = parser.parse_args(argv)
    uri = args.uri or default_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        print(f"error: no MLflow store at {uri} yet: run `make sweep` (or `make train`) first",
              file=sys.stderr)
        return 2
    if not port_free(args.port):
        print(f"error: port {args.port} on {HOST} is taken: try `make ui PORT={args.port + 1}`",
              file=sys.stderr)
        return 2
    from mlflow.tracking import MlflowClient

    exp = MlflowClient(uri).get_experiment_by_name(args.experiment)
    page = f"#/experiments/{exp.experiment_id}/runs" if exp else ""
    print(f"MLflow UI: http://{HOST}:{args.port}/{page}   (store: {uri}; Ctrl-C stops it)",
          flush=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    try:
        return subprocess.call(server_command(uri, args.port), env=env)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
