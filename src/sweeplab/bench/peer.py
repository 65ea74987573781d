"""The peer of `make sweep`: the same search written as a user of Optuna and scikit-learn
would write it, for the bench's time-to-quality comparison (bench/time_to_quality.py).

Usage:
    python -m sweeplab.bench.peer [--trials 40] [--epochs 60] [--tracking-uri URI]
                                  [--out result.json]

Optuna's TPE sampler (seed 0) over the default sweep's space (depth 1..5, width 4..128 on
a log scale, learning rate 1e-4..1.0 on a log scale), maximising validation accuracy; a
trial fits scikit-learn's `MLPClassifier` (relu, Adam, batch 64, `--epochs` epochs, no
early stopping, `random_state` = the run seed sweeplab's trials use) on the train split;
optuna-integration's `MLflowCallback` logs each trial to MLflow. The train / validation /
test arrays are sweeplab's own for the default sweep (its config composed with Hydra, its
loader), transposed to scikit-learn's (m, n_x).

Each trial's fitted model is scored on the test split too (user attr `test_accuracy`),
so the best trial's test accuracy is its own model's: the search refits nothing. (The
bench later refits the best configuration on other seeds: `refit`.)

Needs optuna-integration: pip install -e '.[bench]'. Without it the command says so on
one line and exits with status 2. Writes (or prints) a JSON result: per trial its state,
params, validation and test accuracy, `started_at` and `completed_at` (Optuna's
datetime_start and datetime_complete) and `logged_at` (after the MLflow callback), all in
epoch seconds; the best trial.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

INSTALL_HINT = "optuna-integration is not installed: pip install -e '.[bench]'"
STUDY_NAME = "digits-peer"


def available() -> bool:
    """Whether optuna-integration (the peer's MLflow callback) can be imported."""
    return importlib.util.find_spec("optuna_integration") is not None


def default_sweep_config(overrides: Sequence[str] = ()) -> Any:
    """The default sweep's checked config (`Config`), as a trial's: Hydra's composition of
    `sweep_app` with `overrides` (e.g. ``seed=7``, ``model.depth=3``)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from sweeplab.config import register_configs, to_config

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="sweeplab.conf", version_base="1.3"):
        cfg = to_config(compose("sweep_app", overrides=list(overrides)))
    GlobalHydra.instance().clear()
    return cfg


def default_sweep_arrays(seed: int | None = None) -> dict[str, Any]:
    """The default sweep's train / val / test split as scikit-learn takes it: X (m, n_x),
    y (m,) int labels; and the run seed sweeplab's trials train with (key "seed"). With
    `seed`, the split a sweeplab run of that seed trains on (the seed draws the validation
    split out of the training set; the test set is the same for every seed)."""
    from sweeplab.train import load_data

    cfg = default_sweep_config([] if seed is None else [f"seed={seed}"])
    d = load_data(cfg)  # exactly what each of the sweep's trials trains on
    assert d.X_val is not None and d.y_val is not None, "the default sweep has a val split"
    assert d.X_test is not None and d.y_test is not None, "digits has a test split"
    # sweeplab holds examples as columns (n_x, m); scikit-learn wants rows (m, n_x)
    return {"seed": cfg.seed, "X_train": d.X_train.T, "y_train": d.y_train,
            "X_val": d.X_val.T, "y_val": d.y_val, "X_test": d.X_test.T, "y_test": d.y_test}


def run_peer(n_trials: int, epochs: int, tracking_uri: str) -> dict[str, Any]:
    """Run the peer's study; return the JSON-ready result (see the module docstring)."""
    import optuna
    from optuna_integration import MLflowCallback
    from sklearn.exceptions import ConvergenceWarning

    a = default_sweep_arrays()
    # max_iter epochs without early stopping always "fails to converge": expected here
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # optuna-integration 5.0: "MLflowCallback has been deprecated in v4.9.0" (removal in
    # v6.0.0); the bench's issue names this callback, so the peer uses it as it is
    warnings.filterwarnings("ignore", message="MLflowCallback has been deprecated",
                            category=FutureWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        depth = trial.suggest_int("depth", 1, 5)
        width = trial.suggest_int("width", 4, 128, log=True)
        lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        clf = make_classifier(depth, width, lr, epochs, a["seed"])
        clf.fit(a["X_train"], a["y_train"])
        trial.set_user_attr("epochs_run", int(clf.n_iter_))
        trial.set_user_attr("test_accuracy", float(clf.score(a["X_test"], a["y_test"])))
        return float(clf.score(a["X_val"], a["y_val"]))

    logged_at: dict[int, float] = {}

    def stamp(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        logged_at[trial.number] = time.time()  # after MLflowCallback: the run is logged

    study = optuna.create_study(direction="maximize", study_name=STUDY_NAME,
                                sampler=optuna.samplers.TPESampler(seed=0))
    mlflow_cb = MLflowCallback(tracking_uri=tracking_uri, metric_name="val_accuracy")
    # a learning rate near 1.0 makes scikit-learn raise on non-finite weights: that trial
    # fails (and is logged as such), the study goes on
    study.optimize(objective, n_trials=n_trials, callbacks=[mlflow_cb, stamp],
                   catch=(ValueError,))
    trials = [{"number": t.number, "state": t.state.name, "params": t.params,
               "val_accuracy": t.value, "test_accuracy": t.user_attrs.get("test_accuracy"),
               "epochs_run": t.user_attrs.get("epochs_run"),
               "started_at": t.datetime_start.timestamp() if t.datetime_start else None,
               "completed_at": t.datetime_complete.timestamp() if t.datetime_complete else None,
               "logged_at": logged_at.get(t.number)} for t in study.trials]
    best = study.best_trial
    return {"study": STUDY_NAME, "n_trials": n_trials, "epochs": epochs, "seed": a["seed"],
            "tracking_uri": tracking_uri, "trials": trials,
            "best": {"number": best.number, "params": best.params, "val_accuracy": best.value,
                     "test_accuracy": best.user_attrs["test_accuracy"]},
            "test_accuracy_is": "the best trial's own fitted model on the test split "
                                "(no refit)"}


def refit(params: dict[str, Any], epochs: int, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """The peer's chosen configuration (`params`: depth, width, lr) fitted again once per
    seed, as a sweeplab run of that seed is trained: on that seed's train split
    (`default_sweep_arrays(seed)`) with `random_state` = the seed; each scored on the
    test split. One dict per seed: seed, test_accuracy (None if the fit failed)."""
    from sklearn.exceptions import ConvergenceWarning

    out = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        for seed in seeds:
            a = default_sweep_arrays(seed)
            clf = make_classifier(int(params["depth"]), int(params["width"]),
                                  float(params["lr"]), epochs, seed)
            try:
                clf.fit(a["X_train"], a["y_train"])
            except ValueError:  # non-finite weights (a learning rate near 1): no model
                out.append({"seed": seed, "test_accuracy": None})
                continue
            out.append({"seed": seed,
                        "test_accuracy": float(clf.score(a["X_test"], a["y_test"]))})
    return out


def make_classifier(depth: int, width: int, lr: float, epochs: int, seed: int) -> Any:
    """The peer's network: `depth` relu layers of `width` units, batch-64 Adam at `lr`,
    trained for exactly `epochs` epochs, as a sweeplab trial is. Without early_stopping,
    scikit-learn's Adam still stops once the training loss has not improved by `tol` for
    `n_iter_no_change` epochs (after 35 of 60 for some networks of this space): both are
    set so that it never does."""
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=(width,) * depth, activation="relu",
                         solver="adam", batch_size=64, learning_rate_init=lr, max_iter=epochs,
                         early_stopping=False, tol=0.0, n_iter_no_change=epochs + 1,
                         random_state=seed)


def positive(text: str) -> int:
    """argparse type: a whole number >= 1 (argparse's one-line error otherwise)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweeplab.bench.peer",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=positive, default=40, help="trials (default 40)")
    p.add_argument("--epochs", type=positive, default=60,
                   help="epochs of each fit (default 60)")
    p.add_argument("--tracking-uri", default="sqlite:///peer-mlflow.db",
                   help="MLflow store for MLflowCallback (default sqlite:///peer-mlflow.db)")
    p.add_argument("--out", default=None, help="write the JSON result here (default: print)")
    args = p.parse_args(argv)
    if not available():
        print(f"error: {INSTALL_HINT}", file=sys.stderr)
        return 2
    result = run_peer(args.trials, args.epochs, args.tracking_uri)
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        b = result["best"]
        print(f"peer: {args.trials} trials; best trial {b['number']} val_accuracy "
              f"{b['val_accuracy']:.4f}, test_accuracy {b['test_accuracy']:.4f}; "
              f"written: {args.out}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
