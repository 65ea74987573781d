"""Steppers: how one epoch of training updates a network, and which parameters it updates.

A stepper owns the list of arrays the optimiser updates and runs one epoch over the
training set X (n_x, m), Y (n_y, m), returning its cost. There are two (`STEPPERS`):

- direct: the parameters are W[1..L], b[1..L] themselves; one update per mini-batch.
- dual:   layer 1 in dual form (`nn.dual`): the parameters are a, R, W[2..L], b[1..L] and
          W[1] = a W1₀ + R Xᵀ is written into the network only by `materialize`; one
          full-batch update per epoch. Exact for gd and momentum only.

Whoever reads the network (validation, final metrics) calls `materialize` first; for the
direct stepper it has nothing to do. `resolve_stepper` says which stepper a run uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from sweeplab.nn.batches import Shuffled, minibatches
from sweeplab.nn.dual import DualLayer1, dual_pays_off
from sweeplab.nn.network import Network
from sweeplab.nn.optimizers import Optimizer

Array = NDArray[np.floating]

# Optimisers whose update is linear in the gradient, so W[1] stays in the dual form's span.
LINEAR_OPTIMIZERS = ("gd", "momentum")


class Stepper(ABC):
    """Trains `network` on X (n_x, m), Y (n_y, m) with `opt`, one epoch per `epoch()` call.

    `l2` is the course's λ; `batch_rng` shuffles the mini-batches of `batch_size` (None:
    full batch) and `dropout_rng` draws the dropout masks (None: no dropout).
    """

    name: ClassVar[str]

    def __init__(self, network: Network, X: Array, Y: Array, opt: Optimizer, *,
                 l2: float = 0.0, batch_size: int | None = None,
                 batch_rng: np.random.Generator | None = None,
                 dropout_rng: np.random.Generator | None = None) -> None:
        network.check_input(X, Y)
        self.network = network
        self.X, self.Y, self.m = X, Y, X.shape[1]
        self.opt = opt
        self.l2 = l2
        self.batch_size = batch_size
        if batch_rng is None and not self.full_batch:
            raise ValueError(f"mini-batches of {batch_size} need a batch_rng to shuffle them")
        # A full batch is never shuffled (`minibatches` yields X itself): any Generator does.
        self.batch_rng = batch_rng if batch_rng is not None else np.random.default_rng(0)
        self.dropout_rng = dropout_rng
        # What the optimiser updates, in place: W[1..L] then b[1..L] unless a stepper says.
        self.params: list[Array] = [*network.W, *network.b]

    @property
    def full_batch(self) -> bool:
        return self.batch_size is None or self.batch_size >= self.m

    @abstractmethod
    def epoch(self) -> float:
        """Train for one epoch; return its cost J (with L2), taken before each update."""

    def materialize(self) -> Network:
        """The network with every parameter up to date (written in place), to be read."""
        return self.network


class DirectStepper(Stepper):
    """W[1..L], b[1..L] updated once per mini-batch, from `Network.forward_backward`.

    `params` lists W[1..L], b[1..L]; since they are views of `Network.theta`, the optimiser
    is handed that one flat array (and `Network.dtheta`, whose views are dW and db): one
    update for all layers, with the same values as layer by layer.
    """

    name = "direct"

    def __init__(self, network: Network, X: Array, Y: Array, opt: Optimizer, *,
                 l2: float = 0.0, batch_size: int | None = None,
                 batch_rng: np.random.Generator | None = None,
                 dropout_rng: np.random.Generator | None = None) -> None:
        super().__init__(network, X, Y, opt, l2=l2, batch_size=batch_size,
                         batch_rng=batch_rng, dropout_rng=dropout_rng)
        self._theta, self._dtheta = [network.theta], [network.dtheta]
        # Each epoch's shuffled copy of X and Y, which the mini-batches are views of.
        self._shuffled = None if self.full_batch else Shuffled(X, Y)

    def epoch(self) -> float:
        """One update per mini-batch; the cost is the mean per example over the epoch."""
        total = 0.0
        net, params, grads = self.network, self._theta, self._dtheta
        for Xb, Yb in minibatches(self.X, self.Y, self.batch_size, self.batch_rng,
                                  out=self._shuffled):
            J, _, _ = net.forward_backward(Xb, Yb, self.l2, self.dropout_rng)
            total += J * Xb.shape[1]
            self.opt.step(params, grads)  # dW[l], db[l] are views of dtheta
        return total / self.m


class DualStepper(Stepper):
    """Layer 1 in dual form (`nn.dual.DualLayer1`): one full-batch update per epoch."""

    name = "dual"

    def __init__(self, network: Network, X: Array, Y: Array, opt: Optimizer, *,
                 l2: float = 0.0, batch_size: int | None = None,
                 batch_rng: np.random.Generator | None = None,
                 dropout_rng: np.random.Generator | None = None) -> None:
        super().__init__(network, X, Y, opt, l2=l2, batch_size=batch_size,
                         batch_rng=batch_rng, dropout_rng=dropout_rng)
        if not self.full_batch:
            raise ValueError(f"the dual stepper trains on the full batch, not mini-batches "
                             f"of {batch_size} out of m={self.m}")
        self.layer1 = DualLayer1(network, X)
        self.params = self.layer1.params

    def epoch(self) -> float:
        J, grads = self.layer1.forward_backward(self.Y, self.l2, self.dropout_rng)
        self.opt.step(self.params, grads)
        return J

    def materialize(self) -> Network:
        self.layer1.materialize()
        return self.network


# name -> stepper (the registry train.first_layer is validated against, with auto)
STEPPERS: dict[str, type[Stepper]] = {"direct": DirectStepper, "dual": DualStepper}


def resolve_stepper(first_layer: str, optimizer: str, batch_size: int | None, n_x: int,
                    m: int) -> str:
    """The name in STEPPERS that `first_layer` (auto, or such a name) means for a run with
    `optimizer`, mini-batches of `batch_size` (None: full batch) and inputs (n_x, m).

    auto picks dual where it is exact (full batch, gd or momentum) and faster
    (`dual_pays_off`), else direct. Naming dual where it is not exact, or where XᵀX would be
    larger than X (m > n_x), is a ValueError.
    """
    full_batch = batch_size is None or batch_size >= m
    exact = full_batch and optimizer in LINEAR_OPTIMIZERS
    if first_layer == "auto":
        return "dual" if exact and dual_pays_off(n_x, m) else "direct"
    if first_layer not in STEPPERS:
        raise ValueError(f"unknown stepper {first_layer!r}: allowed are auto, "
                         f"{', '.join(STEPPERS)}")
    if first_layer == "dual" and not exact:
        raise ValueError(f"the dual stepper needs full batch and an optimizer among "
                         f"{', '.join(LINEAR_OPTIMIZERS)} (got batch size {batch_size} of "
                         f"m={m}, {optimizer!r}): use auto or direct")
    if first_layer == "dual" and m > n_x:
        raise ValueError(f"the dual stepper needs m <= n_x, but the training set has m={m} "
                         f"examples of n_x={n_x} features (XᵀX would be larger than X): use "
                         f"auto or direct")
    return first_layer
