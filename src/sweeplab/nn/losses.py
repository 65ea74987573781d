"""Output layers with their costs, computed from the pre-activation Z[L] in the stable form.

Both pair an output activation with its cross-entropy, so that the backward step is the
simple ``dZ[L] = (A[L] - Y) / m`` and the cost never takes log(0) nor overflows exp.
``cost_grad`` gives both at once (training's step), with the same rounding as ``cost``
and ``activate`` apart. Shapes: Z, A, Y are (n_y, m).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from sweeplab.nn.activations import sigmoid

Array = NDArray[np.floating]


class Output(Protocol):
    name: str

    def activate(self, Z: Array) -> Array: ...

    def cost(self, Z: Array, Y: Array) -> float: ...

    def predict(self, A: Array) -> NDArray[np.int64]: ...

    def cost_grad(self, Z: Array, Y: Array, out: Array) -> float: ...


def _grad(A: Array, Y: Array) -> Array:
    # dZ[L] = (A[L] - Y) / m, in place in A
    A -= Y
    A *= 1 / Y.shape[1]
    return A


@dataclass(frozen=True)
class SigmoidBCE:
    """Sigmoid output, binary cross-entropy.

    J = -(1/m) Σ [y log σ(z) + (1 - y) log(1 - σ(z))]
      =  (1/m) Σ [max(z, 0) - z·y + log(1 + e^-|z|)]        (the stable form used here)
    """

    name: str = "sigmoid"

    def activate(self, Z: Array) -> Array:
        return sigmoid(Z)

    def cost(self, Z: Array, Y: Array) -> float:
        m = Z.shape[1]
        loss = np.maximum(Z, 0) - Z * Y + np.log1p(np.exp(-np.abs(Z)))
        return float(loss.sum() / m)

    def cost_grad(self, Z: Array, Y: Array, out: Array) -> float:
        """J, with dZ[L] = (σ(Z) - Y) / m written into `out` (n_y, m)."""
        _grad(sigmoid(Z, out), Y)
        return self.cost(Z, Y)

    def predict(self, A: Array) -> NDArray[np.int64]:
        """Labels (m,) from A (1, m): 1 where A > 0.5, as the course predicts."""
        return (A[0] > 0.5).astype(np.int64)


@dataclass(frozen=True)
class SoftmaxCE:
    """Softmax output, categorical cross-entropy on one-hot Y.

    J = -(1/m) Σ_i Σ_k y_ki (z_ki - log Σ_j e^z_ji)        (log-sum-exp with the max taken out)
    """

    name: str = "softmax"

    def activate(self, Z: Array) -> Array:
        E = np.exp(Z - Z.max(axis=0, keepdims=True))
        E /= E.sum(axis=0, keepdims=True)
        return E

    def cost(self, Z: Array, Y: Array) -> float:
        m = Z.shape[1]
        shifted = Z - Z.max(axis=0, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=0, keepdims=True))
        return float(-(Y * (shifted - log_norm)).sum() / m)

    def cost_grad(self, Z: Array, Y: Array, out: Array) -> float:
        """J, with dZ[L] = (softmax(Z) - Y) / m written into `out` (n_y, m): one exp."""
        # As `cost` and `activate`, op for op, calling the ufuncs directly (fewer Python steps)
        m = Z.shape[1]
        shifted = np.subtract(Z, np.maximum.reduce(Z, axis=0, keepdims=True))
        E = np.exp(shifted, out=out)
        norm = np.add.reduce(E, axis=0, keepdims=True)
        log_likelihood = shifted
        log_likelihood -= np.log(norm)
        log_likelihood *= Y
        J = -float(np.add.reduce(log_likelihood, axis=None)) / m
        E /= norm
        _grad(E, Y)
        return J

    def predict(self, A: Array) -> NDArray[np.int64]:
        """Labels (m,) from A (n_y, m): the most probable class."""
        return A.argmax(axis=0).astype(np.int64)


# name -> output layer (the registry the config validates against)
OUTPUTS: dict[str, Callable[[], Output]] = {"sigmoid": SigmoidBCE, "softmax": SoftmaxCE}


def get_output(name: str) -> Output:
    """The output layer called `name` (one of OUTPUTS)."""
    if name not in OUTPUTS:
        raise ValueError(f"unknown output {name!r}: allowed are {', '.join(OUTPUTS)}")
    return OUTPUTS[name]()
