"""Figures for people who would rather look than read: cost curves of a run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from sweeplab.train import RunResult


def cost_curve(result: RunResult) -> Figure:
    """train_cost (every epoch) and val_cost (log points) against epoch; val_accuracy beside."""
    h = result.history
    has_val = bool(h.val_cost)
    fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(10 if has_val else 6, 4),
                             squeeze=False)
    ax = axes[0, 0]
    ax.plot(range(len(result.costs)), result.costs, label="train_cost", lw=1.2)
    if has_val:
        ax.plot(h.step, h.val_cost, "o-", ms=3, label="val_cost", lw=1.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost")
    ax.set_title(result.run_name)
    if len(result.costs) and min(result.costs) > 0:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    if has_val:
        ax2 = axes[0, 1]
        ax2.plot(h.step, h.val_accuracy, "o-", ms=3, color="tab:green")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("val_accuracy")
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    plt.close(fig)
