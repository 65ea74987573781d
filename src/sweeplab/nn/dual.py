"""Layer 1 in dual form: full-batch training on wide inputs (m < n_x) without reading X.

Full-batch gradient descent and momentum only ever move W[1] by multiples of itself (the
L2 term) and of dW[1] = dZ[1] Xᵀ. So, at every step,

    W[1] = a W1₀ + R Xᵀ        a: a scalar,  R: (n[1], m),  W1₀: the initial W[1]
    Z[1] = W[1] X + b[1] = a (W1₀ X) + R (XᵀX) + b[1]

With the Gram matrix G = XᵀX (m, m) computed once, layer 1 costs n[1]·m² multiply-adds
per iteration instead of the direct form's 2·n[1]·n_x·m, and X is never read again: on the
course's cat images (n_x = 12288, m = 209) that is 100x less work. (This is the "dual" or
kernel form that ridge regression solvers switch to when features outnumber examples.)

The optimiser updates the coefficients (a, R) in place of W[1]. That is exact because gd
and momentum are linear in the gradient, and in these coordinates the gradient is

    d = (λ/m) a,    D = dZ[1] + (λ/m) R     (dZ[1] already carries the course's 1/m)

Adam divides by a per-weight √s, which does not stay in this span: it needs the direct form.
So do mini-batches, whose X changes every step. W[1] is materialised (one (n[1], m) x
(m, n_x) product) only when asked, for validation and at the end.

The network does the rest of the pass: `Network.forward_from_Z1` starts from Z[1], and
`Network.backward` hands back dZ[1], from which D is formed here. `nn.steppers.DualStepper`
trains with this class; `dual_pays_off` is where `nn.steppers.resolve_stepper` picks it.

Same mathematics, different rounding: float64 costs agree with the direct form to ~1e-15.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sweeplab.nn.network import Network

Array = NDArray[np.floating]


class DualLayer1:
    """W[1] of `net` kept as a W1₀ + R Xᵀ for the fixed training inputs X (n_x, m)."""

    def __init__(self, net: Network, X: Array) -> None:
        net.check_input(X)
        self.net = net
        self.X = X
        self.W1_0 = net.W[0].copy()  # (n[1], n_x)
        self.Z0 = self.W1_0 @ X  # (n[1], m): W1₀ X, without b[1]
        self.G = X.T @ X  # (m, m)
        self.W1_0_sq = float(np.vdot(self.W1_0, self.W1_0))
        self.a = np.ones(1, dtype=net.dtype)  # an array, so optimisers update it in place
        self.R = np.zeros((net.layer_dims[1], X.shape[1]), dtype=net.dtype)

    @property
    def params(self) -> list[Array]:
        """What the optimiser updates: a, R, W[2..L], b[1..L] (W[1] follows from a and R)."""
        return [self.a, self.R, *self.net.W[1:], *self.net.b]

    def forward_backward(self, Y: Array, l2: float = 0.0,
                         rng: np.random.Generator | None = None) -> tuple[float, list[Array]]:
        """One pass over the training set: (J, gradients parallel to `params`).

        J is the same cost as ``net.forward_backward(X, Y, l2, rng)`` would return,
        including the L2 term of W[1]: ‖W[1]‖² = a²‖W1₀‖² + 2a⟨W1₀ X, R⟩ + ⟨R G, R⟩.
        """
        net = self.net
        net.check_input(self.X, Y)
        a = float(self.a[0])
        m = self.X.shape[1]
        RG = self.R @ self.G
        Z1 = RG + self.Z0 if a == 1.0 else RG + a * self.Z0  # W[1] X, without b[1]
        caches = net.forward_from_Z1(Z1, rng, keep=True)
        J = net.output.cost(caches.ZL, Y) + net.l2_cost(l2, m, first=2)
        dZ1, dW, db = net.backward(caches, Y, l2)  # dW: W[2..L] only
        if l2:
            sq = a * a * self.W1_0_sq + 2 * a * float(np.vdot(self.Z0, self.R)) \
                + float(np.vdot(RG, self.R))
            J += l2 / (2 * m) * sq
            dZ1 += (l2 / m) * self.R  # dZ1 becomes D
        d = np.array([(l2 / m) * a], dtype=self.a.dtype)
        return J, [d, dZ1, *dW, *db]

    def materialize(self) -> Array:
        """Write W[1] = a W1₀ + R Xᵀ into the network (in place) and return it."""
        W1 = self.net.W[0]
        np.matmul(self.R, self.X.T, out=W1)
        W1 += float(self.a[0]) * self.W1_0
        return W1


def dual_pays_off(n_x: int, m: int) -> bool:
    """Whether the dual form is the faster one: m at most n_x / 4 makes G at most a quarter
    of X's size and layer 1's work per iteration at least 8x smaller."""
    return 4 * m <= n_x
