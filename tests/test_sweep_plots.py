"""The sweep's plots (issue 14, item 4): with a few diverged trials, a cost objective's plots
still show the good trials apart (log axis; parallel coordinates coloured by log10 of the
cost, without the outliers), and the parent run gets Optuna's interactive plotly page.

Studies are real Optuna studies in memory, with trials added as a sweep finishes them;
plots go to a temporary MLflow store and are read back with MlflowClient.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import optuna
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import create_trial

from sweeplab.sweep import plots

SPACE = {"model.depth": IntDistribution(1, 5), "model.width": IntDistribution(4, 128, log=True),
         "optim.lr": FloatDistribution(1e-4, 1.0, log=True)}
DIVERGED = {3: 2.3, 11: 1.6}  # trial number -> its val_cost; the others 0.09 to 0.15
# A plotly y axis on a log scale, in a figure's JSON layout.
LOG_Y = re.compile(r'"yaxis\d*":\{(?:[^{}]|\{[^{}]*\})*"type":"log"')


def study_with_diverged_trials(direction: str = "minimize", good: tuple[float, float]
                               = (0.09, 0.15)) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(0)
    study = optuna.create_study(study_name="plots", direction=direction)
    for number in range(30):
        params = {"model.depth": int(rng.integers(1, 6)),
                  "model.width": round(float(2 ** rng.uniform(2, 7))),
                  "optim.lr": float(10 ** rng.uniform(-4, 0))}
        value = DIVERGED.get(number, float(rng.uniform(*good)))
        study.add_trial(create_trial(value=value, params=params, distributions=SPACE))
    return study


def test_a_cost_is_drawn_on_a_log_axis_an_accuracy_is_not() -> None:
    study = study_with_diverged_trials()
    assert plots.log_axis(study, ["val_cost"])
    assert not plots.log_axis(study, ["val_accuracy"])


def test_the_diverged_trials_leave_the_parallel_coordinates_and_nothing_else() -> None:
    study = study_with_diverged_trials()
    shown, left_out = plots.without_outliers(study, log=True)
    assert left_out == 2
    assert sorted(t.values[0] for t in shown.trials)[-1] < 0.16
    assert len(study.trials) == 30  # the study itself keeps them
    assert plots.without_outliers(study, log=False) == (study, 0)
    # a study without outliers is drawn whole
    calm = optuna.create_study()
    for v in (0.1, 0.11, 0.12, 0.13, 0.14):
        calm.add_trial(create_trial(value=v, params={"optim.lr": 0.01},
                                    distributions={"optim.lr": SPACE["optim.lr"]}))
    assert plots.without_outliers(calm, log=True) == (calm, 0)


def test_the_parent_run_gets_log_scaled_pngs_and_the_interactive_page(
        tmp_mlflow: str, tmp_path: Path) -> None:
    client = MlflowClient(tmp_mlflow)
    run_id = client.create_run(client.create_experiment("plots")).info.run_id
    study = study_with_diverged_trials()
    assert plots.log_plots(client, run_id, study, ["val_cost"]) == []
    logged = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/parallel_coordinate.png",
            "plots/objective_vs_model.width.png", "plots/study.html"} <= logged
    html = Path(client.download_artifacts(run_id, "plots/study.html", str(tmp_path))).read_text()
    assert "<script>" in html and "<script src=" not in html  # plotly.js inside: no network
    assert html.count('class="plotly-graph-div"') == 4
    assert len(LOG_Y.findall(html)) == 4  # the history's y axis, and each slice's
    assert "2 outlier trials above the others' range left out" in html
    assert "log10(val_cost)" in html


def test_an_accuracy_objective_keeps_linear_axes(tmp_mlflow: str, tmp_path: Path) -> None:
    client = MlflowClient(tmp_mlflow)
    run_id = client.create_run(client.create_experiment("acc")).info.run_id
    study = study_with_diverged_trials("maximize", good=(0.85, 0.98))
    assert plots.log_plots(client, run_id, study, ["val_accuracy"]) == []
    html = Path(client.download_artifacts(run_id, "plots/study.html", str(tmp_path))).read_text()
    page = html.split("</head>", 1)[1]  # after plotly.js
    assert not LOG_Y.findall(page)
    assert "outlier" not in page and "log10(" not in page


def test_png_axes_are_log_for_a_cost() -> None:
    """The figures as they are logged: y on a log scale where it is the cost."""
    import matplotlib.pyplot as plt

    figures = dict(plots.png_figures(study_with_diverged_trials(), ["val_cost"], log=True))
    try:
        for name in ("optimization_history", "objective_vs_optim.lr",
                     "objective_vs_model.width"):
            assert figures[name].axes[0].get_yscale() == "log", name
        assert "2 outlier trials left out" in figures["parallel_coordinate"].axes[0].get_title()
    finally:
        plt.close("all")


def test_parallel_coordinate_tick_labels_sit_on_boxes_the_lines_do_not_cross() -> None:
    """The width axis's log ticks sit where trials' lines pass: every axis's tick labels of
    the parallel coordinates get an opaque box (the other plots keep plain labels)."""
    figures = dict(plots.png_figures(study_with_diverged_trials(), ["val_cost"], log=True))
    labels = [t for ax in figures["parallel_coordinate"].axes for t in ax.get_yticklabels()
              if t.get_text()]
    assert labels and all(t.get_bbox_patch() is not None for t in labels)
    history = figures["optimization_history"].axes[0].get_yticklabels()
    assert all(t.get_bbox_patch() is None for t in history)


def test_the_writers_plots_op_draws_a_study_from_its_trials(tmp_mlflow: str,
                                                             tmp_path: Path) -> None:
    """The op the sweep hands its writer process (the study as its trials, rebuilt in
    memory there) logs what log_plots logs of the study itself."""
    client = MlflowClient(tmp_mlflow)
    exp = client.create_experiment("plots")
    study = study_with_diverged_trials()
    runs = [client.create_run(exp).info.run_id for _ in range(2)]
    plots.log_plots(client, runs[0], study, ["val_cost"])
    plots.op_study_plots(client, runs[1], study.study_name, ["minimize"], study.trials,
                         ["val_cost"])
    logged = [sorted(a.path for a in client.list_artifacts(r, "plots")) for r in runs]
    assert logged[0] == logged[1] and "plots/study.html" in logged[1]
    html = [Path(client.download_artifacts(r, "plots/study.html", str(tmp_path / r))
                 ).read_text() for r in runs]
    assert html[1].count('class="plotly-graph-div"') == html[0].count(
        'class="plotly-graph-div"') == 4
    assert "<title>Optuna study plots</title>" in html[1]


def test_a_study_the_plots_op_cannot_rebuild_is_a_line_in_skipped_txt(
        tmp_mlflow: str, tmp_path: Path) -> None:
    client = MlflowClient(tmp_mlflow)
    run_id = client.create_run(client.create_experiment("plots")).info.run_id
    study = study_with_diverged_trials()
    # two directions for trials of one value each: Optuna refuses the trials
    plots.op_study_plots(client, run_id, "plots", ["minimize", "minimize"], study.trials,
                         ["val_cost", "n_params"])
    text = Path(client.download_artifacts(run_id, plots.SKIPPED_ARTIFACT, str(tmp_path))
                ).read_text()
    assert text.startswith("plots: ValueError: ")
