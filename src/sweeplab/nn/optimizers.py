"""Parameter updates, as the courses define them, applied in place.

`params` and `grads` are parallel lists of arrays: W[1..L] then b[1..L], or one flat
array each (`Network.theta`, `Network.dtheta`), which updates every layer at once with the
same values. Gradient buffers may be overwritten: the network recomputes them on every
step. The state (v, s) is shaped like `params`: pass the same kind of list every step.

- gd:        θ ← θ - α dθ
- momentum:  v ← β v + (1 - β) dθ;  θ ← θ - α v
- adam:      v ← β1 v + (1 - β1) dθ;  s ← β2 s + (1 - β2) dθ²;  t ← t + 1 (per update);
             θ ← θ - α v̂ / (√ŝ + ε)  with  v̂ = v / (1 - β1^t),  ŝ = s / (1 - β2^t)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating]

OPTIMIZERS = ("gd", "momentum", "adam")


class Optimizer(Protocol):
    def step(self, params: Sequence[Array], grads: Sequence[Array]) -> None: ...


@dataclass
class GradientDescent:
    lr: float

    def step(self, params: Sequence[Array], grads: Sequence[Array]) -> None:
        for p, g in zip(params, grads, strict=True):
            g *= self.lr
            p -= g


@dataclass
class Momentum:
    lr: float
    beta: float = 0.9
    v: list[Array] = field(default_factory=list)

    def step(self, params: Sequence[Array], grads: Sequence[Array]) -> None:
        if not self.v:
            self.v = [np.zeros_like(p) for p in params]
        for p, g, v in zip(params, grads, self.v, strict=True):
            v *= self.beta
            g *= 1 - self.beta
            v += g
            p -= np.multiply(v, self.lr, out=g)  # θ -= α v, with g as scratch space


@dataclass
class Adam:
    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    t: int = 0
    v: list[Array] = field(default_factory=list)
    s: list[Array] = field(default_factory=list)
    _scratch: list[Array] = field(default_factory=list, repr=False)

    def step(self, params: Sequence[Array], grads: Sequence[Array]) -> None:
        if not self.v:
            self.v = [np.zeros_like(p) for p in params]
            self.s = [np.zeros_like(p) for p in params]
            self._scratch = [np.empty_like(p) for p in params]
        self.t += 1
        c1 = 1 - self.beta1**self.t
        c2 = 1 - self.beta2**self.t
        for p, g, v, s, tmp in zip(params, grads, self.v, self.s, self._scratch, strict=True):
            v *= self.beta1
            v += np.multiply(g, 1 - self.beta1, out=tmp)
            s *= self.beta2
            g *= g
            g *= 1 - self.beta2
            s += g
            # θ -= α (v / c1) / (sqrt(s / c2) + ε), with g reused as scratch space
            np.divide(s, c2, out=g)
            np.sqrt(g, out=g)
            g += self.eps
            np.divide(v, g, out=g)
            g *= self.lr / c1
            p -= g


def make_optimizer(name: str, lr: float, *, beta: float = 0.9, beta1: float = 0.9,
                   beta2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """The optimiser called `name` (gd, momentum, adam), with fresh state."""
    if name == "gd":
        return GradientDescent(lr)
    if name == "momentum":
        return Momentum(lr, beta)
    if name == "adam":
        return Adam(lr, beta1, beta2, eps)
    raise ValueError(f"unknown optimizer {name!r}: allowed are {', '.join(OPTIMIZERS)}")
