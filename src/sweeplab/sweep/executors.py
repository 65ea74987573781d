"""Where a sweep's trials run: in the controller's own process, or on a Dask cluster.

Both take a `TrialTask` with its live Optuna trial and hand back `Finished` outcomes; only
the controller touches the study. On Dask, a trial's pruning reports travel to the
controller through a Dask queue, and the verdict back through a queue of the trial's own
(a few milliseconds a log point on loopback), so any pruner works as it does in-process.
Both puts are sent without waiting for the scheduler's answer (`_send`): the worker waits
for its verdict anyway, and the controller's one thread that serves every worker's reports
is then busy for the pruner's own work only, not for a round trip per report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import Trial

from sweeplab.config import to_config
from sweeplab.data import Dataset
from sweeplab.names import RunStatus
from sweeplab.sweep.worker import (
    DiskFull,
    SweepAborted,
    TrackingUnavailable,
    TrialOutcome,
    TrialStopped,
    TrialTask,
    execute,
)
from sweeplab.tracking.writer import Ack, TrackingWriter, WriterDied
from sweeplab.train import Callback, DataKey, data_key, load_data
from sweeplab.train.interrupt import StopRequest

# How long a worker waits for the controller's verdict before it takes the controller
# for gone and stops the trial.
VERDICT_TIMEOUT = 120.0
# How often a worker waiting for a verdict looks whether its task is still wanted: a
# controller killed (SIGKILL) leaves its tasks running on a user's cluster, where Dask
# marks them cancelled once the scheduler has dropped the controller's client.
VERDICT_POLL = 1.0
# Why a task stops when Dask has cancelled it.
RELEASED = "lost its controller (Dask cancelled its task: the controller is gone or gave it up)"
# The verdict that stops a trial now (the sweep is stopping), besides prune or go on.
STOP = "stop"
# How often a task with no pruner asks whether the sweep is stopping (at a log point).
STOP_CHECK_SECONDS = 0.5
# How long a controller that lost its scheduler lets the workers end the runs they were
# ending (their last writes) before it closes the runs left open.
SETTLE_SECONDS = 5.0
# How long a stopping sweep waits for its running trials to close their runs.
STOP_GRACE = 30.0
# How long the scheduler at sweep.cluster has to say it is one.
SCHEDULER_TIMEOUT = 5.0
# Why a trial whose worker died is queued again.
WORKER_DIED = "its Dask worker died"


class SchedulerLost(SweepAborted):
    """The Dask scheduler stopped answering mid-sweep: the trials out are queued again and
    the sweep stops, to be resumed once the scheduler is back."""

    reason = "its Dask scheduler stopped answering"


class WorkerLost(Exception):
    """Dask ran a trial's task a second time after the worker running it died (a scheduler
    started by the user allows 3 such reruns): the first attempt's run is lost, and the
    controller, not Dask, decides what runs next."""


def killed_worker(err: BaseException | None) -> bool:
    """Whether a task's error says a Dask worker died under it (not that the task raised):
    its own, or the only one holding its data, which cancels the task."""
    from concurrent.futures import CancelledError

    from distributed import KilledWorker

    return isinstance(err, KilledWorker | WorkerLost | CancelledError)


@dataclass
class Finished:
    """A trial that came back: its outcome, or the error that stopped it."""

    number: int
    outcome: TrialOutcome | None = None
    error: BaseException | None = None


@dataclass
class InProcess:
    """Trials one at a time in the controller's process (JOBS=1): debuggable, no cluster.

    With a tracking `writer`, a trial's logging is written by that process while the next
    trial trains: two trials are out at once, one training and one being written, and a
    trial comes back (to be told to the study) once the writer has written its run."""

    stop: StopRequest
    writer: TrackingWriter | None = None
    # whether the next trial may start before the last one is told (a grid sampler would
    # draw the point still being written a second time)
    overlap: bool = True
    where: str = "this process"
    # the controller's hand-back, to tell a trial whose run is written while the next one
    # trains (at its log points) rather than after it
    tell: Callable[[Finished], None] | None = None
    _done: list[Finished] = field(default_factory=list)
    _writing: dict[int, Finished] = field(default_factory=dict)
    _cache: dict[DataKey, Dataset] = field(default_factory=dict)

    @property
    def slots(self) -> int:
        return 2 if self.writer is not None and self.overlap else 1

    @property
    def busy(self) -> int:
        return len(self._done) + len(self._writing)

    def submit(self, task: TrialTask, trial: Trial) -> None:
        def report(step: int, value: float) -> bool:
            trial.report(value, step)
            return trial.should_prune()

        if self.writer is None:
            self._done.append(Finished(task.number, execute(task, report, self.stop,
                                                            self._cache)))
            return
        with self.writer.group(task.number):
            outcome = execute(task, report, self.stop, self._cache, writer=self.writer,
                              also=(_TellWritten(self),))
        self._writing[task.number] = Finished(task.number, outcome)
        run = outcome.pending_run
        self.writer.barrier(task.number, run.field("run_id") if run is not None else None)

    def wait(self, timeout: float) -> list[Finished]:
        done, self._done = self._done, []
        if self.writer is not None and self._writing:
            try:
                done += self._take(self.writer.acks(timeout=0 if done else timeout))
            except WriterDied as err:
                raise TrackingUnavailable(f"{err}; run the same command to resume") from None
        return done

    def _take(self, acks: list[Ack]) -> list[Finished]:
        out = []
        for ack in acks:
            f = self._writing.pop(ack.group, None)
            if f is None or f.outcome is None:
                continue
            f.outcome.pending_run = None
            if ack.failure is None:
                f.outcome.run_id = ack.value
            elif ack.failure.kind == "no_space":
                f = Finished(f.number, error=DiskFull(
                    f"no space left on the device while trial {f.number}'s run was written "
                    f"({ack.failure.message}; the tracking store is {self.writer.uri}); "
                    f"free space, then run the same command to resume"))
            elif ack.failure.kind == "unavailable":
                f = Finished(f.number, error=TrackingUnavailable(
                    f"the tracking store {self.writer.uri} stopped answering while trial "
                    f"{f.number}'s run was written ({ack.failure.message}); start it "
                    f"again, then run the same command to resume"))
            else:
                f.outcome.status, f.outcome.values = RunStatus.ERROR, None
                f.outcome.reason = f"its run could not be logged: {ack.failure.message}"
            out.append(f)
        return out

    def tell_written(self) -> None:
        """Hand the trials whose runs are written (without a failure: those stop the sweep,
        from `wait`) to the controller now."""
        if self.writer is None or self.tell is None or not self._writing:
            return
        try:
            acks = self.writer.acks(timeout=0)
        except WriterDied:
            return  # `wait` says so
        for f in self._take([a for a in acks if a.failure is None]):
            self.tell(f)
        self.writer.hold([a for a in acks if a.failure is not None])

    def drain(self) -> list[Finished]:
        """Wait for the writer to write what it holds; the trials that came back."""
        done, self._done = self._done, []
        if self.writer is not None and self.writer.alive:
            with contextlib.suppress(WriterDied):
                done += self._take(self.writer.sync())
        return done

    def stop_all(self) -> None:
        """Nothing runs here between calls: a trial in this process stops by itself."""

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _TellWritten(Callback):
    """At each log point of the trial training now, tell the trials written meanwhile."""

    def __init__(self, pool: InProcess) -> None:
        self.pool = pool

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.pool.tell_written()


class _StopWhenTold(Callback):
    """At the log points of a task without a pruner (a confirmation replicate, or a trial
    with sweep.pruner=none), ask the controller whether the sweep is stopping: without it,
    such a task would train to its end after Ctrl-C, and its worker be closed under it.
    At most every STOP_CHECK_SECONDS: a round trip at each of a long full-batch run's
    thousands of log points doubled its time (a hostile review measured it)."""

    def __init__(self, report: Callable[[int, float | None], bool], last_step: int) -> None:
        self.report, self.last_step = report, last_step
        self.last = time.monotonic()

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        # Always at the last step: a run the controller has closed (the sweep stopped
        # meanwhile) must not then end FINISHED under its KILLED.
        if step >= self.last_step or time.monotonic() - self.last >= STOP_CHECK_SECONDS:
            self.report(step, None)  # raises TrialStopped when the sweep stops
            self.last = time.monotonic()


def run_on_worker(task: TrialTask, token: str, data: Dataset, attempt: str,
                  channel: int | None = None) -> TrialOutcome:
    """The Dask task: run `task` on `data` (Dask hands the controller's scattered dataset
    over, once per worker), asking the controller at every log point whether to prune (or,
    without a pruner, whether the sweep is stopping). `channel` names the task to the
    controller's verdict server (the trial's number unless given: replicates of one trial
    run at once, each on a channel of its own). Runs at most once per `attempt`: a rerun by
    Dask raises WorkerLost at once."""
    from distributed import Event, Queue, get_worker

    started = Event(attempt)
    if started.is_set():
        raise WorkerLost(WORKER_DIED)
    started.set()
    channel = task.number if channel is None else channel
    reports = Queue(f"sweeplab-reports-{token}")
    verdicts = Queue(f"sweeplab-verdict-{token}-{channel}")
    worker = get_worker()
    key = worker.get_current_task()

    def report(step: int, value: float | None) -> bool:
        try:
            _send(reports.client, reports.name,
                  (channel, step, None if value is None else float(value)))
            verdict = _verdict(verdicts.client, verdicts.name,
                               lambda: _cancelled(worker, key))
        except TrialStopped:
            raise
        except TimeoutError:
            raise TrialStopped(f"lost its controller (no verdict within "
                               f"{VERDICT_TIMEOUT:g} s)") from None
        except OSError as err:  # CommClosedError among them: the scheduler is gone
            raise TrialStopped(f"lost the Dask scheduler ({type(err).__name__})") from None
        except Exception as err:
            raise TrialStopped(f"lost its controller ({type(err).__name__})") from None
        if verdict == STOP:
            raise TrialStopped("stopped by its controller")
        return bool(verdict)

    last_step = int(task.config["train"]["epochs"]) - 1
    also = (_StopWhenTold(report, last_step),) if task.prune_metric is None else ()
    try:
        outcome = execute(task, report, None, data=data, also=also)
    except TrialStopped as stopped:  # the run is closed as KILLED; not an error of Dask's
        outcome = TrialOutcome(task.number, RunStatus.INTERRUPTED, str(stopped))
    outcome.worker = str(get_worker().name)
    return outcome


def _verdict(client: Any, queue: str, cancelled: Callable[[], bool]) -> Any:
    """The next item of Dask queue `queue` (the trial's verdict), waited for up to
    `VERDICT_TIMEOUT` seconds (then TimeoutError), looking every `VERDICT_POLL` seconds
    whether the task was `cancelled` (then TrialStopped). The get runs on `client`'s event
    loop, without a timeout of its own on the scheduler, which logs a traceback for every
    get that times out there; one given up here is ended with an item of no meaning."""

    async def get() -> Any:
        record = await client.scheduler.queue_get(name=queue)
        return record["value"]  # sweeplab puts plain values, never futures

    fut = asyncio.run_coroutine_threadsafe(get(), client.loop.asyncio_loop)
    deadline = time.monotonic() + VERDICT_TIMEOUT
    while True:
        try:
            return fut.result(timeout=VERDICT_POLL)
        except TimeoutError:
            if fut.done():  # a verdict just in, or the get failed
                return fut.result()
            gone = cancelled()
            if gone or time.monotonic() >= deadline:
                fut.cancel()
                _send(client, queue, None)  # the scheduler's pending get returns
                if gone:
                    raise TrialStopped(RELEASED) from None
                raise


def _cancelled(worker: Any, key: Any) -> bool:
    """Whether Dask no longer wants task `key` on `worker`: released by the scheduler (its
    client, the controller, gone), the worker marks it cancelled and lets it run on."""
    ts = worker.state.tasks.get(key)
    return ts is None or ts.state == "cancelled"


def _send(client: Any, queue: str, item: Any) -> None:
    """Put `item` on the Dask queue named `queue` (which exists already) from `client`'s
    event loop, without waiting for the scheduler to take it. A put that fails (the
    scheduler gone) is dropped: whoever waits for an answer to it times out, or loses the
    scheduler itself."""

    async def put() -> None:
        with contextlib.suppress(Exception):
            await client.scheduler.queue_put(name=queue, data=item)

    client.loop.add_callback(put)


def probe_scheduler(address: str, timeout: float = SCHEDULER_TIMEOUT) -> None:
    """Raise OSError unless a Dask scheduler answers at `address` within `timeout` seconds
    (Client's own timeout does not bound the handshake: another server there hangs it)."""
    import asyncio

    from distributed.core import rpc

    async def identity() -> dict[str, Any]:
        scheduler = rpc(address, timeout=timeout)
        try:
            return await asyncio.wait_for(scheduler.identity(), timeout)
        finally:
            await scheduler.close_rpc()

    try:
        kind = asyncio.run(identity()).get("type")
    except TimeoutError:
        raise OSError(f"something listens there but did not answer as a Dask scheduler "
                      f"within {timeout:g} s (is it the scheduler's port, 8786 by default, "
                      f"not its dashboard's?)") from None
    if kind != "Scheduler":
        raise OSError(f"a Dask {kind} answers there, not a scheduler")


def _forkserver_ignoring_ctrl_c() -> None:
    """Start multiprocessing's fork server now (once per process), born ignoring SIGINT: the
    processes it forks keep the signal handlers it was started with, so a LocalCluster's
    workers forked from it ignore a terminal's Ctrl-C from their first instruction. (Spawned
    workers, Dask's default, start with Python's own handler and, still importing when a
    Ctrl-C came, died of it: "Nanny failed to start", a traceback, exit 1, before the
    IgnoreCtrlC plugin could reach them.) SIGINT is ignored here only while the server
    starts, a few milliseconds; from another thread than the main one, nothing is done."""
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        return
    handlers = {sig: signal.signal(sig, signal.SIG_IGN)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        forkserver.ensure_running()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def start_local_cluster(n_jobs: int) -> Any:
    """A LocalCluster of `n_jobs` single-threaded worker processes on 127.0.0.1, forked
    from a fork server that ignores Ctrl-C (`_forkserver_ignoring_ctrl_c`)."""
    import dask
    from distributed import LocalCluster

    _forkserver_ignoring_ctrl_c()
    # A worker that dies fails its trial at once (the controller queues it again) instead
    # of Dask rerunning it elsewhere.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.worker.multiprocessing-method": "forkserver"}):
        # Workers log at CRITICAL only: what fails a trial comes back with it, and a worker
        # still importing when the cluster closes (a Ctrl-C at start-up) printed its lost
        # heartbeats as tracebacks.
        # No dashboard; the scheduler's HTTP routes (health, metrics), which it serves
        # all the same, on a free loopback port: on 8787 they warned ("Port 8787 is
        # already in use") when two sweeps ran at once.
        return LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True,
                            host="127.0.0.1", dashboard_address=None,
                            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                            silence_logs=logging.CRITICAL)


def _warm_up() -> None:
    import mlflow.pyfunc
    import mlflow.tracking  # noqa: F401

    import sweeplab.sweep.worker  # noqa: F401


class DaskPool:
    """Trials on Dask workers: a LocalCluster of `n_jobs` single-threaded worker processes
    started here, or the workers of the scheduler at `address`."""

    def __init__(self, n_jobs: int, address: str | None) -> None:
        from distributed import Client

        # Dask narrates every worker's start and stop at INFO, which Hydra's logging prints.
        logging.getLogger("distributed").setLevel(logging.WARNING)

        self.token = uuid.uuid4().hex[:12]
        self.cluster = None
        if address is None:
            self.cluster = start_local_cluster(n_jobs)
            self.client = Client(self.cluster)
            # Its scheduler, in this process, times every garbage collection from a gc
            # callback: a second Ctrl-C landing in it was printed as "Exception ignored"
            # and lost, and once broke an import under way. It only logs long pauses.
            from distributed.gc import disable_gc_diagnosis

            disable_gc_diagnosis(force=True)
            from sweeplab.sweep.dask_plugins import IgnoreCtrlC

            self.client.register_plugin(IgnoreCtrlC())
            self.where = f"a local Dask cluster of {n_jobs} worker processes"
        else:
            probe_scheduler(address)
            self.client = Client(address, timeout=SCHEDULER_TIMEOUT)
            self.where = f"the Dask cluster of the scheduler at {address}"
        self.slots = n_jobs if address is None else max(1, sum(self.client.nthreads().values()))
        # Imports take a worker seconds (MLflow, SQLAlchemy): done now, in the background,
        # while the controller opens the study and the parent run.
        self._warm = [self.client.submit(_warm_up, workers=[w], pure=False)
                      for w in self.client.scheduler_info()["workers"]]
        self._futures: dict[Any, int] = {}
        self._attempts: dict[int, str] = {}  # each trial's attempt, an Event on the scheduler
        self._data: dict[DataKey, Any] = {}  # each dataset, scattered once
        self._stopping = False
        self._trials: dict[int, Trial] = {}
        self._server = threading.Thread(target=self._serve_reports, name="sweeplab-pruner",
                                        daemon=True)
        self._server.start()

    @property
    def busy(self) -> int:
        return len(self._futures)

    def submit(self, task: TrialTask, trial: Trial | None, channel: int | None = None
               ) -> None:
        """Run `task` on a worker; it comes back from `wait` as number `channel` (the
        task's number unless given). Its reports go to `trial`'s pruner; without a trial
        (a replicate) they only hear whether the sweep is stopping."""
        number = task.number if channel is None else channel
        key = task.data or data_key(to_config(task.config))
        # Loaded here, where data.dir is, and sent to the workers: to every one of them, so
        # that a worker that dies takes no dataset with it; sent again if one was lost
        # even so (its only holders died).
        if key not in self._data or self._data[key].status != "finished":
            data = load_data(to_config(task.config))
            try:
                self._data[key] = self.client.scatter(data, hash=False, broadcast=True)
            except OSError as err:  # TimeoutError too: the scheduler is gone
                raise self._lost(err) from None
        if trial is not None:
            self._trials[number] = trial
        name = f"sweeplab-trial-{number}-{uuid.uuid4().hex[:8]}"
        self._attempts[number] = attempt = f"sweeplab-started-{name}"
        fut = self.client.submit(run_on_worker, task, self.token, self._data[key], attempt,
                                 number, key=name, pure=False)
        self._futures[fut] = number

    def wait(self, timeout: float) -> list[Finished]:
        from distributed import wait
        from distributed.client import FuturesCancelledError

        try:
            done, _ = wait(list(self._futures), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return []
        except FuturesCancelledError:
            if self.client.status != "running":  # the scheduler is gone: every task with it
                raise self._lost("the connection to it was lost") from None
            done = {fut for fut in self._futures if fut.done()}  # data died with its worker
        from distributed import Event

        out = []
        for fut in done:
            number = self._futures.pop(fut)
            self._trials.pop(number, None)
            try:
                out.append(Finished(number, fut.result()))
            except Exception as err:  # the worker died, or the task raised
                out.append(Finished(number, error=err))
            fut.release()  # a worker dying later must not make Dask compute it again
            try:
                Event(self._attempts.pop(number), client=self.client).clear()
            except OSError as err:
                raise self._lost(err) from None
        return out

    def _lost(self, err: BaseException | str) -> SchedulerLost:
        # said here, in one line: Dask's own "Failed to reconnect" would follow it
        logging.getLogger("distributed.client").setLevel(logging.CRITICAL)
        why = err if isinstance(err, str) else \
            str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        return SchedulerLost(f"the Dask scheduler stopped answering ({why}; trials ran on "
                             f"{self.where}); start it (and its workers) again, then run the "
                             f"same command to resume")

    def drain(self) -> list[Finished]:
        """Trials on Dask log themselves: nothing is held here."""
        return []

    def stop_all(self, grace: float = STOP_GRACE) -> None:
        """Stop every trial still out: each stops at its next log point (its run closed as
        KILLED) and is waited for up to `grace` seconds; then what is left is cancelled."""
        from distributed import wait
        from distributed.client import FuturesCancelledError

        self._stopping = True
        if self._futures and self.client.status != "running":
            # The scheduler is gone, and the workers with a task may still be ending its
            # run: given time to, they end it before the controller closes what is left
            # (a close between their last writes left a FINISHED run tagged interrupted).
            time.sleep(SETTLE_SECONDS)
        deadline = time.monotonic() + grace
        while self.client.status == "running" and time.monotonic() < deadline:
            left = [fut for fut in self._futures if not fut.done()]
            if not left:
                break
            try:
                wait(left, timeout=deadline - time.monotonic())
            except FuturesCancelledError:  # one cancelled (its data lost): the others
                continue
            except Exception:  # the time is up, or the scheduler is gone
                break
        with contextlib.suppress(Exception):  # the scheduler may be gone
            self.client.cancel(list(self._futures), force=True)
        self._futures.clear()
        self._trials.clear()

    def close(self) -> None:
        from distributed import Queue

        with contextlib.suppress(Exception):  # the scheduler may be gone already
            Queue(f"sweeplab-reports-{self.token}", client=self.client).put(None)
        self._server.join(timeout=5)
        self.client.close()
        if self.cluster is not None:
            # Every trial is over and its run closed by now: a worker process slow to exit
            # (MLflow's and Dask's own threads) is killed after 4 s, which the nanny logs
            # as a warning the user can do nothing about.
            logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
            self.cluster.close()

    def _serve_reports(self) -> None:
        """Answer the workers' pruning reports with the pruner's verdict, in a thread."""
        from distributed import Queue

        reports = Queue(f"sweeplab-reports-{self.token}", client=self.client)
        while True:
            try:
                item = reports.get()  # `close` puts None
            except Exception:  # the client or the scheduler closed
                return
            if item is None:
                return
            number, step, value = item
            trial = self._trials.get(number)
            verdict: bool | str = False
            if self._stopping:
                verdict = STOP
            elif trial is not None and value is not None:  # None: only "go on?"
                trial.report(value, step)
                verdict = trial.should_prune()
            # the task made its verdict queue before its first report
            _send(self.client, f"sweeplab-verdict-{self.token}-{number}", verdict)
