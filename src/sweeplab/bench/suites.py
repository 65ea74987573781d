"""The four measurements of `make bench`. Each returns plain data for the report.

Timings are interleaved (A, B, C, A, B, C, ...) and summarised by their median, so that
whatever else the machine does falls on every contender alike; results are ratios.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sweeplab.bench import machine, textbook, torch_ref
from sweeplab.config import Config, DataConfig, ModelConfig, OptimConfig, TrackingConfig
from sweeplab.config import TrainConfig as TrainCfg
from sweeplab.data import Dataset, load_dataset
from sweeplab.train import run

LAYERS = [12288, 20, 7, 5, 1]
LR = 0.0075


def course_config(iterations: int, dtype: str, data_dir: str,
                  first_layer: str = "auto") -> Config:
    """The course's 4-layer model on cat vs non-cat (as conf/experiment/course_4layer.yaml);
    `first_layer` auto resolves to the dual form there, direct is the textbook's algorithm."""
    return Config(
        seed=1,
        data=DataConfig(name="catvnoncat", dir=data_dir),
        model=ModelConfig(hidden=[20, 7, 5], activation="relu", output="sigmoid",
                          init="course_deep", dtype=dtype),
        optim=OptimConfig(name="gd", lr=LR),
        train=TrainCfg(epochs=iterations, batch_size=None, log_every=100, progress=False,
                       first_layer=first_layer),
        tracking=TrackingConfig(enabled=False),
    )


def interleaved(runners: dict[str, Callable[[], Any]], repeats: int
                ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Run each runner `repeats` times in rotation: (seconds per runner, last outputs)."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    outputs: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in runners.items():
            t = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - t)
    return times, outputs


def training(data_dir: str, iterations: int, repeats: int) -> dict[str, Any]:
    """sweeplab float64/float32 vs the textbook reference (and PyTorch when installed)."""
    data = {dt: load_dataset(DataConfig(name="catvnoncat", dir=data_dir), seed=1, dtype=dt)
            for dt in ("float64", "float32")}
    X64, Y64 = data["float64"].X_train, data["float64"].Y_train
    threads = _blas_threads()

    def ours(dtype: str, form: str = "auto") -> Callable[[], list[float]]:
        cfg = course_config(iterations, dtype, data_dir, form)
        return lambda: run(cfg, (), data[dtype]).costs.tolist()

    # "sweeplab" is the default (train.first_layer=auto: the dual form on these shapes);
    # "sweeplab direct" computes W[1] X every iteration, as the textbook and PyTorch do.
    runners: dict[str, Callable[[], Any]] = {
        "textbook float64": lambda: textbook.L_layer_model(
            np.array(X64), np.array(Y64), LAYERS, LR, iterations)[1],
        "sweeplab float64": ours("float64"),
        "sweeplab float32": ours("float32"),
        "sweeplab direct float64": ours("float64", "direct"),
        "sweeplab direct float32": ours("float32", "direct"),
    }
    if torch_ref.available():
        W0 = [w for w in textbook.initialize_parameters_deep(LAYERS).values() if w.shape[1] > 1]
        for dt in ("float64", "float32"):
            X, Y = data[dt].X_train, data[dt].Y_train
            Ws = [w.astype(dt) for w in W0]
            runners[f"pytorch {dt}"] = (
                lambda X=X, Y=Y, Ws=Ws: torch_ref.train(X, Y, Ws, LR, iterations, threads))
    times, costs = interleaved(runners, repeats)
    ref = np.array(costs["textbook float64"])

    def rel(name: str) -> float:
        return float(np.max(np.abs(np.array(costs[name]) - ref) / np.abs(ref)))

    curve_rel = max(rel("sweeplab float64"), rel("sweeplab direct float64"))
    med = {k: statistics.median(v) for k, v in times.items()}
    out: dict[str, Any] = {
        "iterations": iterations, "repeats": repeats, "blas_threads": threads,
        "first_layer": run(course_config(1, "float64", data_dir), (),
                           data["float64"]).stepper,
        "median_seconds": med,
        "ms_per_iteration": {k: 1e3 * v / iterations for k, v in med.items()},
        "curve_max_rel_diff_vs_textbook": curve_rel,
        "curve_max_rel_diff_vs_textbook_direct": rel("sweeplab direct float64"),
        "curve_identical": curve_rel <= 1e-10,
        "final_cost": {k: float(v[-1]) for k, v in costs.items()},
    }
    for form in ("", "direct "):
        key = "_direct" if form else ""
        out[f"speedup_float64_vs_textbook{key}"] = (med["textbook float64"]
                                                   / med[f"sweeplab {form}float64"])
        if "pytorch float32" in med:
            out[f"speedup_float32_vs_pytorch{key}"] = (med["pytorch float32"]
                                                      / med[f"sweeplab {form}float32"])
    if "pytorch float64" in med:
        out["torch_curve_max_rel_diff"] = rel("pytorch float64")
    # The direct form reads the input twice per iteration (forward W1 X, backward dZ1 Xᵀ):
    # that many bytes at the measured read bandwidth is the bound no implementation of the
    # direct form can beat. The dual form does not read X per iteration at all.
    for dt in ("float64", "float32"):
        nbytes = data[dt].X_train.nbytes
        bw = machine.read_bandwidth(nbytes)
        bound = 2 * nbytes / (bw * 1e9)
        out[f"bandwidth_bound_ms_{dt}"] = 1e3 * bound
        out[f"read_bandwidth_GBps_at_{nbytes >> 20}MiB"] = bw
        for form in ("", "direct "):
            key = "_direct" if form else ""
            out[f"times_the_bound_{dt}{key}"] = (med[f"sweeplab {form}{dt}"] / iterations
                                                 ) / bound
    return out


