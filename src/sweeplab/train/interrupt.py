"""Ctrl-C and SIGTERM at safe points: inside `deferred_interrupt()`, SIGINT or SIGTERM asks
to stop and the code stops where it checks. SIGTERM is what a batch scheduler sends on
pre-emption or at a time limit; it is treated as Ctrl-C, with exit code 143.

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


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's pre-emption or time limit), handled as Ctrl-C is: the
    run stops at a safe point and is closed as KILLED; the command exits with 143."""


def _raise_for(signum: int) -> None:
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


class StopRequest:
    """Whether Ctrl-C or SIGTERM arrived since `deferred_interrupt()` began, and which."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """Raise KeyboardInterrupt (Terminated for SIGTERM) if a stop was requested: call it
        where stopping is safe."""
        if self.signum is not None:
            _raise_for(self.signum)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second one: at once
            _raise_for(signum)
        self.signum = signum


@contextmanager
def deferred_interrupt() -> Iterator[StopRequest]:
    """Defer the first SIGINT or SIGTERM to `StopRequest.check()`; restores the old
    handlers after.

    Outside the main thread (where Python cannot install handlers) signals are left as is.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, stop._on_signal)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises `Terminated` (a KeyboardInterrupt) wherever the program is, as Ctrl-C
    does, so that `with` blocks close what they opened; the old handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StopOnRequest(Callback):
    """Ends a run with KeyboardInterrupt at its next log point once a stop is requested."""

    def __init__(self, stop: StopRequest) -> None:
        self.stop = stop

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.stop.check()
