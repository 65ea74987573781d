"""Weight initialisations: W[l] (n[l], n[l-1]) and b[l] (n[l], 1) for l = 1..L.

`he` and `xavier` draw from a ``numpy.random.Generator``. The two course schemes use a
legacy ``RandomState(seed)`` so that they reproduce the course notebooks draw for draw:
for l = 1..L in order, ``W[l] = randn(n[l], n[l-1]) / sqrt(n[l-1])`` (`course_deep`,
``initialize_parameters_deep``) or ``randn(...) * 0.01`` (`course_small`,
``initialize_parameters``); b[l] = 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

INITS = ("he", "xavier", "course_deep", "course_small")

Params = tuple[list[NDArray[np.floating]], list[NDArray[np.floating]]]


def initialize(layer_dims: Sequence[int], scheme: str, seed: int, dtype: str = "float64") -> Params:
    """Return (W, b): lists of L arrays, W[l-1] (n[l], n[l-1]) and b[l-1] (n[l], 1), in dtype."""
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}: allowed are {', '.join(INITS)}")
    n = list(layer_dims)
    W: list[NDArray[np.floating]] = []
    b: list[NDArray[np.floating]] = []
    if scheme.startswith("course"):
        legacy = np.random.RandomState(seed)
        for l in range(1, len(n)):
            draw = legacy.randn(n[l], n[l - 1])
            draw = draw / np.sqrt(n[l - 1]) if scheme == "course_deep" else draw * 0.01
            W.append(draw.astype(dtype))
    else:
        rng = np.random.default_rng(seed)
        for l in range(1, len(n)):
            # he: Var = 2 / fan_in (relu); xavier: Var = 1 / fan_in (tanh, sigmoid)
            gain = 2.0 if scheme == "he" else 1.0
            draw = rng.standard_normal((n[l], n[l - 1])) * np.sqrt(gain / n[l - 1])
            W.append(draw.astype(dtype))
    b = [np.zeros((n[l], 1), dtype=dtype) for l in range(1, len(n))]
    return W, b
