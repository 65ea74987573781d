"""Ctrl-C and SIGTERM at safe points: inside `deferred_interrupt()`, SIGINT or SIGTERM asks
to stop and the code stops where it checks. SIGTERM is what a batch scheduler sends on
pre-emption or at a time limit; it is treated as Ctrl-C, with exit code 143.

Python raises KeyboardInterrupt wherever the main thread happens to be, and in a sweep that
is often inside an MLflow write. A transaction cut there can keep the SQLite store locked
for the rest of the process, and the sweep's summary then fails with "database is locked"
instead of being written. So the first Ctrl-C only sets `requested`; the sweep raises
KeyboardInterrupt itself at the next log point of the running trial or between trials. A
second Ctrl-C raises at once, for a user who does not want to wait.

A standard stream whose reader went away (`make sweep | head`) asks to stop the same way
(`request_stop`, from the stream's guard in cli/common.py), with its own reason and exit
code.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType

from sweeplab.names import ExitCode
from sweeplab.train.callbacks import Callback


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's pre-emption or time limit), handled as Ctrl-C is: the
    run stops at a safe point and is closed as KILLED; the command exits with 143."""


class OutputClosed(KeyboardInterrupt):
    """The reader of this process's output went away (a pipe into `head`): handled as
    Ctrl-C is, with exit code 141 (128 + SIGPIPE, as for a command a closed pipe kills)."""


def _raise_for(signum: int) -> None:
    if signum == signal.SIGTERM:
        raise Terminated
    if signum == signal.SIGPIPE:
        raise OutputClosed
    raise KeyboardInterrupt


# Why the output stopped taking writes, when it was not its reader going away (a full
# disk under `> sweep.log`, say): set by the stream's guard, once.
output_failure: str | None = None


def interruption(err: BaseException) -> str:
    """What stopped the program, for a run's reason and the command's last line."""
    if isinstance(err, Terminated):
        return "terminated (SIGTERM)"
    if isinstance(err, OutputClosed):
        return output_failure or "its output was closed (the reader of a pipe went away)"
    return "interrupted (Ctrl-C)"


def exit_code(err: BaseException) -> int:
    """The command's exit code for what stopped it: 143 (SIGTERM), 141 (its output closed),
    130 (Ctrl-C)."""
    if isinstance(err, Terminated):
        return ExitCode.TERMINATED
    if isinstance(err, OutputClosed):
        return ExitCode.OUTPUT_CLOSED
    return ExitCode.INTERRUPTED


# After a second Ctrl-C (or SIGTERM) raised, further ones are ignored this long: what the
# raise started (closing the parent run as KILLED) takes well under it.
SECOND_SIGNAL_GRACE = 2.0

# The StopRequests of the `deferred_interrupt` blocks open now, innermost last.
_open: list[StopRequest] = []


def request_stop(signum: int) -> None:
    """Ask the innermost open `deferred_interrupt` to stop as if signal `signum` came, unless
    a stop was asked already; nothing outside one."""
    if _open and _open[-1].signum is None:
        _open[-1].signum = signum


class StopRequest:
    """Whether Ctrl-C or SIGTERM arrived since `deferred_interrupt()` began, and which (or
    SIGPIPE's number for an output closed: `request_stop`)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._raised_at = -SECOND_SIGNAL_GRACE  # when a second signal last raised

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """Raise KeyboardInterrupt (Terminated for SIGTERM, OutputClosed for a closed
        output) if a stop was requested: call it where stopping is safe."""
        if self.signum is not None:
            _raise_for(self.signum)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            return
        # The second one: at once. Another within the grace is the same impatience, and
        # raising again would cut the handling of the first (closing the runs it cut),
        # with a traceback.
        now = time.monotonic()
        if now - self._raised_at >= SECOND_SIGNAL_GRACE:
            self._raised_at = now
            _raise_for(signum)


@contextmanager
def deferred_interrupt() -> Iterator[StopRequest]:
    """Defer the first SIGINT or SIGTERM to `StopRequest.check()`; restores the old
    handlers after.

    Outside the main thread (where Python cannot install handlers) signals are left as is.
    """
    stop = StopRequest()
    _open.append(stop)
    try:
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
    finally:
        _open.remove(stop)


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
