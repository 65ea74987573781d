"""One training run as a function of its config: ``run(cfg, callbacks) -> RunResult``.

Usage: python -m sweeplab.train [hydra overrides]   (or: make train ARGS="model.depth=3")

`run` knows nothing of MLflow or Optuna; they listen through callbacks. Every random draw
comes from Generators seeded by ``cfg.seed`` (mini-batch order and dropout masks each get
their own stream), so a run depends on its config alone.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from omegaconf import DictConfig

from sweeplab.callbacks import Callback, RunStart, StopTraining
from sweeplab.config import Config, ConfigError, to_config
from sweeplab.data import Dataset, load_dataset
from sweeplab.nn import Network, layer_dims_from, make_optimizer, minibatches, summary
from sweeplab.nn.dual import DualLayer1, dual_pays_off


@dataclass
class History:
    """Metrics at the log points (every log_every epochs, and the last)."""

    step: list[int] = field(default_factory=list)
    train_cost: list[float] = field(default_factory=list)
    val_cost: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[float]]:
        out = {"train_cost": self.train_cost}
        if self.val_cost:
            out |= {"val_cost": self.val_cost, "val_accuracy": self.val_accuracy}
        return out


@dataclass
class RunResult:
    config: Config
    network: Network
    dataset: Dataset
    costs: NDArray[np.float64]  # (epochs_run,) train cost of every epoch, before its update
    history: History
    metrics: dict[str, float]  # final: train_accuracy, val_*, test_accuracy, train_seconds
    status: str = "finished"
    reason: str | None = None
    epochs_run: int = 0
    summary: str = ""
    run_name: str = ""
    first_layer: str = "direct"  # the form train.first_layer resolved to

    @property
    def ok(self) -> bool:
        return self.status in ("finished", "early_stopped")


def describe(cfg: Config) -> str:
    """A short run name that says what it is: ``digits d2w32 lr0.01``."""
    m = cfg.model
    arch = "h" + "-".join(map(str, m.hidden)) if m.hidden is not None else f"d{m.depth}w{m.width}"
    extra = ""
    if m.keep_prob < 1:
        extra += f" kp{m.keep_prob:g}"
    if cfg.optim.l2:
        extra += f" l2{cfg.optim.l2:g}"
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


def load_data(cfg: Config) -> Dataset:
    """The dataset `cfg` asks for, with Y shaped for the output layer it implies."""
    # sigmoid: one 0/1 row for 2 classes; with more, one-hot, so that `build_network` can
    # name model.output in its error (the loader could only name the file).
    one_hot = True if cfg.model.output == "softmax" else None
    return load_dataset(cfg.data, seed=cfg.seed, dtype=cfg.model.dtype, one_hot=one_hot)


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


def first_layer_form(cfg: Config, n_x: int, m: int) -> str:
    """'direct' or 'dual': what train.first_layer means for training inputs (n_x, m)."""
    form = cfg.train.first_layer
    full_batch = cfg.train.batch_size is None or cfg.train.batch_size >= m
    if form == "auto":
        linear = cfg.optim.name in ("gd", "momentum")
        return "dual" if full_batch and linear and dual_pays_off(n_x, m) else "direct"
    if form == "dual" and m > n_x:
        raise ConfigError(f"train.first_layer='dual' needs m <= n_x, but the training set "
                          f"has m={m} examples of n_x={n_x} features (XᵀX would be larger "
                          f"than X): use auto or direct")
    return form


def _call(callbacks: Sequence[Callback], method: str, *args: Any) -> None:
    for cb in callbacks:
        getattr(cb, method)(*args)


def run(cfg: Config | DictConfig | dict[str, Any], callbacks: Sequence[Callback] = (),
        data: Dataset | None = None) -> RunResult:
    """Train the network `cfg` describes and return the result.

    Step e of the history holds the cost of epoch e's forward pass, before its update
    (step 0 is the untrained network, as the course prints it); with mini-batches, the mean
    cost per example over the epoch. Validation metrics at step e use the same parameters.
    A NaN or infinite cost stops the run with status ``diverged``; so does nothing else.
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
    l2 = cfg.optim.l2

    form = first_layer_form(cfg, data.n_x, m)
    result = RunResult(cfg, net, data, np.empty(0), History(), {}, summary=summary(net, m),
                       run_name=cfg.tracking.run_name or describe(cfg), first_layer=form)
    _call(callbacks, "on_train_start",
          RunStart(cfg, data, net, result.summary, result.run_name, form))
    costs = np.full(t.epochs, np.nan)
    best_val, since_best = math.inf, 0
    dual = DualLayer1(net, X) if form == "dual" else None
    params = dual.params if dual is not None else [*net.W, *net.b]
    start = time.perf_counter()
    epoch = -1
    # Overflow at a too-large learning rate is detected as a non-finite cost; no warnings.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for epoch in range(t.epochs):
            log_now = epoch % t.log_every == 0 or epoch == t.epochs - 1
            if log_now and has_val:
                if dual is not None:
                    dual.materialize()
                val_cost, val_acc = evaluate(net, data.X_val, data.Y_val, data.y_val)  # type: ignore[arg-type]
            if dual is not None:
                cost, grads = dual.forward_backward(Y, l2, dropout_rng)
                opt.step(params, grads)
            else:
                total = 0.0
                for Xb, Yb in minibatches(X, Y, t.batch_size, batch_rng):
                    J, dW, db = net.forward_backward(Xb, Yb, l2, dropout_rng)
                    total += J * Xb.shape[1]
                    opt.step(params, [*dW, *db])
                cost = total / m
            costs[epoch] = cost
            diverged = not math.isfinite(cost)
            if not (log_now or diverged):
                continue
            if diverged and has_val and not log_now:
                # Not a log point: validation was never evaluated on this epoch's parameters.
                val_cost, val_acc = math.nan, math.nan
            h = result.history
            h.step.append(epoch)
            h.train_cost.append(cost)
            metrics = {"train_cost": cost}
            if has_val:
                h.val_cost.append(val_cost)
                h.val_accuracy.append(val_acc)
                metrics |= {"val_cost": val_cost, "val_accuracy": val_acc}
            if diverged:
                result.status = "diverged"
                result.reason = f"cost became {cost} at epoch {epoch} (learning rate too high?)"
                break
            try:
                _call(callbacks, "on_log", epoch, metrics)
            except StopTraining as stop:
                result.status, result.reason = stop.status, stop.reason
                break
            es = t.early_stopping
            if es.patience is not None and has_val:
                if val_cost < best_val - es.min_delta:
                    best_val, since_best = val_cost, 0
                else:
                    since_best += 1
                    if since_best >= es.patience:
                        result.status = "early_stopped"
                        result.reason = (f"val_cost did not improve by {es.min_delta} for "
                                         f"{es.patience} log points (best {best_val:.6g})")
                        break
    if dual is not None:
        dual.materialize()
    result.epochs_run = epoch + 1
    result.costs = costs[: result.epochs_run]
    result.metrics = final_metrics(net, data) if result.status != "diverged" else {}
    result.metrics["train_seconds"] = time.perf_counter() - start
    _call(callbacks, "on_train_end", result)
    return result


