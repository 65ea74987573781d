"""Optuna's plots of a sweep, on its parent run: PNGs (Optuna's matplotlib plots) and one
interactive page, ``plots/study.html`` (Optuna's plotly plots, which the MLflow UI's
artifact view shows), drawn so that a few diverged trials do not hide the good ones.

A cost objective (`COST_OBJECTIVES`) is positive and a diverged trial's cost is decades
above a good one's (2.3 against 0.09): on a linear axis every good trial sits on one flat
line. So, for costs, the optimisation history and the objective against each searched key
use a log axis, and the parallel coordinates are coloured by log10 of the cost, without
the trials far above the others (`without_outliers`), which spends the colour scale on the
good trials instead of on the outliers.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from sweeplab.names import COST_OBJECTIVES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HTML_ARTIFACT = "plots/study.html"
# What drawing the plots imports, about 1.5 s (scikit-learn's ensembles among it, for
# optuna.importance's fANOVA evaluator): a writer process imports them while it has nothing
# to write (tracking/writer.py), in this order, so that no one import holds it long.
PLOT_MODULES = ("matplotlib", "matplotlib.figure", "matplotlib.pyplot",
                "optuna.visualization.matplotlib", "scipy.optimize", "scipy.interpolate",
                "scipy.stats", "sklearn.ensemble", "optuna.importance", "plotly.offline")
SKIPPED_ARTIFACT = "plots/skipped.txt"  # what could not be drawn, and why


def log_axis(study: optuna.Study, objectives: Sequence[str]) -> bool:
    """Whether the plotted objective (the first) is a cost with every completed value > 0."""
    if objectives[0] not in COST_OBJECTIVES:
        return False
    values = [t.values[0] for t in study.get_trials(deepcopy=False,
                                                    states=(TrialState.COMPLETE,))]
    return bool(values) and all(math.isfinite(v) and v > 0 for v in values)


def without_outliers(study: optuna.Study, log: bool) -> tuple[optuna.Study, int]:
    """(the study to draw parallel coordinates of, how many trials it leaves out). For a
    cost on a log axis, completed trials whose log10 cost lies above Tukey's upper fence
    (Q3 + 1.5 IQR of the completed trials' log10 costs) are left out: a diverged trial's
    line would otherwise take the colour scale's top for itself. They stay in every other
    plot. A copy in memory: the study itself is not touched."""
    if not log:
        return study, 0
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    logs = sorted(math.log10(t.values[0]) for t in done)
    if len(logs) < 4:
        return study, 0
    q1, q3 = logs[len(logs) // 4], logs[(3 * len(logs)) // 4]
    fence = q3 + 1.5 * (q3 - q1)
    keep = [t for t in done if math.log10(t.values[0]) <= fence]
    if len(keep) == len(done):
        return study, 0
    shown = optuna.create_study(study_name=study.study_name, directions=study.directions)
    shown.add_trials(keep)
    return shown, len(done) - len(keep)


def _target(objectives: Sequence[str], log: bool
            ) -> tuple[Callable[[FrozenTrial], float] | None, str]:
    """(target, its name) for plots coloured or ranged by the objective: log10 of a cost."""
    name = objectives[0]
    if log:
        return (lambda t: math.log10(t.values[0])), f"log10({name})"
    return (None if len(objectives) == 1 else (lambda t: t.values[0])), name


def log_plots(client: MlflowClient, run_id: str, study: optuna.Study,
              objectives: Sequence[str]) -> list[str]:
    """The PNGs under plots/ and the interactive page; returns what was skipped, and why."""
    log = log_axis(study, objectives)
    skipped = log_png_plots(client, run_id, study, objectives, log)
    try:
        client.log_text(run_id, study_html(study, objectives, log), HTML_ARTIFACT)
    except Exception as err:  # plotly missing or a plot it cannot draw: PNGs still stand
        skipped.append(f"{HTML_ARTIFACT}: {type(err).__name__}: {err}")
    return skipped


def op_study_plots(client: MlflowClient, run_id: str, study_name: str,
                   directions: Sequence[str], trials: Sequence[FrozenTrial],
                   objectives: Sequence[str]) -> None:
    """A writer op (tracking/writer.py): `log_plots` of a study given as its finished
    `trials`, drawn in the writer process while the sweep's confirmation stage trains; what
    was skipped goes to ``plots/skipped.txt``. Only a store that fails (full disk, gone)
    raises: any other error is a line in that file, as for one plot that cannot be drawn."""
    from sweeplab.tracking.writer import classify

    # the writer is a process of its own: Optuna would announce the in-memory study on stderr
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(study_name=study_name, directions=list(directions))
        study.add_trials(trials)
        skipped = log_plots(client, run_id, study, objectives)
    except Exception as err:
        if classify(err).kind != "error":
            raise
        skipped = [f"plots: {type(err).__name__}: {err}"]
    if skipped:
        client.log_text(run_id, "\n".join(skipped) + "\n", SKIPPED_ARTIFACT)


def log_png_plots(client: MlflowClient, run_id: str, study: optuna.Study,
                  objectives: Sequence[str], log: bool) -> list[str]:
    """Optuna's matplotlib plots as PNG artifacts under plots/; returns what was skipped."""
    import matplotlib.pyplot as plt

    skipped = []
    for fname, fig in png_figures(study, objectives, log):
        if isinstance(fig, Exception):  # e.g. importances need two completed trials
            skipped.append(f"{fname}: {fig}")
            continue
        client.log_figure(run_id, fig, f"plots/{fname}.png")
        plt.close(fig)
    return skipped


def png_figures(study: optuna.Study, objectives: Sequence[str], log: bool
                ) -> Iterator[tuple[str, Figure | Exception]]:
    """(file name, figure) of each of Optuna's matplotlib plots, or (name, why not)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    # A slice plot of a categorical parameter with numeric choices (train.epochs: 500,
    # 1000, ...) makes matplotlib log a note at INFO, which Hydra's logging would print.
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)

    plain = None if len(objectives) == 1 else (lambda t: t.values[0])
    name = objectives[0]
    colour, colour_name = _target(objectives, log)
    shown, left_out = without_outliers(study, log)
    titles = {"parallel_coordinate": f"Parallel Coordinate Plot ({left_out} outlier trial"
                                     f"{'s' if left_out > 1 else ''} left out: see the "
                                     f"history)"} if left_out else {}
    # name -> (draw it, whether its y axis is the objective)
    plots: dict[str, tuple[Callable[[], Any], bool]] = {
        "optimization_history": (lambda: ovm.plot_optimization_history(
            study, target=plain, target_name=name), True),
        "param_importances": (lambda: ovm.plot_param_importances(
            study, target=plain, target_name=name), False),
        "parallel_coordinate": (lambda: ovm.plot_parallel_coordinate(
            shown, target=colour, target_name=colour_name), False),
    }
    for param in sorted({k for t in study.trials for k in t.params}):
        plots[f"objective_vs_{param}"] = (lambda p=param: ovm.plot_slice(
            study, params=[p], target=plain, target_name=name), True)
    if len(objectives) > 1:
        plots["pareto_front"] = (lambda: ovm.plot_pareto_front(
            study, target_names=objectives), False)
    for fname, (make, y_is_objective) in plots.items():
        try:
            with warnings.catch_warnings():  # matplotlib's remarks on degenerate axes
                warnings.simplefilter("ignore", UserWarning)
                # "experimental (supported from v2.2.0)": Optuna's matplotlib plots
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = make()
                axes = list(ax.flat) if hasattr(ax, "flat") else [ax]
                if log and y_is_objective:
                    for a in axes:
                        a.set_yscale("log")
                if fname in titles:
                    axes[0].set_title(titles[fname])
            fig = axes[0].figure
            # wide enough that a parallel-coordinates axis's tick labels do not run into
            # the next axis's
            fig.set_size_inches(12 if fname == "parallel_coordinate" else 9, 5)
            if fname == "parallel_coordinate":
                _label_boxes(fig)
            fig.tight_layout()
        except Exception as err:
            plt.close("all")
            yield fname, err
            continue
        yield fname, fig


def _label_boxes(fig: Figure) -> None:
    """Tick labels on a light box, so the trials' lines that cross an axis (the width's
    log ticks sit where lines pass) do not run through its numbers."""
    for ax in fig.axes:
        for label in [*ax.get_yticklabels(), *ax.get_yticklabels(minor=True)]:
            label.set_bbox({"facecolor": "white", "alpha": 0.85, "edgecolor": "none",
                            "pad": 1})
        ax.tick_params(axis="y", which="both", zorder=10)


def study_html(study: optuna.Study, objectives: Sequence[str], log: bool) -> str:
    """One self-contained HTML page (plotly.js inside: the UI may have no network) with
    Optuna's interactive plots of the study: history, parallel coordinates, the objective
    against each searched key, parameter importances (and the Pareto front of several
    objectives). Plots Optuna cannot draw yet (importances need two completed trials) are
    left out with a line saying why."""
    from optuna import visualization as ov
    from plotly.offline import get_plotlyjs

    plain = None if len(objectives) == 1 else (lambda t: t.values[0])
    name = objectives[0]
    colour, colour_name = _target(objectives, log)
    shown, left_out = without_outliers(study, log)
    parallel = "Parallel coordinates" + (
        f" ({left_out} outlier trial{'s' if left_out > 1 else ''} above the others' range "
        f"left out: see the history)" if left_out else "")
    plots: list[tuple[str, Callable[[], Any], bool]] = [
        ("Optimisation history", lambda: ov.plot_optimization_history(
            study, target=plain, target_name=name), True),
        (parallel, lambda: ov.plot_parallel_coordinate(
            shown, target=colour, target_name=colour_name), False),
        (f"{name} against each searched key", lambda: ov.plot_slice(
            study, target=plain, target_name=name), True),
        ("Parameter importances", lambda: ov.plot_param_importances(
            study, target=plain, target_name=name), False),
    ]
    if len(objectives) > 1:
        plots.append(("Pareto front", lambda: ov.plot_pareto_front(
            study, target_names=list(objectives)), False))
    parts = []
    for title, make, y_is_objective in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = make()
        except Exception as err:
            parts.append(f"<h2>{title}</h2><p>not drawn: {err}</p>")
            continue
        if log and y_is_objective:
            fig.update_yaxes(type="log")
        parts.append(f"<h2>{title}</h2>" + fig.to_html(full_html=False, include_plotlyjs=False))
    scale = (f" The {name} axes are logarithmic, and the parallel coordinates are coloured by "
             f"log10({name}) without outliers, so diverged trials do not flatten the good "
             f"ones." if log else "")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Optuna study "
            f"{study.study_name}</title><script>{get_plotlyjs()}</script></head>"
            f"<body style='font-family: sans-serif'><h1>Optuna study {study.study_name}</h1>"
            f"<p>{len(study.trials)} trials, objective {'/'.join(objectives)}.{scale} Hover "
            f"for a trial's values; drag to zoom, double-click to reset.</p>"
            + "\n".join(parts) + "</body></html>")
