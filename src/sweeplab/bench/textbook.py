"""The reference: course 1's L-layer network as the notebooks write it.

Dictionaries of parameters and caches, one function per step, every intermediate kept,
dA[0] computed, the cost from A[L]: the textbook style ``make bench`` measures sweeplab
against. The mathematics is the same as ``sweeplab.nn`` (float64 curves agree to 1e-10).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Params = dict[str, np.ndarray]


def initialize_parameters_deep(layer_dims: list[int], seed: int = 1) -> Params:
    np.random.seed(seed)  # noqa: NPY002 - the course's own way; the bench restores nothing
    parameters: Params = {}
    for l in range(1, len(layer_dims)):
        parameters["W" + str(l)] = np.random.randn(  # noqa: NPY002
            layer_dims[l], layer_dims[l - 1]) / np.sqrt(layer_dims[l - 1])
        parameters["b" + str(l)] = np.zeros((layer_dims[l], 1))
    return parameters


def sigmoid(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return 1 / (1 + np.exp(-Z)), Z


def relu(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.maximum(0, Z), Z


def linear_forward(A: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    Z = np.dot(W, A) + b
    return Z, (A, W, b)


def linear_activation_forward(A_prev: np.ndarray, W: np.ndarray, b: np.ndarray,
                              activation: str) -> tuple[np.ndarray, Any]:
    Z, linear_cache = linear_forward(A_prev, W, b)
    A, activation_cache = sigmoid(Z) if activation == "sigmoid" else relu(Z)
    return A, (linear_cache, activation_cache)


def L_model_forward(X: np.ndarray, parameters: Params) -> tuple[np.ndarray, list[Any]]:
    caches = []
    A = X
    L = len(parameters) // 2
    for l in range(1, L):
        A, cache = linear_activation_forward(A, parameters["W" + str(l)],
                                             parameters["b" + str(l)], "relu")
        caches.append(cache)
    AL, cache = linear_activation_forward(A, parameters["W" + str(L)],
                                          parameters["b" + str(L)], "sigmoid")
    caches.append(cache)
    return AL, caches


def compute_cost(AL: np.ndarray, Y: np.ndarray) -> float:
    m = Y.shape[1]
    cost = (-1 / m) * np.sum(np.multiply(Y, np.log(AL)) + np.multiply(1 - Y, np.log(1 - AL)))
    return float(np.squeeze(cost))


def linear_backward(dZ: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    A_prev, W, _ = cache
    m = A_prev.shape[1]
    dW = 1 / m * np.dot(dZ, A_prev.T)
    db = 1 / m * np.sum(dZ, axis=1, keepdims=True)
    dA_prev = np.dot(W.T, dZ)
    return dA_prev, dW, db


def relu_backward(dA: np.ndarray, Z: np.ndarray) -> np.ndarray:
    dZ = np.array(dA, copy=True)
    dZ[Z <= 0] = 0
    return dZ


def sigmoid_backward(dA: np.ndarray, Z: np.ndarray) -> np.ndarray:
    s = 1 / (1 + np.exp(-Z))
    return dA * s * (1 - s)


def linear_activation_backward(dA: np.ndarray, cache: Any, activation: str
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    linear_cache, Z = cache
    dZ = relu_backward(dA, Z) if activation == "relu" else sigmoid_backward(dA, Z)
    return linear_backward(dZ, linear_cache)


def L_model_backward(AL: np.ndarray, Y: np.ndarray, caches: list[Any]) -> Params:
    grads: Params = {}
    L = len(caches)
    Y = Y.reshape(AL.shape)
    dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    current_cache = caches[L - 1]
    grads["dA" + str(L - 1)], grads["dW" + str(L)], grads["db" + str(L)] = \
        linear_activation_backward(dAL, current_cache, "sigmoid")
    for l in reversed(range(L - 1)):
        current_cache = caches[l]
        dA_prev_temp, dW_temp, db_temp = linear_activation_backward(
            grads["dA" + str(l + 1)], current_cache, "relu")
        grads["dA" + str(l)] = dA_prev_temp
        grads["dW" + str(l + 1)] = dW_temp
        grads["db" + str(l + 1)] = db_temp
    return grads


def update_parameters(parameters: Params, grads: Params, learning_rate: float) -> Params:
    L = len(parameters) // 2
    for l in range(L):
        parameters["W" + str(l + 1)] = parameters["W" + str(l + 1)] - \
            learning_rate * grads["dW" + str(l + 1)]
        parameters["b" + str(l + 1)] = parameters["b" + str(l + 1)] - \
            learning_rate * grads["db" + str(l + 1)]
    return parameters


def L_layer_model(X: np.ndarray, Y: np.ndarray, layers_dims: list[int],
                  learning_rate: float = 0.0075, num_iterations: int = 2500,
                  seed: int = 1) -> tuple[Params, list[float]]:
    """Train and return (parameters, the cost of every iteration before its update)."""
    parameters = initialize_parameters_deep(layers_dims, seed)
    costs = []
    for _ in range(num_iterations):
        AL, caches = L_model_forward(X, parameters)
        costs.append(compute_cost(AL, Y))
        grads = L_model_backward(AL, Y, caches)
        parameters = update_parameters(parameters, grads, learning_rate)
    return parameters, costs
