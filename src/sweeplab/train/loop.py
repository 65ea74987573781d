"""The training loop: ``run(cfg, callbacks) -> RunResult``, and what it needs around it.

`run` knows nothing of MLflow or Optuna; they listen through callbacks, early stopping
among them (`EarlyStopping`). How an epoch updates the network is its stepper's business
(`sweeplab.nn.steppers`: direct, or layer 1 in dual form), chosen from train.first_layer
by `sweeplab.nn.resolve_stepper`. Every random draw comes from Generators seeded by
``cfg.seed`` (mini-batch order and dropout masks each get their own stream), so a run
depends on its config alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray
from omegaconf import DictConfig

from sweeplab.config import Config, ConfigError, to_config
from sweeplab.data import Dataset, load_dataset
from sweeplab.names import Metric, RunStatus
from sweeplab.nn import (
    STEPPERS,
    Network,
    layer_dims_from,
    make_optimizer,
    resolve_stepper,
    summary,
)
from sweeplab.train.callbacks import Callback, EarlyStopping, RunStart, StopTraining


@dataclass
class History:
    """Metrics at the log points (every log_every epochs, and the last)."""

    step: list[int] = field(default_factory=list)
    train_cost: list[float] = field(default_factory=list)
    val_cost: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[float]]:
        out = {Metric.TRAIN_COST: self.train_cost}
        if self.val_cost:
            out |= {Metric.VAL_COST: self.val_cost, Metric.VAL_ACCURACY: self.val_accuracy}
        return out


@dataclass
class RunResult:
    config: Config
    network: Network
    dataset: Dataset
    costs: NDArray[np.float64]  # (epochs_run,) train cost of every epoch, before its update
    history: History
    metrics: dict[str, float]  # final: train_accuracy, val_*, test_accuracy, train_seconds
    status: str = RunStatus.FINISHED
    reason: str | None = None
    epochs_run: int = 0
    summary: str = ""
    run_name: str = ""
    stepper: str = "direct"  # the stepper train.first_layer resolved to (nn.STEPPERS)

    @property
    def ok(self) -> bool:
        return self.status in (RunStatus.FINISHED, RunStatus.EARLY_STOPPED)


# The schema's seed (conf/config.yaml's too): a run name shows any other.
DEFAULT_SEED = next(f.default for f in fields(Config) if f.name == "seed")


def describe(cfg: Config) -> str:
    """A short run name that says what it is: ``digits d2w32 adam lr0.01``, and the seed
    when it is not the default one (``... seed7``): runs that differ only in their seed
    would otherwise share a name."""
    m = cfg.model
    if m.hidden is not None:  # no hidden layer at all is depth 0, logistic regression
        arch = "h" + "-".join(map(str, m.hidden)) if m.hidden else "d0"
    else:
        arch = f"d{m.depth}w{m.width}" if m.depth else "d0"
    extra = ""
    if m.keep_prob < 1:
        extra += f" kp{m.keep_prob:g}"
    if cfg.optim.l2:
        extra += f" l2{cfg.optim.l2:g}"
    if cfg.seed != DEFAULT_SEED:
        extra += f" seed{cfg.seed}"
    return f"{cfg.data.name} {arch} {cfg.optim.name} lr{cfg.optim.lr:g}{extra}"


def output_for(cfg: Config, n_classes: int) -> str:
    """The output layer to use: sigmoid for 2 classes, softmax beyond, unless cfg says."""
    name = cfg.model.output
    if name == "auto":
        return "sigmoid" if n_classes == 2 else "softmax"
    if name == "sigmoid" and n_classes != 2:
        raise ConfigError(f"model.output='sigmoid': the data has {n_classes} classes; "
                          f"sigmoid needs exactly 2 (use softmax or auto)")
    return name


@dataclass(frozen=True)
class DataKey:
    """Everything of a config that `load_data` reads: equal keys load equal data.

    The one definition of "the same data", for caches (a sweep worker keeps the datasets
    it loaded) and for reruns (do the overrides change the data?). The run's seed is in it
    because it draws the validation split.
    """

    data: tuple[tuple[str, Any], ...]
    seed: int
    dtype: str
    one_hot: bool | None


def data_key(cfg: Config) -> DataKey:
    """The `DataKey` of `cfg`."""
    # Frozen as a sorted tuple of (key, value): DataConfig is a mutable dataclass.
    fields = tuple(sorted((k, v) for k, v in vars(cfg.data).items()))
    return DataKey(fields, cfg.seed, cfg.model.dtype, _one_hot(cfg))


def _one_hot(cfg: Config) -> bool | None:
    # sigmoid: one 0/1 row for 2 classes; with more, one-hot, so that `build_network` can
    # name model.output in its error (the loader could only name the file).
    return True if cfg.model.output == "softmax" else None


def load_data(cfg: Config, cache: dict[DataKey, Dataset] | None = None) -> Dataset:
    """The dataset `cfg` asks for, with Y shaped for the output layer it implies; from
    `cache` when it holds one with the same `data_key` (and put there when not)."""
    key = data_key(cfg) if cache is not None else None
    if cache is not None and key in cache:
        return cache[key]
    data = load_dataset(cfg.data, seed=cfg.seed, dtype=cfg.model.dtype, one_hot=_one_hot(cfg))
    if cache is not None and key is not None:
        cache[key] = data
    return data


def build_network(cfg: Config, data: Dataset) -> Network:
    output = output_for(cfg, data.n_classes)
    n_y = 1 if output == "sigmoid" else data.n_classes
    if data.Y_train.shape[0] != n_y:
        raise ConfigError(f"model.output={cfg.model.output!r} needs Y with {n_y} rows but the "
                          f"data has {data.Y_train.shape[0]}: load it with the same config")
    m = cfg.model
    dims = layer_dims_from(data.n_x, n_y, m.depth, m.width, m.hidden)
    return Network.create(dims, activation=m.activation, output=output, init=m.init,
                          seed=cfg.seed, dtype=m.dtype, keep_prob=m.keep_prob,
                          leaky_slope=m.leaky_slope)


def evaluate(net: Network, X: NDArray[Any], Y: NDArray[Any],
             y: NDArray[Any]) -> tuple[float, float]:
    """(cost without L2, accuracy) of the network on X (n_x, m), Y (n_y, m), labels y (m,),
    the cost in the same stable form as training's."""
    Z = net.logits(X)
    A = net.output.activate(Z)
    return net.output.cost(Z, Y), float((net.output.predict(A) == y).mean())


