"""A process's exit without the interpreter's last collections (tracking/quick_exit.py):
the exit handlers still run, and the tracking store is left as a clean exit leaves it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import atexit, gc, os, signal, sys
    from mlflow.tracking import MlflowClient
    from sweeplab.tracking import prepare_store
    from sweeplab.tracking.quick_exit import settle, skip_final_collection

    def later():
        print("frozen at exit:", gc.get_freeze_count() > 0, flush=True)
        os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C while the process ends
        print("still ending after a Ctrl-C", flush=True)

    # registered first, so it runs after skip_final_collection's handler (last in, first out)
    atexit.register(later)
    skip_final_collection()
    uri = "sqlite:///" + sys.argv[1]
    prepare_store(uri)  # write-ahead logging on
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("e"))
    client.log_param(run.info.run_id, "p", "1")
    if sys.argv[2] == "settled":  # the store's engine frozen with the rest, as in a sweep
        settle()
        print("settled:", gc.get_freeze_count() > 0, flush=True)
    print("run", run.info.run_id, flush=True)
""")


@pytest.mark.parametrize("when", ["at exit", "settled"])
def test_a_quick_exit_runs_the_exit_handlers_and_closes_the_store(tmp_path: Path,
                                                                 when: str) -> None:
    """MLflow keeps its SQLAlchemy engines for the process's life: frozen without closing
    them, SQLite would leave its -wal and -shm files beside the database, with the run's
    rows in the -wal file only; also when `settle` froze the engine long before the exit.
    A Ctrl-C once the process ends is ignored, not a traceback."""
    db = tmp_path / "mlflow.db"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(db), when], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("settled: True" in proc.stdout) == (when == "settled")
    assert "frozen at exit: True" in proc.stdout
    assert "still ending after a Ctrl-C" in proc.stdout
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
    run_id = proc.stdout.split("run ", 1)[1].split()[0]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("mlflow.db")) \
        == ["mlflow.db"]
    # the database file alone holds the run (read without MLflow: no -wal to replay)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute("select key, value from params where run_uuid = ?",
                           (run_id,)).fetchall()
    assert rows == [("p", "1")]


def test_settle_freezes_only_in_a_commands_process() -> None:
    """Outside a command (a test, a notebook calling an entry point) objects stay with the
    collector; in a command, what exists when it settles is frozen."""
    code = textwrap.dedent("""
        import gc
        from sweeplab.tracking.quick_exit import settle, skip_final_collection
        gc.unfreeze()
        settle()
        before = gc.get_freeze_count()
        skip_final_collection()
        settle()
        print(before, gc.get_freeze_count() > 0)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["0", "True"]
