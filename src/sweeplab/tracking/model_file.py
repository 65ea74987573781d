"""A trained network in an HDF5 file written with h5py: weights and architecture, no pickle.

Layout: datasets ``W1, b1, ..., WL, bL`` at the root; attributes ``layer_dims``,
``activation``, ``output``, ``keep_prob``, ``leaky_slope``, ``classes`` and
``format = "sweeplab-network/1"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from sweeplab.nn import Network, get_activation, get_output

FORMAT = "sweeplab-network/1"


def save(net: Network, path: str | Path, classes: Sequence[str] = ()) -> Path:
    """Write `net` to `path` (HDF5) and return the path."""
    path = Path(path)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["layer_dims"] = np.asarray(net.layer_dims, dtype=np.int64)
        f.attrs["activation"] = net.activation.name
        f.attrs["output"] = net.output.name
        f.attrs["keep_prob"] = net.keep_prob
        f.attrs["leaky_slope"] = getattr(net.activation, "slope", 0.01)
        f.attrs["classes"] = [str(c) for c in classes]
        for name, p in net.params().items():
            f.create_dataset(name, data=p)
    return path


def load(path: str | Path) -> tuple[Network, list[str]]:
    """Read a network written by `save`: (network, class names)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweeplab model file at {path}")
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file (format={f.attrs.get('format')!r})")
        dims = [int(n) for n in f.attrs["layer_dims"]]
        L = len(dims) - 1
        W = [f[f"W{l}"][()] for l in range(1, L + 1)]
        b = [f[f"b{l}"][()] for l in range(1, L + 1)]
        act = get_activation(str(f.attrs["activation"]),
                             leaky_slope=float(f.attrs["leaky_slope"]))
        net = Network(dims, W, b, act, get_output(str(f.attrs["output"])),
                      float(f.attrs["keep_prob"]))
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in f.attrs["classes"]]
    return net, classes
