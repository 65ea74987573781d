"""The bench's peer suite: time to quality of `make sweep` against its peer.

Both commands run once each, one after the other, each in a temporary folder with its
own stores and as its own process (so imports, store creation and the end-of-sweep report
count): sweeplab's default sweep as `make sweep` runs it (`python -m sweeplab.sweep`), and
the peer (bench/peer.py: Optuna TPE + scikit-learn's MLPClassifier + optuna-integration's
MLflowCallback) on the same train / validation / test arrays and the same space.

Time to quality is measured on one clock from one start: `time.time()` in this process
just before the command starts, to the first trial whose study records it as complete
(Optuna's `datetime_complete`) with validation accuracy >= the bar. Only COMPLETE trials
count: a pruned sweeplab trial stopped early, and its model is not a result.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sweeplab.bench import peer

QUALITY_BAR = 0.97
TARGET_RATIO = 0.5  # sweeplab's time to the bar / the peer's
SWEEP_STUDY = "digits-default"  # conf/sweep/default.yaml's sweep.name
REGISTERED_MODEL = f"sweeplab-{SWEEP_STUDY}"  # and its sweep.register_model
# Seeds the chosen configurations are retrained on, after every seed either side's search
# or sweeplab's confirmation used: test accuracies of runs the choice did not see.
FRESH_SEEDS = 5


def first_at_bar(trials: list[dict[str, Any]], bar: float = QUALITY_BAR,
                 key: str = "seconds") -> dict[str, Any] | None:
    """The first COMPLETE trial, by `key` (seconds since the start), whose val_accuracy is
    at least `bar`; None when no trial reached it."""
    done = [t for t in trials if t["state"] == "COMPLETE" and t["val_accuracy"] is not None
            and t.get(key) is not None]
    hits = [t for t in sorted(done, key=lambda t: t[key]) if t["val_accuracy"] >= bar]
    return hits[0] if hits else None


def summary(trials: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    """What the report shows of one command: wall time, time to the bar, best val_accuracy."""
    hit = first_at_bar(trials)
    vals = [t["val_accuracy"] for t in trials
            if t["state"] == "COMPLETE" and t["val_accuracy"] is not None]
    starts = [t["started_seconds"] for t in trials if t.get("started_seconds") is not None]
    return {"wall_seconds": wall, "seconds_to_bar": hit["seconds"] if hit else None,
            # start-up: imports, data, stores, until the study starts its first trial
            "seconds_to_first_trial_start": min(starts) if starts else None,
            "trial_to_bar": hit["number"] if hit else None,
            "trials_complete": len(vals), "trials": len(trials),
            "best_val_accuracy": max(vals) if vals else None}


def peer_comparison(n_trials: int = 40, quick: bool = False) -> dict[str, Any]:
    """Run sweeplab's default sweep, then the peer, with `n_trials` each; compare them.
    `quick` also shrinks sweeplab's confirmation stage to 2 configurations x 2 seeds."""
    from sweeplab.sweep.confirm import replicate_seeds

    if not peer.available():
        print(f"bench: peer skipped: {peer.INSTALL_HINT}", flush=True)
        return {"skipped": peer.INSTALL_HINT}
    confirm = ["sweep.confirm.top_k=2", "sweep.confirm.seeds=2"] if quick else []
    load_before = os.getloadavg()[0]
    ours = sweeplab_once(n_trials, confirm)
    theirs = peer_once(n_trials)
    mine, its = ours["seconds_to_bar"], theirs["seconds_to_bar"]
    # Like against like, outside both timed commands: each side's chosen configuration
    # trained again by its own tool on fresh seeds, each seed its own split
    used = [ours["seed"], theirs["seed"], *(r["seed"] for r in ours["confirmed_replicates"])]
    fresh = replicate_seeds(max(used), FRESH_SEEDS)  # the seeds after them, as replicates'
    ours["retrained"] = retrain(ours["chosen_params"], fresh) if ours["chosen_params"] else []
    theirs["refitted"] = peer.refit(theirs["best_params"], theirs["epochs"], fresh)
    return {"n_trials": n_trials, "quality_bar": QUALITY_BAR, "target_ratio": TARGET_RATIO,
            "sweeplab": ours, "peer": theirs,
            "over_seeds": over_seeds(ours["retrained"], theirs["refitted"]),
            "ratio_to_bar": mine / its if mine is not None and its else None,
            "load_average_before_after": [load_before, os.getloadavg()[0]]}


