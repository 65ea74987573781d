"""Mini-batches of examples (columns), shuffled by a seeded Generator each epoch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating]


def minibatches(X: Array, Y: Array, batch_size: int | None,
                rng: np.random.Generator) -> Iterator[tuple[Array, Array]]:
    """Yield (X_t, Y_t) of shapes (n_x, ≤batch_size), (n_y, ≤batch_size).

    Full batch (`batch_size` None or >= m) yields X and Y themselves, unshuffled and uncopied,
    as the course's batch gradient descent does. Otherwise the columns are permuted once per
    epoch and cut in order; the last batch holds the remainder, as in the course.
    """
    m = X.shape[1]
    if batch_size is None or batch_size >= m:
        yield X, Y
        return
    perm = rng.permutation(m)
    for start in range(0, m, batch_size):
        idx = perm[start:start + batch_size]
        yield X[:, idx], Y[:, idx]
