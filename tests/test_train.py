"""train.run: what the history means, divergence, stopping, determinism, and that it learns.

Expected values are recomputed here by hand (a NumPy forward pass and cross-entropy written
out below), not taken from sweeplab.nn's own cost functions.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from sweeplab import train
from sweeplab.config import to_config
from sweeplab.nn import Network
from sweeplab.train.callbacks import Callback, EarlyStopping, RunStart, StopTraining

# Small and fast: planar (300 training points, 2 features) and a full batch.
PLANAR = ["data=planar", "model.depth=1", "model.width=4", "model.activation=tanh", "optim=gd",
          "optim.lr=1.2", "train.batch_size=null"]
# moons with a validation split (and a test set).
MOONS = ["data=moons", "data.val_fraction=0.2", "model.depth=2", "model.width=8",
         "model.activation=relu", "train.batch_size=null"]


def forward_by_hand(W: list[np.ndarray], b: list[np.ndarray], X: np.ndarray,
                    hidden: str) -> np.ndarray:
    """A[L] (n_y, m): hidden layers tanh or relu, sigmoid or softmax output, in float64."""
    A = X.astype(np.float64)
    g = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0)}[hidden]
    for Wl, bl in zip(W[:-1], b[:-1], strict=True):
        A = g(Wl.astype(np.float64) @ A + bl)
    Z = W[-1].astype(np.float64) @ A + b[-1]
    if Z.shape[0] == 1:
        return 1 / (1 + np.exp(-Z))
    E = np.exp(Z - Z.max(axis=0))
    return E / E.sum(axis=0)


def cost_by_hand(W: list[np.ndarray], b: list[np.ndarray], X: np.ndarray, Y: np.ndarray,
                 hidden: str, l2: float = 0.0) -> float:
    """The course's cross-entropy J (+ (λ/2m) Σ‖W‖²)."""
    A = forward_by_hand(W, b, X, hidden)
    Y = Y.astype(np.float64)
    m = X.shape[1]
    if A.shape[0] == 1:
        J = -np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m
    else:
        J = -np.sum(Y * np.log(A)) / m
    return float(J + l2 / (2 * m) * sum(np.sum(Wl.astype(np.float64) ** 2) for Wl in W))


def labels_by_hand(W: list[np.ndarray], b: list[np.ndarray], X: np.ndarray,
                   hidden: str) -> np.ndarray:
    A = forward_by_hand(W, b, X, hidden)
    return (A[0] > 0.5).astype(int) if A.shape[0] == 1 else A.argmax(axis=0)


class Recorder(Callback):
    """Keeps what the callbacks saw, and copies of the parameters at each log point."""

    def __init__(self) -> None:
        self.net: Network | None = None
        self.steps: list[int] = []
        self.metrics: list[dict[str, float]] = []
        self.params: list[tuple[list[np.ndarray], list[np.ndarray]]] = []
        self.ended: list[train.RunResult] = []

    def on_train_start(self, start: RunStart) -> None:
        self.net = start.network
        self.initial = (copy.deepcopy(start.network.W), copy.deepcopy(start.network.b))

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        assert self.net is not None
        self.steps.append(step)
        self.metrics.append(dict(metrics))
        self.params.append((copy.deepcopy(self.net.W), copy.deepcopy(self.net.b)))

    def on_train_end(self, result: train.RunResult) -> None:
        self.ended.append(result)


def expected_steps(epochs: int, log_every: int) -> list[int]:
    steps = list(range(0, epochs, log_every))
    return steps if steps[-1] == epochs - 1 else [*steps, epochs - 1]


# --- history semantics --------------------------------------------------------------------

@pytest.mark.parametrize(("epochs", "log_every"), [(23, 5), (20, 5), (7, 1), (3, 10)])
def test_log_steps(compose, epochs: int, log_every: int) -> None:
    rec = Recorder()
    r = train.run(compose(*PLANAR, f"train.epochs={epochs}", f"train.log_every={log_every}"),
                  [rec])
    want = expected_steps(epochs, log_every)
    assert r.history.step == want
    assert rec.steps == want
    assert len(r.costs) == r.epochs_run == epochs
    assert r.status == "finished" and r.reason is None


