"""A command's process without needless garbage collections: at its exit, and over what
its start-up built.

A Python process ends by collecting every object it built. For a sweep's processes (MLflow,
Optuna, matplotlib and plotly imported, a sweep's worth of objects) that took 0.7 to 1.3 s
each, after everything had been written: seconds of a default sweep's wall time spent in
nothing. `skip_final_collection` registers an exit handler that, run last, closes the
SQLAlchemy engines' pooled connections (as a clean exit does; SQLite then folds its
write-ahead log into the database file and removes it) and freezes every object, which the
final collections then pass by. From then on the process ignores Ctrl-C and SIGTERM: it is
ending already. Other exit handlers run as before; and all of this happens only at exit,
so a test or a notebook that calls an entry point keeps collecting as usual.

The same process, while it starts, runs the collector's full (oldest-generation) pass
again and again: each import of MLflow, SQLAlchemy or Optuna leaves hundreds of thousands
of long-lived objects, and each pass scans them all (100 to 230 ms a pass on this machine;
eight passes, about a second, before a default sweep's first trial). `settle`, called by
the command after such steps, freezes what exists then: later passes scan only newer
objects. It does nothing outside a command (no `skip_final_collection` before), for the
same reason as above.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import signal
import weakref
from typing import Any

_command = False  # whether this process is a command's (skip_final_collection was called)
# The SQLAlchemy engines this process connected with. MLflow and Optuna keep theirs in
# caches of their own for the process's life; an engine never collected never closes its
# connections, and SQLite would leave its -wal and -shm files beside the database
# (complete, but easy to leave behind when the database file is copied).
_engines: weakref.WeakSet[Any] = weakref.WeakSet()


def skip_final_collection() -> None:
    """At this process's exit, after the exit handlers registered later (MLflow's, Dask's):
    close the stores' connections, then let the interpreter end without collecting."""
    global _command
    if not _command:
        _command = True
        with contextlib.suppress(ImportError):
            # Every engine, as it connects: found at exit without a scan of every object
            # (0.1 s a process). sqlalchemy.event costs 0.1 s to import, which a command
            # with a database store pays anyway.
            from sqlalchemy import event
            from sqlalchemy.engine import Engine

            event.listen(Engine, "engine_connect", lambda conn: _engines.add(conn.engine))
        atexit.register(_at_exit)


def settle() -> None:
    """In a command's process: leave every object that exists now out of the collector's
    passes (`gc.freeze`), after a step that built many long-lived ones (imports, a store
    opened). What of it becomes garbage later is freed by reference counting as usual;
    only cycles among it stay until exit."""
    if _command:
        gc.freeze()


def _at_exit() -> None:
    # The process is ending: a Ctrl-C or SIGTERM now (a user pressing it as the sweep
    # ends) would only print a traceback from this handler and skip the freeze.
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(sig, signal.SIG_IGN)
    for engine in list(_engines):
        with contextlib.suppress(Exception):
            engine.dispose()
    gc.freeze()