def tracking(data_dir: str, iterations: int, repeats: int) -> dict[str, Any]:
    """The MLflow tracker's share of the course run (cost logged every 100 iterations, as
    conf/experiment/course_4layer.yaml does) in the default and the direct form; of the
    direct run with every iteration logged (the heaviest history there is); and its fixed
    cost per run (start, params, config, plot, model) on its own. SQLite store."""
    from sweeplab.tracking import MlflowTracker, prepare_store

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        prepare_store(uri)
        cfg = course_config(iterations, "float64", data_dir)
        direct = course_config(iterations, "float64", data_dir, "direct")
        every = course_config(iterations, "float64", data_dir, "direct")
        every.train.log_every = 1
        data = load_dataset(cfg.data, seed=1, dtype="float64")
        tcfg = TrackingConfig(uri=uri, experiment="bench")

        def tracked(c: Config, d: Dataset) -> Callable[[], float]:
            def go() -> float:
                with MlflowTracker(tcfg) as tracker:
                    run(c, [tracker], d)
                return 0.0
            return go

        tiny = course_config(1, "float64", data_dir)
        tracked(tiny, data)()  # warm up: the first run creates the experiment
        times, _ = interleaved({"without tracker": lambda: run(cfg, (), data),
                                "with tracker": tracked(cfg, data),
                                "direct without tracker": lambda: run(direct, (), data),
                                "direct with tracker": tracked(direct, data),
                                "direct with tracker, every iteration": tracked(every, data),
                                "1-epoch without": lambda: run(tiny, (), data),
                                "1-epoch with": tracked(tiny, data)}, repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["direct without tracker"]
    return {
        "iterations": iterations, "log_every": cfg.train.log_every, "median_seconds": med,
        "overhead_fraction": med["with tracker"] / med["without tracker"] - 1,
        "overhead_fraction_direct": med["direct with tracker"] / base - 1,
        "overhead_fraction_direct_every_iteration": (
            med["direct with tracker, every iteration"] / base - 1),
        "fixed_seconds_per_run": med["1-epoch with"] - med["1-epoch without"],
    }


def sweep_throughput(n_trials: int, epochs: int, repeats: int = 2) -> dict[str, Any]:
    """Trials per minute of one small sweep with 1 job (in the sweep's process, its runs
    written by the tracking writer process on the other core) and 2 (a local Dask cluster
    of two single-threaded workers, each writing its own runs), interleaved `repeats`
    times (medians).

    Throughput is the steady rate (`distributed.steady_rate`): per worker, the trials it
    finished after its first over the time from its first finish to its last, summed over
    workers. A Dask worker's first trial waits for its imports and the dataset's transfer,
    a fixed cost of a sweep, not its rate. The same rule is applied to both counts.
    """
    out: dict[str, Any] = {"n_trials": n_trials, "epochs": epochs, "repeats": repeats}
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for jobs in (1, 2):
            rates[jobs].append(_sweep_rate(n_trials, epochs, jobs))
    for jobs, r in rates.items():
        out[f"trials_per_minute_{jobs}_worker"] = statistics.median(r)
    out["speedup_2_workers"] = out["trials_per_minute_2_worker"] / out[
        "trials_per_minute_1_worker"]
    return out


def _sweep_rate(n_trials: int, epochs: int, jobs: int) -> float:
    import optuna

    from sweeplab.bench.distributed import steady_rate
    from sweeplab.sweep.study import open_storage

    with tempfile.TemporaryDirectory() as tmp:
        journal = f"journal:{Path(tmp) / 'optuna.journal'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{Path(tmp) / 'mlflow.db'}"}
        cmd = [sys.executable, "-m", "sweeplab.sweep", "sweep.name=bench",
               f"sweep.n_trials={n_trials}", f"sweep.n_jobs={jobs}", "sweep.pruner=none",
               "sweep.sampler=random", f"sweep.storage={journal}", f"train.epochs={epochs}",
               "sweep.register_model=null", "sweep.confirm.top_k=0",  # the search only
               "hydra.run.dir=" + str(Path(tmp) / "hydra")]
        subprocess.run(cmd, cwd=tmp, env=env, check=True, capture_output=True, text=True,
                       timeout=1800)
        trials = optuna.load_study(study_name="bench", storage=open_storage(journal)).trials
    return steady_rate(trials)