def test_step_zero_is_the_untrained_network(compose) -> None:
    cfg = to_config(compose(*PLANAR, "train.epochs=5", "train.log_every=2"))
    data = train.load_data(cfg)
    fresh = train.build_network(cfg, data)  # same seed, same initialisation, not trained
    want = cost_by_hand(fresh.W, fresh.b, data.X_train, data.Y_train, "tanh")
    r = train.run(cfg, data=data)
    assert r.history.train_cost[0] == pytest.approx(want, rel=1e-12)
    assert r.costs[0] == pytest.approx(want, rel=1e-12)


def test_full_batch_history_is_the_cost_of_each_logged_epoch(compose) -> None:
    r = train.run(compose(*PLANAR, "train.epochs=30", "train.log_every=4"))
    assert r.history.train_cost == [r.costs[e] for e in r.history.step]
    assert np.all(np.isfinite(r.costs))
    assert r.costs[-1] < r.costs[0]  # it did train, so the costs differ from step to step


@pytest.mark.parametrize("l2", [0.0, 0.7])
def test_cost_at_step_e_is_before_epoch_e_update(compose, l2: float) -> None:
    # The parameters seen at log point e are those after epoch e's update, i.e. the ones
    # epoch e + 1 starts from: their cost must be the cost logged at e + 1.
    rec = Recorder()
    cfg = compose(*PLANAR, "train.epochs=8", "train.log_every=1", f"optim.l2={l2}")
    r = train.run(cfg, [rec])
    d = r.dataset
    assert r.costs[0] == pytest.approx(
        cost_by_hand(*rec.initial, d.X_train, d.Y_train, "tanh", l2), rel=1e-12)
    for e in range(len(r.costs) - 1):
        W, b = rec.params[e]
        assert r.costs[e + 1] == pytest.approx(
            cost_by_hand(W, b, d.X_train, d.Y_train, "tanh", l2), rel=1e-12), e
    # And the last logged cost is not the cost after the last update.
    after = cost_by_hand(r.network.W, r.network.b, d.X_train, d.Y_train, "tanh", l2)
    assert r.costs[-1] != pytest.approx(after, rel=1e-9)


