"""`make server`: an MLflow tracking server that a team's runs and sweeps log to over HTTP.

Runs, sweeps and sweep workers on other machines then log to one place.

Usage: python -m sweeplab.cli.server [--port 5000] [--host 127.0.0.1] [--db URL]
                                     [--artifacts mlartifacts]
       (or: make server PORT=5001 DB=postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow)

- Runs and metrics go to ``--db``: a SQLite file, by default ``mlflow-server.db`` in the
  working directory (not the ``mlflow.db`` that `make train` writes without a server: its
  experiments keep their artifacts in a local folder that other machines cannot reach), or
  PostgreSQL, ``postgresql+psycopg://user@host:5432/database``, which is checked before the
  server starts. A password belongs in PGPASSWORD or ~/.pgpass rather than in the URL; it
  is never printed, and it reaches `mlflow server` in its environment, not on its command
  line (which every user of the machine can list).
- Artifacts are proxied: clients upload and download them through the server, which keeps
  them in ``--artifacts``; clients need no access to that folder.
- Lean: `mlflow server` with one worker process and no job runner, on 127.0.0.1 unless
  ``--host`` says otherwise. On any other address the server is reachable from other
  machines and has no authentication: a warning says so.

This process becomes the server (exec), so Ctrl-C or SIGTERM stops all of it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from sweeplab.cli.ui import UVICORN, port_free, server_env
from sweeplab.names import ExitCode
from sweeplab.tracking.links import HOST
from sweeplab.tracking.store import redact

DEFAULT_DB_FILE = "mlflow-server.db"
DEFAULT_ARTIFACTS = "mlartifacts"
DB_TIMEOUT = 3  # seconds for PostgreSQL to accept a connection before the server starts
POSTGRES = "postgresql+psycopg"  # SQLAlchemy's dialect for psycopg 3 (the `server` extra)
DB_HINT = "give sqlite:///path/to/file.db or postgresql+psycopg://user@host:5432/database"


class SetupError(Exception):
    """The server cannot start as asked; the message says why and what to do."""


def backend_uri(db: str | None) -> str:
    """The SQLAlchemy URL of the backend store: `db` checked and normalised (an absolute
    SQLite path; ``postgresql://`` made ``postgresql+psycopg://``)."""
    if db is None:
        return f"sqlite:///{Path.cwd() / DEFAULT_DB_FILE}"
    scheme = db.split("://", 1)[0] if "://" in db else ""
    if scheme == "sqlite":
        path = db.removeprefix("sqlite:///").split("?")[0] if db.startswith("sqlite:///") else ""
        if path in ("", ":memory:"):
            raise SetupError(f"DB={db} is an in-memory database: every run would be lost "
                             "when the server stops; give sqlite:///path/to/file.db")
        file = Path(path).expanduser().absolute()
        if not file.parent.is_dir():
            raise SetupError(f"DB={db}: the folder {file.parent} does not exist")
        if not os.access(file.parent, os.W_OK):
            raise SetupError(f"DB={db}: the folder {file.parent} is not writable")
        return f"sqlite:///{file}"
    if scheme in ("postgresql", POSTGRES):
        return POSTGRES + db.removeprefix(scheme)
    what = f"database {scheme!r}" if scheme else "database URL"
    raise SetupError(f"DB={redact(db)}: unsupported {what}: {DB_HINT}")


def check_database(db: str, timeout: int = DB_TIMEOUT) -> None:
    """Connect to a PostgreSQL backend once, raising SetupError with what failed (host,
    port, database, user; never the password) and what to do. SQLite needs no check."""
    if not db.startswith(POSTGRES):
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError
    from sqlalchemy.pool import NullPool

    try:
        url = make_url(db)
    except ArgumentError:
        raise SetupError(f"DB={redact(db)} is not a database URL: {DB_HINT}") from None
    host = url.host or url.query.get("host") or "localhost"
    if "@" in str(host) or "/" in (url.database or ""):
        raise SetupError("DB: the URL does not parse: percent-encode @ / : in the password "
                         "(%40 %2F %3A), or leave it out and set PGPASSWORD")
    if not url.database:
        raise SetupError(f"DB={redact(db)} names no database: {DB_HINT}")
    where = (f"PostgreSQL at {host}:{url.port or 5432} (database {url.database!r}, "
             f"user {url.username or os.environ.get('PGUSER') or 'default'!r})")
    try:
        engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": timeout})
    except ImportError:
        raise SetupError("PostgreSQL needs psycopg: pip install -c requirements.lock "
                         "-e '.[server]'") from None
    try:
        with engine.connect():
            pass
    except DBAPIError as err:
        raise SetupError(f"cannot use {where}: {_why(err.orig, url, timeout)}") from None
    finally:
        engine.dispose()


def _why(err: BaseException | None, url: object, timeout: int) -> str:
    """What libpq's message means, and what to do, in a few words."""
    text = " ".join(str(err).split())
    low = text.lower()
    if "connection refused" in low:
        return ("connection refused: is PostgreSQL running there, listening on TCP "
                "(listen_addresses, port)?")
    if "timeout expired" in low or "timed out" in low:
        return f"no answer within {timeout} s: check the host and port, and any firewall"
    if "does not exist" in low and "database" in low:
        return (f"no such database: create it (createdb -h HOST -p PORT -U USER "
                f"{getattr(url, 'database', 'NAME')}), or name another in DB=")
    if "password" in low or "authentication failed" in low:
        return ("authentication failed: check the user, and the password in PGPASSWORD "
                "or ~/.pgpass")
    if "translate host name" in low or "name or service not known" in low:
        return "host name not found: check the host in DB="
    return redact(text)


def artifacts_folder(folder: str) -> Path:
    """The artifacts folder, created when missing (SetupError when it cannot be)."""
    path = Path(folder).expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SetupError(f"cannot create the artifacts folder {path}: "
                         f"{err.strerror or err}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SetupError(f"the artifacts folder {path} is not writable")
    return path


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_address(host: str, port: int) -> None:
    """SetupError unless a server can listen on `host`:`port` now."""
    if not port_free(0, host):
        raise SetupError(f"cannot listen on --host {host}: not an address of this machine")
    if not port_free(port, host):
        raise SetupError(f"port {port} on {host} is taken (another `make server` or "
                         f"`make ui`?): stop it, or use another port: make server "
                         f"PORT={port + 1}")


def server_command(host: str, port: int, artifacts: Path) -> list[str]:
    """`mlflow server` lean enough for a laptop: one worker process; artifacts proxied into
    `artifacts`. The backend store comes in the environment (see server_environment)."""
    return [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
            "--workers", "1", "--serve-artifacts", "--artifacts-destination", str(artifacts),
            *UVICORN]


def server_environment(db: str) -> dict[str, str]:
    """`make ui`'s environment (no job runner) plus the backend store, which `mlflow server`
    reads from MLFLOW_BACKEND_STORE_URI: in the environment a password stays out of the
    process list."""
    return {**server_env(), "MLFLOW_BACKEND_STORE_URI": db}


WILDCARDS = ("0.0.0.0", "::", "[::]")  # every address of the machine


def client_url(host: str, port: int) -> str:
    """The tracking URI for a server listening on `host`:`port`, as used on this machine."""
    if host in ("0.0.0.0", "localhost"):
        host = HOST
    elif host in ("::", "[::]"):
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def client_lines(host: str, port: int) -> list[str]:
    """What to tell the team: the tracking URI and the UI's address."""
    url = client_url(host, port)
    lines = [f"MLflow tracking server: {url}   (its UI and REST API)",
             f"  log to it:  MLFLOW_TRACKING_URI={url} make sweep ...",
             f"          or  make train ARGS=\"tracking.uri={url}\""]
    if host in WILDCARDS:
        lines.append(f"  from other machines: http://<this machine's address>:{port} (MLflow "
                     "accepts private IP addresses; for a host name set "
                     f"MLFLOW_SERVER_ALLOWED_HOSTS=<name>:{port} before make server)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeplab.cli.server",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000, help="port to listen on")
    parser.add_argument("--host", default=HOST,
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--db", default=None,
                        help=f"backend store: sqlite:///file.db (default ./{DEFAULT_DB_FILE}) "
                             "or postgresql+psycopg://user@host:5432/database")
    parser.add_argument("--artifacts", default=DEFAULT_ARTIFACTS,
                        help=f"the server's artifacts folder (default ./{DEFAULT_ARTIFACTS})")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        print(f"error: --port {args.port} is not a port (1-65535)", file=sys.stderr)
        return ExitCode.USAGE
    try:
        db = backend_uri(args.db)
        artifacts = artifacts_folder(args.artifacts)
        check_address(args.host, args.port)
        check_database(db)
    except SetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return ExitCode.USAGE
    if not is_loopback(args.host):
        print(f"warning: --host {args.host} is not a loopback address: the server is reachable "
              "from other machines and has no authentication", file=sys.stderr)
    print("\n".join(client_lines(args.host, args.port)))
    print(f"  store:      {redact(db)}\n"
          f"  artifacts:  {artifacts}   (proxied: clients send and fetch them through the "
          f"server)\nstarting `mlflow server` (ready in 10 to 20 s; Ctrl-C stops it) ...",
          flush=True)
    cmd = server_command(args.host, args.port, artifacts)
    os.execve(cmd[0], cmd, server_environment(db))
    return 0  # not reached: this process is now the server


if __name__ == "__main__":
    raise SystemExit(main())
