"""The course's own training loop for the Regularization notebook, re-typed to explain one
discrepancy: why sweeplab's dropout run cannot match the course's figures.

This is not sweeplab: it is `model()` of "Regularization" (course 2, week 1) with
reg_utils.initialize_parameters, forward/backward propagation with dropout and
compute_cost, as the notebook defines them, in the notebook's textbook style. One line
matters: the notebook's forward_propagation_with_dropout starts with np.random.seed(1),
so every iteration draws the *same* dropout masks (one fixed thinned network per training
example), while its text says neurons are shut down at random in each iteration.
`fixed_masks=False` draws fresh masks each iteration from one stream, which is what
sweeplab (and the text) do. The global NumPy RNG is never touched: a RandomState stands in
for np.random, draw for draw.

Usage: python -m experiments.course2_regularization.course_reference [DATA_DIR]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

LOG_AT = (0, 10000, 20000)


@dataclass
class Result:
    costs: dict[int, float]  # the printed costs: iteration -> cost
    train_accuracy: float
    test_accuracy: float


def load(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """train_X (2, 211), train_Y (1, 211), test_X (2, 200), test_Y (1, 200), as load_2D_dataset."""
    out = []
    for split in ("train", "test"):
        with h5py.File(folder / f"{split}_football.h5", "r") as f:
            out += [f[f"{split}_set_x"][()].T, f[f"{split}_set_y"][()].reshape(1, -1)]
    return out[0], out[1], out[2], out[3]


def initialize_parameters(layer_dims: list[int]) -> dict[str, np.ndarray]:
    """reg_utils.initialize_parameters: np.random.seed(3), W = randn / sqrt(n[l-1]), b = 0."""
    rs = np.random.RandomState(3)
    p = {}
    for l in range(1, len(layer_dims)):
        p[f"W{l}"] = rs.randn(layer_dims[l], layer_dims[l - 1]) / np.sqrt(layer_dims[l - 1])
        p[f"b{l}"] = np.zeros((layer_dims[l], 1))
    return p


def relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(0, z)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def forward(X: np.ndarray, p: dict[str, np.ndarray], keep_prob: float,
            rs: np.random.RandomState | None) -> tuple[np.ndarray, tuple]:
    """forward_propagation (rs None) or forward_propagation_with_dropout."""
    Z1 = p["W1"] @ X + p["b1"]
    A1 = relu(Z1)
    D1 = None
    if rs is not None:
        D1 = rs.rand(*A1.shape) < keep_prob
        A1 = A1 * D1 / keep_prob
    Z2 = p["W2"] @ A1 + p["b2"]
    A2 = relu(Z2)
    D2 = None
    if rs is not None:
        D2 = rs.rand(*A2.shape) < keep_prob
        A2 = A2 * D2 / keep_prob
    A3 = sigmoid(p["W3"] @ A2 + p["b3"])
    return A3, (A1, D1, A2, D2, A3)


def backward(X: np.ndarray, Y: np.ndarray, p: dict[str, np.ndarray], cache: tuple,
             keep_prob: float) -> dict[str, np.ndarray]:
    """backward_propagation(_with_dropout): the masks of the forward pass, scaled."""
    m = X.shape[1]
    A1, D1, A2, D2, A3 = cache
    dZ3 = A3 - Y
    g = {"dW3": dZ3 @ A2.T / m, "db3": dZ3.sum(axis=1, keepdims=True) / m}
    dA2 = p["W3"].T @ dZ3
    if D2 is not None:
        dA2 = dA2 * D2 / keep_prob
    dZ2 = dA2 * (A2 > 0)
    g |= {"dW2": dZ2 @ A1.T / m, "db2": dZ2.sum(axis=1, keepdims=True) / m}
    dA1 = p["W2"].T @ dZ2
    if D1 is not None:
        dA1 = dA1 * D1 / keep_prob
    dZ1 = dA1 * (A1 > 0)
    g |= {"dW1": dZ1 @ X.T / m, "db1": dZ1.sum(axis=1, keepdims=True) / m}
    return g


def compute_cost(A3: np.ndarray, Y: np.ndarray) -> float:
    """reg_utils.compute_cost, nansum included (0·log 0 terms are dropped)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logprobs = -np.log(A3) * Y - np.log(1 - A3) * (1 - Y)
    return float(np.nansum(logprobs) / Y.shape[1])


def model(X: np.ndarray, Y: np.ndarray, keep_prob: float = 1.0, fixed_masks: bool = True,
          learning_rate: float = 0.3, num_iterations: int = 30000) -> tuple[dict, dict]:
    """The notebook's model() without L2: layers [2, 20, 3, 1], full-batch gradient descent."""
    p = initialize_parameters([X.shape[0], 20, 3, 1])
    stream = np.random.RandomState(1)  # fresh masks: one stream for the whole run
    costs = {}
    for i in range(num_iterations):
        rs = None
        if keep_prob < 1:
            rs = np.random.RandomState(1) if fixed_masks else stream  # the notebook reseeds
        A3, cache = forward(X, p, keep_prob, rs)
        if i in LOG_AT:
            costs[i] = compute_cost(A3, Y)
        g = backward(X, Y, p, cache, keep_prob)
        for k in p:
            p[k] = p[k] - learning_rate * g[f"d{k}"]
    return p, costs


def accuracy(X: np.ndarray, Y: np.ndarray, p: dict[str, np.ndarray]) -> float:
    A3, _ = forward(X, p, 1.0, None)
    return float(np.mean((A3 > 0.5) == Y))


def run(folder: Path, keep_prob: float = 1.0, fixed_masks: bool = True) -> Result:
    train_X, train_Y, test_X, test_Y = load(folder)
    p, costs = model(train_X, train_Y, keep_prob, fixed_masks)
    return Result(costs, accuracy(train_X, train_Y, p), accuracy(test_X, test_Y, p))


if __name__ == "__main__":
    here = Path(__file__).resolve()
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else here.parents[3] / "shared/datasets/football"
    for label, kp, fixed in (("no regularisation", 1.0, True),
                             ("dropout 0.86, the notebook's fixed masks", 0.86, True),
                             ("dropout 0.86, fresh masks each iteration", 0.86, False)):
        r = run(data, kp, fixed)
        print(f"{label}: costs {r.costs}, train {r.train_accuracy}, test {r.test_accuracy}")
