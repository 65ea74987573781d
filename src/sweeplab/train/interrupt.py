"""Ctrl-C at safe points: inside `deferred_interrupt()`, SIGINT asks to stop and the code
stops where it checks.

Python raises KeyboardInterrupt wherever the main thread happens to be, and in a sweep that
is often inside an MLflow write. A transaction cut there can keep the SQLite store locked
for the rest of the process, and the sweep's summary then fails with "database is locked"
instead of being written. So the first Ctrl-C only sets `requested`; the sweep raises
KeyboardInterrupt itself at the next log point of the running trial or between trials. A
second Ctrl-C raises at once, for a user who does not want to wait.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType

from sweeplab.train.callbacks import Callback


class StopRequest:
    """Whether Ctrl-C was pressed since `deferred_interrupt()` began."""

    def __init__(self) -> None:
        self.requested = False

    def check(self) -> None:
        """Raise KeyboardInterrupt if a stop was requested: call it where stopping is safe."""
        if self.requested:
            raise KeyboardInterrupt

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


@contextmanager
def deferred_interrupt() -> Iterator[StopRequest]:
    """Defer the first SIGINT to `StopRequest.check()`; restores the old handler after.

    Outside the main thread (where Python cannot install handlers) Ctrl-C is left as is.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, stop._on_sigint)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


class StopOnRequest(Callback):
    """Ends a run with KeyboardInterrupt at its next log point once a stop is requested."""

    def __init__(self, stop: StopRequest) -> None:
        self.stop = stop

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.stop.check()
