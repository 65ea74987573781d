"""The MLflow store sweeplab logs to: which one, created once, with the experiment in it;
for a tracking server (an http(s) URI), whether it answers.

No function here sets MLflow's process-wide tracking URI: every client is an explicit
``MlflowClient(tracking_uri=...)``.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.tracking import MlflowClient

from sweeplab.config import TrackingConfig
from sweeplab.names import MODEL_TRAINING_KIND, MlflowTag
from sweeplab.tracking.errors import quiet_store_tracebacks
from sweeplab.tracking.fresh_store import seed_sqlite_store

if TYPE_CHECKING:
    import requests

# MLflow's client retries a request to a tracking server that does not answer 7 times with
# exponential back-off (4 minutes and more, up to 120 s per attempt): a server that dies
# mid-run would hang each run for many minutes. These bound it to about a minute: 3
# retries after 0, 2 and 4 s (plus up to 1 s of jitter each), 10 s per attempt at most.
# Names as in mlflow/environment_variables.py (MLflow 3.17); the user's own values win.
HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
                       "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                       "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
# MLflow's client prints "🏃 View run ... at: <url>" and "🧪 View experiment at: <url>" on
# stdout at the end of each run on a server: between a sweep's trial lines, twice a trial,
# without the layout sweeplab's own addresses ask for (tracking/links.py).
QUIET_DEFAULTS = {**HTTP_RETRY_DEFAULTS, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
for _name, _value in QUIET_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

# How long a tracking server has to answer its health check before a run or sweep starts.
HEALTH_TIMEOUT = 3.0


class TrackingServerError(Exception):
    """The tracking server named by an http(s) tracking URI does not answer."""


class TrackingStoreError(Exception):
    """A store this process opens itself (SQLite, a database, a folder) cannot be opened:
    an unsupported scheme, a folder it may not write, a database that does not answer."""


# What MLflow's tracking client opens, as a user writes it (tracking.uri). Not a folder:
# MLflow 3 refuses its file store unless $MLFLOW_ALLOW_FILE_STORE is set (`check_uri`).
STORE_FORMS = ("sqlite:///<path>", "postgresql://...", "mysql://...", "http(s)://<server>")


def default_uri() -> str:
    """$MLFLOW_TRACKING_URI, else the embedded store: sqlite mlflow.db in the working dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def resolve_uri(cfg: TrackingConfig) -> str:
    return cfg.uri or default_uri()


def is_server(uri: str) -> bool:
    """Whether `uri` names a tracking server rather than a store this process opens itself."""
    return uri.startswith(("http://", "https://"))


def redact(uri: str) -> str:
    """`uri` with the password of its ``user:password@`` part shown as ``***`` (up to the
    last ``@`` of the address: a password may hold an unescaped ``@``)."""
    return re.sub(r"://([^/@:]*):[^/]*@", r"://\1:***@", uri)


# Tracking URIs of MLflow's hosted service (`databricks`, `databricks://<profile>`, ...).
HOSTED_SCHEMES = ("databricks", "databricks-uc", "uc")


def check_uri(uri: str, key: str = "tracking.uri") -> None:
    """Raise TrackingStoreError for a store that would lose what is logged or that MLflow
    refuses: an in-memory SQLite database (each process that opens it, the sweep's writer
    and workers too, gets an empty one of its own, gone at its exit), or a folder (MLflow 3's
    file store, refused unless $MLFLOW_ALLOW_FILE_STORE is true). `key`: what the message
    calls the URI."""
    shown = _shown(key, uri)
    if _in_memory(uri):
        raise TrackingStoreError(
            f"{shown} is an in-memory database: every run would be lost (each "
            f"process gets its own, gone when it exits); use a file, sqlite:///<path>")
    scheme = uri.split("://", 1)[0] if "://" in uri else uri.split(":", 1)[0]
    if scheme.lower() in HOSTED_SCHEMES and (uri == scheme or ":" in uri):
        # MLflow's own names for a Databricks workspace, which would read as a folder below
        raise TrackingStoreError(
            f"{shown} names a Databricks workspace, which sweeplab does not log to; use "
            f"{', '.join(STORE_FORMS)}")
    file_store = uri.startswith("file:") or "://" not in uri
    allowed = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("true", "1")
    if file_store and not allowed:
        raise TrackingStoreError(
            f"{shown} is a folder (MLflow's file store), which MLflow "
            f"{_mlflow_version()} no longer opens; use sqlite:///<path>/mlflow.db (`mlflow "
            f"migrate-filestore` moves an existing folder's runs there), or set "
            f"MLFLOW_ALLOW_FILE_STORE=true")


