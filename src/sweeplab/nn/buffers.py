"""The memory a network trains in: flat parameter buffers and per-batch work arrays.

`param_views` lays W[1], b[1], W[2], b[2], ... out in one flat array (the order of
`Network.get_vector`) and returns each as a view of it, so that an optimiser updates every
layer with one operation on the flat array. `Work` holds what one training step writes,
for one batch size, so that a step allocates next to nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating]

# Work arrays kept for at most this many batch sizes (a mini-batch epoch needs two).
WORK_SIZES = 4


def param_views(flat: Array, layer_dims: Sequence[int]) -> tuple[list[Array], list[Array]]:
    """(W, b): W[l-1] (n[l], n[l-1]) and b[l-1] (n[l], 1), views of `flat` in the order
    W1, b1, W2, b2, ... (`flat` holds exactly that many values)."""
    W: list[Array] = []
    b: list[Array] = []
    i = 0
    for n_prev, n in pairwise(layer_dims):
        W.append(flat[i:i + n * n_prev].reshape(n, n_prev))
        i += n * n_prev
        b.append(flat[i:i + n].reshape(n, 1))
        i += n
    if i != flat.size:
        raise ValueError(f"layer_dims {list(layer_dims)} hold {i} parameters, the buffer "
                         f"{flat.size}")
    return W, b


@dataclass(slots=True)
class Work:
    """Work arrays for batches of m examples (`Network.forward_backward` reuses them).

    Per hidden layer l = 1..L-1 (lists count from 0): Z, G = g(Z), dA (n[l], m); with
    dropout, also the uniform draws U, the mask D and A = G D / keep_prob. ZL and dZL are
    Z[L] and dZ[L] (n_y, m).
    """

    Z: list[Array]
    G: list[Array]
    dA: list[Array]
    U: list[Array]
    D: list[NDArray[np.bool_]]
    A: list[Array]
    ZL: Array
    dZL: Array

    @classmethod
    def create(cls, layer_dims: Sequence[int], m: int, dtype: np.dtype,
               dropout: bool) -> Work:
        hidden = layer_dims[1:-1]

        def arrays(kind: Any = dtype, on: bool = True) -> list[Any]:
            return [np.empty((n, m), dtype=kind) for n in hidden] if on else []

        n_y = layer_dims[-1]
        return cls(arrays(), arrays(), arrays(), arrays(on=dropout), arrays(np.bool_, dropout),
                   arrays(on=dropout), np.empty((n_y, m), dtype=dtype),
                   np.empty((n_y, m), dtype=dtype))
