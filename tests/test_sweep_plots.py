"""The sweep's plots (issue 14, item 4): with a few diverged trials, a cost objective's plots
still show the good trials apart (log axis; parallel coordinates coloured by log10 of the
cost, without the outliers), and the parent run gets Optuna's interactive plotly page.

Studies are real Optuna studies in memory, with trials added as a sweep finishes them;
plots go to a temporary MLflow store and are read back with MlflowClient.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np
import optuna
import pytest
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


def _record_drawers(monkeypatch: pytest.MonkeyPatch, log: Path,
                    child_does: Callable[[], object] | None = None) -> None:
    """plots.draw_pngs, noting which process drew which plots in `log`; in the copy (a
    process other than this one), `child_does` first, if given."""
    import os

    draw, here = plots.draw_pngs, os.getpid()

    def noted(study: optuna.Study, objectives: Sequence[str], log_axis: bool,
              names: Collection[str], folder: Path) -> None:
        if os.getpid() != here and child_does is not None:
            child_does()
        draw(study, objectives, log_axis, names, folder)
        with open(log, "a") as f:
            f.writelines(f"{os.getpid()} {n}\n" for n in names)

    monkeypatch.setattr(plots, "draw_pngs", noted)


def _drawers(log: Path) -> dict[str, list[int]]:
    who: dict[str, list[int]] = {}
    for line in log.read_text().splitlines():
        pid, name = line.split(" ", 1)
        who.setdefault(name, []).append(int(pid))
    return who


PNGS = {"optimization_history", "param_importances", "parallel_coordinate",
        "objective_vs_model.depth", "objective_vs_model.width", "objective_vs_optim.lr"}


def test_a_copy_of_the_process_draws_half_of_the_pngs(
        tmp_mlflow: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Linux the PNGs are drawn by two processes, each plot once, and all are logged."""
    import os
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("the PNGs are drawn in two processes on Linux only")
    client = MlflowClient(tmp_mlflow)
    run_id = client.create_run(client.create_experiment("plots")).info.run_id
    _record_drawers(monkeypatch, tmp_path / "who")
    assert plots.log_plots(client, run_id, study_with_diverged_trials(), ["val_cost"]) == []
    who = _drawers(tmp_path / "who")
    assert set(who) == PNGS and all(len(p) == 1 for p in who.values()), who
    pids = {p[0] for p in who.values()}
    assert len(pids) == 2 and os.getpid() in pids, who
    logged = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {f"plots/{n}.png" for n in PNGS} | {"plots/study.html"} == logged


