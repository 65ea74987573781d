"""Training on the flat parameter buffers gives the same curves as the textbook's per-layer
arrays (issue 13): cost histories within 1e-12 relative of a per-layer reference.

The reference below is the course's algorithm written layer by layer, one array per W[l],
b[l] and optimiser state, in the order of operations sweeplab used before `Network.theta`.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest

from sweeplab.nn import DirectStepper, Network, make_optimizer, minibatches

Array = Any


def sigmoid(Z: Array) -> Array:
    return (np.tanh(Z * 0.5) + 1) * 0.5


def cost_and_dZ(output: str, ZL: Array, Y: Array) -> tuple[float, Array]:
    """J (stable form) and dZ[L] = (A[L] - Y) / m."""
    m = Y.shape[1]
    if output == "softmax":
        shifted = ZL - ZL.max(axis=0, keepdims=True)
        J = -(Y * (shifted - np.log(np.exp(shifted).sum(axis=0, keepdims=True)))).sum() / m
        E = np.exp(ZL - ZL.max(axis=0, keepdims=True))
        AL = E / E.sum(axis=0, keepdims=True)
    else:
        J = (np.maximum(ZL, 0) - ZL * Y + np.log1p(np.exp(-np.abs(ZL)))).sum() / m
        AL = sigmoid(ZL)
    return float(J), (AL - Y) * (1 / m)


def reference_costs(net: Network, X: Array, Y: Array, opt: str, lr: float, *, l2: float,
                    batch: int | None, epochs: int, seed: int) -> tuple[list[float], list[Array]]:
    """Per-layer training of a copy of `net` (relu hidden layers): the cost of every epoch
    and the final [W[1..L], b[1..L]]."""
    W = [w.copy() for w in net.W]
    b = [v.copy() for v in net.b]
    L, kp = len(W), net.keep_prob
    batch_rng = np.random.default_rng(seed)
    drop_rng = np.random.default_rng(seed + 1) if kp < 1 else None
    v = [np.zeros_like(p) for p in W + b]
    s = [np.zeros_like(p) for p in W + b]
    t = 0
    costs = []
    for _ in range(epochs):
        total = 0.0
        for Xb, Yb in minibatches(X, Y, batch, batch_rng):
            m = Xb.shape[1]
            As, Zs, Ds = [Xb], [], []
            A = Xb
            for l in range(L - 1):
                Z = W[l] @ A + b[l]
                A = np.maximum(Z, 0)
                if drop_rng is not None:
                    D = drop_rng.random(A.shape) < kp
                    A = A * D / kp
                    Ds.append(D)
                Zs.append(Z)
                As.append(A)
            J, dZ = cost_and_dZ(net.output.name, W[-1] @ A + b[-1], Yb)
            if l2:
                J += l2 / (2 * m) * sum(float(np.vdot(w, w)) for w in W)
            dW: list[Array] = [None] * L
            db: list[Array] = [None] * L
            for l in range(L - 1, -1, -1):
                db[l] = dZ.sum(axis=1, keepdims=True)
                dW[l] = dZ @ As[l].T
                if l2:
                    dW[l] = dW[l] + (l2 / m) * W[l]
                if l > 0:
                    dA = W[l].T @ dZ
                    if Ds:
                        dA = dA * Ds[l - 1] / kp
                    dZ = np.where(Zs[l - 1] <= 0, 0.0, dA)
            total += J * m
            t += 1
            for i, (p, g) in enumerate(zip(W + b, dW + db, strict=True)):
                if opt == "gd":
                    p -= lr * g
                elif opt == "momentum":
                    v[i] = 0.9 * v[i] + (1 - 0.9) * g
                    p -= lr * v[i]
                else:
                    v[i] = 0.9 * v[i] + (1 - 0.9) * g
                    s[i] = 0.999 * s[i] + (1 - 0.999) * (g * g)
                    c1, c2 = 1 - 0.9**t, 1 - 0.999**t
                    p -= v[i] / (np.sqrt(s[i] / c2) + 1e-8) * (lr / c1)
        costs.append(total / X.shape[1])
    return costs, W + b


def toy(n_x: int, n_y: int, m: int, seed: int = 0) -> tuple[Array, Array]:
    rng = np.random.default_rng(seed)
    X = rng.random((n_x, m))
    labels = (X[:3].sum(axis=0) * n_y / 3).astype(int) % n_y
    Y = np.eye(n_y)[:, labels] if n_y > 1 else (labels % 2)[None, :].astype(float)
    return X, Y


CASES = [  # (optimizer, lr, batch size, keep_prob, l2, output)
    ("adam", 0.01, 64, 1.0, 0.0, "softmax"),
    ("adam", 0.01, 64, 0.8, 0.3, "softmax"),
    ("adam", 0.01, None, 1.0, 0.3, "softmax"),
    ("momentum", 0.1, 64, 1.0, 0.3, "softmax"),
    ("momentum", 0.1, None, 0.7, 0.0, "softmax"),
    ("gd", 0.3, 64, 0.8, 0.0, "softmax"),
    ("gd", 0.3, None, 1.0, 0.1, "softmax"),
    ("adam", 0.01, 50, 0.9, 0.1, "sigmoid"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_flat_training_matches_per_layer_reference(case: tuple[Any, ...]) -> None:
    opt, lr, batch, kp, l2, output = case
    n_y = 10 if output == "softmax" else 1
    X, Y = toy(64, n_y, 300)  # 300 = 4 x 64 + 44: the last batch is smaller
    net = Network.create([64, 16, 12, n_y], output=output, seed=3, keep_prob=kp)
    want, want_params = reference_costs(net, X, Y, opt, lr, l2=l2, batch=batch, epochs=30,
                                        seed=5)
    stepper = DirectStepper(net, X, Y, make_optimizer(opt, lr), l2=l2, batch_size=batch,
                            batch_rng=np.random.default_rng(5),
                            dropout_rng=np.random.default_rng(6) if kp < 1 else None)
    got = [stepper.epoch() for _ in range(30)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert want[-1] < want[0]  # it learnt: the curves compared are not flat
    for p, q in zip([*net.W, *net.b], want_params, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-9, atol=1e-12)


def test_parameters_and_gradients_are_views_of_the_flat_buffers() -> None:
    W = [np.arange(12.0).reshape(3, 4), np.ones((1, 3))]
    b = [np.full((3, 1), 2.0), np.zeros((1, 1))]
    net = Network.create([4, 3, 1])
    net2 = Network([4, 3, 1], W, b, net.activation, net.output)
    assert all(w.base is net2.theta for w in [*net2.W, *net2.b])
    np.testing.assert_array_equal(net2.theta, np.concatenate(
        [W[0].ravel(), b[0].ravel(), W[1].ravel(), b[1].ravel()]))
    W[0][0, 0] = 99.0  # the caller's arrays were copied, not adopted
    assert net2.W[0][0, 0] == 0.0
    X, Y = toy(4, 1, 7)
    _, dW, db = net2.forward_backward(X, Y)
    assert all(g.base is net2.dtheta for g in [*dW, *db])
    np.testing.assert_array_equal(net2.get_vector(), net2.theta)
    net2.set_vector(np.zeros(net2.n_params))
    assert not net2.W[1].any()


def test_a_copied_network_trains_its_own_views() -> None:
    """Pickling or deep-copying keeps W[l], b[l] views of the copy's own theta."""
    X, Y = toy(4, 1, 20)
    net = Network.create([4, 3, 1], seed=2)
    for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert all(p.base is other.theta for p in [*other.W, *other.b])
        np.testing.assert_array_equal(other.theta, net.theta)
        DirectStepper(other, X, Y, make_optimizer("adam", 0.1)).epoch()
        assert not np.array_equal(other.W[0], net.W[0])
        np.testing.assert_array_equal(other.get_vector(), other.theta)