def over_seeds(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]
               ) -> dict[str, Any] | None:
    """Test accuracy over seeds of both chosen configurations (each retrained by its own
    tool on the same seeds): each one's mean, standard deviation and 95% t interval, and
    Welch's t-test of the two (scipy.stats). A seed without a finite accuracy (a diverged
    or failed fit) is left out of its side. Figures that do not exist (an interval from
    one value, a test of two constant sides) are None, so the JSON stays standard. None
    without an accuracy on both sides."""
    from scipy import stats

    from sweeplab.sweep.stats import describe

    def finite(rows: list[dict[str, Any]]) -> list[float]:
        return [r["test_accuracy"] for r in rows
                if r["test_accuracy"] is not None and math.isfinite(r["test_accuracy"])]

    a, b = finite(ours), finite(theirs)
    if not a or not b:
        return None
    mine, its = describe(a), describe(b)
    p = None
    if len(a) > 1 and len(b) > 1 and (mine.std > 0 or its.std > 0):
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)

    def plain(st: Any) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(st).items()}

    return {"seeds": [r["seed"] for r in ours], "sweeplab": plain(mine), "peer": plain(its),
            "welch_p": p}


def retrain(params: dict[str, Any], seeds: list[int]) -> list[dict[str, Any]]:
    """sweeplab's chosen configuration (`params`: the search space's keys, e.g.
    ``model.depth``) trained again once per seed, as a replicate of the confirmation stage
    is (the default sweep's config with ``seed=`` that seed: its split and its
    initialisation), untracked; each scored on the test split. One dict per seed: seed,
    test_accuracy (None for a run that diverged)."""
    from sweeplab.names import Metric
    from sweeplab.train import run

    out = []
    for seed in seeds:
        cfg = peer.default_sweep_config([f"seed={seed}",
                                         *(f"{k}={v}" for k, v in params.items())])
        result = run(cfg)
        # a run that learnt nothing still has its accuracy; one that diverged has none
        out.append({"seed": seed, "test_accuracy": result.metrics.get(Metric.TEST_ACCURACY)})
    return out


