"""The controller's cost per trial, two versions of sweeplab interleaved.

Usage: python experiments/bench/probe_ab.py OLD_SRC NEW_SRC [--repeats 2] [--trials 30]
  e.g. git worktree add /tmp/old HEAD~1 && python experiments/bench/probe_ab.py \
       /tmp/old/src src

Runs the default sweep (its search only; 2 local Dask workers; a fresh journal and
SQLite store each time) under `sweeplab.bench.probe`, with each `src` folder first on the
path, old then new, `--repeats` times, and prints the controller's wall and CPU per trial
(medians, by part) as the distributed bench reports them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from sweeplab.bench.distributed import controller_cost


def probe(src: Path, trials: int, tmp: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src.resolve()),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    timings = tmp / "timings.json"
    cmd = [sys.executable, "-m", "sweeplab.bench.probe", str(timings), "sweep.name=ab",
           f"sweep.storage=journal:{tmp / 'ab.journal'}", f"sweep.n_trials={trials}",
           "sweep.n_jobs=2", "sweep.confirm.top_k=0", f"hydra.run.dir={tmp / 'hydra'}"]
    done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the sweep with {src} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return controller_cost(json.loads(timings.read_text()))


def line(tag: str, cost: dict) -> str:
    parts = ", ".join(f"{k} {v * 1e3:.1f}" for k, v in cost["cpu"]["sections_median"].items())
    return (f"{tag}: wall {cost['wall']['median'] * 1e3:.1f} ms, "
            f"CPU {cost['cpu']['median'] * 1e3:.1f} ms (p90 {cost['cpu']['p90'] * 1e3:.1f}) "
            f"per trial; CPU by part (ms): {parts}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--trials", type=int, default=30)
    a = ap.parse_args()
    for src in (a.old, a.new):
        if not (src / "sweeplab").is_dir():
            ap.error(f"{src} holds no sweeplab package: give a checkout's src folder")
    for i in range(a.repeats):
        for tag, src in (("old", a.old), ("new", a.new)):
            with tempfile.TemporaryDirectory() as tmp:
                print(line(f"{tag} {i + 1}", probe(src, a.trials, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
