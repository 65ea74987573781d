"""Hidden-layer activations g(Z) and their backward steps dZ = dA * g'(Z).

Each activation is a small object with ``forward(Z, out=None) -> A`` and
``backward(dA, Z, A) -> dZ``. Shapes: Z, A, dA, dZ are all (n[l], m). ``forward`` writes A
into ``out`` when given (the network's work arrays; None: a new array). ``backward`` may
overwrite ``dA`` in place: the network hands it a fresh W.T @ dZ that nothing else reads,
which saves one array per layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating]


class Activation(Protocol):
    name: str

    def forward(self, Z: Array, out: Array | None = None) -> Array: ...

    def backward(self, dA: Array, Z: Array, A: Array) -> Array: ...


def sigmoid(Z: Array, out: Array | None = None) -> Array:
    """σ(z) = 1 / (1 + e^-z), computed as (1 + tanh(z/2)) / 2, which never overflows."""
    A = np.multiply(Z, 0.5, dtype=Z.dtype, out=out)
    np.tanh(A, out=A)
    A += 1
    A *= 0.5
    return A


@dataclass(frozen=True)
class ReLU:
    name: str = "relu"

    def forward(self, Z: Array, out: Array | None = None) -> Array:
        return np.maximum(Z, 0, out=out)

    def backward(self, dA: Array, Z: Array, A: Array) -> Array:
        np.putmask(dA, Z <= 0, 0)  # dA[Z <= 0] = 0, in half the time
        return dA


@dataclass(frozen=True)
class LeakyReLU:
    """g(z) = z for z > 0, slope·z otherwise."""

    slope: float = 0.01
    name: str = "leaky_relu"

    def forward(self, Z: Array, out: Array | None = None) -> Array:
        A = np.multiply(Z, Z.dtype.type(self.slope), out=out)
        np.copyto(A, Z, where=Z > 0)
        return A

    def backward(self, dA: Array, Z: Array, A: Array) -> Array:
        dA[Z <= 0] *= dA.dtype.type(self.slope)
        return dA


@dataclass(frozen=True)
class Tanh:
    name: str = "tanh"

    def forward(self, Z: Array, out: Array | None = None) -> Array:
        return np.tanh(Z, out=out)

    def backward(self, dA: Array, Z: Array, A: Array) -> Array:
        # g'(z) = 1 - tanh(z)^2 = 1 - A^2
        dA *= 1 - A * A
        return dA


@dataclass(frozen=True)
class Sigmoid:
    name: str = "sigmoid"

    def forward(self, Z: Array, out: Array | None = None) -> Array:
        return sigmoid(Z, out)

    def backward(self, dA: Array, Z: Array, A: Array) -> Array:
        # g'(z) = σ(z)(1 - σ(z)) = A(1 - A)
        dA *= A * (1 - A)
        return dA


# name -> factory taking the leaky slope (the registry the config validates against)
ACTIVATIONS: dict[str, Callable[[float], Activation]] = {
    "relu": lambda slope: ReLU(),
    "leaky_relu": lambda slope: LeakyReLU(slope=slope),
    "tanh": lambda slope: Tanh(),
    "sigmoid": lambda slope: Sigmoid(),
}


def get_activation(name: str, *, leaky_slope: float = 0.01) -> Activation:
    """The activation called `name` (one of ACTIVATIONS)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: allowed are {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name](leaky_slope)
