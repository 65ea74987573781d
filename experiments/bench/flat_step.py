"""Mini-batch training speed: this tree's `sweeplab.nn` against the per-layer one (issue 13).

Usage:
    PYTHONPATH=src .venv/bin/python experiments/bench/flat_step.py [--epochs 60] [--repeats 3]

Trains the default sweep's shapes (digits: 64 features, 10 classes, softmax; mini-batch
64; Adam; relu) for `--epochs` epochs, in one process, with the code of commit 876ddc9
(or `--ref`'s; exported to a temporary package: before the flat parameter buffers) and with
this tree's, interleaved (old, new, sklearn, old, new, ...) and summarised by the fastest repeat.
Prints seconds per epoch and the ratio old/new; also the largest relative difference
between the two cost histories, which must be rounding (< 1e-12), and the floor any
float64 NumPy step meets: an epoch's matrix products alone (Z = W A forward; dW = dZ Aᵀ
and dA = Wᵀ dZ backward, no dA[0]), timed the same way, then with Adam's square root
and division over every parameter on every step added (any float64 Adam does both, in
whatever language). When scikit-learn is
installed, its MLPClassifier (same layers, batch 64, Adam, no early stopping) is timed too.

BLAS runs on `--threads` threads (default 1, through threadpoolctl): at these sizes a
second thread buys little, and on a busy machine threads that wait for a core make every
timing noise (0 leaves BLAS as it is).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from sweeplab import nn
from sweeplab.config import DataConfig
from sweeplab.data import load_dataset

NN_FILES = ("activations", "losses", "initializers", "batches", "network", "optimizers",
            "dual", "steppers")


# The last commit of main with the per-layer updates (before the flat buffers were merged).
BEFORE_FLAT = "876ddc9"


def load_main_nn(ref: str = BEFORE_FLAT) -> dict[str, ModuleType]:
    """`sweeplab.nn` as it is at git `ref`, imported as modules of a package of its own."""
    root = Path(__file__).resolve().parents[2]
    pkg = f"sweeplab_nn_{ref.replace('/', '_')}"
    sys.modules[pkg] = ModuleType(pkg)
    mods: dict[str, ModuleType] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in NN_FILES:  # in an order where each module's imports come first
            src = subprocess.run(["git", "-C", str(root), "show",
                                  f"{ref}:src/sweeplab/nn/{name}.py"],
                                 check=True, capture_output=True, text=True).stdout
            path = Path(tmp) / f"{name}.py"
            path.write_text(src.replace("sweeplab.nn.", f"{pkg}."))
            spec = importlib.util.spec_from_file_location(f"{pkg}.{name}", path)
            assert spec and spec.loader
            mod = importlib.util.module_from_spec(spec)
            sys.modules[f"{pkg}.{name}"] = mod
            spec.loader.exec_module(mod)
            mods[name] = mod
    return mods


def trainer(mods: Any, X: np.ndarray, Y: np.ndarray, dims: list[int], epochs: int,
            batch: int) -> Any:
    """A function training a fresh network (seed 1) for `epochs`: its cost history."""

    def train() -> list[float]:
        net = mods["network"].Network.create(dims, activation="relu", output="softmax",
                                             init="he", seed=1)
        opt = mods["optimizers"].make_optimizer("adam", 0.01)
        st = mods["steppers"].DirectStepper(net, X, Y, opt, batch_size=batch,
                                            batch_rng=np.random.default_rng(7))
        return [st.epoch() for _ in range(epochs)]

    return train


def sklearn_trainer(X: np.ndarray, y: np.ndarray, hidden: list[int], epochs: int,
                    batch: int) -> Any:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    def train() -> list[float]:
        clf = MLPClassifier(tuple(hidden), activation="relu", solver="adam", batch_size=batch,
                            learning_rate_init=0.01, max_iter=epochs, alpha=0.0, tol=0.0,
                            n_iter_no_change=epochs + 1, early_stopping=False, shuffle=True,
                            random_state=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X.T, y)
        return list(clf.loss_curve_)

    return train


def gemm_floor(dims: list[int], m: int, batch: int, epochs: int, repeats: int) -> float:
    """Seconds for `epochs` epochs of only the matrix products a training step must do, for
    layers `dims` over m examples in batches of `batch` (the last one partial): the fastest
    of `repeats`. Everything else a step does (biases, activations, the cost, Adam) adds
    to this."""
    rng = np.random.default_rng(0)
    sizes = [batch] * (m // batch) + ([m % batch] if m % batch else [])
    W = [rng.standard_normal((n, n_prev)) for n_prev, n in pairwise(dims)]
    dW = [np.empty_like(w) for w in W]
    work: dict[int, Any] = {}
    for b in set(sizes):
        A = [rng.standard_normal((n, b)) for n in dims]  # A[0] = X, ..., A[L]
        dZ = [rng.standard_normal((n, b)) for n in dims[1:]]
        work[b] = (A, dZ, [np.empty((n, b)) for n in dims[1:]])
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(epochs):
            for b in sizes:
                A, dZ, out = work[b]
                for l, w in enumerate(W):
                    np.matmul(w, A[l], out=out[l])
                for l in range(len(W) - 1, -1, -1):
                    np.matmul(dZ[l], A[l].T, out=dW[l])
                    if l:
                        np.matmul(W[l].T, dZ[l], out=out[l - 1])
        best = min(best, time.perf_counter() - t)
    return best


def adam_floor(dims: list[int], m: int, batch: int, epochs: int, repeats: int) -> float:
    """Seconds for `epochs` epochs of only Adam's square root and division, over every
    parameter of layers `dims`, once per mini-batch of `batch` out of m: the fastest of
    `repeats`. Any float64 Adam computes both per parameter on every step (its other
    arithmetic could ride along in a compiled loop; these two are the CPU's slowest)."""
    n = sum(n_prev * n_l + n_l for n_prev, n_l in pairwise(dims))
    rng = np.random.default_rng(0)
    s, v, out = rng.random(n), rng.standard_normal(n), np.empty(n)
    steps = -(-m // batch)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(epochs * steps):
            np.sqrt(s, out=out)
            np.divide(v, out, out=out)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--no-sklearn", action="store_true")
    ap.add_argument("--ref", default=BEFORE_FLAT,
                    help="the git ref whose nn is the old one (default: main before the "
                         "flat buffers)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (0: as they are)")
    args = ap.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads, user_api="blas")

    data = load_dataset(DataConfig(name="digits"), seed=1, dtype="float64", one_hot=True)
    X, Y, y = data.X_train, data.Y_train, data.y_train
    old = load_main_nn(args.ref)
    new = {"network": nn.network, "optimizers": nn.optimizers, "steppers": nn.steppers}
    try:
        import sklearn  # noqa: F401
        have_sklearn = not args.no_sklearn
    except ImportError:
        have_sklearn = False
    print(f"digits: X {X.shape}, Y {Y.shape}; batch {args.batch}, Adam, {args.epochs} "
          f"epochs, fastest of {args.repeats}; BLAS threads {args.threads or 'unchanged'}")
    for width in args.widths:
        hidden = [width] * args.depth
        dims = [X.shape[0], *hidden, Y.shape[0]]
        runners = {args.ref: trainer(old, X, Y, dims, args.epochs, args.batch),
                   "flat": trainer(new, X, Y, dims, args.epochs, args.batch)}
        if have_sklearn:
            runners["sklearn"] = sklearn_trainer(X, y, hidden, args.epochs, args.batch)
        times: dict[str, list[float]] = {k: [] for k in runners}
        out: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for k, fn in runners.items():
                t = time.perf_counter()
                out[k] = fn()
                times[k].append(time.perf_counter() - t)
        # the fastest of the repeats: on a shared machine, the others measure the neighbours
        med = {k: min(v) for k, v in times.items()}
        spread = {k: statistics.median(v) / min(v) for k, v in times.items()}
        a, b = np.array(out[args.ref]), np.array(out["flat"])
        rel = float(np.max(np.abs(a - b) / np.abs(a)))
        line = ", ".join(f"{k} {1e3 * v / args.epochs:.2f} ms/epoch" for k, v in med.items())
        print(f"{args.depth}x{width}: {line}; {args.ref}/flat = {med[args.ref] / med['flat']:.2f}x"
              + (f", sklearn/flat = {med['sklearn'] / med['flat']:.2f}x" if have_sklearn else "")
              + f"; max rel. cost difference {rel:.1e}"
              + "; median/min " + ", ".join(f"{k} {v:.2f}" for k, v in spread.items()))
        floor = gemm_floor(dims, X.shape[1], args.batch, args.epochs, args.repeats)
        need = med[args.ref] / 1.5
        print(f"    matrix products alone: {1e3 * floor / args.epochs:.2f} ms/epoch, "
              f"{100 * floor / med['flat']:.0f}% of flat's epoch; 1.5x over {args.ref} needs "
              f"{1e3 * need / args.epochs:.2f} ms/epoch, leaving "
              f"{1e3 * (need - floor) / args.epochs:.2f} ms for everything else (flat spends "
              f"{1e3 * (med['flat'] - floor) / args.epochs:.2f})"
              + (f"; 2.2x under sklearn needs {1e3 * med['sklearn'] / 2.2 / args.epochs:.2f} "
                 f"ms/epoch" if have_sklearn else ""))
        both = floor + adam_floor(dims, X.shape[1], args.batch, args.epochs, args.repeats)
        print(f"    and Adam's square root and division per parameter: "
              f"{1e3 * both / args.epochs:.2f} ms/epoch, leaving "
              f"{1e3 * (need - both) / args.epochs:.2f} ms under 1.5x for the biases, "
              f"activations, cost, the rest of Adam and Python (flat spends "
              f"{1e3 * (med['flat'] - both) / args.epochs:.2f})")


if __name__ == "__main__":
    main()