def final_metrics(net: Network, data: Dataset) -> dict[str, float]:
    """Accuracies (and costs) after the last update, on every split the data has."""
    out: dict[str, float] = {}
    splits = {"train": (data.X_train, data.Y_train, data.y_train),
              "val": (data.X_val, data.Y_val, data.y_val),
              "test": (data.X_test, data.Y_test, data.y_test)}
    for name, (X, Y, y) in splits.items():
        if X is None:
            continue
        cost, acc = evaluate(net, X, Y, y)
        out[f"{name}_accuracy"] = acc
        out[f"final_{name}_cost"] = cost
    return out


def main() -> None:
    """The Hydra app behind `python -m sweeplab.train` / `make train`."""
    from sweeplab.cli import hydra_app

    hydra_app("config", _train_job)()


def _train_job(cfg: DictConfig) -> None:
    from sweeplab.callbacks import ProgressBar
    from sweeplab.cli import report_run
    from sweeplab.tracking import MlflowTracker

    typed = to_config(cfg)  # fails before any run is created
    data = load_data(typed)
    callbacks: list[Callback] = [PrintSummary(), ProgressBar(typed.train.progress)]
    tracker = MlflowTracker(typed.tracking, overrides=_hydra_overrides()) \
        if typed.tracking.enabled else None
    if tracker is not None:
        callbacks.append(tracker)
    with tracker if tracker is not None else contextlib.nullcontext():
        result = run(typed, callbacks, data)
    report_run(result, tracker)
    if result.status == "diverged":
        raise SystemExit(1)


def _hydra_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


class PrintSummary(Callback):
    """Print the network's dimensions before training, as the course checks them."""

    def on_train_start(self, start: RunStart) -> None:
        print(start.summary, flush=True)


if __name__ == "__main__":
    main()
