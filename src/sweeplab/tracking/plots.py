"""Figures for people who would rather look than read: cost curves of a run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from sweeplab.names import Metric

if TYPE_CHECKING:
    from sweeplab.tracking.tracker import Curves


def cost_curve(result: Curves) -> Figure:
    """train_cost (every epoch) and val_cost (log points) against epoch; val_accuracy beside.

    A bare Figure (no pyplot, no display, nothing global to close) with a fixed layout: the
    plot is drawn once per run, so it is kept cheap (tight_layout alone would double it)."""
    h = result
    has_val = bool(h.val_cost)
    fig = Figure(figsize=(10 if has_val else 6, 4), dpi=90)
    axes = fig.subplots(1, 2 if has_val else 1, squeeze=False)
    fig.subplots_adjust(left=0.1 if has_val else 0.15, right=0.97, bottom=0.13, top=0.9,
                        wspace=0.25)
    ax = axes[0, 0]
    ax.plot(range(len(result.costs)), result.costs, label=Metric.TRAIN_COST, lw=1.2)
    if has_val:
        ax.plot(h.step, h.val_cost, "o-", ms=3, label=Metric.VAL_COST, lw=1.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost")
    ax.set_title(result.run_name, fontsize=10)
    if len(result.costs) and min(result.costs) > 0:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    if has_val:
        ax2 = axes[0, 1]
        ax2.plot(h.step, h.val_accuracy, "o-", ms=3, color="tab:green")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel(Metric.VAL_ACCURACY)
        ax2.grid(alpha=0.3)
    return fig


def close(fig: Figure) -> None:
    """Release the figure (a bare Figure needs no pyplot bookkeeping; kept for symmetry)."""
    fig.clear()