def _shown(key: str, uri: str) -> str:
    """How a message names the URI: key=uri, or "the tracking URI 'uri'"."""
    return f"{key}={redact(uri)!r}" if " " not in key else f"{key} {redact(uri)!r}"


def _in_memory(uri: str) -> bool:
    """Whether `uri` names an in-memory SQLite database, in any of SQLAlchemy's spellings:
    no file, ``:memory:``, a driver (``sqlite+pysqlite://``), or a URI filename with
    ``mode=memory``."""
    if uri.split("://", 1)[0].split("+", 1)[0].lower() != "sqlite":
        return False
    from sqlalchemy.engine import make_url

    try:
        url = make_url(uri)
    except Exception:  # not a URL SQLAlchemy reads: MLflow says so when it opens it
        return False
    database = url.database or ""
    return (database in ("", ":memory:") or database.startswith("file::memory:")
            or url.query.get("mode") == "memory" or "mode=memory" in database)


def source_key(cfg: TrackingConfig) -> str:
    """What a message calls the tracking URI of `cfg`: tracking.uri, or
    $MLFLOW_TRACKING_URI when that is where it came from."""
    return "tracking.uri" if cfg.uri or not os.environ.get("MLFLOW_TRACKING_URI") \
        else "$MLFLOW_TRACKING_URI"


def _mlflow_version() -> str:
    from importlib.metadata import version

    return version("mlflow")


def check_server(uri: str, timeout: float = HEALTH_TIMEOUT) -> None:
    """Raise TrackingServerError unless the tracking server at `uri` answers its health
    check (GET <uri>/health) within `timeout` seconds, and takes requests addressed to the
    host name in `uri`; nothing to check for other stores.

    Any answer counts but a proxy's 502/503/504 (its server behind it is down): a 401 is a
    server that wants credentials, which MLflow's client sends and this check does not."""
    if not is_server(uri):
        return
    base = uri.rstrip("/")
    shown = redact(base)
    health = _get(base + "/health", shown, timeout)
    if health.status_code in (502, 503, 504):
        raise TrackingServerError(f"the tracking server {shown} is unavailable (HTTP "
                                  f"{health.status_code} from a proxy in front of it): "
                                  f"{START_IT}")
    # MLflow 3's server answers /health whatever the Host header, but its API refuses a
    # host name outside its allowed hosts (by default localhost and private IP addresses).
    api = _get(base + "/api/2.0/mlflow/experiments/get?experiment_id=0", shown, timeout)
    if api.status_code == 403 and "Invalid Host header" in api.text:
        host = shown.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        raise TrackingServerError(
            f"the tracking server {shown} refuses requests addressed to {host}: use an "
            f"address it accepts (localhost, a private IP address), or start it with "
            f"MLFLOW_SERVER_ALLOWED_HOSTS={host}")


START_IT = ("start it (`make server`), or point tracking.uri / $MLFLOW_TRACKING_URI at one "
            "that runs")


def _get(url: str, shown: str, timeout: float) -> requests.Response:
    """GET `url`, with any failure to get an answer as a TrackingServerError."""
    import requests

    # TLS as MLflow's client does it (its MLFLOW_TRACKING_* settings).
    verify: bool | str = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("true", "1"):
        verify = False
    try:
        return requests.get(url, timeout=timeout, verify=verify)
    except requests.Timeout:
        raise TrackingServerError(f"the tracking server {shown} did not answer within "
                                  f"{timeout:g} s: {START_IT}") from None
    except requests.ConnectionError as err:
        text = str(err).lower()
        why = ("connection refused" if "refused" in text else
               "host name not found" if "resolve" in text or "name or service" in text else
               "cannot connect")
        raise TrackingServerError(f"no tracking server answers at {shown} ({why}): "
                                  f"{START_IT}") from None
    except requests.RequestException as err:
        raise TrackingServerError(f"the tracking server {shown} cannot be reached "
                                  f"({type(err).__name__}): {START_IT}") from None


