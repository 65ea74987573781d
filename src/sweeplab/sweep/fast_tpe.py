"""Optuna's TPE sampler with log Φ computed by SciPy in C: a quarter off the controller's `ask`.

Optuna 5's TPESampler spends about 30% of a sample computing log Φ (the standard normal's
log CDF) element by element in Python: `optuna.samplers._tpe._truncnorm._log_ndtr` maps a
scalar function over its array with `np.frompyfunc`, since TPE dropped SciPy (optuna#4105);
optuna#5478 names it TPE's hot spot. That scalar function is a port of
`scipy.special.log_ndtr`, and sweeplab depends on SciPy already (the confirmation's
statistics). `install()` points Optuna's module at SciPy's vectorised function, after
checking that the two agree on a grid through every case (-Φ(-a) above 6, log Φ(a) down to
-20, the asymptotic series below, ±inf); if Optuna's internals are not the ones checked
(another version), it changes nothing and TPE runs as shipped. The two agree to 1e-14
relative or 1e-15 absolute (SciPy's is the more accurate where Φ(a) is near 1: Optuna's
takes the log of 1 - ε), so a seeded search draws the same trials to float rounding: the
same integers and choices, floats within about 1e-13 relative, not bit for bit
(tests/test_fast_tpe.py).

A TPE sample over the default sweep's space after 20 to 40 trials took 10.8 ms of CPU, 7.7
with it; the controller's `ask` in three probe pairs (experiments/bench/probe_ab.py) 10.2 to
11.8 ms, 7.4 to 9.2 with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

_lock = threading.Lock()
_installed = False

# Where each of log Φ's cases begins and ends, and around them.
_GRID = np.concatenate([np.linspace(-60.0, 40.0, 4001), [-20.0, 6.0, 0.0, -np.inf, np.inf],
                        -np.logspace(-12, 1, 27), np.logspace(-12, 1, 27)])


def _agree(ours: Callable[[np.ndarray], np.ndarray],
           theirs: Callable[[np.ndarray], np.ndarray]) -> bool:
    try:
        a, b = np.asarray(ours(_GRID), dtype=float), np.asarray(theirs(_GRID), dtype=float)
    except Exception:  # another signature: not the function checked here
        return False
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-14, atol=1e-15,
                                                   equal_nan=False))


def install() -> bool:
    """Make Optuna's TPE compute log Φ with SciPy, once per process; True if it does."""
    global _installed
    with _lock:
        if _installed:
            return True
        try:
            from optuna.samplers._tpe import _truncnorm
            from scipy.special import log_ndtr
        except ImportError:
            return False
        shipped = getattr(_truncnorm, "_log_ndtr", None)
        if shipped is None or not _agree(shipped, log_ndtr):
            return False
        _truncnorm._log_ndtr = log_ndtr
        _installed = True
        return True
