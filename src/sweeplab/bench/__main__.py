"""Run the bench, print the table, write it as markdown and JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from sweeplab.bench import distributed, report, suites, time_to_quality, torch_ref

SUITES = ["training", "tracking", "sweep", "default_sweep", "peer", "distributed", "machine"]

REPO = Path(__file__).resolve().parents[3]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweeplab.bench", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="a tenth of the iterations, fewer repeats and trials (a smoke run)")
    p.add_argument("--data-dir", default=os.environ.get(
        "SWEEPLAB_CATVNONCAT", str(REPO.parent / "shared" / "datasets" / "catvnoncat")),
        help="folder with train_catvnoncat.h5 (default: ../shared/datasets/catvnoncat)")
    p.add_argument("--out", default=str(REPO / "experiments" / "bench"),
                   help="folder for latest.md and latest.json")
    p.add_argument("--iterations", type=int, default=None,
                   help="training iterations per timed run (default 2500; quick 250)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per contender")
    p.add_argument("--only", nargs="*", default=SUITES, choices=SUITES,
                   help="suites to run (default: all); distributed starts make server, Dask "
                        "schedulers and workers, and PostgreSQL when installed, on 127.0.0.1; "
                        "peer runs make sweep and its Optuna + scikit-learn peer (needs "
                        "pip install -e '.[bench]')")
    args = p.parse_args(argv)
    needs_cat = {"training", "tracking"} & set(args.only)
    if needs_cat and not (Path(args.data_dir) / "train_catvnoncat.h5").is_file():
        print(f"error: no train_catvnoncat.h5 in {args.data_dir}: pass --data-dir",
              file=sys.stderr)
        return 2
    iters, repeats = (250, 3) if args.quick else (2500, 5)
    iters, repeats = args.iterations or iters, args.repeats or repeats
    results: dict[str, Any] = {"host": machine_facts(), "quick": args.quick,
                               "date": time.strftime("%Y-%m-%d %H:%M")}
    steps = {
        "machine": lambda: suites.machine_limits(),
        "training": lambda: suites.training(args.data_dir, iters, repeats),
        "tracking": lambda: suites.tracking(args.data_dir, iters, repeats),
        "sweep": lambda: suites.sweep_throughput(*((8, 20) if args.quick else (24, 40))),
        "default_sweep": lambda: suites.default_sweep(10 if args.quick else 40),
        "peer": lambda: time_to_quality.peer_comparison(10 if args.quick else 40, args.quick),
        "distributed": lambda: distributed.distributed(args.quick),
    }
    for name in ("machine", "training", "tracking", "sweep", "default_sweep", "peer",
                 "distributed"):
        if name in args.only:
            print(f"bench: {name} ...", flush=True)
            results[name] = steps[name]()
    out = Path(args.out)
    keep_earlier(results, out / "latest.json")
    text = report.markdown(results)
    print("\n" + text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(text)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {out / 'latest.md'}, {out / 'latest.json'}")
    return 0


def keep_earlier(results: dict[str, Any], latest: Path) -> None:
    """A run of some suites (--only) replaces those in `latest` and keeps the others, when
    `latest` is of the same kind (quick or full) and machine; `results["earlier"]` then
    names each kept suite with the date of its run."""
    try:
        before = json.loads(latest.read_text())
    except (OSError, ValueError):
        return
    if before.get("quick") != results["quick"] or \
            before.get("host", {}).get("cpu") != results["host"]["cpu"]:
        return
    dates = before.get("earlier", {})
    earlier = {name: dates.get(name, before.get("date", "?")) for name in SUITES
               if name not in results and name in before}
    for name in earlier:
        results[name] = before[name]
    if earlier:
        results["earlier"] = earlier
        # the versions those runs used, where this one lacks them (PyTorch for training)
        results["host"] = before.get("host", {}) | results["host"]


def machine_facts() -> dict[str, Any]:
    from threadpoolctl import threadpool_info

    from sweeplab.tracking.provenance import versions

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = [f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} "
            f"({i.get('num_threads')} threads)" for i in threadpool_info()
            if i.get("user_api") == "blas"]
    v = versions()
    facts = {"cpu": cpu, "cores": os.cpu_count(), "blas": ", ".join(blas),
             "python": v["python"], "numpy": v["numpy"], "mlflow": v["mlflow"],
             "optuna": v["optuna"]}
    if torch_ref.available():
        import torch

        facts["torch"] = torch.__version__
    return facts


if __name__ == "__main__":
    raise SystemExit(main())
