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
import shutil
import sqlite3
import uuid
from pathlib import Path


def cache_dir() -> Path:
    """$SWEEPLAB_CACHE_DIR, else $XDG_CACHE_HOME/sweeplab, else ~/.cache/sweeplab."""
    if os.environ.get("SWEEPLAB_CACHE_DIR"):
        return Path(os.environ["SWEEPLAB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sweeplab"


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
    path = template_path()
    if path.is_file():
        if _sound(path):
            return path
        path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def _migrate(db: Path) -> None:
    """Create MLflow's tables in `db` and run its migrations, as opening a new SQLite store
    does, without the Default experiment that the store's first opening adds."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables, _verify_schema

    engine = sqlalchemy.create_engine(f"sqlite:///{db}")
    try:
        _initialize_tables(engine)
        _verify_schema(engine)  # raises unless the tables are at MLflow's current revision
    finally:
        engine.dispose()  # a closed file, with no journal beside it, is what gets copied


def _sound(path: Path) -> bool:
    """Whether `path` is an intact SQLite database with an Alembic revision and no
    experiment in it (a few milliseconds for its 1 MB)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            ok = con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            revision = con.execute("SELECT version_num FROM alembic_version").fetchone()
            experiments = con.execute("SELECT count(*) FROM experiments").fetchone()[0]
    except sqlite3.Error:
        return False
    return ok and revision is not None and experiments == 0
