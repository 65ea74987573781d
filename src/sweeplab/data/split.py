"""Stratified splitting and content fingerprints."""

from __future__ import annotations

import hashlib
import math

import numpy as np


def stratified_split(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split example indices so each class keeps its proportion.

    y: (m,) labels. For each class with n_c examples, floor(fraction * n_c + 0.5) of them
    (rounded half up) go to the held-out part, at least 1 when fraction > 0 and n_c >= 2,
    and at most n_c - 1, so every class stays in the kept part. Which ones is drawn from
    `rng`. Returns `(keep_idx, held_idx)`: int64, disjoint, each sorted so the examples
    keep their original order.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction={fraction!r}: must be in [0, 1)")
    y = np.asarray(y)
    held: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n_c = idx.size
        k = math.floor(fraction * n_c + 0.5)
        if fraction > 0 and n_c >= 2:
            k = max(k, 1)
        k = min(k, n_c - 1)
        held.append(rng.permutation(idx)[:k])
    held_idx = np.sort(np.concatenate(held)).astype(np.int64) if held else np.empty(0, np.int64)
    keep = np.ones(y.shape[0], dtype=bool)
    keep[held_idx] = False
    return np.flatnonzero(keep).astype(np.int64), held_idx


def fingerprint(arrays: dict[str, np.ndarray | None]) -> str:
    """sha256 hex digest over the name, dtype, shape and bytes of each array, in sorted-name
    order; None entries are skipped. Equal iff the data a run saw is equal."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = arrays[name]
        if a is None:
            continue
        a = np.ascontiguousarray(a)  # no copy when already contiguous
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(memoryview(a).cast("B") if a.size else b"")
    return h.hexdigest()
