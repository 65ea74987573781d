"""A Keras-style summary of the network's dimensions for a given number of examples m."""

from __future__ import annotations

from dataclasses import dataclass

from sweeplab.nn.network import Network


@dataclass(frozen=True)
class LayerRow:
    layer: int
    units: int
    activation: str
    W_shape: tuple[int, int]
    b_shape: tuple[int, int]
    Z_shape: tuple[int, int]
    params: int


def layer_rows(net: Network, m: int) -> list[LayerRow]:
    """One row per layer l = 1..L: shapes of W[l], b[l] and Z[l]/A[l] for m examples."""
    rows = []
    for l in range(1, net.L + 1):
        W, b = net.W[l - 1], net.b[l - 1]
        act = net.output.name if l == net.L else net.activation.name
        rows.append(LayerRow(l, W.shape[0], act, W.shape, b.shape, (W.shape[0], m),
                             W.size + b.size))
    return rows


def summary(net: Network, m: int) -> str:
    """The summary as a text table, with the input and the parameter count."""
    head = ("layer", "units", "activation", "W shape", "b shape", f"Z, A shape (m={m})", "params")
    body = [("0 (X)", str(net.layer_dims[0]), "", "", "", str((net.layer_dims[0], m)), "0")]
    for r in layer_rows(net, m):
        body.append((str(r.layer), str(r.units), r.activation, str(r.W_shape), str(r.b_shape),
                     str(r.Z_shape), f"{r.params:,}"))
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in (1, 6) else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    rule = "-" * len(fmt(head))
    lines = [f"Network: layer_dims {net.layer_dims}, {net.dtype}, keep_prob {net.keep_prob}",
             rule, fmt(head), rule, *(fmt(r) for r in body), rule,
             f"Total params: {net.n_params:,}"]
    return "\n".join(lines)
