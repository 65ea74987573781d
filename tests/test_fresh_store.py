"""A new SQLite store is a copy of an empty migrated one kept in sweeplab's cache folder:
the same schema as MLflow's own, its Default experiment in the new store's folder, and
never a store that exists replaced."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeplab.tracking import prepare_store
from sweeplab.tracking.fresh_store import seed_sqlite_store, template_path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SWEEPLAB_CACHE_DIR", str(folder))
    return folder


def _schema(db: Path) -> list[tuple[str, str, list[str]]]:
    """Each table's and index's definition, its lines sorted: MLflow's migrations list a
    table's constraints in an order that varies from one process to the next."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        rows = con.execute("SELECT type, name, sql FROM sqlite_master "
                           "WHERE name NOT LIKE 'sqlite_%'").fetchall()
    return sorted((kind, name, sorted(line.strip().rstrip(",") for line in (sql or "").split("\n")))
                  for kind, name, sql in rows)


def _rows(db: Path, query: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as con:
        return con.execute(query).fetchall()


def test_a_new_store_is_a_copy_with_mlflows_own_schema(tmp_path: Path, cache: Path) -> None:
    ours, mlflows = tmp_path / "ours" / "mlflow.db", tmp_path / "mlflows" / "mlflow.db"
    client = prepare_store(f"sqlite:///{ours}")
    assert template_path().parent == cache and template_path().is_file()
    mlflows.parent.mkdir()
    MlflowClient(f"sqlite:///{mlflows}").search_experiments()  # MLflow's migrations

    assert _schema(ours) == _schema(mlflows)
    revision = "SELECT version_num FROM alembic_version"
    assert _rows(ours, revision) == _rows(mlflows, revision)
    assert _rows(ours, "SELECT * FROM workspaces") == _rows(mlflows, "SELECT * FROM workspaces")
    # made when MLflow opened the copy, as in a store it made: not the cache folder's
    default = client.get_experiment("0")
    assert default.artifact_location == MlflowClient(f"sqlite:///{mlflows}").get_experiment(
        "0").artifact_location
    assert str(cache) not in default.artifact_location

    # a store to use: a run logged and read back
    run = client.create_run(default.experiment_id)
    client.log_param(run.info.run_id, "lr", "0.01")
    client.set_terminated(run.info.run_id)
    got = MlflowClient(f"sqlite:///{ours}").get_run(run.info.run_id)
    assert got.data.params == {"lr": "0.01"} and got.info.status == "FINISHED"


def test_the_cached_store_is_made_once_and_copied(tmp_path: Path, cache: Path) -> None:
    assert seed_sqlite_store(tmp_path / "a.db")
    made = template_path().stat().st_mtime_ns
    assert seed_sqlite_store(tmp_path / "b.db")
    assert template_path().stat().st_mtime_ns == made
    # a copy has no experiment until MLflow opens it and adds its Default experiment there
    assert _rows(tmp_path / "b.db", "SELECT count(*) FROM experiments") == [(0,)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.db", "b.db", "cache"]  # no scratch


def test_a_store_that_exists_is_never_replaced(tmp_path: Path, cache: Path) -> None:
    db = tmp_path / "mlflow.db"
    client = prepare_store(f"sqlite:///{db}")
    run_id = client.create_run("0").info.run_id
    assert not seed_sqlite_store(db)
    client = prepare_store(f"sqlite:///{db}")
    assert client.get_run(run_id).info.run_id == run_id


def test_a_damaged_cached_store_is_made_again(tmp_path: Path, cache: Path) -> None:
    assert seed_sqlite_store(tmp_path / "a.db")
    template_path().write_bytes(b"not a database" * 100)
    client = prepare_store(f"sqlite:///{tmp_path / 'b.db'}")
    assert client.get_experiment("0").name == "Default"
    assert _schema(template_path()) == _schema(tmp_path / "a.db")


def test_without_a_cache_folder_mlflow_creates_the_store(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SWEEPLAB_CACHE_DIR", str(blocker / "cache"))  # cannot be made
    db = tmp_path / "mlflow.db"
    assert not seed_sqlite_store(db)
    assert not db.exists()
    client = prepare_store(f"sqlite:///{db}")
    assert client.get_experiment("0").name == "Default"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".new")]  # no scratch


def test_a_cached_store_at_another_revision_is_made_again(tmp_path: Path, cache: Path) -> None:
    """MLflow refuses a store at an older schema revision rather than migrate it: such a
    template is made again before it is copied."""
    assert seed_sqlite_store(tmp_path / "a.db")
    with contextlib.closing(sqlite3.connect(template_path())) as con:
        con.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")
        con.commit()
    client = prepare_store(f"sqlite:///{tmp_path / 'b.db'}")
    assert client.get_experiment("0").name == "Default"
    revision = "SELECT version_num FROM alembic_version"
    assert _rows(template_path(), revision) == _rows(tmp_path / "a.db", revision)


@pytest.mark.parametrize("name", ["q?x", "h#y", "p%20z"])
def test_a_cache_folder_with_url_characters_in_its_name(tmp_path: Path, name: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """'?', '#' and '%' mean something in a database URL: the template is made where it
    is asked for, once, and nothing is written beside the cache folder."""
    cache = tmp_path / "c" / name
    monkeypatch.setenv("SWEEPLAB_CACHE_DIR", str(cache))
    assert seed_sqlite_store(tmp_path / "a.db")
    made = template_path().stat().st_mtime_ns
    assert seed_sqlite_store(tmp_path / "b.db")
    assert template_path().stat().st_mtime_ns == made  # found sound: not made again
    assert [p.name for p in (tmp_path / "c").iterdir()] == [name]
    assert [p.name for p in cache.iterdir()] == [template_path().name]


def test_a_relative_xdg_cache_home_is_ignored(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    from sweeplab.tracking.fresh_store import cache_dir

    monkeypatch.delenv("SWEEPLAB_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "relcache")
    assert cache_dir() == tmp_path / ".cache" / "sweeplab"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "sweeplab"


def test_a_folder_where_the_cached_store_goes_is_left_alone(tmp_path: Path,
                                                            cache: Path) -> None:
    template_path().mkdir(parents=True)
    assert not seed_sqlite_store(tmp_path / "a.db")
    assert template_path().is_dir() and not (tmp_path / "a.db").exists()
    assert [p.name for p in cache.iterdir()] == [template_path().name]  # no scratch left


def test_scratch_files_a_killed_process_left_are_removed(tmp_path: Path, cache: Path) -> None:
    """A SIGKILL while the cached store is made, or while it is copied, leaves its scratch
    file; the next copy removes those of processes that are gone, once a minute old, and
    leaves the others alone: recent ones, a live process's, and anything not named as a
    scratch file is (even if it looks close), without failing on odd names."""
    import os
    import subprocess
    import time

    gone = subprocess.Popen(["true"])
    gone.wait()
    old = time.time() - 120
    template, db = template_path(), tmp_path / "work" / "mlflow.db"
    cache.mkdir()
    db.parent.mkdir()
    left: dict[str, Path] = {}
    for where, beside in (("cache", template), ("work", db)):
        for kind, tail, age in (
                ("stale", f"{gone.pid}.0123abcd", old), ("recent", f"{gone.pid}.89abcdef", None),
                ("alive", f"{os.getpid()}.0123abcd", old),
                ("no-hex", f"{gone.pid}", old), ("long-pid", "9" * 20 + ".0123abcd", old),
                ("unicode-digit", "\u00b2.0123abcd", old),
                ("upper-hex", f"{gone.pid}.0123ABCD", old)):
            f = beside.with_name(f".{beside.name}.{tail}.new")
            f.write_bytes(b"half a store")
            if age is not None:
                os.utime(f, (age, age))
            left[f"{where}-{kind}"] = f
    assert seed_sqlite_store(db)  # makes the cached store, then copies it
    assert {k for k, f in left.items() if not f.exists()} == {"cache-stale", "work-stale"}
    assert template.is_file()


def test_opening_a_store_again_leaves_this_processs_connections_reading_fresh_data(
        tmp_path: Path, cache: Path) -> None:
    """`prepare_store` probes that the database may be written. Probing by opening the file
    dropped the SQLite locks this process held on it (POSIX locks belong to the process,
    and any close releases them): a client of the same process then read stale snapshots.
    A study script opens the store once per study, beside a client from the one before,
    and read the previous champion of a sweep that had just chosen another."""
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = prepare_store(uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    seen = []
    for i in range(4):
        client.get_run(run_id)  # a pooled connection that has read the database
        prepare_store(uri)
        subprocess.run([sys.executable, "-c", "from mlflow.tracking import MlflowClient; "
                        f"MlflowClient({uri!r}).set_tag({run_id!r}, 'k', '{i}')"], check=True)
        seen.append(client.get_run(run_id).data.tags.get("k"))
    assert seen == ["0", "1", "2", "3"]


def test_a_read_only_write_ahead_log_or_a_query_string_does_not_escape_the_probe(
        tmp_path: Path, cache: Path) -> None:
    """`?timeout=5` made the probe look for a file named `mlflow.db?timeout=5`, and a
    read-only `-wal` beside a writable database was not looked at: each then failed at the
    first write with a traceback."""
    import shutil
    import subprocess

    from sweeplab.tracking.store import TrackingStoreError

    db = tmp_path / "mlflow.db"
    prepare_store(f"sqlite:///{db}")
    wal = tmp_path / "mlflow.db-wal"
    wal.touch()
    if shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(wal), str(db)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a read-only file: chattr +i is unavailable or refused")
    try:
        with pytest.raises(TrackingStoreError, match=r"cannot write the database file "
                                                     r".*mlflow.db: not writable"):
            prepare_store(f"sqlite:///{db}?timeout=5")
        subprocess.run(["chattr", "-i", str(db)], check=True)
        with pytest.raises(TrackingStoreError, match=r"cannot write the database file "
                                                     r".*mlflow.db-wal: not writable"):
            prepare_store(f"sqlite:///{db}")
    finally:
        subprocess.run(["chattr", "-i", str(wal), str(db)], check=True)
    prepare_store(f"sqlite:///{db}")  # writable again: accepted
