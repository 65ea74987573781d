"""Where a run's MLflow calls are made: now, in the calling process (`Inline`), or in a
writer process of their own (`TrackingWriter`), so that a sweep trial's logging overlaps
the next trial's training on another core instead of adding to it.

The tracker hands either one *ops*: module-level functions ``op(client, *args)`` (see
`tracking.tracker`). `Inline.call` runs one and returns its value. `TrackingWriter.call`
queues it and returns a `Ref` to the value it will have; a later op's arguments may hold
Refs, which the writer replaces by their values. The writer runs ops in the order they
were queued. Ops are grouped by trial: after one fails, the rest of its group is skipped,
and `barrier` asks for the group's outcome (its run id, or what went wrong), which comes
back through `acks`. A trial is told to the study only after its barrier came back, so a
finished trial always has its run (and its model) written.

Threads would not do: a thread running MLflow's Python (SQLAlchemy, YAML, the model files)
holds the interpreter lock that training's Python needs, and made training twice as slow
when tried; a process uses the core that small-batch training leaves idle.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import itertools
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

# How long `close` waits for the writer to finish what was queued.
CLOSE_TIMEOUT = 120.0
# A read of the next op lasts at most a second unless a dead caller left half an op.
ORPHAN_READ = 5.0


@dataclass(frozen=True)
class Ref:
    """The value op number `slot` returns (its attribute `attr` when given), once the
    writer has run it."""

    slot: int
    attr: str | None = None

    def field(self, name: str) -> Ref:
        return Ref(self.slot, name)


@dataclass(frozen=True)
class Failure:
    """Why a group's ops stopped: ``no_space``, ``unavailable`` (the store did not answer)
    or ``error``, and one line."""

    kind: str
    message: str


@dataclass(frozen=True)
class Ack:
    """A group's outcome: the value its barrier asked for, or its failure. `final` is
    False for the word sent at once when an op of the group fails (its barrier still
    answers later)."""

    group: int
    value: Any = None
    failure: Failure | None = None
    final: bool = True


class WriterDied(RuntimeError):
    """The writer process is gone: what it had queued may not be written."""


def classify(err: BaseException) -> Failure:
    from sweeplab.tracking.errors import no_space, unavailable_reason

    full = no_space(err)
    if full is not None:
        return Failure("no_space", full)
    down = unavailable_reason(err)
    if down is not None:
        return Failure("unavailable", down)
    return Failure("error", f"{type(err).__name__}: {err}"[:5000])


class Inline:
    """Each op runs now, in this process; its exceptions are the caller's."""

    def __init__(self, uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self.memo: dict[str, Any] = {}  # what the caller computes once per sink

    def call(self, op: Callable[..., Any], *args: Any) -> Any:
        return op(self.client, *args)


class TrackingWriter:
    """A writer process for the tracking store at `uri` (started at once: it imports MLflow
    while the caller does its own start-up; or the one `prestart` started earlier, if any
    is waiting). With `open_store` False it opens the store only when told (`open`): a
    caller that still has to create a fresh store (its schema migrations) must not race
    the writer's own opening of it. `idle_imports` are modules a later op will need (the
    sweep's plots): imported one by one whenever the writer has nothing to write (a fresh
    store's migrations, a trial that trains), rather than once that op comes (the end of
    the sweep, where the command waits for it)."""

    def __init__(self, uri: str, *, open_store: bool = True,
                 idle_imports: Sequence[str] = ()) -> None:
        self.uri = uri
        self.memo: dict[str, Any] = {}  # what the caller computes once per sink
        self._proc, self._ops, self._acks = _take_prestarted() or _start()
        self._ops.put(("setup", uri, tuple(idle_imports)))
        self._slots = itertools.count()
        self._group: int | None = None
        self._held: list[Ack] = []  # taken off the queue by `check`, for `acks`
        self._syncs = itertools.count(-1, -1)  # sync barriers: groups no trial uses
        if open_store:
            self.open()

    def open(self) -> None:
        """Let the writer open the store (once it exists): before its first op."""
        self._ops.put(("open",))

    @contextlib.contextmanager
    def group(self, number: int) -> Iterator[None]:
        """Ops queued inside belong to group `number` (a trial)."""
        self._group = number
        try:
            yield
        finally:
            self._group = None

    def call(self, op: Callable[..., Any], *args: Any) -> Ref:
        slot = next(self._slots)
        self._ops.put(("call", slot, self._group, op, args))
        return Ref(slot)

    def barrier(self, group: int, value: Any = None) -> None:
        """Ask for group `group`'s outcome once its ops queued so far have run: an `Ack`
        with `value` (a Ref resolved) from `acks`."""
        self._ops.put(("ack", group, value))

    def check(self) -> None:
        """Raise, in the trial that is queueing ops, what stopped its group's ops in the
        writer: OSError(ENOSPC) for a full disk, ConnectionError for a store that does not
        answer, RuntimeError otherwise; so the trial stops now rather than train for a
        run that cannot be written."""
        import errno

        with contextlib.suppress(queue.Empty):
            while True:
                self._held.append(self._acks.get_nowait())
        for ack in self._held:
            if not ack.final and ack.group == self._group and ack.failure is not None:
                f = ack.failure
                if f.kind == "no_space":
                    raise OSError(errno.ENOSPC, f.message)
                if f.kind == "unavailable":
                    raise ConnectionError(f.message)
                raise RuntimeError(f.message)

    def hold(self, acks: list[Ack]) -> None:
        """Put acks back, for the next `acks` call."""
        self._held = acks + self._held

    def acks(self, timeout: float) -> list[Ack]:
        """The final acks that came back, waiting up to `timeout` seconds for the first."""
        got, self._held = self._held, []
        with contextlib.suppress(queue.Empty):
            if not [a for a in got if a.final]:
                got.append(self._acks.get(timeout=timeout))
            while True:
                got.append(self._acks.get_nowait())
        out = [a for a in got if a.final]
        if not out and not self._proc.is_alive():
            raise WriterDied(f"the tracking writer process died (exit code "
                             f"{self._proc.exitcode})")
        return out

    def sync(self, timeout: float = CLOSE_TIMEOUT) -> list[Ack]:
        """Wait until everything queued so far has run; the acks that came back meanwhile
        (the sync's own excluded)."""
        token = next(self._syncs)
        self.barrier(token)
        got: list[Ack] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ack in self.acks(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
                if ack.group == token:
                    return got
                got.append(ack)
        raise WriterDied(f"the tracking writer did not finish within {timeout:g} s")

    def discard(self) -> None:
        """Stop a writer that was given nothing to write, now (not after its imports)."""
        _kill(self._proc, self._ops, self._acks)

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Let the writer finish what was queued, then stop it."""
        if self._proc.is_alive():
            self._ops.put(("stop",))
            self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        # Ops still buffered for a writer that is gone would hold this process at exit.
        self._ops.cancel_join_thread()
        self._ops.close()
        self._acks.close()


_Process = tuple[Any, Any, Any]  # a writer process, its op queue and its ack queue
_prestarted: _Process | None = None


def prestart() -> None:
    """Start a writer process now, for the next `TrackingWriter` of this process to take
    over. A command that will likely need one (a sweep) calls this before its own imports:
    the writer's start-up (importing MLflow, about two seconds) then runs on another core
    meanwhile, not after them. Stopped at exit if no writer took it over."""
    global _prestarted
    if _prestarted is None:
        _prestarted = _start()
        atexit.register(discard_prestarted)  # before multiprocessing's: it would wait on it


def discard_prestarted() -> None:
    """Stop the writer `prestart` started, if no `TrackingWriter` took it over (a sweep
    that logs from its trials' processes: on Dask, or with sweep.writer=inline)."""
    started = _take_prestarted()
    if started is not None:
        _kill(*started)


def _take_prestarted() -> _Process | None:
    global _prestarted
    started, _prestarted = _prestarted, None
    return started


# multiprocessing's resource tracker (a process started with the first queue, passed this
# process's -W options) warns at its shutdown of every semaphore whose "unregister" did not
# reach it: a process killed, or an exit that raced it (CI saw it after a refused command).
# It unlinks them all the same (its second warning says they were gone already); the
# warnings are noise on a command whose stderr is one line.
QUIET_TRACKER = "ignore::UserWarning:multiprocessing.resource_tracker"


def _start() -> _Process:
    if QUIET_TRACKER not in sys.warnoptions:  # before the tracker starts (the queues)
        sys.warnoptions.append(QUIET_TRACKER)
    ctx = mp.get_context("spawn")  # the caller may hold threads and locks: no fork
    ops, acks = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_serve, args=(ops, acks), name="sweeplab-tracking-writer",
                       daemon=True)
    # Born ignoring Ctrl-C and SIGTERM (an ignored signal stays ignored across exec, and
    # Python then leaves it so): a Ctrl-C to the process group while the writer still
    # imports MLflow would print a traceback from it. The caller stops it with `close`.
    previous = {sig: signal.signal(sig, signal.SIG_IGN)
                for sig in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        proc.start()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return proc, ops, acks


def _kill(proc: Any, ops: Any, acks: Any) -> None:
    proc.kill()
    proc.join(5)
    ops.cancel_join_thread()
    ops.close()
    acks.close()


def _resolve(value: Any, results: dict[int, Any]) -> Any:
    if isinstance(value, Ref):
        got = results[value.slot]
        return getattr(got, value.attr) if value.attr else got
    return value


def _serve(ops: Any, acks: Any) -> None:
    """The writer process: told its store and what to import while idle (``setup``), run
    ops until told to stop, or until the caller is gone (then close the runs it left
    RUNNING as KILLED, so none claims to be running). While no op waits, it imports those
    modules, one by one."""
    # A Ctrl-C or SIGTERM reaches the whole process group; the caller stops its trials and
    # then this writer, which must first write what it was handed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # It draws into files only (the sweep's plots): Agg, whatever $MPLBACKEND says (a
    # backend matplotlib does not know fails every plot at `import matplotlib`). The
    # commands set it already (cli/common.py); a sweep run in-process (a test, a
    # notebook calling sweep_job) does not.
    os.environ["MPLBACKEND"] = "Agg"
    served = _Served()  # the store is opened when the caller says it exists
    parent = mp.parent_process()
    if parent is not None:  # watched from now: a caller gone while this imports ends it
        threading.Thread(target=_watch, args=(parent, served), daemon=True,
                         name="sweeplab-writer-watch").start()
    from threadpoolctl import threadpool_limits

    from sweeplab.tracking.errors import quiet_store_tracebacks
    from sweeplab.tracking.quick_exit import settle, skip_final_collection

    skip_final_collection()
    threadpool_limits(1)  # the trials' BLAS has the other cores

    quiet_store_tracebacks()
    _warm_up()
    settle()  # MLflow imported: its objects out of the collector's passes
    uri = ""  # the store's, from the caller's ``setup``, its first message
    results = served.results
    slots: dict[int | None, list[int]] = {}
    failed: dict[int | None, Failure] = {}
    idle: list[str] = []
    while True:
        # One module at most between two looks at the queue: an op that comes meanwhile
        # waits for that one only.
        if idle and ops.empty():
            _import_quietly(idle.pop(0))
            settle()
            continue
        served.read_since = time.monotonic()
        try:
            msg = ops.get(timeout=1.0)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                served.close_open()
                return
            continue
        finally:
            served.read_since = None
        if msg[0] == "stop":
            _end_now(acks)
            return
        if msg[0] == "setup":
            _, uri, idle_imports = msg
            # MLflow's database store first (0.7 s): opening the store would import it
            database = "://" in uri and not uri.startswith(("http://", "https://", "file:"))
            idle = ["mlflow.store.tracking.sqlalchemy_store"] * database + list(idle_imports)
            continue
        if msg[0] == "open":
            served.inline = served.inline or _open(uri)
            continue
        if msg[0] == "call":
            _, slot, group, op, args = msg
            if group in failed:
                continue
            try:
                inline = served.inline = served.inline or Inline(uri)
                results[slot] = op(inline.client, *(_resolve(a, results) for a in args))
                slots.setdefault(group, []).append(slot)
            except Exception as err:
                failed[group] = classify(err)
                acks.put(Ack(group, failure=failed[group], final=False))
            continue
        _, group, value = msg
        failure = failed.pop(group, None)
        try:
            resolved = _resolve(value, results) if failure is None else None
        except KeyError:  # the op that makes it was skipped
            resolved = None
        acks.put(Ack(group, resolved, failure))
        for slot in slots.pop(group, []):
            results.pop(slot, None)


@dataclass
class _Served:
    """What the writer process holds: its store, the values of the ops it ran, and since
    when it has been waiting for the next op (None while it runs one)."""

    inline: Inline | None = None
    results: dict[int, Any] = field(default_factory=dict)
    read_since: float | None = None

    def close_open(self) -> None:
        if self.inline is not None:
            _close_open(self.inline, self.results)


def _end_now(acks: Any) -> None:
    """End the writer process at once, everything written: its exit handlers (which close
    the store's connections, quick_exit.py), then os._exit, without the interpreter's
    teardown of every module it imported (0.1 s with MLflow and matplotlib, which the
    caller's `close` waits for). Where the exit handlers cannot be run from here (an
    interpreter without `atexit._run_exitfuncs`), this returns, and the process ends as
    usual."""
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is None or mp.parent_process() is None:
        return
    acks.close()
    acks.join_thread()  # every ack put so far reaches the caller
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _watch(parent: Any, served: _Served) -> None:
    """End an orphaned writer stuck in a read. A caller killed while its queue's thread was
    sending an op leaves part of it in the pipe; the read of the rest never returns (this
    process holds the pipe's write end too, so no end of file comes) and the main loop
    never sees that its caller is gone. Once the caller is gone and a read has lasted
    `ORPHAN_READ` seconds, close the runs left open as KILLED and exit. A caller gone
    before the store was opened (killed while the writer still imports) ends it at once."""
    parent.join()  # returns when the caller's process has ended
    if served.inline is None and not served.results:
        os._exit(0)  # nothing opened, nothing to close: not after seconds of imports
    while True:
        since = served.read_since
        if since is not None and time.monotonic() - since > ORPHAN_READ:
            served.close_open()
            os._exit(0)
        time.sleep(0.2)


def _warm_up() -> None:
    """Do now, while the sweep starts, what the first trial's run would otherwise wait for
    before the study is told its result: import MLflow and the ops (seconds), and build
    what MLflow builds when a process saves its first model, the map of installed
    distributions it checks a model's pip requirements against (about a second;
    mlflow.utils.requirements_utils, MLflow 3.17)."""
    import sweeplab.tracking.tracker  # noqa: F401  (MLflow, its pyfunc flavour, the ops)

    # A private helper of MLflow's: another version may not have it, and then the first
    # model pays as before.
    with contextlib.suppress(Exception):
        from mlflow.utils.requirements_utils import _init_packages_to_modules_map

        _init_packages_to_modules_map()


def _import_quietly(name: str) -> None:
    """Import module `name`; a module that cannot be imported is the op's to report."""
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importlib.import_module(name)


def _open(uri: str) -> Inline | None:
    """The store, opened ahead of the first op; None if it cannot be opened now (the first
    op then opens it, and its failure reaches that op's trial as any write's does)."""
    try:
        return Inline(uri)
    except Exception:
        return None


def _close_open(inline: Inline, results: dict[int, Any]) -> None:
    """Close as KILLED the runs started here and still RUNNING (their caller died)."""
    from sweeplab.tracking.tracker import Started, op_close

    for value in list(results.values()):
        if isinstance(value, Started):
            with contextlib.suppress(Exception):
                if inline.client.get_run(value.run_id).info.status == "RUNNING":
                    op_close(inline.client, value.run_id, "interrupted",
                             "its sweep's controller was killed")