def test_minibatch_epoch_cost_is_the_per_example_mean(compose, monkeypatch) -> None:
    seen: list[tuple[float, int]] = []
    original = Network.forward_backward

    def spy(self: Network, X: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        out = original(self, X, *args, **kwargs)
        seen.append((out[0], X.shape[1]))
        return out

    monkeypatch.setattr(Network, "forward_backward", spy)
    r = train.run(compose(*PLANAR, "train.batch_size=64", "train.epochs=3", "train.log_every=1"))
    m = r.dataset.m_train
    sizes = [64] * (m // 64) + ([m % 64] if m % 64 else [])
    assert len(sizes) > 1 and len(set(sizes)) > 1  # unequal batches make the test bite
    n = len(sizes)
    assert [s for _, s in seen] == sizes * 3
    for e in range(3):
        batch = seen[e * n:(e + 1) * n]
        per_example = sum(J * s for J, s in batch) / m
        assert r.costs[e] == pytest.approx(per_example, rel=1e-12)
        assert r.costs[e] != pytest.approx(np.mean([J for J, _ in batch]), rel=1e-9)
    assert r.history.train_cost == list(r.costs)


def test_validation_metrics_use_the_parameters_of_the_logged_step(compose) -> None:
    rec = Recorder()
    r = train.run(compose(*MOONS, "train.epochs=4", "train.log_every=1"), [rec])
    d, h = r.dataset, r.history
    assert len(h.val_cost) == len(h.val_accuracy) == len(h.step) == 4
    before = [rec.initial, *rec.params]  # parameters at the start of epoch e
    for i, step in enumerate(h.step):
        W, b = before[step]
        assert h.val_cost[i] == pytest.approx(
            cost_by_hand(W, b, d.X_val, d.Y_val, "relu"), rel=1e-9)
        assert h.val_accuracy[i] == np.mean(labels_by_hand(W, b, d.X_val, "relu") == d.y_val)
    assert rec.metrics[0].keys() == {"train_cost", "val_cost", "val_accuracy"}
    assert [mm["val_cost"] for mm in rec.metrics] == h.val_cost


# --- divergence and stopping --------------------------------------------------------------

@pytest.mark.parametrize("overrides", [
    ["optim.lr=1e200"],
    ["optim.lr=1e10", "model.dtype=float32"],
], ids=["float64", "float32"])
def test_too_high_learning_rate_diverges_cleanly(compose, overrides: list[str]) -> None:
    rec = Recorder()
    r = train.run(compose("data=planar", "model.depth=2", "model.width=32",
                          "model.activation=relu", "optim=gd", "train.batch_size=null",
                          "train.epochs=50", "train.log_every=5", *overrides), [rec])
    assert r.status == "diverged"
    assert not r.ok
    bad = int(np.flatnonzero(~np.isfinite(r.costs))[0])
    assert r.epochs_run == bad + 1 < 50
    assert f"epoch {bad}" in (r.reason or "")
    assert r.history.step[-1] == bad
    assert not np.isfinite(r.history.train_cost[-1])
    assert "train_accuracy" not in r.metrics
    assert rec.ended == [r]


def test_divergence_between_log_points_reports_no_stale_validation(compose) -> None:
    r = train.run(compose("data=moons", "data.val_fraction=0.2", "model.depth=3",
                          "model.activation=relu", "optim=gd", "optim.lr=1e20",
                          "train.batch_size=null", "train.epochs=50", "train.log_every=5"))
    assert r.status == "diverged"
    bad = r.history.step[-1]
    assert bad % 5 != 0, "this config should diverge between log points"
    assert len(r.history.val_cost) == len(r.history.step)
    # Validation was not evaluated at the diverging epoch: it must not repeat old values.
    assert np.isnan(r.history.val_cost[-1]) and np.isnan(r.history.val_accuracy[-1])


def test_early_stopping_follows_its_rule(compose) -> None:
    base = [*MOONS, "data.n_samples=200", "model.depth=3", "model.width=64", "optim.lr=0.02",
            "train.epochs=150", "train.log_every=5"]
    free = train.run(compose(*base))
    assert free.status == "finished"
    patience = 3
    # Recompute, from the unstopped run's val_cost, where the rule stops.
    best, since, stop = np.inf, 0, None
    for i, v in enumerate(free.history.val_cost):
        if v < best:
            best, since = v, 0
        else:
            since += 1
            if since >= patience:
                stop = i
                break
    assert stop is not None, "this config should overfit"
    r = train.run(compose(*base, f"train.early_stopping.patience={patience}"))
    assert r.status == "early_stopped" and r.ok
    assert r.history.step == free.history.step[:stop + 1]
    assert r.epochs_run == free.history.step[stop] + 1
    np.testing.assert_array_equal(r.costs, free.costs[:r.epochs_run])
    assert "val_cost" in (r.reason or "")
    assert "val_accuracy" in r.metrics  # final metrics are still computed


def test_early_stopping_min_delta(compose) -> None:
    # No fall of val_cost is ever 1e9: the run stops `patience` log points after the first.
    r = train.run(compose(*MOONS, "train.epochs=100", "train.log_every=1",
                          "train.early_stopping.patience=4", "train.early_stopping.min_delta=1e9"))
    assert r.status == "early_stopped"
    assert r.history.step == [0, 1, 2, 3, 4]


def test_early_stopping_is_a_callback_like_any_other_stop(compose) -> None:
    """train.early_stopping.patience adds an EarlyStopping callback; passing one by hand
    stops the same run at the same epoch, with the same status and reason."""
    base = [*MOONS, "train.epochs=100", "train.log_every=1"]
    by_config = train.run(compose(*base, "train.early_stopping.patience=4",
                                  "train.early_stopping.min_delta=1e9"))
    rec = Recorder()
    by_hand = train.run(compose(*base), [rec, EarlyStopping(patience=4, min_delta=1e9)])
    assert by_hand.status == by_config.status == "early_stopped"
    assert by_hand.reason == by_config.reason
    assert by_hand.reason is not None and by_hand.reason.startswith(
        "val_cost did not improve by 1000000000.0 for 4 log points (best ")
    assert by_hand.history.step == by_config.history.step == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(by_hand.costs, by_config.costs)
    assert rec.steps == [0, 1, 2, 3, 4]  # callbacks before it saw the stopping step
    assert rec.ended == [by_hand]


def test_early_stopping_rule_on_its_own() -> None:
    es = EarlyStopping(patience=2, min_delta=0.1)
    es.on_log(0, {"train_cost": 1.0})  # no validation: nothing to judge
    for step, v in enumerate([1.0, 0.8, 0.75, 0.5, 0.45]):
        es.on_log(step, {"val_cost": v})  # 0.75 is no improvement on 0.8 by > 0.1
    with pytest.raises(StopTraining) as stop:
        es.on_log(5, {"val_cost": 0.41})
    assert stop.value.status == "early_stopped"
    assert stop.value.reason == "val_cost did not improve by 0.1 for 2 log points (best 0.5)"
    es.on_train_start(None)  # type: ignore[arg-type]  # a new run starts afresh
    es.on_log(0, {"val_cost": 9.0})
    es.on_log(1, {"val_cost": 9.0})


class Pruner(Callback):
    def __init__(self, at: int) -> None:
        self.at = at
        self.ended: list[train.RunResult] = []

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        if step >= self.at:
            raise StopTraining("pruned", f"pruned at step {step}")

    def on_train_end(self, result: train.RunResult) -> None:
        self.ended.append(result)


def test_stop_training_from_a_callback(compose) -> None:
    pruner, rec = Pruner(at=10), Recorder()
    r = train.run(compose(*PLANAR, "train.epochs=50", "train.log_every=5"), [rec, pruner])
    assert r.status == "pruned"
    assert r.reason == "pruned at step 10"
    assert r.epochs_run == 11 and len(r.costs) == 11
    assert r.history.step == [0, 5, 10]
    assert pruner.ended == [r] and rec.ended == [r]  # every callback sees the end
    # judged at step 10 and abandoned: nothing measured after the update that followed
    assert "train_accuracy" not in r.metrics and "final_val_cost" not in r.metrics
    assert "train_seconds" in r.metrics


def test_a_run_stopped_otherwise_has_its_final_metrics(compose) -> None:
    class Stop(Callback):
        def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
            if step == 10:
                raise StopTraining("stopped", "enough")

    r = train.run(compose(*PLANAR, "train.epochs=50", "train.log_every=5"), [Stop()])
    assert r.status == "stopped" and "train_accuracy" in r.metrics


# --- determinism and dtype ----------------------------------------------------------------

DETERMINISM = {
    "float64-full": ["model.dtype=float64", "train.batch_size=null"],
    "float32-full": ["model.dtype=float32", "train.batch_size=null"],
    "float64-minibatch-dropout": ["model.dtype=float64", "train.batch_size=32",
                                  "model.keep_prob=0.8"],
    "float32-minibatch-dropout": ["model.dtype=float32", "train.batch_size=32",
                                  "model.keep_prob=0.8"],
}


@pytest.mark.parametrize("name", list(DETERMINISM))
def test_same_config_gives_bit_identical_costs(compose, name: str) -> None:
    ov = [*MOONS, "optim=adam", "optim.lr=0.01", "train.epochs=8", "train.log_every=1",
          *DETERMINISM[name]]
    a, b = train.run(compose(*ov)), train.run(compose(*ov))
    assert len(a.costs) == 8
    np.testing.assert_array_equal(a.costs, b.costs)
    for p, q in zip(a.network.params().values(), b.network.params().values(), strict=True):
        np.testing.assert_array_equal(p, q)
    other = train.run(compose(*ov, "seed=2"))
    assert not np.array_equal(a.costs, other.costs)


def test_dropout_draws_differ_from_no_dropout(compose) -> None:
    ov = [*MOONS, "train.epochs=3", "train.log_every=1"]
    assert not np.array_equal(train.run(compose(*ov, "model.keep_prob=0.5")).costs,
                              train.run(compose(*ov)).costs)


def test_float32_stays_float32(compose) -> None:
    r = train.run(compose(*MOONS, "model.dtype=float32", "train.batch_size=32",
                          "train.epochs=5", "train.log_every=1"))
    assert r.dataset.X_train.dtype == np.float32
    for name, p in r.network.params().items():
        assert p.dtype == np.float32, name
    assert np.all(np.isfinite(r.costs))


# --- final metrics and learning -----------------------------------------------------------

def test_final_accuracies_on_every_split(compose) -> None:
    r = train.run(compose(*MOONS, "train.epochs=20", "train.log_every=5"))
    net, d = r.network, r.dataset
    for split in ("train", "val", "test"):
        X, y = getattr(d, f"X_{split}"), getattr(d, f"y_{split}")
        assert X is not None
        want = np.mean(labels_by_hand(net.W, net.b, X, "relu") == y)
        assert r.metrics[f"{split}_accuracy"] == want, split
    assert r.metrics["train_seconds"] > 0


def test_no_validation_metrics_without_a_split(compose) -> None:
    r = train.run(compose(*PLANAR, "train.epochs=3", "train.log_every=1"))
    assert r.dataset.X_val is None
    assert "val_accuracy" not in r.metrics and "test_accuracy" in r.metrics
    assert r.history.val_cost == [] and set(r.history.as_dict()) == {"train_cost"}


def test_planar_learns_with_a_hidden_layer_but_not_without(compose) -> None:
    # The course's week 3: 4 tanh units reach about 90%; logistic regression about 47%.
    hidden = train.run(compose(*PLANAR, "train.epochs=2000", "train.log_every=500"))
    logistic = train.run(compose(*PLANAR, "model.depth=0", "train.epochs=2000",
                                 "train.log_every=500"))
    assert hidden.metrics["train_accuracy"] > 0.85
    assert logistic.metrics["train_accuracy"] < 0.6


def test_epochs_are_not_allocated_up_front(compose) -> None:
    """train.epochs=10**12 once allocated 8 TB of costs before the first epoch; a run
    stopped early keeps the costs it ran."""

    class StopAt5(Callback):
        def on_log(self, step: int, metrics) -> None:  # type: ignore[no-untyped-def]
            if step >= 5:
                raise StopTraining("stopped", "enough")

    cfg = to_config(compose(*PLANAR, "train.epochs=1000000000000", "train.log_every=1"))
    r = train.run(cfg, [StopAt5()])
    assert r.status == "stopped" and r.epochs_run == 6 and r.costs.shape == (6,)


@pytest.mark.parametrize("lr, learns", [(50.0, False), (1e6, False), (0.05, True)])
def test_a_run_that_ends_no_better_than_untrained_is_not_learning(compose, lr: float,
                                                                  learns: bool) -> None:
    """Mini-batch Adam at a huge learning rate keeps its cost finite (the stable form) but
    ends above the untrained network's cost: status not_learning, with both costs named."""
    r = train.run(compose("data=moons", "data.n_samples=200", "train.epochs=60",
                          "train.batch_size=32", "tracking.enabled=false", f"optim.lr={lr}"))
    fresh = train.build_network(r.config, r.dataset)  # as it was before training
    untrained = train.evaluate(fresh, r.dataset.X_train, r.dataset.Y_train,
                               r.dataset.y_train)[0]
    assert r.ok == learns
    if learns:
        assert r.status == "finished" and r.reason is None
        return
    assert r.status == "not_learning"
    assert untrained <= r.metrics["final_train_cost"] < np.inf
    assert f"{untrained:.4g}" in (r.reason or "")
    assert f"{r.metrics['final_train_cost']:.4g}" in (r.reason or "")
    assert "untrained" in (r.reason or "") and f"optim.lr={lr:g}" in (r.reason or "")


def test_a_second_signal_raises_at_once_and_a_third_right_after_it_is_ignored() -> None:
    """Three Ctrl-Cs in half a second while a sweep reported: the third cut the handling of
    the second (closing the parent run), with a traceback and the run left RUNNING."""
    import signal

    from sweeplab.train.interrupt import SECOND_SIGNAL_GRACE, StopRequest, Terminated

    stop = StopRequest()
    stop._on_signal(signal.SIGINT, None)  # the first: asks to stop
    assert stop.requested
    with pytest.raises(KeyboardInterrupt):
        stop._on_signal(signal.SIGINT, None)  # the second: at once
    stop._on_signal(signal.SIGINT, None)  # the third, right after: ignored
    stop._raised_at -= SECOND_SIGNAL_GRACE  # later: at once again
    with pytest.raises(Terminated):
        stop._on_signal(signal.SIGTERM, None)
