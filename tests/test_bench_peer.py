"""The bench's peer suite: the peer command's result against what it logged to MLflow
(slow: it runs the peer as a process), and the suite's arithmetic, report and skip (fast).
No timing is asserted: the figures depend on the machine and its load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sweeplab.bench import peer, report, time_to_quality
from sweeplab.bench.__main__ import main


@pytest.mark.slow
@pytest.mark.skipif(not peer.available(), reason=peer.INSTALL_HINT)
def test_the_peer_returns_what_it_logged(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "peer.json"
    # its own working folder: the digits cache it builds lands there, not in the repository
    subprocess.run([sys.executable, "-m", "sweeplab.bench.peer", "--trials", "3",
                    "--epochs", "3", "--tracking-uri", uri, "--out", str(out)],
                   cwd=tmp_path, check=True, capture_output=True, text=True, timeout=300,
                   env={**os.environ, "MLFLOW_TRACKING_URI": "sqlite:///nowhere-else.db"})
    got = json.loads(out.read_text())
    assert got["n_trials"] == 3 and got["epochs"] == 3 and len(got["trials"]) == 3
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(peer.STUDY_NAME)
    assert exp is not None, "MLflowCallback names the experiment after the study"
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert len(runs) == 3
    by_name = {r.info.run_name: r for r in runs}  # MLflowCallback: run name = trial number
    for t in got["trials"]:
        run = by_name[str(t["number"])]
        if t["state"] == "COMPLETE":
            assert run.data.metrics["val_accuracy"] == pytest.approx(t["val_accuracy"],
                                                                     abs=1e-12)
            assert 0.0 <= t["test_accuracy"] <= 1.0
            assert t["epochs_run"] == 3  # every epoch asked for: no stop on a flat loss
        assert int(run.data.params["depth"]) == t["params"]["depth"]
        assert int(run.data.params["width"]) == t["params"]["width"]
    # trials run one after the other: each starts, completes, is logged, then the next one
    stamps = [s for t in got["trials"]
              for s in (t["started_at"], t["completed_at"], t["logged_at"])]
    assert stamps == sorted(stamps)
    done = [t for t in got["trials"] if t["state"] == "COMPLETE"]
    best = max(done, key=lambda t: t["val_accuracy"])
    assert got["best"]["val_accuracy"] == best["val_accuracy"]
    assert got["best"]["test_accuracy"] == best["test_accuracy"]
    assert not (tmp_path / "nowhere-else.db").exists()


def test_the_peer_trains_on_the_default_sweeps_arrays(in_data_cache: Path) -> None:
    from helpers import compose_config
    from sweeplab.config import to_config
    from sweeplab.train import load_data

    a = peer.default_sweep_arrays()
    d = load_data(to_config(compose_config(config_name="sweep_app")))
    assert a["seed"] == 1
    for part in ("train", "val", "test"):
        X, y = getattr(d, f"X_{part}"), getattr(d, f"y_{part}")
        assert a[f"X_{part}"].shape == (X.shape[1], X.shape[0])  # examples as rows
        assert (a[f"X_{part}"] == X.T).all() and (a[f"y_{part}"] == y).all()


def trial(n: int, val: float | None, seconds: float, state: str = "COMPLETE"
          ) -> dict[str, Any]:
    return {"number": n, "state": state, "val_accuracy": val, "seconds": seconds,
            "started_seconds": seconds - 0.5}


def test_time_to_quality_counts_the_first_complete_trial_at_the_bar() -> None:
    trials = [trial(0, 0.95, 3.0), trial(1, 0.99, 9.0, "PRUNED"), trial(2, 0.975, 7.0),
              trial(3, 0.98, 5.0), trial(4, None, 1.0, "FAIL")]
    hit = time_to_quality.first_at_bar(trials)
    assert hit is not None and hit["number"] == 3  # by time, not by number; pruned ignored
    s = time_to_quality.summary(trials, wall=12.0)
    assert s["seconds_to_bar"] == 5.0 and s["trial_to_bar"] == 3
    assert s["best_val_accuracy"] == 0.98 and s["trials_complete"] == 3 and s["trials"] == 5
    assert s["seconds_to_first_trial_start"] == 0.5
    assert time_to_quality.first_at_bar([trial(0, 0.5, 1.0)]) is None


def canned_peer(ours_at: float | None, peer_at: float | None,
                mine: list[float] | None = None, its: list[float] | None = None
                ) -> dict[str, Any]:
    """A peer suite's result; `mine` and `its`: both choices' test accuracies retrained on
    the same fresh seeds (none: nothing was retrained)."""
    def side(at: float | None, test: float) -> dict[str, Any]:
        return {"wall_seconds": 60.0, "seconds_to_bar": at, "seconds_to_first_trial_start": 4.0,
                "trial_to_bar": None if at is None else 4, "trials": 40,
                "trials_complete": 30, "best_val_accuracy": 0.98, "best_trial": 4,
                "best_trial_test_accuracy": test}

    seeds = list(range(7, 7 + len(mine or [])))
    ours = side(ours_at, 0.981) | {
        "confirmed_mean_test_accuracy": 0.9835 if mine else None,
        "confirmed_champion_trial": 7 if mine else None,
        "registered_model_test_accuracy": 0.977 if mine else None,
        "retrained": [{"seed": s, "test_accuracy": a}
                      for s, a in zip(seeds, mine or [], strict=True)]}
    theirs = side(peer_at, 0.975) | {"best_trial": 15, "refitted": [
        {"seed": s, "test_accuracy": a} for s, a in zip(seeds, its or [], strict=True)]}
    ratio = ours_at / peer_at if ours_at is not None and peer_at else None
    return {"n_trials": 40, "quality_bar": 0.97, "target_ratio": 0.5, "sweeplab": ours,
            "peer": theirs, "ratio_to_bar": ratio,
            "over_seeds": time_to_quality.over_seeds(ours["retrained"], theirs["refitted"]),
            "load_average_before_after": [1.0, 2.0]}


def test_the_peer_rows_judge_the_ratio_and_the_test_accuracy_on_fresh_seeds() -> None:
    mine, its = [0.98, 0.985, 0.975, 0.98, 0.99], [0.97, 0.975, 0.98, 0.97, 0.965]
    text = "\n".join(report.peer_rows(canned_peer(10.0, 40.0, mine, its)))
    assert "0.25x | <= 0.5x | met" in text
    # one draw each, the registered model, the mean on the seeds it was chosen on: shown
    assert "search's best trial (4) / peer's best trial (15) | 0.9810 / 0.9750 |  |" in text
    assert "registered model (its champion's best replicate) / peer's best trial | " \
           "0.9770 / 0.9750 |  |" in text
    assert "champion (trial 7), mean over its replicates (the seeds it was chosen on) | " \
           "0.9835 |  |" in text
    # judged: both configurations retrained on the same fresh seeds
    assert "fresh seeds 7, 8, 9, 10, 11" in text and "confirmed champion (trial 7) vs" in text
    assert f"{sum(mine) / 5:.4f} ± " in text and f"vs {sum(its) / 5:.4f} ± " in text
    assert "(n=5)" in text and "Welch's t-test p = " in text
    assert text.count("| >= peer's (means) | met |") == 1
    worse = "\n".join(report.peer_rows(canned_peer(10.0, 40.0, its, mine)))
    assert "| >= peer's (means) | **missed** |" in worse
    assert "**missed**" in "\n".join(report.peer_rows(canned_peer(30.0, 40.0, mine, its)))
    assert "the peer never reached it | <= 0.5x | met" in "\n".join(
        report.peer_rows(canned_peer(10.0, None)))
    assert "never reached" in "\n".join(report.peer_rows(canned_peer(None, 5.0)))
    one = "\n".join(report.peer_rows(canned_peer(10.0, 40.0, [0.98], [0.97])))
    assert "0.9800 (n=1) vs 0.9700 (n=1) (Welch's t-test p = n/a)" in one


def test_with_nothing_retrained_the_search_best_trials_are_judged() -> None:
    text = "\n".join(report.peer_rows(canned_peer(10.0, 40.0)))
    assert "sweeplab (search's best trial) vs peer | 0.9810 vs 0.9750 | >= peer's | met" \
        in text
    assert "registered model" not in text and "fresh seeds" not in text


def test_over_seeds_gives_each_sides_interval_and_welchs_test() -> None:
    import numpy as np

    def reps(accs: list[float | None]) -> list[dict[str, Any]]:
        return [{"seed": 7 + i, "test_accuracy": a} for i, a in enumerate(accs)]

    mine, its = [0.98, 0.99, 0.985, 0.98], [0.95, 0.955, 0.96, 0.95]
    got = time_to_quality.over_seeds(reps([*mine, None]), reps([*its, float("nan")]))
    assert got is not None and got["seeds"] == [7, 8, 9, 10, 11]
    assert got["sweeplab"]["n"] == 4 and got["peer"]["n"] == 4  # seeds without a model
    assert got["sweeplab"]["mean"] == pytest.approx(np.mean(mine))
    assert got["peer"]["std"] == pytest.approx(np.std(its, ddof=1))
    assert got["sweeplab"]["ci_low"] < np.mean(mine) < got["sweeplab"]["ci_high"]
    assert got["welch_p"] < 0.01  # clearly apart
    close = time_to_quality.over_seeds(reps(mine), reps(list(reversed(mine))))
    assert close is not None and close["welch_p"] == pytest.approx(1.0)
    flat = time_to_quality.over_seeds(reps([0.98, 0.98]), reps([0.97, 0.97]))
    assert flat is not None and flat["welch_p"] is None  # neither varies: no test
    single = time_to_quality.over_seeds(reps([0.98]), reps(its))
    assert single is not None and single["sweeplab"]["ci_low"] is None
    assert single["welch_p"] is None
    assert time_to_quality.over_seeds([], reps(its)) is None
    for result in (got, flat, single):  # the bench's JSON stays standard
        json.dumps(result, allow_nan=False)


def test_both_choices_are_retrained_on_each_seeds_own_split(in_data_cache: Path) -> None:
    """A sweeplab run's seed draws its validation split out of the training set: the
    peer's refit of a seed trains on that seed's split too, and sweeplab's retrain is the
    default sweep's run of that seed."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from sweeplab.train import run

    a2, a3 = peer.default_sweep_arrays(2), peer.default_sweep_arrays(3)
    assert a2["X_train"].shape == a3["X_train"].shape
    assert not (a2["X_train"] == a3["X_train"]).all()  # another split
    assert (a2["X_test"] == a3["X_test"]).all()  # the same test set

    params = {"depth": 1, "width": 8, "lr": 0.01}
    got = peer.refit(params, epochs=3, seeds=[2, 3, 2])
    assert [g["seed"] for g in got] == [2, 3, 2]
    assert got[0]["test_accuracy"] == got[2]["test_accuracy"]  # a seed is a seed
    clf = peer.make_classifier(1, 8, 0.01, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(a3["X_train"], a3["y_train"])
    assert got[1]["test_accuracy"] == clf.score(a3["X_test"], a3["y_test"])
    assert peer.refit(params, epochs=3, seeds=[]) == []

    ours = {"model.depth": 1, "model.width": 8, "optim.lr": 0.01, "train.epochs": 3}
    mine = time_to_quality.retrain(ours, [2, 3])
    direct = run(peer.default_sweep_config(["seed=3", "model.depth=1", "model.width=8",
                                            "optim.lr=0.01", "train.epochs=3"]))
    assert mine[1] == {"seed": 3, "test_accuracy": direct.metrics["test_accuracy"]}
    assert mine[0]["test_accuracy"] != mine[1]["test_accuracy"]


def test_the_registered_models_test_accuracy_is_read_from_the_run_behind_its_alias(
        tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert time_to_quality.registered_test_accuracy(client) is None  # nothing registered
    exp = client.create_experiment("e")
    runs = []
    for acc in (0.91, 0.95):
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "test_accuracy", acc)
        runs.append(run.info.run_id)
    name = time_to_quality.REGISTERED_MODEL
    client.create_registered_model(name)
    for run_id in runs:
        client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(name, "champion", "1")
    assert time_to_quality.registered_test_accuracy(client) == 0.91
    assert time_to_quality.registered_test_accuracy(client, "another") is None


def test_without_optuna_integration_the_suite_and_the_peer_say_how_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(peer, "available", lambda: False)
    assert peer.main(["--trials", "1"]) == 2
    assert "pip install -e '.[bench]'" in capsys.readouterr().err
    assert main(["--out", str(tmp_path), "--only", "peer"]) == 0
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["peer"] == {"skipped": peer.INSTALL_HINT}
    assert "skipped: optuna-integration is not installed" in (tmp_path / "latest.md").read_text()


def test_the_peers_network_trains_every_epoch_asked_for() -> None:
    """scikit-learn's Adam stops by itself on a flat training loss even without early
    stopping; the peer's network must not, or it does less work than a sweeplab trial."""
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 8)), rng.integers(0, 3, 200)
    clf = peer.make_classifier(1, 4, 1e-6, 30, 0)  # a learning rate that barely moves it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.n_iter_ == 30
