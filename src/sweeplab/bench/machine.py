"""The machine's own limits, measured in the same process as the rest of the bench."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` timed calls, in seconds (the least disturbed one)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def gemm_gflops(dtype: str, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n matrix product (2n³ flops) through NumPy's BLAS."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n)).astype(dtype)
    B = rng.standard_normal((n, n)).astype(dtype)
    C = np.empty_like(A)
    np.matmul(A, B, out=C)  # warm up the BLAS threads
    return 2 * n**3 / best_of(lambda: np.matmul(A, B, out=C), repeats) / 1e9


def read_bandwidth(nbytes: int, repeats: int = 7) -> float:
    """GB/s reading an array of `nbytes` once, through a BLAS dot (threaded, no writes).

    Measured at the size of the data the training reads, so that it counts whatever cache
    level that size lives in, as the training does."""
    v = np.random.default_rng(0).standard_normal(nbytes // 8)
    ones = np.ones_like(v)
    np.dot(v, ones)
    return v.nbytes / best_of(lambda: np.dot(v, ones), repeats) / 1e9