def sweeplab_once(n_trials: int, extra: list[str]) -> dict[str, Any]:
    """`python -m sweeplab.sweep` with the default sweep (confirmation stage on unless
    `extra` changes it) in a temporary folder; its trials read back from the study's
    journal (completion times) and MLflow (val and test accuracy, the parent's metrics)."""
    import optuna
    from mlflow.tracking import MlflowClient

    from sweeplab.names import Metric, Role, Tag, TrialAttr, confirm_metric
    from sweeplab.sweep.study import open_storage

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        cmd = [sys.executable, "-m", "sweeplab.sweep", f"sweep.n_trials={n_trials}",
               "hydra.run.dir=" + str(Path(tmp) / "hydra"), *extra]
        t0 = time.time()
        subprocess.run(cmd, cwd=tmp, env=env, check=True, capture_output=True, text=True,
                       timeout=3600)
        wall = time.time() - t0
        # storage null = the journal beside the controller (conf/sweep/default.yaml)
        journal = f"journal:{Path(tmp) / '.sweeplab' / 'optuna.journal'}"
        # read now: the journal goes with the folder
        frozen = optuna.load_study(study_name=SWEEP_STUDY, storage=open_storage(journal)).trials
        client = MlflowClient(uri)
        exps = [e.experiment_id for e in client.search_experiments()]
        runs = {r.info.run_id: r for r in client.search_runs(
            exps, f"tags.`{Tag.ROLE}` = '{Role.TRIAL}'", max_results=5000)}
        parent = client.search_runs(exps, f"tags.`{Tag.ROLE}` = '{Role.SWEEP}'")[0]
        champion = parent.data.tags.get(Tag.CONFIRM_CHAMPION)
        replicates = [] if not champion else client.search_runs(
            exps, f"tags.`{Tag.ROLE}` = '{Role.CONFIRM}' and "
                  f"tags.`{Tag.TRIAL_NUMBER}` = '{champion}' and attributes.status = "
                  f"'FINISHED'", max_results=1000)
        registered = registered_test_accuracy(client)
    trials = []
    for t in frozen:
        run = runs.get(t.user_attrs.get(TrialAttr.RUN_ID, ""))
        m = run.data.metrics if run is not None else {}
        trials.append({"number": t.number, "state": t.state.name,
                       # the last logged point of the history: the trained model's
                       "val_accuracy": m.get(Metric.VAL_ACCURACY),
                       "test_accuracy": m.get(Metric.TEST_ACCURACY),
                       "started_seconds": (t.datetime_start.timestamp() - t0
                                           if t.datetime_start else None),
                       "seconds": (t.datetime_complete.timestamp() - t0
                                   if t.datetime_complete else None)})
    out = summary(trials, wall)
    best_run = runs.get(parent.data.tags.get(Tag.BEST_RUN_ID, ""))
    best = int(parent.data.tags[Tag.BEST_TRIAL]) if Tag.BEST_TRIAL in parent.data.tags \
        else None
    chosen = int(champion) if champion else best  # no confirmation: the search's best
    by_number = {t.number: t for t in frozen}
    out |= {"command": " ".join(["python -m sweeplab.sweep", f"sweep.n_trials={n_trials}",
                                  *extra]),
            "best_trial": best, "seed": peer.default_sweep_config().seed,
            "chosen_params": dict(by_number[chosen].params) if chosen is not None else {},
            "best_trial_test_accuracy": best_run.data.metrics.get(Metric.TEST_ACCURACY)
            if best_run is not None else None,
            "confirmed_champion_trial": int(champion) if champion else None,
            "confirmed_mean_test_accuracy": parent.data.metrics.get(
                confirm_metric(None, "mean", Metric.TEST_ACCURACY)),
            # the champion's replicates, by seed (the fresh seeds come after these)
            "confirmed_replicates": sorted(
                ({"seed": int(r.data.params["seed"]),
                  "test_accuracy": r.data.metrics.get(Metric.TEST_ACCURACY)}
                 for r in replicates), key=lambda r: r["seed"]),
            "registered_model_test_accuracy": registered,
            "per_trial": trials}
    return out


def registered_test_accuracy(client: Any, name: str = REGISTERED_MODEL) -> float | None:
    """Test accuracy of the model the sweep registered as `name` (alias `champion`), read
    from the run behind it; None when there is none."""
    from mlflow.exceptions import MlflowException

    from sweeplab.names import Metric
    from sweeplab.sweep.report import CHAMPION

    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # nothing registered under that name
        return None
    return client.get_run(version.run_id).data.metrics.get(Metric.TEST_ACCURACY)


def peer_once(n_trials: int, epochs: int = 60) -> dict[str, Any]:
    """`python -m sweeplab.bench.peer` in a temporary folder; its JSON result, with times
    as seconds since this process started the command."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        cmd = [sys.executable, "-m", "sweeplab.bench.peer", f"--trials={n_trials}",
               f"--epochs={epochs}", f"--tracking-uri=sqlite:///{Path(tmp) / 'mlflow.db'}",
               f"--out={out}"]
        t0 = time.time()
        subprocess.run(cmd, cwd=tmp, check=True, capture_output=True, text=True, timeout=3600)
        wall = time.time() - t0
        got = json.loads(out.read_text())
    trials = [t | {"started_seconds": t["started_at"] - t0 if t["started_at"] else None,
                   "seconds": t["completed_at"] - t0 if t["completed_at"] else None,
                   "seconds_logged": t["logged_at"] - t0 if t["logged_at"] else None}
              for t in got["trials"]]
    logged = first_at_bar(trials, key="seconds_logged")
    return summary(trials, wall) | {
            "command": f"python -m sweeplab.bench.peer --trials={n_trials} --epochs={epochs}",
            "seconds_to_bar_logged": logged["seconds_logged"] if logged else None,
            "best_trial": got["best"]["number"],
            "best_trial_test_accuracy": got["best"]["test_accuracy"],
            "best_params": got["best"]["params"], "epochs": epochs, "seed": got["seed"],
            "test_accuracy_is": got["test_accuracy_is"], "per_trial": trials}
