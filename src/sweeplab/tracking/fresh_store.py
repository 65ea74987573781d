"""A new SQLite tracking store, copied from an empty one made once per MLflow version.

MLflow makes a SQLite store by creating its first tables and running its 60-odd Alembic
migrations: 1.0 to 1.8 s for every new ``mlflow.db`` (each sweep in a new folder, each
test). The result is the same each time but for experiment 0, whose artifact location
names the store's folder. So sweeplab keeps one migrated store per MLflow and SQLAlchemy
version in its cache folder, without experiment 0, and copies it to where a new store is
wanted; MLflow, opening the copy, finds every table at its current revision, runs no
migration, and adds its Default experiment with the copy's own location.

Anything that goes wrong here (no cache folder, a full disk, an MLflow that no longer has
the function used to migrate) leaves the new store absent, for MLflow to create as usual.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import urllib.parse
import uuid
from pathlib import Path

from sweeplab.pids import remove_stale

# A scratch file older than this, of a process that is gone, was left by a kill.
STALE_SCRATCH_SECONDS = 60.0


def cache_dir() -> Path:
    """$SWEEPLAB_CACHE_DIR, else $XDG_CACHE_HOME/sweeplab (when absolute), else
    ~/.cache/sweeplab."""
    if os.environ.get("SWEEPLAB_CACHE_DIR"):
        return Path(os.environ["SWEEPLAB_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # the XDG spec: a relative path there is invalid and to be ignored
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "sweeplab"


def template_path() -> Path:
    """Where the empty store for the installed MLflow and SQLAlchemy is kept."""
    import mlflow
    import sqlalchemy

    return cache_dir() / f"mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}.db"


def seed_sqlite_store(db: Path) -> bool:
    """Make `db`, which must not exist yet, a copy of the empty migrated store; True if it
    was made. False leaves `db` as it was: absent (MLflow will create it), or made by
    another process meanwhile, which is kept."""
    if db.exists() or db.name == ":memory:":
        return False
    try:
        template = _template()
    except Exception:  # any failure means: let MLflow create the store
        return False
    # Copy beside `db`, then link: the link fails if another process made `db` meanwhile,
    # so a store someone has started writing to is never replaced.
    _remove_stale_scratch(db)
    tmp = _scratch(db)
    try:
        shutil.copyfile(template, tmp)
        os.link(tmp, db)
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return True


def _template() -> Path:
    """The empty migrated store in the cache folder, made now if it is missing or damaged."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    path = template_path()
    if path.is_file():
        # at MLflow's current revision too: MLflow refuses an older one rather than migrate
        if _sound(path, _get_latest_schema_revision()):
            return path
        path.unlink(missing_ok=True)
    elif path.exists():  # a folder or other such: not ours to remove, and no template
        raise FileExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_scratch(path)
    tmp = _scratch(path)
    try:
        _migrate(tmp)
        with contextlib.suppress(FileExistsError):  # another process made it first: use it
            os.link(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return path


def _scratch(beside: Path) -> Path:
    """A name for a file to be made next to `beside`, unique to this process and call. (Not
    `mkstemp`: its file is private to the user, and the store should get the usual mode.)"""
    return beside.with_name(f".{beside.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new")


def _remove_stale_scratch(beside: Path, age: float = STALE_SCRATCH_SECONDS) -> None:
    """Remove the `_scratch` files next to `beside` that a process killed while it copied
    or migrated left: named exactly as `_scratch` names them, their pid gone, and older
    than `age` seconds. Nothing here fails the caller."""
    name = re.compile(rf"\.{re.escape(beside.name)}\.([0-9]{{1,9}})\.[0-9a-f]{{8}}\.new")
    remove_stale(beside.parent, name, Path.unlink, age)


def _migrate(db: Path) -> None:
    """Create MLflow's tables in `db` and run its migrations, as opening a new SQLite store
    does, without the Default experiment that the store's first opening adds."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables, _verify_schema

    # a URL object, not a string: a path may hold "?" or "#"
    engine = sqlalchemy.create_engine(sqlalchemy.URL.create("sqlite", database=str(db)))
    try:
        _initialize_tables(engine)
        _verify_schema(engine)  # raises unless the tables are at MLflow's current revision
    finally:
        engine.dispose()  # a closed file, with no journal beside it, is what gets copied


def _sound(path: Path, revision: str) -> bool:
    """Whether `path` is an intact SQLite database at Alembic revision `revision` with no
    experiment in it (a few milliseconds for its 1 MB)."""
    try:
        read_only = f"file:{urllib.parse.quote(str(path))}?mode=ro"  # "?", "#" and "%" quoted
        with contextlib.closing(sqlite3.connect(read_only, uri=True)) as con:
            ok = con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            found = con.execute("SELECT version_num FROM alembic_version").fetchall()
            experiments = con.execute("SELECT count(*) FROM experiments").fetchone()[0]
    except sqlite3.Error:
        return False
    return ok and found == [(revision,)] and experiments == 0
