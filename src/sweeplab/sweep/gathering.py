"""Optuna's journal file, with the controller's records gathered into fewer appends.

Optuna's JournalStorage writes each record as its own append (the file lock, the line, an
fsync) and reads the file again after it. A trial's start (its creation, three params, its
controller), its pruning reports (one at every log point) and its end (about ten user
attributes, then its state) were some 25 such appends, and each report's append kept its
worker waiting for the verdict. Here, records nothing reads back at once wait and go with
the next other record, in one append, in their order:

- a trial's pruning reports (its `Trial` keeps them for the pruner, which compares them
  with *finished* trials' reports, and a trial's end goes after them), at most `LINGER`
  seconds, so that a watcher of the journal sees a curve that late;
- within `gathered()`, a trial's params and user attributes (its `Trial` keeps both too),
  until the block ends.

The file holds the same records as before, and stock Optuna reads it. A crash loses at
most the waiting records: reports of trials that were still training (which are retried)
and what a block held, as if the crash had come just before (a trial without its
controller is an orphan: sweep/study.py).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._storage import JournalOperation

LINGER = 1.0  # seconds a report may wait for the next record

REPORTS = frozenset({JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE})
IN_BLOCKS = REPORTS | {JournalOperation.SET_TRIAL_PARAM, JournalOperation.SET_TRIAL_USER_ATTR}


class GatheringJournalFile(JournalFileBackend):
    """JournalFileBackend whose deferrable records wait (in one list, for every thread)."""

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        self._setup()

    def _setup(self) -> None:
        self._hold = threading.Lock()  # every append goes under it: one order for all
        self._held: list[dict[str, Any]] = []
        self._timer: threading.Timer | None = None
        self._local = threading.local()  # per thread: its block depth; a read to skip

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_hold", "_held", "_timer", "_local"):
            del state[key]  # waiting records stay with the process that wrote them
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup()

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        local = self._local
        local.skip_read = False
        deferrable = IN_BLOCKS if getattr(local, "depth", 0) else REPORTS
        with self._hold:
            if all(log["op_code"] in deferrable for log in logs):
                self._held.extend(logs)
                # JournalStorage reads the file after each write: nothing new is there
                local.skip_read = True
                if self._timer is None:
                    # not a daemon: a process that ends waits for it, and loses nothing
                    self._timer = threading.Timer(LINGER, self._flush_in_background)
                    self._timer.start()
                return
            held = self._held
            self._held = []
            try:
                super().append_logs(held + logs)
            except BaseException:
                self._held = held  # tried again with the next append, which says why
                raise

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        if getattr(self._local, "skip_read", False):
            self._local.skip_read = False
            return iter(())  # the next read catches up
        return super().read_logs(log_number_from)

    def flush(self) -> None:
        """Write what waits, now."""
        with self._hold:
            held, self._held = self._held, []
            if held:
                try:
                    super().append_logs(held)
                except BaseException:
                    self._held = held
                    raise

    def _flush_in_background(self) -> None:
        with self._hold:
            self._timer = None
        # A full disk refuses them here too: the controller's next write says so.
        with contextlib.suppress(OSError):
            self.flush()

    @contextlib.contextmanager
    def gathered(self) -> Iterator[None]:
        """Hold this thread's params and user attributes too, until the block ends."""
        local = self._local
        local.depth = getattr(local, "depth", 0) + 1
        try:
            yield
        except BaseException:
            local.depth -= 1
            if not local.depth:
                # the block's own error is the one to see: a full disk may refuse these too
                with contextlib.suppress(OSError):
                    self.flush()
            raise
        local.depth -= 1
        if not local.depth:
            self.flush()


class GatheringJournal(JournalStorage):
    """Optuna's JournalStorage on a GatheringJournalFile at `path`."""

    def __init__(self, path: str) -> None:
        self._file = GatheringJournalFile(path)
        super().__init__(self._file)

    def gathered(self) -> contextlib.AbstractContextManager[None]:
        return self._file.gathered()

    def flush(self) -> None:
        self._file.flush()
