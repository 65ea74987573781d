"""`python -m sweeplab.sweep`, with clocks around the controller's own work (bench only).

    python -m sweeplab.bench.probe TIMINGS.json [hydra overrides]

runs the sweep exactly as `python -m sweeplab.sweep [overrides]` does, after wrapping the
controller's calls in time.perf_counter (wall) and time.thread_time (the CPU of the
calling thread): per trial, `start_one` (split into Optuna's `ask`, `make_task` and the
executor's `submit`), `finish` (user attributes and `tell`), and the pruning verdicts the
controller's thread serves for it (from a report taken off the Dask queue until the
next is asked for: the pruner's own work, and the verdict handed to the Dask client's
event loop, which sends it without this thread waiting); for the whole sweep, `why_stop`
(the study's tally), `TrialPrinter.poll`, the time spent waiting for workers
(`executor.wait`), the main loop (`Controller.run`) and the process's CPU over it (every
thread: Dask's client included). Nothing in the product is
changed; the wrappers cost microseconds. At exit the figures go to TIMINGS.json.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

PRUNER_THREAD = "sweeplab-pruner"  # DaskPool's verdict server (sweep/executors.py)


class Clocks:
    """Wall and thread-CPU seconds, per trial and section, and per sweep."""

    def __init__(self) -> None:
        self.trials: dict[int, dict[str, list[float]]] = defaultdict(
            lambda: defaultdict(lambda: [0.0, 0.0]))
        self.sweep: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.verdicts: dict[int, int] = defaultdict(int)

    def add(self, where: dict[str, list[float]], key: str, wall: float, cpu: float) -> None:
        where[key][0] += wall
        where[key][1] += cpu

    def as_json(self) -> dict[str, Any]:
        return {"trials": {str(n): dict(v) for n, v in sorted(self.trials.items())},
                "sweep": dict(self.sweep),
                "verdicts": {str(n): k for n, k in sorted(self.verdicts.items())}}


Record = Callable[[tuple, float, float], None]  # (the call's args, wall s, CPU s)


def _timed(fn: Callable[..., Any], record: Record) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        w, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            record(args, time.perf_counter() - w, time.thread_time() - c)
    return wrapper


def install(clocks: Clocks) -> None:
    """Wrap the controller's calls (class attributes and the names the controller module
    looks up), so that the sweep below runs unchanged but timed."""
    import distributed
    import optuna

    from sweeplab.sweep import controller, executors, report

    C = controller.Controller
    # start_one's parts, until its trial number is known
    pending: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])

    def part(name: str) -> Record:
        return lambda _args, wall, cpu: clocks.add(pending, name, wall, cpu)

    def total(name: str) -> Record:
        return lambda _args, wall, cpu: clocks.add(clocks.sweep, name, wall, cpu)

    optuna.Study.ask = _timed(optuna.Study.ask, part("ask"))
    controller.make_task = _timed(controller.make_task, part("make_task"))
    for cls in (executors.DaskPool, executors.InProcess):
        cls.submit = _timed(cls.submit, part("submit"))

    start_one = C.start_one

    @functools.wraps(start_one)
    def timed_start_one(self: Any) -> None:
        before = set(self.live)
        pending.clear()
        w, c = time.perf_counter(), time.thread_time()
        start_one(self)
        wall, cpu = time.perf_counter() - w, time.thread_time() - c
        (number,) = set(self.live) - before
        t = clocks.trials[number]
        for k, (pw, pc) in pending.items():
            clocks.add(t, k, pw, pc)
        # what start_one does besides: the trial's `controller` attribute (a journal op)
        clocks.add(t, "ask", wall - sum(v[0] for v in pending.values()),
                   cpu - sum(v[1] for v in pending.values()))

    C.start_one = timed_start_one
    C.finish = _timed(C.finish, lambda a, w, c: clocks.add(
        clocks.trials[a[1].number], "tell", w, c))
    C.why_stop = _timed(C.why_stop, total("why_stop"))
    report.TrialPrinter.poll = _timed(report.TrialPrinter.poll, total("poll"))
    for cls in (executors.DaskPool, executors.InProcess):
        cls.wait = _timed(cls.wait, total("wait"))

    run = C.run

    @functools.wraps(run)
    def timed_run(self: Any, *args: Any, **kwargs: Any) -> Any:
        w, c, p = time.perf_counter(), time.thread_time(), time.process_time()
        try:
            return run(self, *args, **kwargs)
        finally:
            clocks.add(clocks.sweep, "run", time.perf_counter() - w, time.thread_time() - c)
            clocks.add(clocks.sweep, "process_cpu", 0.0, time.process_time() - p)

    C.run = timed_run

    # The verdict server loops on reports.get(): what it does between one get returning
    # and the next being called is serving that report (trial.report, should_prune, put).
    get = distributed.Queue.get
    last: dict[str, Any] = {}

    @functools.wraps(get)
    def timed_get(self: Any, *args: Any, **kwargs: Any) -> Any:
        mine = threading.current_thread().name == PRUNER_THREAD
        if mine and "item" in last:
            number = last.pop("item")[0]
            clocks.add(clocks.trials[number], "verdicts", time.perf_counter() - last["w"],
                       time.thread_time() - last["c"])
            clocks.verdicts[number] += 1
        item = get(self, *args, **kwargs)
        if mine and isinstance(item, tuple):
            last.update(item=item, w=time.perf_counter(), c=time.thread_time())
        return item

    distributed.Queue.get = timed_get


def main() -> None:
    out = Path(sys.argv[1])
    sys.argv = ["sweeplab.sweep", *sys.argv[2:]]
    clocks = Clocks()
    install(clocks)
    from sweeplab.cli.sweep import main as sweep_main

    try:
        sweep_main()
    finally:
        out.write_text(json.dumps(clocks.as_json()) + "\n")


if __name__ == "__main__":
    main()
