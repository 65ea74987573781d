"""The same 4-layer training in PyTorch on the CPU (autograd, full batch, plain SGD), for
comparison. Used only when torch is importable."""

from __future__ import annotations

import numpy as np


def available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def train(X: np.ndarray, Y: np.ndarray, W0: list[np.ndarray], lr: float, iterations: int,
          threads: int) -> list[float]:
    """Costs of every iteration before its update. X (n_x, m), Y (1, m), W0 the initial
    weights (biases start at 0), all in the dtype to compute in."""
    import torch

    torch.set_num_threads(threads)
    # Copies: the dataset's arrays are read-only, which torch tensors cannot be.
    Xt, Yt = torch.from_numpy(np.array(X)), torch.from_numpy(np.array(Y))
    W = [torch.tensor(w, requires_grad=True) for w in W0]
    b = [torch.zeros((w.shape[0], 1), dtype=Xt.dtype, requires_grad=True) for w in W0]
    opt = torch.optim.SGD([*W, *b], lr=lr)
    bce = torch.nn.BCEWithLogitsLoss()
    costs = []
    for _ in range(iterations):
        A = Xt
        for l in range(len(W) - 1):
            A = torch.relu(W[l] @ A + b[l])
        loss = bce(W[-1] @ A + b[-1], Yt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        costs.append(loss.item())
    return costs
