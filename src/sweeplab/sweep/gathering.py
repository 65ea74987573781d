"""Optuna's journal file, with the controller's records gathered into fewer appends.

Optuna's JournalStorage writes each record as its own append (the file lock, the line, an
fsync) and reads the file again after it. A trial's start (its creation, three params, its
controller) and its end (about ten user attributes, then its state) were 15 such appends,
half of the controller's own CPU per trial. Within `gathered()`, the records nothing reads
back before the block ends, a trial's params and user attributes (Optuna's `Trial` keeps
its own copy of both), wait in the writing thread and go with its next other record, or at
the block's end, in one append, in their order. The file holds the same records as
before; a crash inside a block loses at most that block's waiting records, as if it had
come just before them (a trial without its controller is an orphan: sweep/study.py).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._storage import JournalOperation

# What a trial's own `Trial` object caches, and no other record's replay depends on.
DEFERRABLE = frozenset({JournalOperation.SET_TRIAL_PARAM, JournalOperation.SET_TRIAL_USER_ATTR})


class GatheringJournalFile(JournalFileBackend):
    """JournalFileBackend whose appends wait, within `gathered()`, in the writing thread."""

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_local"]  # a thread's records stay with it
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        held: list[dict[str, Any]] | None = getattr(self._local, "held", None)
        self._local.skip_read = False
        if held is None:
            super().append_logs(logs)
            return
        held.extend(logs)
        if all(log["op_code"] in DEFERRABLE for log in logs):
            # JournalStorage reads the file after each write: nothing new is there to read
            self._local.skip_read = True
            return
        self._local.held = []
        super().append_logs(held)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        if getattr(self._local, "skip_read", False):
            self._local.skip_read = False
            return iter(())  # the next read catches up
        return super().read_logs(log_number_from)

    @contextlib.contextmanager
    def gathered(self) -> Iterator[None]:
        """Hold this thread's deferrable records until the block ends (nested: the outer)."""
        if getattr(self._local, "held", None) is not None:
            yield
            return
        self._local.held = []
        try:
            yield
        except BaseException:
            # the block's own error is the one to see: a full disk may refuse these too
            with contextlib.suppress(OSError):
                self._flush()
            raise
        self._flush()

    def _flush(self) -> None:
        held, self._local.held = self._local.held, None
        self._local.skip_read = False
        if held:
            super().append_logs(held)


class GatheringJournal(JournalStorage):
    """Optuna's JournalStorage on a GatheringJournalFile at `path`."""

    def __init__(self, path: str) -> None:
        self._file = GatheringJournalFile(path)
        super().__init__(self._file)

    def gathered(self) -> contextlib.AbstractContextManager[None]:
        return self._file.gathered()
