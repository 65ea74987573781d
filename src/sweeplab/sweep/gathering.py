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
  until the block ends (or `LINGER` passes).

Reading one trial back (`study.tell` does, and takes a pruned trial's value from it)
writes that trial's waiting records first; a block's end reads back what it wrote, so a
record Optuna refuses (an attribute of a finished trial) raises there, and a record JSON
cannot hold raises where it is made. The file holds the same records as before, and stock
Optuna reads it. A crash loses at most the waiting records: reports of trials that were
still training (which are retried) and what a block held, as if the crash had come just
before (a trial without its controller is an orphan: sweep/study.py).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import FrozenTrial

LINGER = 1.0  # seconds a report may wait for the next record
MAX_REFUSED = 1000  # records of one block read back after Optuna refused one

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
        if all(log["op_code"] in deferrable for log in logs):
            for log in logs:  # what JSON cannot hold fails here, as it would unheld
                json.dumps(log)
            with self._hold:
                self._held.extend(logs)
                if self._timer is None:
                    self._timer = threading.Timer(LINGER, self._flush_in_background)
                    # not a daemon, even when a daemon thread reports: a process that
                    # ends waits for it, and loses nothing
                    self._timer.daemon = False
                    self._timer.start()
            # JournalStorage reads the file after each write: nothing new is there
            local.skip_read = True
            return
        with self._hold:
            self._write(logs)

    def _write(self, logs: list[dict[str, Any]]) -> None:
        """Append what waits, then `logs`, in one go (under `_hold`)."""
        held, self._held = self._held, []
        try:
            super().append_logs(held + logs)
        except OSError:
            self._held = held  # tried again with the next append, which says why
            raise
        if self._timer is not None:  # nothing waits now: the next report starts its own
            self._timer.cancel()
            self._timer = None

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        if getattr(self._local, "skip_read", False):
            self._local.skip_read = False
            return iter(())  # the next read catches up
        return super().read_logs(log_number_from)

    def flush(self, trial_id: int | None = None) -> None:
        """Write what waits now (with `trial_id`: only if some of it is that trial's)."""
        with self._hold:
            if self._held and (trial_id is None
                               or any(log.get("trial_id") == trial_id for log in self._held)):
                self._write([])

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

    @contextlib.contextmanager
    def gathered(self) -> Iterator[None]:
        try:
            with self._file.gathered():
                yield
        except BaseException:
            self._read_back(quiet=True)  # the block's own error is the one to see
            raise
        self._read_back()

    def _read_back(self, quiet: bool = False) -> None:
        """Read what this thread wrote: a record Optuna refuses (an attribute of a finished
        trial, a param of another distribution) raises here, not in a later call. Optuna
        raises at the first one: the rest are read on, and the first raised."""
        refused: Exception | None = None
        with self._thread_lock:
            for _ in range(MAX_REFUSED):
                read = self._replay_result.log_number_read
                try:
                    self._sync_with_backend()
                    break
                except Exception as err:
                    refused = refused or err
                    if self._replay_result.log_number_read == read:
                        break  # not a record refused but the file unread: no use again
        if refused is not None and not quiet:
            raise refused

    def get_trial(self, trial_id: int) -> FrozenTrial:
        # The pruned trial's value is read from its reports: none may be waiting.
        self._file.flush(trial_id)
        return super().get_trial(trial_id)

    def flush(self) -> None:
        self._file.flush()
