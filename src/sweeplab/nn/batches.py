"""Mini-batches of examples (columns), shuffled by a seeded Generator each epoch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating]


class Shuffled:
    """Where `minibatches` copies each epoch's permutation of X (n_x, m) and Y (n_y, m).

    Examples are kept as rows (Xᵀ, Yᵀ, transposed once), so that permuting them copies
    whole rows; the permuted X and Y are then transposed views, the batches column blocks
    of them (the same values as X[:, idx], in Fortran order).
    """

    def __init__(self, X: Array, Y: Array) -> None:
        self.XT, self.YT = np.ascontiguousarray(X.T), np.ascontiguousarray(Y.T)
        self.XpT, self.YpT = np.empty_like(self.XT), np.empty_like(self.YT)

    def permute(self, perm: NDArray[np.intp]) -> tuple[Array, Array]:
        """X[:, perm], Y[:, perm], as views of this object's buffers."""
        # mode="clip" (perm is in range anyway): "raise" would copy through a buffer
        np.take(self.XT, perm, axis=0, out=self.XpT, mode="clip")
        np.take(self.YT, perm, axis=0, out=self.YpT, mode="clip")
        return self.XpT.T, self.YpT.T


def minibatches(X: Array, Y: Array, batch_size: int | None, rng: np.random.Generator, *,
                out: Shuffled | None = None) -> Iterator[tuple[Array, Array]]:
    """Yield (X_t, Y_t) of shapes (n_x, ≤batch_size), (n_y, ≤batch_size).

    Full batch (`batch_size` None or >= m) yields X and Y themselves, unshuffled and uncopied,
    as the course's batch gradient descent does. Otherwise the columns are permuted once per
    epoch and cut in order; the last batch holds the remainder, as in the course. With `out`
    (made once for this X and Y), the batches are views of its buffers instead of new
    arrays: the same values, overwritten by the next epoch.
    """
    m = X.shape[1]
    if batch_size is None or batch_size >= m:
        yield X, Y
        return
    perm = rng.permutation(m)
    if out is not None:
        Xp, Yp = out.permute(perm)
        for start in range(0, m, batch_size):
            yield Xp[:, start:start + batch_size], Yp[:, start:start + batch_size]
        return
    for start in range(0, m, batch_size):
        idx = perm[start:start + batch_size]
        yield X[:, idx], Y[:, idx]
