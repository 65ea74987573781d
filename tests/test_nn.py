"""The NumPy core: gradients, shapes, activations, outputs, initialisers, optimisers."""

from __future__ import annotations

import numpy as np
import pytest

from sweeplab.nn import (
    Network,
    ShapeError,
    get_activation,
    get_output,
    gradient_check,
    initialize,
    layer_dims_from,
    make_optimizer,
    minibatches,
    summary,
)

ACTS = ["relu", "leaky_relu", "tanh", "sigmoid"]


def jitter_biases(net: Network, seed: int = 0) -> Network:
    """Non-zero biases, so no pre-activation sits exactly on relu's kink at 0 (where a
    two-sided difference measures half the slope and any gradient check would fail)."""
    rng = np.random.default_rng(seed)
    for b in net.b:
        b += 0.1 * rng.standard_normal(b.shape)
    return net


def toy(n_x: int, n_y: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_x, m))
    if n_y == 1:
        return X, rng.integers(0, 2, (1, m)).astype(float)
    return X, np.eye(n_y)[rng.integers(0, n_y, m)].T


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("output,n_y", [("sigmoid", 1), ("softmax", 3)])
@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_gradients_match_finite_differences(activation: str, output: str, n_y: int,
                                            depth: int) -> None:
    X, Y = toy(4, n_y, 7, seed=depth)
    net = jitter_biases(Network.create(layer_dims_from(4, n_y, depth, 5),
                                       activation=activation, output=output, init="xavier",
                                       seed=depth))
    assert gradient_check(net, X, Y) < 1e-7
    assert gradient_check(net, X, Y, l2=0.7) < 1e-7


@pytest.mark.parametrize("activation", ACTS)
def test_gradients_with_dropout_masks_held_fixed(activation: str) -> None:
    X, Y = toy(3, 1, 9)
    net = jitter_biases(Network.create([3, 6, 5, 1], activation=activation, init="xavier",
                                       keep_prob=0.7))
    assert gradient_check(net, X, Y, l2=0.1, seed=4) < 1e-7


def test_gradient_check_catches_a_wrong_gradient() -> None:
    X, Y = toy(3, 1, 8)
    net = Network.create([3, 4, 1], activation="tanh", init="xavier")
    original = net.forward_backward

    def broken(*a, **k):  # type: ignore[no-untyped-def]
        J, dW, db = original(*a, **k)
        dW[0] *= 1.01
        return J, dW, db

    net.forward_backward = broken  # type: ignore[method-assign]
    assert gradient_check(net, X, Y) > 1e-4


@pytest.mark.parametrize("keep_prob", [1.0, 0.7])
@pytest.mark.parametrize("depth", [0, 2])
def test_one_forward_pass_serves_logits_cost_and_training(keep_prob: float, depth: int) -> None:
    """logits, cost and forward_backward all read Z[L] off `forward`: bit for bit."""
    X, Y = toy(4, 3, 11)
    net = jitter_biases(Network.create(layer_dims_from(4, 3, depth, 6), output="softmax",
                                       keep_prob=keep_prob))
    kept = net.forward(X, keep=True)
    assert len(kept.A) == net.L and kept.A[0] is X
    assert len(kept.Z) == len(kept.G) == net.L - 1 and kept.D == []  # no rng: no dropout
    np.testing.assert_array_equal(net.logits(X), kept.ZL)
    np.testing.assert_array_equal(net.forward(X).ZL, kept.ZL)
    for l in range(1, net.L):  # Z[l] = W[l] A[l-1] + b[l], A[l] = g(Z[l])
        np.testing.assert_array_equal(kept.Z[l - 1], net.W[l - 1] @ kept.A[l - 1] + net.b[l - 1])
        np.testing.assert_array_equal(kept.A[l], np.maximum(kept.Z[l - 1], 0))
    l2 = 0.3
    for seed in (None, 5):  # with dropout, the same masks from the same stream
        def rng(seed: int | None = seed) -> np.random.Generator | None:
            return None if seed is None else np.random.default_rng(seed)
        ZL = net.forward(X, rng()).ZL
        J = net.output.cost(ZL, Y) + net.l2_cost(l2, X.shape[1])
        assert net.cost(X, Y, l2, rng()) == J
        assert net.forward_backward(X, Y, l2, rng())[0] == J
        if seed is not None and keep_prob < 1 and depth > 0:
            assert not np.array_equal(ZL, kept.ZL)
            assert len(net.forward(X, rng(), keep=True).D) == net.L - 1


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_backward_from_a_given_Z1_returns_dZ1_and_the_other_gradients(depth: int) -> None:
    """The seam nn.dual uses: start from Z1 = W[1] X, get dZ[1] back as its own value and the
    gradients of W[2..L], b[1..L]; dW[1] = dZ[1] Xᵀ + (λ/m) W[1] is then the direct one."""
    X, Y = toy(5, 1, 9)
    net = jitter_biases(Network.create(layer_dims_from(5, 1, depth, 4), activation="tanh",
                                       keep_prob=0.8))
    l2 = 0.2
    J, dW, db = net.forward_backward(X, Y, l2, np.random.default_rng(1))
    dW, db = [d.copy() for d in dW], [d.copy() for d in db]
    caches = net.forward_from_Z1(net.W[0] @ X, np.random.default_rng(1), keep=True)
    assert caches.A[0] is None  # X was not read
    dZ1, dW_up, db_up = net.backward(caches, Y, l2)
    assert dZ1.shape == (net.layer_dims[1], X.shape[1])
    assert len(dW_up) == net.L - 1 and len(db_up) == net.L
    for g, g_ref in zip([*dW_up, *db_up], [*dW[1:], *db], strict=True):
        np.testing.assert_array_equal(g, g_ref)
    np.testing.assert_allclose(dZ1 @ X.T + l2 / X.shape[1] * net.W[0], dW[0], rtol=1e-13,
                               atol=1e-16)
    assert net.output.cost(caches.ZL, Y) + net.l2_cost(l2, X.shape[1]) == pytest.approx(J,
                                                                                      rel=1e-14)
    if depth > 0:  # without `keep`, a forward pass leaves no hidden layer's caches
        with pytest.raises(ValueError, match="keep=True"):
            net.backward(net.forward(X), Y)
    with pytest.raises(ShapeError, match=r"layer 1: Z1 has shape \(9, 4\), expected"):
        net.forward_from_Z1(np.zeros((9, 4)))


