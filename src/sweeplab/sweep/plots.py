"""Optuna's plots of a sweep, on its parent run: PNGs (Optuna's matplotlib plots) and one
interactive page, ``plots/study.html`` (Optuna's plotly plots, which the MLflow UI's
artifact view shows), drawn so that a few diverged trials do not hide the good ones.

A cost objective (`COST_OBJECTIVES`) is positive and a diverged trial's cost is decades
above a good one's (2.3 against 0.09): on a linear axis every good trial sits on one flat
line. So, for costs, the optimisation history and the objective against each searched key
use a log axis, and the parallel coordinates are coloured by log10 of the cost, without
the trials far above the others (`without_outliers`), which spends the colour scale on the
good trials instead of on the outliers.

On Linux the PNGs are drawn by two processes, this one and a copy of it (`log_plots`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from sweeplab.names import COST_OBJECTIVES
from sweeplab.pids import remove_stale

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
# In the folder `log_plots` draws into: the PNGs, and why a plot was not drawn.
PNG, WHY = "png", "why"
# How long the process drawing half of the PNGs may take before it is killed (and its
# share drawn by the one that started it).
FORK_TIMEOUT = 120.0
# `log_plots` draws into a temporary folder named with its pid; a SIGKILL leaves it. Such a
# folder, its process gone and unchanged for this long, is removed by the next sweep's.
PLOTS_FOLDER = "sweeplab-plots-"  # then the pid, "-", and tempfile's 8 of [a-z0-9_]
STALE_FOLDER_SECONDS = 600.0
# A trial's states once it has ended.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# What a plot costs to draw, relative to the optimisation history (`_halves`), measured
# on the default sweep's 40 trials; "page" is study.html.
PLOT_COSTS = {"optimization_history": 1.0, "param_importances": 0.5,
              "parallel_coordinate": 1.7, "pareto_front": 1.5, "page": 1.2}


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
    """The PNGs under plots/ and the interactive page; returns what was skipped, and why.

    Where the system can fork (Linux), a copy of this process draws about half of the
    PNGs (`_halves`) while this one draws the rest and the page: matplotlib holds the GIL,
    and at the end of a sweep its plots are what the command waits for (0.9 s for the
    default sweep's in one process, 0.5 s in two). The copy only draws into files; this
    process logs them, and draws what the copy did not (it died, or took too long)."""
    study = finished_in_memory(study)
    log = log_axis(study, objectives)
    names = _png_plots(study, objectives, log)
    html: str | Exception
    remove_stale_folders(Path(tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(prefix=f"{PLOTS_FOLDER}{os.getpid()}-") as tmp:
        folder = Path(tmp)
        mine, aside = _halves(study, names)
        child = _fork(lambda: draw_pngs(study, objectives, log, aside, folder)) \
            if aside else None
        draw_pngs(study, objectives, log, names if child is None else mine, folder)
        try:
            html = study_html(study, objectives, log)
        except Exception as err:  # plotly missing or a plot it cannot draw: PNGs still stand
            html = err
        if child is not None:
            _reap(child)
            draw_pngs(study, objectives, log, [n for n in aside if not _drawn(folder, n)],
                      folder)
        skipped = [f"{n}: {(folder / WHY / n).read_text()}" for n in names
                   if (folder / WHY / n).exists()]
        if any((folder / PNG).glob("*.png")):
            client.log_artifacts(run_id, str(folder / PNG), "plots")
    if isinstance(html, Exception):
        skipped.append(f"{HTML_ARTIFACT}: {type(html).__name__}: {html}")
        return skipped
    try:
        client.log_text(run_id, html, HTML_ARTIFACT)
    except Exception as err:
        skipped.append(f"{HTML_ARTIFACT}: {type(err).__name__}: {err}")
    return skipped


def remove_stale_folders(tmp: Path, age: float = STALE_FOLDER_SECONDS) -> None:
    """Remove the folders `log_plots` made in `tmp` whose process was killed (gone, and
    the folder unchanged for `age` seconds). Never raises."""
    name = re.compile(rf"{re.escape(PLOTS_FOLDER)}([0-9]{{1,9}})-[a-z0-9_]{{8}}")
    remove_stale(tmp, name, shutil.rmtree, age)


def finished_in_memory(study: optuna.Study) -> optuna.Study:
    """The study's finished trials, in a study in memory. The plots are drawn from it: a
    forked process must not use the study's storage (a database connection it shares with
    this process breaks in both), and no plot reads the storage again."""
    copy = optuna.create_study(study_name=study.study_name, directions=study.directions)
    copy.add_trials(study.get_trials(deepcopy=False, states=FINISHED))
    return copy


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


def draw_pngs(study: optuna.Study, objectives: Sequence[str], log: bool,
              names: Collection[str], folder: Path) -> None:
    """Draw the plots `names` of `png_figures` into ``folder/png/NAME.png``; why a plot
    could not be drawn goes to ``folder/why/NAME``."""
    import matplotlib.pyplot as plt

    (folder / PNG).mkdir(exist_ok=True)
    (folder / WHY).mkdir(exist_ok=True)
    if not names:
        return
    for fname, fig in png_figures(study, objectives, log, only=names):
        if isinstance(fig, Exception):  # e.g. importances need two completed trials
            (folder / WHY / fname).write_text(str(fig))
            continue
        # under a hidden name until complete: a PNG half written is never taken as drawn
        scratch = folder / PNG / f".{fname}.png"
        fig.savefig(scratch, format="png")
        plt.close(fig)
        scratch.rename(folder / PNG / f"{fname}.png")


def _halves(study: optuna.Study, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the PNGs this process draws besides the page, those its copy draws), about equal in
    time: each plot goes, largest first, to the one with less to draw so far."""
    decades = {k: math.log10(d.high / d.low) for t in study.trials
               for k, d in t.distributions.items()
               if getattr(d, "log", False) and d.low > 0}  # type: ignore[attr-defined]

    def cost(name: str) -> float:
        key = name.removeprefix("objective_vs_")
        if key != name:  # a slice: one over many decades lays out many more ticks
            return max(1.0, decades.get(key, 0.0) / 1.6)
        return PLOT_COSTS.get(name, 1.0)

    halves: tuple[list[str], list[str]] = ([], [])
    load = [PLOT_COSTS["page"], 0.0]
    for name in sorted(names, key=cost, reverse=True):
        i = 0 if load[0] <= load[1] else 1
        halves[i].append(name)
        load[i] += cost(name)
    return halves


