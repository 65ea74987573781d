"""Gradient checking by two-sided finite differences on the flattened parameters.

    dθ_approx[i] = (J(θ + ε e_i) - J(θ - ε e_i)) / 2ε
    difference   = ‖dθ - dθ_approx‖₂ / (‖dθ‖₂ + ‖dθ_approx‖₂)

as in the course. With dropout, every evaluation redraws the same masks from a fresh
Generator(seed), so J stays one differentiable function of θ.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sweeplab.nn.network import Network

Array = NDArray[np.floating]


def gradient_check(net: Network, X: Array, Y: Array, *, l2: float = 0.0, eps: float = 1e-7,
                   seed: int | None = None) -> float:
    """Relative difference between backprop's gradient and the numerical one (X (n_x, m))."""

    def rng() -> np.random.Generator | None:
        return None if seed is None else np.random.default_rng(seed)

    _, dW, db = net.forward_backward(X, Y, l2, rng())
    grads = {}
    for l in range(1, net.L + 1):
        grads[f"W{l}"], grads[f"b{l}"] = dW[l - 1].copy(), db[l - 1]
    analytic = np.concatenate([grads[k].ravel() for k in net.params()])

    theta = net.get_vector().copy()
    numeric = np.empty_like(theta)
    for i in range(theta.size):
        saved = theta[i]
        theta[i] = saved + eps
        net.set_vector(theta)
        plus = net.cost(X, Y, l2, rng())
        theta[i] = saved - eps
        net.set_vector(theta)
        minus = net.cost(X, Y, l2, rng())
        theta[i] = saved
        numeric[i] = (plus - minus) / (2 * eps)
    net.set_vector(theta)
    num = np.linalg.norm(analytic - numeric)
    den = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return float(num / den) if den else 0.0