def test_layer_dims_from_depth_width_and_hidden() -> None:
    assert layer_dims_from(12288, 1, 0, 7) == [12288, 1]
    assert layer_dims_from(5, 3, 2, 8) == [5, 8, 8, 3]
    assert layer_dims_from(5, 1, 9, 9, hidden=[20, 7, 5]) == [5, 20, 7, 5, 1]


def test_shape_error_names_the_layer_and_both_shapes() -> None:
    net = Network.create([4, 3, 1])
    with pytest.raises(ShapeError, match=r"layer 1: W1 has shape \(3, 4\).*\(5, 2\)"):
        net.predict(np.zeros((5, 2)))
    with pytest.raises(ShapeError, match=r"pass X\.T"):
        net.predict(np.zeros((2, 4)))
    with pytest.raises(ShapeError, match=r"pass X\.T"):
        net.check_input(np.zeros((2, 4)))
    X, _ = toy(4, 1, 6)
    with pytest.raises(ShapeError, match=r"layer 2 \(output\).*\(1, 6\).*\(6, 1\)"):
        net.forward_backward(X, np.zeros((6, 1)))
    W = [np.zeros((3, 4)), np.zeros((3, 1))]  # W2 transposed
    with pytest.raises(ShapeError, match=r"layer 2: W2 has shape \(3, 1\), expected .*\(1, 3\)"):
        Network([4, 3, 1], W, [np.zeros((3, 1)), np.zeros((1, 1))], get_activation("relu"),
                get_output("sigmoid"))


def test_no_silent_upcast() -> None:
    net = Network.create([4, 3, 1], dtype="float32")
    X, Y = toy(4, 1, 10)
    with pytest.raises(TypeError, match="float64 but the network is float32"):
        net.forward_backward(X, Y.astype(np.float32))
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    _, dW, db = net.forward_backward(X32, Y32, l2=0.1, rng=np.random.default_rng(0))
    assert all(a.dtype == np.float32 for a in [*dW, *db, *net.W, *net.b])
    opt = make_optimizer("adam", 0.01)
    opt.step([*net.W, *net.b], [*dW, *db])
    assert all(a.dtype == np.float32 for a in [*net.W, *net.b])
    assert net.predict_proba(X32).dtype == np.float32


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"keep_prob": 0.0}, r"keep_prob=0.0: must be in \(0, 1\]"),
    ({"keep_prob": 2.0}, r"keep_prob=2.0: must be in \(0, 1\]"),
    ({"dtype": "float16"}, "dtype='float16': allowed are float64, float32"),
    ({"dtype": "int64"}, "dtype='int64': allowed are float64, float32"),
], ids=["keep-0", "keep-2", "float16", "int64"])
def test_arguments_the_network_cannot_train_with_are_refused(kwargs: dict,
                                                             message: str) -> None:
    """keep_prob 0 gave a NaN cost and a RuntimeWarning, 2 a finite one; float16 and int64
    networks were made."""
    with pytest.raises(ValueError, match=message):
        Network.create([2, 3, 1], **kwargs)


