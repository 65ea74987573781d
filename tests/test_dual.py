"""The dual form of layer 1 (sweeplab.nn.dual) against the direct form it replaces, and the
steppers that train with either (sweeplab.nn.steppers).

The reference is the direct form itself: the network's own W[1] X path, already held to
gradient-check precision and to the course's figures. The dual form must give the same
costs, gradients and parameters to rounding, and be chosen only where it is exact.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from sweeplab import train
from sweeplab.config import FIRST_LAYER_FORMS, ConfigError, to_config
from sweeplab.data import Dataset
from sweeplab.nn import (
    STEPPERS,
    DirectStepper,
    DualStepper,
    Network,
    ShapeError,
    make_optimizer,
    resolve_stepper,
)
from sweeplab.nn.dual import DualLayer1
from sweeplab.train.callbacks import Callback, RunStart

N_X, M = 300, 40  # wide, as images are: m much smaller than n_x


def wide_data(n_classes: int = 2, m: int = M, seed: int = 0) -> Dataset:
    """Random (n_x, m) inputs in [0, 1) whose labels depend on them; val and test splits."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n_classes, N_X))

    def split(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X = rng.random((N_X, k))
        y = (w @ (X - 0.5)).argmax(axis=0)
        Y = y[None, :].astype(float) if n_classes == 2 else np.eye(n_classes)[:, y]
        return X, Y, y

    tr, va, te = split(m), split(20), split(20)
    return Dataset("wide", tuple(map(str, range(n_classes))), *tr, *va, *te,
                   fingerprint="test", source="test")


def config(**train_overrides: Any) -> Any:
    """A small full-batch gd run on `wide_data`, first layer as given."""
    base = {"seed": 3, "data": {"name": "h5", "train_file": "unused.h5", "val_fraction": 0.2},
            "model": {"hidden": [6, 4], "activation": "relu", "output": "auto",
                      "init": "he"},
            "optim": {"name": "gd", "lr": 0.05},
            "train": {"epochs": 60, "batch_size": None, "log_every": 7, "progress": False},
            "tracking": {"enabled": False}}
    for key, value in train_overrides.items():
        section, name = key.split("__")
        base[section][name] = value
    return to_config(base)


def both_forms(data: Dataset, **overrides: Any) -> tuple[train.RunResult, train.RunResult]:
    direct = train.run(config(train__first_layer="direct", **overrides), (), data)
    dual = train.run(config(train__first_layer="dual", **overrides), (), data)
    assert (direct.stepper, dual.stepper) == ("direct", "dual")
    return direct, dual


@pytest.mark.parametrize("optim", ["gd", "momentum"])
@pytest.mark.parametrize("l2", [0.0, 0.7])
@pytest.mark.parametrize("keep_prob", [1.0, 0.8])
def test_dual_training_matches_direct(optim: str, l2: float, keep_prob: float) -> None:
    direct, dual = both_forms(wide_data(), optim__name=optim, optim__l2=l2,
                              model__keep_prob=keep_prob)
    assert dual.costs[-1] < dual.costs[0]  # it learned something, so the match means much
    np.testing.assert_allclose(dual.costs, direct.costs, rtol=1e-10)
    np.testing.assert_allclose(dual.history.val_cost, direct.history.val_cost, rtol=1e-10)
    for Wd, Wr in zip(dual.network.W + dual.network.b, direct.network.W + direct.network.b,
                      strict=True):
        np.testing.assert_allclose(Wd, Wr, rtol=1e-9, atol=1e-12)
    assert dual.metrics.keys() == direct.metrics.keys()
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        assert dual.metrics[key] == direct.metrics[key]


def test_dual_softmax_and_logistic_regression() -> None:
    data = wide_data(n_classes=3)
    for hidden in ([5], []):
        direct, dual = both_forms(data, model__hidden=hidden, optim__l2=0.3)
        np.testing.assert_allclose(dual.costs, direct.costs, rtol=1e-10)
        np.testing.assert_allclose(dual.network.W[0], direct.network.W[0], rtol=1e-9,
                                   atol=1e-12)


def test_dual_gradient_is_the_direct_gradient_in_coefficients() -> None:
    """After some steps (a != 1, R != 0): J agrees, and D Xᵀ + d W1₀ is the direct dW[1]."""
    data = wide_data()
    X, Y = data.X_train, data.Y_train
    net = Network.create([N_X, 5, 1], init="he", seed=2)
    dual = DualLayer1(net, X)
    rng = np.random.default_rng(0)
    dual.a[0] = 0.9
    dual.R[...] = rng.normal(scale=1e-2, size=dual.R.shape)
    l2 = 0.5
    J, grads = dual.forward_backward(Y, l2)
    d, D = grads[0][0], grads[1]
    W1 = dual.materialize().copy()
    ref = copy.deepcopy(net)
    J_ref, dW_ref, db_ref = ref.forward_backward(X, Y, l2)
    assert pytest.approx(J_ref, rel=1e-12) == J
    np.testing.assert_allclose(D @ X.T + d * dual.W1_0, dW_ref[0], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(W1, 0.9 * dual.W1_0 + dual.R @ X.T, rtol=1e-12)
    for g, g_ref in zip(grads[2:], [*dW_ref[1:], *db_ref], strict=True):
        np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-14)


def test_validation_under_dual_uses_the_logged_step() -> None:
    """Validation at a log point sees W[1] as of that step: materialised, not stale."""
    direct, dual = both_forms(wide_data(), train__log_every=1, train__epochs=5)
    assert dual.history.val_cost[0] == pytest.approx(direct.history.val_cost[0], rel=1e-12)
    assert len(set(dual.history.val_cost)) == 5
    np.testing.assert_allclose(dual.history.val_cost, direct.history.val_cost, rtol=1e-10)


class StartSeen(Callback):
    def on_train_start(self, start: RunStart) -> None:
        self.stepper = start.stepper


@pytest.mark.parametrize(("overrides", "m", "want"), [
    ({}, M, "dual"),
    ({"optim__name": "momentum"}, M, "dual"),
    ({"optim__name": "adam"}, M, "direct"),
    ({"train__batch_size": 8}, M, "direct"),
    ({"train__batch_size": 64}, M, "dual"),  # one batch of everything is full batch
    ({}, 80, "direct"),  # 4m > n_x: XᵀX would not pay off
    ({"train__first_layer": "direct"}, M, "direct"),
])
def test_auto_picks_dual_only_where_it_is_exact_and_faster(overrides: dict[str, Any], m: int,
                                                           want: str) -> None:
    cfg = config(**({"train__first_layer": "auto", "train__epochs": 2} | overrides))
    assert train.stepper_name(cfg, N_X, m) == want
    seen = StartSeen()
    assert train.run(cfg, [seen], wide_data(m=m)).stepper == want
    assert seen.stepper == want  # what callbacks (the tracker's tag) are told


@pytest.mark.parametrize(("overrides", "match"), [
    ({"optim__name": "adam"}, r"train.first_layer='dual'.*optim.name gd or momentum"),
    ({"train__batch_size": 16}, r"train.first_layer='dual'.*train.batch_size=null"),
])
def test_dual_where_it_is_not_exact_is_a_config_error(overrides: dict[str, Any],
                                                      match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config(train__first_layer="dual", **overrides)


def test_dual_on_narrow_data_is_refused_before_training() -> None:
    data = wide_data()
    narrow = replace(data, X_train=np.ascontiguousarray(data.X_train[:30]),
                     X_val=data.X_val[:30], X_test=data.X_test[:30])
    cfg = config(train__first_layer="dual", model__hidden=[3])
    with pytest.raises(ConfigError, match=r"m=40 examples of n_x=30 features"):
        train.run(cfg, (), narrow)


def test_unknown_first_layer_names_what_is_allowed() -> None:
    with pytest.raises(ConfigError,
                       match=r"train.first_layer='gram': must be one of auto, direct, dual"):
        config(train__first_layer="gram")


# --- the steppers and their registry --------------------------------------------------------

def test_first_layer_choices_are_the_registry() -> None:
    assert list(STEPPERS) == ["direct", "dual"]
    assert ("auto", *STEPPERS) == FIRST_LAYER_FORMS
    assert all(STEPPERS[name].name == name for name in STEPPERS)


@pytest.mark.parametrize(("first_layer", "optimizer", "batch_size", "n_x", "m", "want"), [
    ("auto", "gd", None, 300, 75, "dual"),  # 4m = n_x: the smallest gain auto takes
    ("auto", "gd", None, 300, 76, "direct"),
    ("auto", "momentum", 75, 300, 75, "dual"),  # one batch of everything is full batch
    ("auto", "momentum", 74, 300, 75, "direct"),
    ("auto", "adam", None, 300, 10, "direct"),
    ("direct", "gd", None, 300, 10, "direct"),
    ("direct", "adam", 8, 3, 10, "direct"),  # direct trains anything
    ("dual", "gd", None, 300, 200, "dual"),  # named: taken even where it does not pay off
    ("dual", "momentum", 300, 300, 300, "dual"),
])
def test_resolve_stepper(first_layer: str, optimizer: str, batch_size: int | None, n_x: int,
                         m: int, want: str) -> None:
    assert resolve_stepper(first_layer, optimizer, batch_size, n_x, m) == want


@pytest.mark.parametrize(("args", "match"), [
    (("dual", "adam", None, 300, 10), r"optimizer among gd, momentum .*'adam'"),
    (("dual", "gd", 8, 300, 10), r"full batch .*batch size 8 of m=10"),
    (("dual", "gd", None, 30, 40), r"m <= n_x.*m=40 examples of n_x=30 features"),
    (("gram", "gd", None, 300, 10), r"unknown stepper 'gram': allowed are auto, direct, dual"),
])
def test_resolve_stepper_refuses_what_is_not_exact(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_stepper(*args)


def test_steppers_own_what_the_optimiser_updates_and_agree() -> None:
    """Stepping by hand: same costs; the dual stepper's network is current after
    `materialize`, the direct one's always."""
    data = wide_data()
    X, Y = data.X_train, data.Y_train
    nets = [Network.create([N_X, 5, 1], init="he", seed=2) for _ in range(2)]
    direct = DirectStepper(nets[0], X, Y, make_optimizer("momentum", 0.05), l2=0.4)
    dual = DualStepper(nets[1], X, Y, make_optimizer("momentum", 0.05), l2=0.4)
    assert direct.params == [*nets[0].W, *nets[0].b]
    assert len(dual.params) == len(direct.params) + 1  # a and R in place of W[1]
    assert not any(p is nets[1].W[0] for p in dual.params)
    W1_start = nets[1].W[0].copy()
    for _ in range(5):
        J_direct, J_dual = direct.epoch(), dual.epoch()
        assert J_dual == pytest.approx(J_direct, rel=1e-12)
    np.testing.assert_array_equal(nets[1].W[0], W1_start)  # not yet written back
    assert direct.materialize() is nets[0]
    assert dual.materialize() is nets[1]
    for p, q in zip(nets[1].W + nets[1].b, nets[0].W + nets[0].b, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-14)


def test_steppers_refuse_what_they_cannot_do() -> None:
    data = wide_data()
    net = Network.create([N_X, 5, 1])
    with pytest.raises(ValueError, match="full batch, not mini-batches of 8 out of m=40"):
        DualStepper(net, data.X_train, data.Y_train, make_optimizer("gd", 0.1), batch_size=8,
                    batch_rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="mini-batches of 8 need a batch_rng"):
        DirectStepper(net, data.X_train, data.Y_train, make_optimizer("gd", 0.1), batch_size=8)
    with pytest.raises(ShapeError, match=r"pass X\.T"):
        DirectStepper(net, data.X_train.T, data.Y_train, make_optimizer("gd", 0.1))
