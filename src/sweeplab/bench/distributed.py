"""`make bench ARGS="--only distributed"`: what a sweep on Dask workers costs, and where it
would stop scaling. Every server listens on 127.0.0.1, in a temporary folder, and stops.

1. Trials per minute of one sweep in the controller's process (sweep.n_jobs=1) and on a
   Dask scheduler with 1 and with 2 `dask worker`s (sweep.cluster: the same code path for
   both counts, single-threaded workers as README's "From one machine to many" starts
   them), all logging to `make server`; interleaved, repeated, medians. Same trials in
   every run (random sampler, fixed seed; the median pruner is asked at every log point
   but told to wait for more trials than the sweep has, so it never prunes).
2. The controller's own time per trial (bench/probe.py's clocks around its calls), and
3. the requests each trial sends to the tracking server (bench/proxy.py, one port per
   process) and the records it appends to the study's journal, from the default sweep
   (TPE, median pruner) on 2 Dask workers.
4. A bounded load test of `make server` (SQLite, and PostgreSQL when installed): N
   simulated workers replaying those trials' requests (bench/loadtest.py); and the
   journal's time per operation in a loop. From these, how many workers each part serves.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sweeplab.bench import loadtest
from sweeplab.bench.proxy import CountingProxy, Record
from sweeplab.bench.services import (
    Server,
    ServiceError,
    cpu_seconds,
    dask_cluster,
    postgres_database,
    tracking_server,
)

# The throughput runs: the default sweep's model, data and epochs, the same trials each time.
SAME_TRIALS = ["sweep.sampler=random", "sweep.seed=0", "sweep.pruner=median",
               "+sweep.pruner_args.n_startup_trials=100000", "sweep.register_model=null"]
# The machine's 1-minute load average, sampled before and after each sweep and load step:
# other work on the machine shows here (our own runs count too: 2 workers are load 2).
LOAD: list[float] = []
SECTIONS = ("ask", "make_task", "submit", "tell", "verdicts")
FULL = {"default_trials": 40, "rate_trials": 12, "rate_epochs": 60, "repeats": 4,
        "load_seconds": 10.0, "load_rounds": 2, "load_workers": [1, 2, 4, 8, 16],
        "postgresql": True,
        "journal_trials": 300}
QUICK = {"default_trials": 6, "rate_trials": 6, "rate_epochs": 10, "repeats": 1,
         "load_seconds": 3.0, "load_rounds": 1, "load_workers": [1, 4], "postgresql": False,
         "journal_trials": 50}


def distributed(quick: bool = False) -> dict[str, Any]:
    p = QUICK if quick else FULL
    out: dict[str, Any] = {"settings": p}
    LOAD.clear()
    with tempfile.TemporaryDirectory(prefix="sweeplab-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with tracking_server(tmp / "server") as server:
            default, captured = _default_sweep(tmp, server, p["default_trials"])
            out["default_sweep"] = default
            out["throughput"] = _throughput(tmp, server, p)
        sequences = loadtest.trial_sequences(captured)
        out["load"] = {"trials_replayed": len(sequences)}
        backends = ["sqlite"] + (["postgresql"] if p["postgresql"] else [])
        for backend in backends:
            try:
                out["load"][backend] = _load(tmp / f"load-{backend}", backend, sequences,
                                             default["parent_run_id"], p)
            except ServiceError as err:
                out["load"][backend] = {"skipped": str(err).splitlines()[0]}
    out["journal"] = journal_timing(out["default_sweep"]["journal_records_per_trial"],
                                    p["journal_trials"])
    out["scaling"] = scaling(out)
    out["load_average"] = {"min": min(LOAD), "median": statistics.median(LOAD),
                           "max": max(LOAD)}
    return out


def run_sweep(tmp: Path, name: str, overrides: list[str], tracking_uri: str,
              groups: dict[str, list[int]] | None = None, proxy: str | None = None
              ) -> tuple[list[Any], dict[str, Any], float, dict[str, float]]:
    """`python -m sweeplab.sweep` under bench/probe.py's clocks, in `tmp`: (the study's
    trials, the controller's timings, wall seconds of the whole command, and the CPU
    seconds each of `groups` (name: process groups) used meanwhile). With `proxy`, the
    controller's HTTP requests go through it."""
    import optuna

    from sweeplab.sweep.study import open_storage

    journal = f"journal:{tmp / (name + '.journal')}"
    timings = tmp / f"{name}.timings.json"
    # the search alone: the confirmation stage (on by default) trains 25 replicates in the
    # controller's process, which every per-trial figure here would count as the trials'
    cmd = [sys.executable, "-m", "sweeplab.bench.probe", str(timings), f"sweep.name={name}",
           f"sweep.storage={journal}", f"hydra.run.dir={tmp / 'hydra' / name}",
           "sweep.confirm.top_k=0", *overrides]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, **_via(proxy)}
    groups = groups or {}
    LOAD.append(os.getloadavg()[0])
    cpu = {k: cpu_seconds(g) for k, g in groups.items()}
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t
    cpu = {k: cpu_seconds(g) - cpu[k] for k, g in groups.items()}
    LOAD.append(os.getloadavg()[0])
    if proc.returncode:
        raise RuntimeError(f"sweep {name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    study = optuna.load_study(study_name=name, storage=open_storage(journal))
    return study.trials, json.loads(timings.read_text()), wall, cpu


def steady_rate(trials: list[Any]) -> float:
    """Trials per minute once the workers run: per worker, the trials it finished after
    its first one over the time from its first to its last finish (so its first trial,
    which pays for the worker's imports and the dataset's transfer, is left out), summed
    over workers. A worker that finishes last alone still counts that tail in its span."""
    from sweeplab.names import TrialAttr

    by_worker: dict[str, list[float]] = {}
    for t in trials:
        if t.datetime_complete is not None:
            by_worker.setdefault(str(t.user_attrs.get(TrialAttr.WORKER)), []).append(
                t.datetime_complete.timestamp())
    rate = 0.0
    for done in by_worker.values():
        if len(done) >= 2:
            rate += (len(done) - 1) / (max(done) - min(done)) * 60
    return rate


def steady_durations(trials: list[Any]) -> list[float]:
    """Seconds from ask to tell of each finished trial but each worker's first (which waits
    for the worker's imports and the dataset's transfer)."""
    from sweeplab.names import TrialAttr

    firsts: dict[str, int] = {}
    for t in trials:
        w = str(t.user_attrs.get(TrialAttr.WORKER))
        firsts[w] = min(firsts.get(w, t.number), t.number)
    return [t.duration.total_seconds() for t in trials
            if t.duration is not None and t.number not in firsts.values()]


def _train_seconds(trials: list[Any]) -> float:
    """The median of the trials' own training time (the run's train_seconds metric)."""
    from sweeplab.names import Metric

    return statistics.median(float(t.user_attrs.get(Metric.TRAIN_SECONDS, "nan"))
                             for t in trials)


def controller_cost(timings: dict[str, Any]) -> dict[str, Any]:
    """Per trial: each section's wall and CPU seconds (median), the total's median and 90th
    percentile, with the sweep-wide parts (why_stop, poll, the loop around them) spread
    evenly; and the controller process's CPU (all threads) per trial. The sweep's first
    trial is reported apart: its submit also loads the dataset and sends it to the workers
    (once per sweep), while they are still importing."""
    trials, sweep = timings["trials"], timings["sweep"]
    n = len(trials)
    first = min(trials, key=int)

    def sweep_part(key: str, i: int) -> float:
        return float(sweep.get(key, [0.0, 0.0])[i])

    out: dict[str, Any] = {"trials": n, "wall": {}, "cpu": {}}
    for i, clock in ((0, "wall"), (1, "cpu")):
        in_trials = sum(v[i] for t in trials.values() for k, v in t.items() if k != "verdicts")
        # the main loop outside waiting, less what is timed per trial: stop checks, dispatch
        loop = (sweep_part("run", i) - sweep_part("wait", i) - sweep_part("why_stop", i)
                - sweep_part("poll", i) - in_trials)
        shared = {"why_stop": sweep_part("why_stop", i) / n, "poll": sweep_part("poll", i) / n,
                  "loop": max(loop, 0.0) / n}

        def total(t: dict[str, list[float]], i: int = i, shared: dict = shared) -> float:
            return sum(t.get(k, [0.0, 0.0])[i] for k in SECTIONS) + sum(shared.values())

        rest = [t for number, t in trials.items() if number != first] or list(trials.values())
        totals = sorted(total(t) for t in rest)
        c = out[clock]
        c["sections_median"] = {k: statistics.median(t.get(k, [0.0, 0.0])[i] for t in rest)
                                for k in SECTIONS} | shared
        c["median"] = statistics.median(totals)
        c["p90"] = totals[min(len(totals) - 1, int(0.9 * len(totals)))]
        c["first_trial"] = total(trials[first])
    out["process_cpu_per_trial"] = sweep_part("process_cpu", 1) / n
    out["verdicts_per_trial"] = statistics.fmean(timings["verdicts"].values()) \
        if timings["verdicts"] else 0.0
    return out


def _default_sweep(tmp: Path, server: Server, n_trials: int
                   ) -> tuple[dict[str, Any], list[Record]]:
    """The default sweep on 2 Dask workers, each process talking to the server through its
    own port of a counting proxy."""
    roles = ["controller", "w0", "w1"]
    with CountingProxy(server.url, roles, capture={"w0", "w1"}) as proxy, \
            dask_cluster(tmp / "dask-default", [_via(proxy.url(w)) for w in ("w0", "w1")]
                         ) as cluster:
        trials, timings, wall, cpu = run_sweep(tmp, "default", [
            f"sweep.n_trials={n_trials}", f"sweep.cluster={cluster.address}",
            "sweep.register_model=null"], server.url,
            {"workers": cluster.groups, "server": [server.group]}, proxy.url("controller"))
        records = proxy.take()
    n = len(trials)
    workers = [r for r in records if r.role != "controller"]
    by_endpoint = Counter(r.endpoint for r in workers)
    journal = tmp / "default.journal"
    ops = _journal_ops(journal)
    durations = steady_durations(trials)
    states = Counter(t.state.name.lower() for t in trials)
    out = {
        "trials": n, "states": dict(states), "wall_seconds": wall,
        "parent_run_id": _parent(journal),
        "trial_seconds_mean": statistics.fmean(durations),
        "trial_seconds_median": statistics.median(durations),
        "train_seconds_median": _train_seconds(trials),
        "controller": controller_cost(timings),
        # CPU seconds per trial of each part: what contention with other work hardly changes
        "worker_cpu_per_trial": cpu["workers"] / n, "server_cpu_per_trial": cpu["server"] / n,
        "requests_per_trial": {k: v / n for k, v in by_endpoint.most_common()},
        "requests_per_trial_total": len(workers) / n,
        "request_kib_per_trial": sum(r.request_bytes for r in workers) / 1024 / n,
        "server_ms_per_trial": sum(r.ms for r in workers) / n,
        "request_ms_median": statistics.median(r.ms for r in workers),
        "controller_requests_per_sweep": dict(Counter(
            r.endpoint for r in records if r.role == "controller").most_common()),
        "journal_records_per_trial": {k: v / n for k, v in ops["trial"].items()},
        "journal_records_per_sweep": ops["study"],
    }
    return out, workers


def _via(proxy: str | None) -> dict[str, str]:
    """The environment that sends a process's HTTP requests (MLflow's client, urllib)
    through `proxy`, one port per process: its requests are counted apart."""
    if proxy is None:
        return {}
    return {"http_proxy": proxy, "HTTP_PROXY": proxy, "no_proxy": "", "NO_PROXY": ""}


def _parent(journal: Path) -> str:
    """The sweep's MLflow parent run, as the controller recorded it on the study."""
    from sweeplab.names import TrialAttr

    for line in journal.read_text().splitlines():
        attrs = json.loads(line).get("user_attr", {})
        if TrialAttr.PARENT_RUN_ID in attrs and "trial_id" not in line:
            return str(attrs[TrialAttr.PARENT_RUN_ID])
    raise RuntimeError(f"no parent run id in {journal}")


def _journal_ops(journal: Path) -> dict[str, dict[str, int]]:
    """Records in an Optuna journal file by operation: those of trials, and the rest."""
    try:  # Optuna 5.0 names its operation codes in a private enum; fall back to numbers
        from optuna.storages.journal._storage import JournalOperation

        names = {op.value: op.name.lower() for op in JournalOperation}
    except ImportError:
        names = {}
    out: dict[str, Counter[str]] = {"trial": Counter(), "study": Counter()}
    for line in journal.read_text().splitlines():
        rec = json.loads(line)
        op = names.get(rec["op_code"], f"op {rec['op_code']}")
        out["trial" if "trial_id" in rec or op == "create_trial" else "study"][op] += 1
    return {k: dict(v.most_common()) for k, v in out.items()}


def _throughput(tmp: Path, server: Server, p: dict[str, Any]) -> dict[str, Any]:
    """In-process, 1 and 2 Dask workers, interleaved `repeats` times, the order reversed
    every other time; rates are medians, and each ratio is the median of the ratios within
    a repeat (runs next to each other see the same load from the rest of the machine)."""
    runs: dict[str, list[dict[str, Any]]] = {"in_process": [], "dask_1": [], "dask_2": []}
    common = [*SAME_TRIALS, f"sweep.n_trials={p['rate_trials']}",
              f"train.epochs={p['rate_epochs']}"]
    with dask_cluster(tmp / "dask-1", [{}]) as one, \
            dask_cluster(tmp / "dask-2", [{}, {}]) as two:
        where = {"in_process": ["sweep.n_jobs=1"],
                 "dask_1": [f"sweep.cluster={one.address}"],
                 "dask_2": [f"sweep.cluster={two.address}"]}
        for r in range(p["repeats"]):
            for key in (list(where) if r % 2 == 0 else list(where)[::-1]):
                before = os.getloadavg()[0]
                trials, timings, wall, cpu = run_sweep(
                    tmp, f"{key}-{r}", [*common, *where[key]], server.url,
                    {"workers": one.groups if key == "dask_1" else two.groups,
                     "server": [server.group]})
                runs[key].append({"per_minute": steady_rate(trials),
                                  "load_average": (before + os.getloadavg()[0]) / 2,
                                  "server_cpu_per_trial": cpu["server"] / len(trials),
                                  "worker_cpu_per_trial": (cpu["workers"] / len(trials)
                                                           if key != "in_process" else None),
                                  "controller_cpu_per_trial": (
                                      timings["sweep"]["process_cpu"][1] / len(trials)),
                                  "end_to_end_per_minute": len(trials) / wall * 60,
                                  "trial_seconds_median": statistics.median(
                                      steady_durations(trials)),
                                  "train_seconds_median": _train_seconds(trials),
                                  "controller_median_ms": 1e3 * controller_cost(
                                      timings)["wall"]["median"]})
    out: dict[str, Any] = {"trials": p["rate_trials"], "epochs": p["rate_epochs"],
                           "repeats": p["repeats"], "runs": runs}
    for key, rs in runs.items():
        for x in ("trial_seconds_median", "train_seconds_median", "load_average",
                  "server_cpu_per_trial", "worker_cpu_per_trial", "controller_cpu_per_trial"):
            if rs[0][x] is not None:
                out[f"{key}_{x}"] = statistics.median(r[x] for r in rs)
        out[f"{key}_per_minute"] = statistics.median(r["per_minute"] for r in rs)
        out[f"{key}_end_to_end_per_minute"] = statistics.median(
            r["end_to_end_per_minute"] for r in rs)
    def ratio(a: str, b: str) -> float:
        return statistics.median(x["per_minute"] / y["per_minute"]
                                 for x, y in zip(runs[a], runs[b], strict=True))

    out["speedup_2_vs_1_dask"] = ratio("dask_2", "dask_1")
    out["dask_1_vs_in_process"] = ratio("dask_1", "in_process")
    return out


def _load(folder: Path, backend: str, sequences: list[list[loadtest.Request]],
          parent: str, p: dict[str, Any]) -> dict[str, Any]:
    """`make server` on `backend` (fresh), then the replay at each worker count."""
    from contextlib import ExitStack

    from mlflow.tracking import MlflowClient

    with ExitStack() as stack:
        args: list[str] = []
        if backend == "postgresql":
            args = ["--db", stack.enter_context(postgres_database("mlflow"))]
        server = stack.enter_context(tracking_server(folder, *args))
        url = server.url
        client = MlflowClient(tracking_uri=url)
        experiment = client.create_experiment("sweeplab")
        captured = json.loads(next(r.body for s in sequences for r in s
                                   if r.endpoint == "POST runs/create"))["experiment_id"]
        if experiment != captured:
            raise RuntimeError(f"replay needs experiment id {captured}, the server gave "
                               f"{experiment}")
        new_parent = client.create_run(experiment, run_name="load test").info.run_id
        ids = [(parent.encode(), new_parent.encode())]
        # N up, then down (and so on): whatever else the machine does falls on every N
        order = [n for r in range(p["load_rounds"])
                 for n in (p["load_workers"] if r % 2 == 0 else p["load_workers"][::-1])]
        done: dict[int, list[dict[str, Any]]] = {n: [] for n in p["load_workers"]}
        for n in order:
            LOAD.append(os.getloadavg()[0])
            cpu = cpu_seconds([server.group])
            step = loadtest.replay(url, sequences, n, p["load_seconds"], ids)
            step["server_cpu_per_trial"] = (cpu_seconds([server.group]) - cpu) / max(
                1, step["trials"])
            done[n].append(step)
    steps = [_median_step(rs) for rs in done.values()]
    best = max(steps, key=lambda s: s["trials_per_second"])
    return {"steps": steps, "rounds": done, "trials_per_second": best["trials_per_second"],
            "requests_per_second": best["requests_per_second"], "at_workers": best["workers"]}


def _median_step(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One worker count's figures: the median of its rounds, errors summed."""
    out = {k: statistics.median(r[k] for r in rounds) for k in
           ("requests_per_second", "trials_per_second", "p50_ms", "p95_ms", "seconds",
            "server_cpu_per_trial")}
    return out | {"workers": rounds[0]["workers"], "rounds": len(rounds),
                  "trials": sum(r["trials"] for r in rounds),
                  "requests": sum(r["requests"] for r in rounds),
                  "errors": sum(r["errors"] for r in rounds),
                  "first_error": next((r["first_error"] for r in rounds if r["first_error"]),
                                      "")}


def journal_timing(per_trial: dict[str, float], n_trials: int, batches: int = 5
                   ) -> dict[str, Any]:
    """One trial's journal records (the measured mix, rounded), written `n_trials` times
    through Optuna's JournalStorage to a file, in `batches`: seconds per record and per
    trial, the median batch (and the slowest: each record is an fsync, and the disk is
    shared with whatever else the machine does)."""
    from optuna.distributions import FloatDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    mix = {k: max(0, round(v)) for k, v in per_trial.items()}
    kinds = ("set_trial_param", "set_trial_intermediate_value", "set_trial_user_attr")
    per_record = 2 + sum(mix.get(k, 0) for k in kinds)  # and create_trial, the final state
    dist = FloatDistribution(0.0, 1.0)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        storage = JournalStorage(JournalFileBackend(str(Path(tmp) / "j.journal")))
        sid = storage.create_new_study([StudyDirection.MINIMIZE], "timing")
        for _ in range(batches):
            t = time.perf_counter()
            for _ in range(max(1, n_trials // batches)):
                tid = storage.create_new_trial(sid)
                for i in range(mix.get("set_trial_param", 0)):
                    storage.set_trial_param(tid, f"p{i}", 0.5, dist)
                for i in range(mix.get("set_trial_intermediate_value", 0)):
                    storage.set_trial_intermediate_value(tid, i, 0.5)
                for i in range(mix.get("set_trial_user_attr", 0)):
                    storage.set_trial_user_attr(tid, f"u{i}", "value")
                storage.set_trial_state_values(tid, TrialState.COMPLETE, [0.5])
            times.append((time.perf_counter() - t) / max(1, n_trials // batches))
    return {"trials": n_trials, "records_per_trial": per_record, "mix": mix,
            "seconds_per_trial": statistics.median(times),
            "seconds_per_record": statistics.median(times) / per_record,
            "seconds_per_record_slowest_batch": max(times) / per_record}


def scaling(r: dict[str, Any]) -> dict[str, Any]:
    """How many workers busy with the default sweep each shared part keeps up with. By CPU:
    a worker with a core of its own spends about its CPU seconds per trial, so a part that
    spends x CPU seconds per trial on one core serves (worker's CPU / x) workers; this
    hardly depends on what else the machine does. By the clock: the load test's best rate
    in trials per second x the mean trial's seconds measured here (on a shared machine)."""
    d = r["default_sweep"]
    worker = d["worker_cpu_per_trial"]
    controller = d["controller"]["process_cpu_per_trial"]
    journal = r["journal"]["seconds_per_trial"]
    trial_s = d["trial_seconds_mean"]
    out: dict[str, Any] = {
        "worker_cpu_per_trial": worker, "server_cpu_per_trial": d["server_cpu_per_trial"],
        "controller_cpu_per_trial": controller, "journal_seconds_per_trial": journal,
        "server_workers_by_cpu": worker / d["server_cpu_per_trial"],
        "controller_workers_by_cpu": worker / controller,
        "journal_workers_by_cpu": worker / journal,
        "trial_seconds": trial_s}
    for backend in ("sqlite", "postgresql"):
        load = r["load"].get(backend, {})
        if "trials_per_second" in load:
            out[f"server_{backend}_trials_per_second"] = load["trials_per_second"]
            out[f"server_{backend}_workers"] = load["trials_per_second"] * trial_s
    return out
