"""Where the MLflow tracker's time goes on the course's 4-layer cat run.

Usage (py-spy is not a dependency: `.venv/bin/pip install py-spy`):
    py-spy record -r 200 -f raw -o track.raw -- \
        .venv/bin/python experiments/bench/profile_tracking.py run ../shared/datasets/catvnoncat
    .venv/bin/python experiments/bench/profile_tracking.py summarize track.raw

`run` trains the course_4layer model (2,500 iterations, default form) `--runs` times with
the tracker on a fresh SQLite store, after one warm-up run that creates the experiment.
`summarize` reads py-spy's collapsed stacks and splits the samples taken inside those
runs into the training itself and each tracker method, with the MLflow call below it.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path
from typing import Any

# Stacks inside the timed loop carry this marker frame; imports and warm-up do not.
MARKER = "timed_loop"

# MLflow and plotting calls worth naming on their own in the breakdown, most specific first.
CALLS = ("_validate_serving_input", "save_model", "log_figure", "log_batch", "log_inputs",
         "from_numpy", "log_text", "get_run", "start_run", "end_run", "log_artifacts",
         "cost_curve")


def timed_runs(data_dir: str, runs: int) -> None:
    from sweeplab.bench.suites import course_config
    from sweeplab.config import TrackingConfig
    from sweeplab.data import load_dataset
    from sweeplab.tracking import MlflowTracker, prepare_store
    from sweeplab.train import run

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        prepare_store(uri)
        cfg = course_config(2500, "float64", data_dir)
        data = load_dataset(cfg.data, seed=1, dtype="float64")
        tcfg = TrackingConfig(uri=uri, experiment="profile")
        with MlflowTracker(tcfg) as tracker:
            run(course_config(1, "float64", data_dir), [tracker], data)
        timed_loop(cfg, tcfg, data, runs)


def timed_loop(cfg: Any, tcfg: Any, data: Any, runs: int) -> None:
    from sweeplab.tracking import MlflowTracker
    from sweeplab.train import run

    for _ in range(runs):
        with MlflowTracker(tcfg) as tracker:
            run(cfg, [tracker], data)


def summarize(raw: Path, runs: int, rate: int) -> None:
    """Print each part's share of the sampled time and its milliseconds per run."""
    parts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        frames = stack.split(";")
        if not any(f.startswith(MARKER) for f in frames):
            continue
        mine = [i for i, f in enumerate(frames) if "sweeplab/tracking/" in f]
        if not mine:
            parts["training (no tracker frame)"] += int(count)
            continue
        method = frames[mine[-1]].split(" ")[0]
        below = " ".join(frames[mine[-1] + 1:])
        call = next((c for c in CALLS if c in below), "other")
        parts[f"{method} / {call}"] += int(count)
    total = sum(parts.values())
    print(f"{total} samples, {total / rate / runs * 1000:.0f} ms per run")
    for name, n in parts.most_common():
        print(f"{n / total:6.1%} {n / rate / runs * 1000:6.0f} ms/run  {name}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="the workload to record")
    r.add_argument("data_dir")
    r.add_argument("--runs", type=int, default=20)
    s = sub.add_parser("summarize", help="break a py-spy raw profile down")
    s.add_argument("raw", type=Path)
    s.add_argument("--runs", type=int, default=20)
    s.add_argument("--rate", type=int, default=200, help="py-spy's -r, samples per second")
    args = p.parse_args()
    if args.cmd == "run":
        timed_runs(args.data_dir, args.runs)
    else:
        summarize(args.raw, args.runs, args.rate)


if __name__ == "__main__":
    main()