def prepare_store(uri: str, key: str = "tracking.uri") -> MlflowClient:
    """A client on `uri`, with the store created now, by this one process: several processes
    creating a fresh SQLite store at once corrupt it. A new SQLite store is a copy of an
    empty one (`fresh_store`), which saves MLflow's migrations. SQLite gets write-ahead logging, so
    parallel sweep workers read while one writes instead of failing with "database is
    locked". A tracking server is checked first (TrackingServerError if it does not
    answer)."""
    check_uri(uri, key)
    check_server(uri)
    quiet_store_tracebacks()
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])  # without ?timeout=...
        check_writable(db, uri, key)
        if "?" not in uri:
            seed_sqlite_store(db)  # a copy of an empty store: no migrations to run
    try:
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)  # creates and migrates a database not seeded
        if uri.startswith("sqlite:///"):
            import sqlite3

            with contextlib.closing(sqlite3.connect(uri.removeprefix("sqlite:///"))) as con:
                con.execute("PRAGMA journal_mode=WAL")
    except Exception as err:
        if is_server(uri):
            raise  # the server's own errors: cli/common.py tells an outage from the rest
        # MLflow's (unsupported scheme), SQLAlchemy's and sqlite3's errors, OSError: all
        # say the store at this URI cannot be used, none needs a traceback.
        raise TrackingStoreError(
            f"{key}={redact(uri)!r}: cannot open the tracking store "
            f"({type(err).__name__}: {_first_line(str(err))}); use a database you can "
            f"write, or a server: {', '.join(STORE_FORMS)}") from None
    return client


def check_writable(db: Path, uri: str, key: str = "tracking.uri") -> None:
    """Probe SQLite database `db` and its folder (SQLite writes its journal beside the
    database): MLflow retries a database it cannot open for minutes before giving up, and
    one it may read but not write fails only at the first run it logs, with a traceback."""
    import errno
    import tempfile

    folder = db.parent
    what = f"its folder {folder}"
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sweeplab-probe-"):
            pass
        if db.exists() and not db.is_file():
            what = f"the database file {db}"
            raise IsADirectoryError(errno.EISDIR, "it is a folder, not a file")
        # the database and SQLite's write-ahead log and index beside it; access(2), not
        # open(): closing any descriptor of a database drops every SQLite lock this process
        # holds on it (POSIX locks are per process), and its clients read stale snapshots
        for part in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            if part.exists() and not os.access(part, os.W_OK):
                what = f"the database file {part}"
                raise PermissionError(errno.EACCES, "not writable")
    except OSError as err:
        why = err.strerror or str(err)
        if err.errno in (errno.EPERM, errno.EACCES, errno.EROFS):  # EPERM: chattr +i
            why += " (the store is read-only to this user)"
        raise TrackingStoreError(
            f"{_shown(key, uri)}: cannot open the tracking store (cannot write {what}: "
            f"{why}); use a store you can write: {', '.join(STORE_FORMS)}") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no message"


def check_experiment(client: MlflowClient, name: str, uri: str) -> Any:
    """Experiment `name` (an mlflow Experiment), or None if there is none yet;
    TrackingStoreError if it is deleted, since MLflow refuses new runs there."""
    exp = client.get_experiment_by_name(name)
    if exp is not None and exp.lifecycle_stage == "deleted":
        raise TrackingStoreError(f"tracking.experiment={name!r}: the experiment "
                                 f"{deleted(exp, uri)} or set tracking.experiment=<another "
                                 f"name>")
    return exp


def deleted(experiment: Any, uri: str) -> str:
    """"is deleted in <uri> (id N); restore it (<command>)", of `experiment` (an mlflow
    Experiment)."""
    return (f"is deleted in {redact(uri)} (id {experiment.experiment_id}); "
            f"restore it (MLFLOW_TRACKING_URI={redact(uri)} mlflow experiments restore -x "
            f"{experiment.experiment_id})")


def get_experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    """The id of experiment `name`, created (artifacts under ./mlruns for SQLite) if needed,
    and marked as model training (`MODEL_TRAINING_KIND`) unless it has a kind already."""
    kind = {MlflowTag.EXPERIMENT_KIND: MODEL_TRAINING_KIND}
    exp = check_experiment(client, name, uri)
    if exp is not None:
        if MlflowTag.EXPERIMENT_KIND not in exp.tags:  # made before sweeplab set it
            client.set_experiment_tag(exp.experiment_id, *kind.popitem())
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        location = (db.parent / "mlruns").resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags=kind)
    except Exception:  # another process created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