def _drawn(folder: Path, name: str) -> bool:
    return (folder / PNG / f"{name}.png").exists() or (folder / WHY / name).exists()


def _fork(work: Callable[[], None]) -> int | None:
    """A copy of this process (os.fork) that runs `work` and exits at once, without this
    process's exit handlers or buffered output; its pid, or None if there is no copy (not
    Linux, or the fork failed), and the caller does all the work itself. Linux only: on
    macOS a fork that does not exec may crash in the system's libraries."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Python 3.12+ warns of a fork beside other threads: the copy runs none of them and
        # uses nothing they hold (stores, sockets); it only draws into files.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:
        return None
    if pid == 0:
        try:
            # A Ctrl-C reaches the whole process group: the parent decides (and reaps this
            # copy, or kills it).
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
            work()
        finally:
            os._exit(0)  # what it did not draw, the parent draws
    return pid


def _reap(pid: int) -> None:
    """Wait for the copy `pid` to exit, at most FORK_TIMEOUT seconds; then kill it."""
    deadline = time.monotonic() + FORK_TIMEOUT
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.005)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def png_figures(study: optuna.Study, objectives: Sequence[str], log: bool,
                only: Collection[str] | None = None
                ) -> Iterator[tuple[str, Figure | Exception]]:
    """(file name, figure) of each of Optuna's matplotlib plots (of those named in `only`,
    if given), or (name, why not)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # A slice plot of a categorical parameter with numeric choices (train.epochs: 500,
    # 1000, ...) makes matplotlib log a note at INFO, which Hydra's logging would print.
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)

    titles, plots = _titled_png_plots(study, objectives, log)
    for fname, (make, y_is_objective) in plots.items():
        if only is not None and fname not in only:
            continue
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


def _png_plots(study: optuna.Study, objectives: Sequence[str], log: bool) -> list[str]:
    """The names of the PNGs `png_figures` draws, in its order."""
    return list(_titled_png_plots(study, objectives, log)[1])


def _titled_png_plots(study: optuna.Study, objectives: Sequence[str], log: bool
                      ) -> tuple[dict[str, str], dict[str, tuple[Callable[[], Any], bool]]]:
    """(the titles that replace Optuna's, {file name: (draw it, whether its y axis is the
    objective)}) of the PNG plots."""
    from optuna.visualization import matplotlib as ovm

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
    return titles, plots


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
