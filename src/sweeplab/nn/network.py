"""An L-layer fully connected network, vectorised over examples stored as columns.

Notation follows the course: layer l = 1..L has W[l] (n[l], n[l-1]) and b[l] (n[l], 1);
Z[l] = W[l] A[l-1] + b[l], A[l] = g(Z[l]), A[0] = X (n_x, m). Hidden layers share one
activation g; the output layer pairs sigmoid or softmax with its cross-entropy. In code,
``W[l - 1]`` holds W[l] (Python lists count from 0).

There is one forward pass, `forward` (which `logits`, `cost` and `forward_backward` use),
and one backward pass, `backward`, from the caches the forward one kept. Layer 1 is a
seam: `forward_from_Z1` starts from W[1] X computed elsewhere and `backward` returns dZ[1]
as a value of its own, so that whoever keeps W[1] in another form (`nn.dual`) forms its
gradient from dZ[1] without reading X.

Parameters and gradients live in two flat buffers, `theta` and `dtheta` (the order of
`get_vector`: W[1], b[1], W[2], ...), and every W[l], b[l], dW[l], db[l] is a view into
them: an optimiser updates the whole network with a few operations on `theta`. Training's
`forward_backward` also keeps its activations in work arrays per batch size, so that a
step allocates next to nothing; what it computes, and the rounding, are those of
`forward` and `backward`.

What it leaves out: convolutions, batch norm, anything but dense layers. What it does not
compute: dA[0], the gradient with respect to the input, which training never needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sweeplab.nn.activations import Activation, get_activation
from sweeplab.nn.buffers import WORK_SIZES, Work, param_views
from sweeplab.nn.initializers import initialize
from sweeplab.nn.losses import Output, get_output

Array = NDArray[np.floating]
# The float types a network computes in.
DTYPES = ("float64", "float32")


class ShapeError(ValueError):
    """A matrix does not have the shape its layer needs; the message names both."""


def layer_dims_from(n_x: int, n_y: int, depth: int, width: int,
                    hidden: Sequence[int] | None = None) -> list[int]:
    """[n_x, n[1], ..., n_y]: `hidden` when given, else `depth` hidden layers of `width` units."""
    sizes = list(hidden) if hidden is not None else [width] * depth
    return [n_x, *sizes, n_y]


@dataclass(slots=True)
class Caches:
    """What a forward pass leaves for the backward one (the course's `caches`).

    ZL is Z[L] (n_y, m). With `keep`, for each layer l = 1..L (lists count from 0, as W
    does): A[l-1] is its input (n[l-1], m) as it saw it, after dropout (A[0] is X, or None
    when the pass started from a given Z[1]); and for each hidden layer l = 1..L-1, Z[l-1]
    is Z[l] (n[l], m), G[l-1] = g(Z[l]) before dropout (what g' needs) and D[l-1] its
    dropout mask (D is empty without dropout). Without `keep`, only ZL and A[0].
    """

    ZL: Array
    A: list[Array | None]
    Z: list[Array]
    G: list[Array]
    D: list[Array]


@dataclass
class Network:
    """Parameters and structure of the network; forward and backward propagation.

    W and b given to the constructor are copied into `theta`; afterwards W[l] and b[l] are
    views of it (write them in place; assigning a new array to W[l] would detach it).
    """

    layer_dims: list[int]
    W: list[Array]
    b: list[Array]
    activation: Activation
    output: Output
    keep_prob: float = 1.0
    theta: Array = field(init=False, repr=False, compare=False)
    dtheta: Array = field(init=False, repr=False, compare=False)
    _dW: list[Array] = field(init=False, repr=False, compare=False)
    _db: list[Array] = field(init=False, repr=False, compare=False)
    _l2W: list[Array] = field(init=False, repr=False, compare=False)
    _work: dict[tuple[int, bool], Work] = field(init=False, repr=False, compare=False)

    @classmethod
    def create(cls, layer_dims: Sequence[int], *, activation: str = "relu",
               output: str = "sigmoid", init: str = "he", seed: int = 1,
               dtype: str = "float64", keep_prob: float = 1.0,
               leaky_slope: float = 0.01) -> Network:
        """A freshly initialised network with layers `layer_dims` = [n_x, n[1], ..., n_y]."""
        if len(layer_dims) < 2 or any(int(n) < 1 for n in layer_dims):
            raise ShapeError(f"layer_dims must be >= 2 sizes, each >= 1; got {list(layer_dims)}")
        try:
            name = np.dtype(dtype).name  # "float32", np.float32 and np.dtype alike
        except TypeError:
            name = None
        if name not in DTYPES:
            raise ValueError(f"dtype={dtype!r}: allowed are {', '.join(DTYPES)}")
        dtype = name
        W, b = initialize(layer_dims, init, seed, dtype)
        return cls(list(layer_dims), W, b, get_activation(activation, leaky_slope=leaky_slope),
                   get_output(output), keep_prob)

    def __post_init__(self) -> None:
        if not 0 < self.keep_prob <= 1:  # 0 divides by zero; above 1 is no probability
            raise ValueError(f"keep_prob={self.keep_prob!r}: must be in (0, 1] (the "
                             f"probability of keeping a hidden unit; 1 = no dropout)")
        self.check_shapes()
        self.theta = np.empty(self.n_params, dtype=self.dtype)
        self.dtheta = np.zeros_like(self.theta)
        W, b = param_views(self.theta, self.layer_dims)
        for view, given in zip([*W, *b], [*self.W, *self.b], strict=True):
            view[...] = given
        self.W, self.b = W, b
        self._dW, self._db = param_views(self.dtheta, self.layer_dims)
        self._l2W = []
        self._work = {}

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (and deep-copied) without the buffers: views do not survive a copy, so
        # `__setstate__` makes W, b views of a new theta again.
        return {k: getattr(self, k) for k in ("layer_dims", "W", "b", "activation", "output",
                                               "keep_prob")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    @property
    def L(self) -> int:
        """Number of layers with parameters (hidden layers + output)."""
        return len(self.layer_dims) - 1

    @property
    def dtype(self) -> np.dtype:
        return self.W[0].dtype

    @property
    def n_params(self) -> int:
        return sum(W.size + b.size for W, b in zip(self.W, self.b, strict=True))

    def work(self, m: int, dropout: bool) -> Work:
        """The work arrays for batches of m examples (made on first use)."""
        key = (m, dropout)
        w = self._work.get(key)
        if w is None:
            if len(self._work) >= WORK_SIZES:
                self._work.clear()
            w = self._work[key] = Work.create(self.layer_dims, m, self.dtype, dropout)
        return w

    def check_shapes(self) -> None:
        """Raise ShapeError naming the layer if any W[l], b[l] disagrees with layer_dims."""
        n = self.layer_dims
        if len(self.W) != self.L or len(self.b) != self.L:
            raise ShapeError(f"layer_dims {n} needs {self.L} W and b, got {len(self.W)} W "
                             f"and {len(self.b)} b")
        for l in range(1, self.L + 1):
            W, b = self.W[l - 1], self.b[l - 1]
            if W.shape != (n[l], n[l - 1]):
                raise ShapeError(f"layer {l}: W{l} has shape {W.shape}, expected "
                                 f"(n[{l}], n[{l - 1}]) = {(n[l], n[l - 1])}")
            if b.shape != (n[l], 1):
                raise ShapeError(f"layer {l}: b{l} has shape {b.shape}, expected "
                                 f"(n[{l}], 1) = {(n[l], 1)}")
            if W.dtype != self.W[0].dtype or b.dtype != self.W[0].dtype:
                raise TypeError(f"layer {l}: W{l} is {W.dtype} and b{l} is {b.dtype}; "
                                f"every parameter must be {self.W[0].dtype}")

    def check_input(self, X: Array, Y: Array | None = None) -> None:
        """Raise ShapeError (naming the layer and both shapes) or TypeError unless X is
        (n_x, m) and Y (n_y, m), both in the network's dtype."""
        n_x, n_y = self.layer_dims[0], self.layer_dims[-1]
        for name, arr in (("X", X), ("Y", Y)):  # array-likes with shape and dtype will do
            if arr is not None and not (hasattr(arr, "shape") and hasattr(arr, "dtype")):
                raise TypeError(f"{name} is a {type(arr).__name__}, not an array: pass "
                                f"np.asarray({name}, dtype=np.{self.dtype})")
        if X.ndim != 2 or X.shape[0] != n_x:
            raise ShapeError(f"layer 1: W1 has shape {self.W[0].shape} and needs A0 = X of "
                             f"shape (n_x, m) = ({n_x}, m), but X has shape {X.shape}"
                             + (" (examples go in columns: pass X.T?)"
                                if X.ndim == 2 and X.shape[1] == n_x else ""))
        if X.dtype != self.dtype:
            raise TypeError(f"X is {X.dtype} but the network is {self.dtype}: cast the data "
                            f"once when loading it (sweeplab never upcasts silently)")
        if Y is not None and Y.shape != (n_y, X.shape[1]):
            raise ShapeError(f"layer {self.L} (output): A{self.L} has shape "
                             f"{(n_y, X.shape[1])} but Y has shape {Y.shape}")
        if Y is not None and Y.dtype != self.dtype:
            raise TypeError(f"Y is {Y.dtype} but the network is {self.dtype}")

    def forward(self, X: Array, rng: np.random.Generator | None = None, *,
                keep: bool = False) -> Caches:
        """The forward pass over X (n_x, m): Caches with Z[L] (n_y, m), and with every
        layer's A, Z, g(Z) and dropout mask when `keep` (what `backward` needs).

        Dropout is applied to hidden layers when `rng` is given and keep_prob < 1
        (inverted: kept units are divided by keep_prob).
        """
        self.check_input(X)
        return self._forward(X, None, rng, keep)

    def forward_from_Z1(self, Z1: Array, rng: np.random.Generator | None = None, *,
                        keep: bool = False) -> Caches:
        """The forward pass from Z1 = W[1] A[0] (n[1], m) computed elsewhere (`nn.dual`
        keeps W[1] in another form): neither W[1] nor X is read, and Z1 is overwritten
        (it becomes Z[1] = Z1 + b[1]). Otherwise as `forward`; the caches hold no A[0]."""
        if Z1.ndim != 2 or Z1.shape[0] != self.layer_dims[1]:
            raise ShapeError(f"layer 1: Z1 has shape {Z1.shape}, expected (n[1], m) = "
                             f"({self.layer_dims[1]}, m)")
        return self._forward(None, Z1, rng, keep)

    def _forward(self, X: Array | None, Z1: Array | None, rng: np.random.Generator | None,
                 keep: bool, w: Work | None = None) -> Caches:
        # The one forward pass: from X, or from a given Z1 (then X is None); into the work
        # arrays `w` when given (which must match the batch and dropout), else new arrays.
        L, g = self.L, self.activation
        dropout = rng is not None and self.keep_prob < 1
        As: list[Array | None] = [X]
        Zs: list[Array] = []
        Gs: list[Array] = []
        Ds: list[Array] = []
        A = X
        for l in range(L - 1):  # hidden layers; W[l] holds W[l + 1]
            if l == 0 and Z1 is not None:
                Z = Z1
            else:
                Z = np.matmul(self.W[l], A, out=None if w is None else w.Z[l])
            Z += self.b[l]
            G = g.forward(Z, None if w is None else w.G[l])
            A = G
            if dropout:
                assert rng is not None
                U = rng.random(G.shape, dtype=G.dtype, out=None if w is None else w.U[l])
                D = np.less(U, self.keep_prob, out=None if w is None else w.D[l])
                A = np.multiply(G, D, out=None if w is None else w.A[l])
                A /= self.keep_prob
                if keep:
                    Ds.append(D)
            if keep:
                Zs.append(Z)
                Gs.append(G)
                As.append(A)
        if L == 1 and Z1 is not None:
            ZL = Z1
        else:
            ZL = np.matmul(self.W[-1], A, out=None if w is None else w.ZL)
        ZL += self.b[-1]
        return Caches(ZL, As, Zs, Gs, Ds)

    def logits(self, X: Array) -> Array:
        """Z[L] (n_y, m) for X (n_x, m), without dropout: what the stable costs take."""
        return self.forward(X).ZL

    def predict_proba(self, X: Array) -> Array:
        """A[L] (n_y, m) for X (n_x, m), without dropout."""
        return self.output.activate(self.logits(X))

    def predict(self, X: Array) -> NDArray[np.int64]:
        """Class labels (m,) for X (n_x, m)."""
        return self.output.predict(self.predict_proba(X))

    def l2_cost(self, l2: float, m: int, first: int = 1) -> float:
        """(λ / 2m) Σ_l ‖W[l]‖² over layers l = first..L, the course's L2 term."""
        if l2 == 0:
            return 0.0
        return l2 / (2 * m) * sum(float(np.vdot(W, W)) for W in self.W[first - 1:])

    def cost(self, X: Array, Y: Array, l2: float = 0.0,
             rng: np.random.Generator | None = None) -> float:
        """J for X (n_x, m), Y (n_y, m); with dropout when `rng` is given and keep_prob < 1."""
        self.check_input(X, Y)
        ZL = self._forward(X, None, rng, keep=False).ZL
        return self.output.cost(ZL, Y) + self.l2_cost(l2, X.shape[1])

    def backward(self, caches: Caches, Y: Array,
                 l2: float = 0.0) -> tuple[Array, list[Array], list[Array]]:
        """The backward pass from the caches of a forward pass with `keep`, Y (n_y, m).

        Returns (dZ[1], dW, db): dZ[1] (n[1], m) = ∂J/∂Z[1]; db[l-1] (n[l], 1) for
        l = 1..L; dW the gradients of the weights the pass used, in order, each
        dW[l] = dZ[l] A[l-1]ᵀ + (λ/m) W[l] (n[l], n[l-1]): W[1..L] after `forward`, W[2..L]
        after `forward_from_Z1` (W[1] was not used; its owner forms its gradient from
        dZ[1]). The dW and db arrays are views of `dtheta`, overwritten by the next call.
        """
        if len(caches.A) != self.L:
            raise ValueError("backward needs the caches of a forward pass with keep=True")
        dZ = self.output.activate(caches.ZL)  # becomes dZ[L] = (A[L] - Y) / m in place
        dZ -= Y
        dZ *= 1 / Y.shape[1]
        return self._backward(caches, dZ, l2)

    def _backward(self, caches: Caches, dZ: Array, l2: float,
                  w: Work | None = None) -> tuple[Array, list[Array], list[Array]]:
        # The one backward pass, from dZ[L]; into the work arrays `w` when given.
        m = dZ.shape[1]
        L, g = self.L, self.activation
        dW, db = self._dW, self._db
        for l in range(L - 1, -1, -1):  # dW[l] holds dW[l + 1]
            np.add.reduce(dZ, axis=1, keepdims=True, out=db[l])  # db[l] = Σ_columns dZ
            A_prev = caches.A[l]
            if A_prev is None:
                return dZ, dW[1:], db  # started from Z[1]: dW[1] is not ours to form
            np.matmul(dZ, A_prev.T, out=dW[l])
            if l2:
                if not self._l2W:
                    self._l2W = [np.empty_like(W) for W in self.W]
                dW[l] += np.multiply(self.W[l], l2 / m, out=self._l2W[l])
            if l == 0:
                break  # dA[0] would be the gradient w.r.t. X: never needed
            dA = np.matmul(self.W[l].T, dZ, out=None if w is None else w.dA[l - 1])
            if caches.D:
                dA *= caches.D[l - 1]
                dA /= self.keep_prob
            dZ = g.backward(dA, caches.Z[l - 1], caches.G[l - 1])
        return dZ, dW, db

    def forward_backward(self, X: Array, Y: Array, l2: float = 0.0,
                         rng: np.random.Generator | None = None
                         ) -> tuple[float, list[Array], list[Array]]:
        """One forward and one backward pass over X (n_x, m), Y (n_y, m).

        Returns (J, dW, db) with dW[l-1] (n[l], n[l-1]) and db[l-1] (n[l], 1); dropout as
        in `forward`. dW and db are views of `dtheta` (all of it), overwritten by the next
        call; the activations go into the work arrays for m (`work`).
        """
        self.check_input(X, Y)
        w = self.work(X.shape[1], rng is not None and self.keep_prob < 1)
        caches = self._forward(X, None, rng, True, w)
        J = self.output.cost_grad(caches.ZL, Y, w.dZL) + self.l2_cost(l2, X.shape[1])
        _, dW, db = self._backward(caches, w.dZL, l2, w)
        return J, dW, db

    def params(self) -> dict[str, Array]:
        """The parameters by course name: {"W1": ..., "b1": ..., ..., "WL": ..., "bL": ...}."""
        out: dict[str, Array] = {}
        for l in range(1, self.L + 1):
            out[f"W{l}"] = self.W[l - 1]
            out[f"b{l}"] = self.b[l - 1]
        return out

    def get_vector(self) -> Array:
        """All parameters flattened into one vector, in the order W1, b1, W2, b2, ...
        (a copy of `theta`)."""
        return self.theta.copy()

    def set_vector(self, theta: Array) -> None:
        """Inverse of `get_vector`: copy theta back into W and b (in place)."""
        if theta.size != self.theta.size:
            raise ShapeError(f"theta has {theta.size} values, the network has "
                             f"{self.theta.size} parameters")
        self.theta[...] = theta.ravel()