def default_sweep(n_trials: int = 40, repeats: int = 1) -> dict[str, Any]:
    """`python -m sweeplab.sweep` as `make sweep` runs it (the default sweep: digits, 1 job),
    in a temporary folder with its own stores, once with the tracking writer process (the
    default) and once with each trial logging itself (sweep.writer=inline), with its
    confirmation stage off (the search's trials are what those two measure); and once
    whole, as `make sweep` runs it (the search, then the confirmation's replicates, with the
    writer: "command"); interleaved `repeats` times (medians).

    Efficiency is the trials' own training time (Σ train_seconds; in the whole command, the
    replicates' too) over the command's wall time, start-up and the end-of-sweep report
    included. A run's fixed cost is its MLflow
    wall time (start to end) minus its training time: what tracking adds to a trial where
    the trial runs. With the writer, the MLflow calls themselves run on the other core."""
    out: dict[str, Any] = {"n_trials": n_trials, "repeats": repeats}
    got: dict[str, list[dict[str, float]]] = {"process": [], "inline": [], "command": []}
    for _ in range(repeats):
        for variant in got:
            got[variant].append(_default_sweep_once(n_trials, variant))
    for writer, runs in got.items():
        out[writer] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return out


def _default_sweep_once(n_trials: int, variant: str) -> dict[str, float]:
    """One default sweep in a fresh folder: `variant` is a sweep.writer (process, inline;
    the search alone) or "command" (the whole of `make sweep`, confirmation included)."""
    from mlflow.tracking import MlflowClient

    from sweeplab.names import Role, Tag

    whole = variant == "command"
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        cmd = [sys.executable, "-m", "sweeplab.sweep", f"sweep.n_trials={n_trials}",
               "hydra.run.dir=" + str(Path(tmp) / "hydra")]
        # the search's trials alone, or the command as it comes (its writer, its replicates)
        cmd += [] if whole else [f"sweep.writer={variant}", "sweep.confirm.top_k=0"]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=tmp, env=env, check=True, capture_output=True, text=True,
                       timeout=1800)
        wall = time.perf_counter() - start
        client = MlflowClient(uri)
        exps = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(exps, f"tags.`{Tag.ROLE}` != '{Role.SWEEP}'",
                                  max_results=1000)
    trials = [r for r in runs if r.data.tags.get(Tag.ROLE) == Role.TRIAL]
    trained = [r.data.metrics.get("train_seconds", 0.0) for r in runs]
    fixed = [(r.info.end_time - r.info.start_time) / 1e3 - r.data.metrics.get(
        "train_seconds", 0.0) for r in trials if r.info.end_time]
    return {"wall_seconds": wall, "train_seconds": sum(trained),
            "efficiency": sum(trained) / wall, "runs": len(trials),
            "replicates": len(runs) - len(trials),
            "fixed_seconds_per_run_median": statistics.median(fixed)}


def machine_limits() -> dict[str, Any]:
    return {"gemm_gflops_float64": machine.gemm_gflops("float64"),
            "gemm_gflops_float32": machine.gemm_gflops("float32"),
            "read_bandwidth_GBps_512MiB": machine.read_bandwidth(512 << 20)}


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    blas = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return int(blas[0]) if blas else 1