def test_what_the_copy_does_not_draw_is_drawn_here(
        tmp_mlflow: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy that dies before drawing, and one that hangs (killed after FORK_TIMEOUT):
    every PNG is logged all the same, drawn by this process."""
    import os
    import time

    client = MlflowClient(tmp_mlflow)
    exp = client.create_experiment("plots")
    monkeypatch.setattr(plots, "FORK_TIMEOUT", 1.0)
    draw = plots.draw_pngs
    for name, child_does in (("died", lambda: os._exit(3)), ("hung", lambda: time.sleep(600))):
        run_id = client.create_run(exp).info.run_id
        log = tmp_path / name
        monkeypatch.setattr(plots, "draw_pngs", draw)
        _record_drawers(monkeypatch, log, child_does)
        assert plots.log_plots(client, run_id, study_with_diverged_trials(),
                               ["val_cost"]) == []
        who = _drawers(log)
        assert set(who) == PNGS and {p for ps in who.values() for p in ps} == {os.getpid()}
        logged = {a.path for a in client.list_artifacts(run_id, "plots")}
        assert {f"plots/{n}.png" for n in PNGS} | {"plots/study.html"} == logged, name


def test_a_plot_that_cannot_be_drawn_in_the_copy_is_said_once(
        tmp_mlflow: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plot that fails in the copy is returned once with its reason, and the other plots
    are logged."""
    from optuna.visualization import matplotlib as ovm

    study = study_with_diverged_trials()
    _, aside = plots._halves(study, plots._png_plots(study, ["val_cost"], True))
    makers = {"optimization_history": "plot_optimization_history",
              "param_importances": "plot_param_importances",
              "parallel_coordinate": "plot_parallel_coordinate"}
    failing = next(n for n in aside if n in makers)  # one the copy draws

    def refuse(*args: object, **kwargs: object) -> None:
        raise ValueError("not drawn here")

    monkeypatch.setattr(ovm, makers[failing], refuse)
    client = MlflowClient(tmp_mlflow)
    run_id = client.create_run(client.create_experiment("plots")).info.run_id
    skipped = plots.log_plots(client, run_id, study, ["val_cost"])
    assert skipped == [f"{failing}: not drawn here"]
    logged = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert logged == {f"plots/{n}.png" for n in PNGS - {failing}} | {"plots/study.html"}


def test_the_two_halves_take_about_as_long() -> None:
    """The default sweep's plots split as measured: the copy gets the slice over the
    learning rate (four decades) and no more than three plots; this process, the page
    and the parallel coordinates."""
    study = study_with_diverged_trials()
    mine, aside = plots._halves(study, plots._png_plots(study, ["val_cost"], True))
    assert sorted(mine + aside) == sorted(PNGS)
    assert "objective_vs_optim.lr" in aside and "parallel_coordinate" in mine
    assert len(aside) == 3


def test_the_copy_never_reads_the_studys_storage(tmp_mlflow: str, tmp_path: Path) -> None:
    """The plots are drawn from the trials read once, here: a forked process reading the
    study's storage would share this process's database connection (a sweep on PostgreSQL
    failed with a broken connection)."""
    import os

    class Recording(optuna.storages.InMemoryStorage):
        def get_all_trials(self, *args: object, **kwargs: object) -> list:  # type: ignore[override]
            with open(tmp_path / "readers", "a") as f:
                f.write(f"{os.getpid()}\n")
            return super().get_all_trials(*args, **kwargs)  # type: ignore[arg-type]

    study = optuna.create_study(study_name="recorded", storage=Recording())
    study.add_trials(study_with_diverged_trials().trials)
    client = MlflowClient(tmp_mlflow)
    run_id = client.create_run(client.create_experiment("plots")).info.run_id
    assert plots.log_plots(client, run_id, study, ["val_cost"]) == []
    readers = set((tmp_path / "readers").read_text().split())
    assert readers == {str(os.getpid())}
    assert len({a.path for a in client.list_artifacts(run_id, "plots")}) == len(PNGS) + 1


def test_folders_a_killed_sweep_left_are_removed_by_the_next_plots(
        tmp_mlflow: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGKILL while the plots are drawn leaves their temporary folder. The next sweep's
    plots remove it once its process is gone and it has not changed for a while, and
    nothing else: not a live process's, not a recent one, not a look-alike."""
    import os
    import subprocess
    import sys
    import tempfile
    import time

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(gone.stdout)
    old = time.time() - 2 * plots.STALE_FOLDER_SECONDS

    def folder(pid: int | str, age: float | None = old, name: str | None = None) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{plots.PLOTS_FOLDER}{pid}-")) if name is None \
            else tmp / name
        path.mkdir(exist_ok=True)
        (path / "png").mkdir()
        (path / "png" / "optimization_history.png").write_bytes(b"half")
        if age is not None:
            os.utime(path, (age, age))
        return path

    stale = folder(dead)
    kept = {"recent": folder(dead, age=None), "alive": folder(os.getpid()),
            "not a pid": folder("x1"), "longer name": folder(dead, name=f"{stale.name}x"),
            "other prefix": folder(dead, name=f"other-{stale.name}")}
    a_file = tmp / f"{plots.PLOTS_FOLDER}{dead}-abcdefgh"
    a_file.write_text("not a folder")
    os.utime(a_file, (old, old))

    client = MlflowClient(tmp_mlflow)
    run_id = client.create_run(client.create_experiment("plots")).info.run_id
    assert plots.log_plots(client, run_id, study_with_diverged_trials(), ["val_cost"]) == []
    assert not stale.exists()
    assert {k for k, p in kept.items() if not p.exists()} == set()
    assert a_file.read_text() == "not a folder"
    # and its own folder is gone once the plots are logged
    assert sorted(tmp.iterdir()) == sorted([*kept.values(), a_file])