def stepper_name(cfg: Config, n_x: int, m: int) -> str:
    """The stepper (a name in nn.STEPPERS) train.first_layer means for inputs (n_x, m)."""
    t = cfg.train
    try:
        return resolve_stepper(t.first_layer, cfg.optim.name, t.batch_size, n_x, m)
    except ValueError as e:
        raise ConfigError(f"train.first_layer={t.first_layer!r}: {e}") from None


def _call(callbacks: Sequence[Callback], method: str, *args: Any) -> None:
    for cb in callbacks:
        getattr(cb, method)(*args)


def run(cfg: Config | DictConfig | dict[str, Any], callbacks: Sequence[Callback] = (),
        data: Dataset | None = None) -> RunResult:
    """Train the network `cfg` describes and return the result.

    Step e of the history holds the cost of epoch e's forward pass, before its update
    (step 0 is the untrained network, as the course prints it); with mini-batches, the mean
    cost per example over the epoch. Validation metrics at step e use the same parameters.
    A NaN or infinite cost stops the run with status ``diverged``; a callback's
    `StopTraining` (train.early_stopping's among them) with the status it gives; a pruned
    run has no final metrics (its last history point is what it was judged on). A run
    whose train cost after the last update is no lower than the untrained network's ends
    ``not_learning``: whatever its accuracy, it learnt nothing.
    """
    cfg = to_config(cfg) if not isinstance(cfg, Config) else cfg
    data = data if data is not None else load_data(cfg)
    net = build_network(cfg, data)
    t = cfg.train
    opt = make_optimizer(cfg.optim.name, cfg.optim.lr, beta=cfg.optim.beta,
                         beta1=cfg.optim.beta1, beta2=cfg.optim.beta2, eps=cfg.optim.eps)
    batch_seq, dropout_seq = np.random.SeedSequence(cfg.seed).spawn(2)
    batch_rng = np.random.default_rng(batch_seq)
    dropout_rng = np.random.default_rng(dropout_seq) if cfg.model.keep_prob < 1 else None
    X, Y, m = data.X_train, data.Y_train, data.m_train
    has_val = data.X_val is not None

    result = RunResult(cfg, net, data, np.empty(0), History(), {}, summary=summary(net, m),
                       run_name=cfg.tracking.run_name or describe(cfg),
                       stepper=stepper_name(cfg, data.n_x, m))
    es = t.early_stopping
    if es.patience is not None:
        callbacks = [*callbacks, EarlyStopping(es.patience, es.min_delta)]
    _call(callbacks, "on_train_start",
          RunStart(cfg, data, net, result.summary, result.run_name, result.stepper))
    costs: list[float] = []  # grown, not allocated for train.epochs up front
    # measured like the final cost (no dropout, no L2): with mini-batches the first
    # epoch's cost already includes its updates
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        untrained_cost = evaluate(net, X, Y, data.y_train)[0]
    stepper = STEPPERS[result.stepper](net, X, Y, opt, l2=cfg.optim.l2,
                                       batch_size=t.batch_size, batch_rng=batch_rng,
                                       dropout_rng=dropout_rng)
    start = time.perf_counter()
    epoch = -1
    # Overflow at a too-large learning rate is detected as a non-finite cost; no warnings.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for epoch in range(t.epochs):
            log_now = epoch % t.log_every == 0 or epoch == t.epochs - 1
            if log_now and has_val:
                stepper.materialize()  # the network is about to be read
                val_cost, val_acc = evaluate(net, data.X_val, data.Y_val, data.y_val)  # type: ignore[arg-type]
            cost = stepper.epoch()
            costs.append(cost)
            diverged = not math.isfinite(cost)
            if not (log_now or diverged):
                continue
            if diverged and has_val and not log_now:
                # Not a log point: validation was never evaluated on this epoch's parameters.
                val_cost, val_acc = math.nan, math.nan
            h = result.history
            h.step.append(epoch)
            h.train_cost.append(cost)
            metrics = {Metric.TRAIN_COST: cost}
            if has_val:
                h.val_cost.append(val_cost)
                h.val_accuracy.append(val_acc)
                metrics |= {Metric.VAL_COST: val_cost, Metric.VAL_ACCURACY: val_acc}
            if diverged:
                result.status = RunStatus.DIVERGED
                result.reason = f"cost became {cost} at epoch {epoch} (learning rate too high?)"
                break
            try:
                _call(callbacks, "on_log", epoch, metrics)
            except StopTraining as stop:
                result.status, result.reason = stop.status, stop.reason
                break
    stepper.materialize()
    result.epochs_run = epoch + 1
    result.costs = np.asarray(costs, dtype=np.float64)
    # A pruned run was judged at its last log point and abandoned there: metrics after the
    # update that followed that point would be numbers it was never judged on.
    result.metrics = final_metrics(net, data) \
        if result.status not in (RunStatus.DIVERGED, RunStatus.PRUNED) else {}
    final_cost = result.metrics.get(Metric.FINAL_TRAIN_COST, math.nan)
    if result.ok and not final_cost < untrained_cost:
        result.status = RunStatus.NOT_LEARNING
        result.reason = (f"the train cost ended at {final_cost:.4g}, no lower than the "
                         f"untrained network's {untrained_cost:.4g} (optim.lr="
                         f"{cfg.optim.lr:g} too high or too low?)")
    result.metrics[Metric.TRAIN_SECONDS] = time.perf_counter() - start
    _call(callbacks, "on_train_end", result)
    return result


def final_metrics(net: Network, data: Dataset) -> dict[str, float]:
    """Accuracies (and costs) after the last update, on every split the data has."""
    out: dict[str, float] = {}
    splits = [(data.X_train, data.Y_train, data.y_train, Metric.TRAIN_ACCURACY,
               Metric.FINAL_TRAIN_COST),
              (data.X_val, data.Y_val, data.y_val, Metric.VAL_ACCURACY, Metric.FINAL_VAL_COST),
              (data.X_test, data.Y_test, data.y_test, Metric.TEST_ACCURACY,
               Metric.FINAL_TEST_COST)]
    for X, Y, y, accuracy, cost in splits:
        if X is not None:
            out[cost], out[accuracy] = evaluate(net, X, Y, y)
    return out