def test_input_that_is_not_an_array_is_a_type_error_saying_so() -> None:
    net = Network.create([2, 3, 1])
    with pytest.raises(TypeError, match=r"X is a list, not an array: pass "
                                        r"np.asarray\(X, dtype=np.float64\)"):
        net.cost([[1.0], [2.0]], np.zeros((1, 1)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Y is a list"):
        net.cost(np.zeros((2, 1)), [[1.0]])  # type: ignore[arg-type]
    # NumPy's dtype objects name a dtype as well as a string does
    assert Network.create([2, 3, 1], dtype=np.float32).dtype == np.float32  # type: ignore
    assert Network.create([2, 3, 1], dtype=np.dtype("float64")).dtype == np.float64  # type: ignore


def test_activations_values() -> None:
    Z = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    np.testing.assert_allclose(get_activation("relu").forward(Z), np.maximum(Z, 0))
    np.testing.assert_allclose(get_activation("leaky_relu", leaky_slope=0.1).forward(Z),
                               np.where(Z > 0, Z, 0.1 * Z))
    np.testing.assert_allclose(get_activation("tanh").forward(Z), np.tanh(Z))
    np.testing.assert_allclose(get_activation("sigmoid").forward(Z), 1 / (1 + np.exp(-Z)),
                               rtol=1e-15)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        get_activation("gelu")


def test_costs_are_stable_and_match_the_textbook_form() -> None:
    Z = np.array([[-3.0, 0.2, 4.0]])
    Y = np.array([[0.0, 1.0, 1.0]])
    A = 1 / (1 + np.exp(-Z))
    textbook = -np.mean(Y * np.log(A) + (1 - Y) * np.log(1 - A))
    assert get_output("sigmoid").cost(Z, Y) == pytest.approx(textbook, rel=1e-13)
    # Saturated logits: the textbook form gives inf/nan, the stable one a finite value.
    big = np.array([[800.0, -800.0]])
    assert get_output("sigmoid").cost(big, np.array([[0.0, 1.0]])) == pytest.approx(800.0)
    soft = get_output("softmax")
    Zs = np.array([[1000.0, 0.0], [0.0, 2.0], [-1000.0, 1.0]])
    Ys = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert np.isfinite(soft.cost(Zs, Ys))
    np.testing.assert_allclose(soft.activate(Zs).sum(axis=0), 1.0)
    Zm = np.array([[0.3, -1.0], [1.2, 0.1], [-0.5, 2.0]])
    P = np.exp(Zm) / np.exp(Zm).sum(axis=0)
    assert soft.cost(Zm, Ys) == pytest.approx(-np.mean(np.log(P[Ys == 1])), rel=1e-13)


def test_course_initialisers_draw_the_documented_sequence() -> None:
    dims = [5, 4, 3, 1]
    W, b = initialize(dims, "course_deep", seed=1)
    np.random.seed(1)  # noqa: NPY002 - the course's own way, as the reference
    for l in range(1, len(dims)):
        expected = np.random.randn(dims[l], dims[l - 1]) / np.sqrt(dims[l - 1])  # noqa: NPY002
        np.testing.assert_array_equal(W[l - 1], expected)
        np.testing.assert_array_equal(b[l - 1], np.zeros((dims[l], 1)))
    W_small, _ = initialize(dims, "course_small", seed=1)
    np.random.seed(1)  # noqa: NPY002
    for l in range(1, len(dims)):
        np.testing.assert_array_equal(W_small[l - 1],
                                      np.random.randn(dims[l], dims[l - 1]) * 0.01)  # noqa: NPY002
    # ... and they leave the global RNG alone.
    np.random.seed(7)  # noqa: NPY002
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    initialize(dims, "course_deep", seed=1)
    initialize(dims, "he", seed=1)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002


@pytest.mark.parametrize("scheme,var", [("he", 2.0), ("xavier", 1.0)])
def test_he_and_xavier_variance(scheme: str, var: float) -> None:
    W, b = initialize([400, 300], scheme, seed=3)
    assert W[0].var() == pytest.approx(var / 400, rel=0.05)
    assert not b[0].any()
    W2, _ = initialize([400, 300], scheme, seed=3)
    np.testing.assert_array_equal(W[0], W2[0])


def test_optimisers_follow_the_course_formulas() -> None:
    rng = np.random.default_rng(0)
    p0, g1, g2 = (rng.standard_normal((3, 2)) for _ in range(3))
    lr = 0.1
    p = [p0.copy()]
    make_optimizer("gd", lr).step(p, [g1.copy()])
    np.testing.assert_allclose(p[0], p0 - lr * g1)

    p, opt = [p0.copy()], make_optimizer("momentum", lr, beta=0.8)
    opt.step(p, [g1.copy()])
    opt.step(p, [g2.copy()])
    v1 = 0.2 * g1
    v2 = 0.8 * v1 + 0.2 * g2
    np.testing.assert_allclose(p[0], p0 - lr * v1 - lr * v2)

    p, opt = [p0.copy()], make_optimizer("adam", lr)
    opt.step(p, [g1.copy()])
    opt.step(p, [g2.copy()])
    b1, b2, eps = 0.9, 0.999, 1e-8
    v, s, q = 0 * p0, 0 * p0, p0.copy()
    for t, g in enumerate([g1, g2], start=1):
        v = b1 * v + (1 - b1) * g
        s = b2 * s + (1 - b2) * g**2
        q = q - lr * (v / (1 - b1**t)) / (np.sqrt(s / (1 - b2**t)) + eps)
    np.testing.assert_allclose(p[0], q, rtol=1e-12)
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        make_optimizer("sgd", 0.1)


def test_l2_adds_the_course_terms() -> None:
    X, Y = toy(3, 1, 10)
    net = Network.create([3, 4, 1], init="xavier")
    J0, dW0, _ = net.forward_backward(X, Y)
    dW0 = [d.copy() for d in dW0]
    J1, dW1, _ = net.forward_backward(X, Y, l2=0.7)
    assert pytest.approx(0.7 / 20 * sum((W**2).sum() for W in net.W)) == J1 - J0
    for d0, d1, W in zip(dW0, dW1, net.W, strict=True):
        np.testing.assert_allclose(d1 - d0, 0.7 / 10 * W, atol=1e-15)


def test_inverted_dropout_on_hidden_layers_only_and_never_at_evaluation() -> None:
    X, Y = toy(10, 1, 2000)
    kp = 0.8
    net = jitter_biases(Network.create([10, 50, 30, 1], init="he", keep_prob=kp))
    # By hand: masks from the same Generator stream, kept units divided by keep_prob,
    # the output layer untouched.
    rng = np.random.default_rng(5)
    A = X
    kept = []
    for l in range(2):
        A = np.maximum(net.W[l] @ A + net.b[l], 0)
        D = rng.random(A.shape) < kp
        kept.append(D.mean())
        A = A * D / kp
    expected = get_output("sigmoid").cost(net.W[2] @ A + net.b[2], Y)
    J, _, _ = net.forward_backward(X, Y, rng=np.random.default_rng(5))
    assert pytest.approx(expected, rel=1e-12) == J
    assert net.cost(X, Y, rng=np.random.default_rng(5)) == pytest.approx(expected, rel=1e-12)
    assert all(abs(k - kp) < 0.01 for k in kept)
    no_dropout = net.cost(X, Y)
    assert abs(J - no_dropout) > 1e-6
    # Evaluation never drops: predict_proba equals the plain forward pass, every time.
    A = X
    for l in range(2):
        A = np.maximum(net.W[l] @ A + net.b[l], 0)
    plain = get_output("sigmoid").activate(net.W[2] @ A + net.b[2])
    np.testing.assert_allclose(net.predict_proba(X), plain, rtol=1e-14)


def test_minibatches_cover_every_example_once() -> None:
    X = np.arange(20.0).reshape(2, 10)
    Y = np.arange(10.0).reshape(1, 10)
    batches = list(minibatches(X, Y, 4, np.random.default_rng(0)))
    assert [b[0].shape[1] for b in batches] == [4, 4, 2]
    seen = np.concatenate([b[1][0] for b in batches])
    assert sorted(seen) == list(range(10)) and list(seen) != list(range(10))
    for Xb, Yb in batches:
        np.testing.assert_array_equal(Xb[1], Yb[0] + 10)  # columns stay paired
    (Xf, Yf), = minibatches(X, Y, None, np.random.default_rng(0))
    assert Xf is X and Yf is Y


def test_learning_planar_needs_a_hidden_layer() -> None:
    from sweeplab.config import DataConfig
    from sweeplab.data import load_dataset

    data = load_dataset(DataConfig(name="planar"), seed=1, cache_dir=None)

    def fit(depth: int) -> float:
        net = Network.create(layer_dims_from(2, 1, depth, 4), activation="tanh",
                             init="xavier", seed=2)
        opt = make_optimizer("gd", 1.2)
        for _ in range(3000):
            _, dW, db = net.forward_backward(data.X_train, data.Y_train)
            opt.step([*net.W, *net.b], [*dW, *db])
        return float((net.predict(data.X_train) == data.y_train).mean())

    assert fit(1) > 0.85
    assert fit(0) < 0.6


def test_summary_shows_shapes_and_counts() -> None:
    net = Network.create([12288, 20, 7, 5, 1])
    text = summary(net, 209)
    assert "(20, 12288)" in text and "(20, 209)" in text and "(1, 209)" in text
    assert f"Total params: {net.n_params:,}" in text
    assert net.n_params == 12288 * 20 + 20 + 20 * 7 + 7 + 7 * 5 + 5 + 5 + 1
