"""The MLflow UI in a real browser: a small sweep into a temporary store, `python -m
sweeplab.cli.ui` on a free loopback port, Debian's Chromium driven by Playwright.

Checks what a person would look at: the sweep's parent run with every trial nested under
it, one trial's train_cost chart and model, the parent's plots and table of trials, and
the sweep's saved view (params and metrics as columns, best trial first). Screenshots go to
a temporary folder, printed at the end (or to $SWEEPLAB_E2E_SHOTS when set).

Run: make test-e2e   (needs /usr/bin/chromium: apt-get install chromium; .ci/run does it)
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from helpers import compose_config, use_mlflow_store
from servers import stop_process_group

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
# As root on a machine without a network: no sandbox, no GPU, no calls home.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
N_TRIALS = 3
SWEEP = ["sweep.confirm.top_k=0",  # no confirmation stage: trials only
         "data=moons", "data.n_samples=200", "train.epochs=30", "train.log_every=3",
         "train.batch_size=null", "tracking.log_model=true", "tracking.log_plots=true",
         f"sweep.n_trials={N_TRIALS}", "sweep.pruner=none", "sweep.register_model=e2e-model",
         "sweep.name=e2e"]
TIMEOUT_MS = 30_000  # one page element; the UI answers in a few seconds


@dataclass
class Sweep:
    uri: str
    experiment_id: str
    parent: Any  # mlflow Run
    trials: list[Any]  # mlflow Runs, best first


@dataclass
class Server:
    url: str
    log: Path


def _skip_without_a_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install chromium (.ci/run does)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright not installed: pip install -c requirements.lock -e '.[dev]'")


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory,
          request: pytest.FixtureRequest) -> Iterator[Path]:
    """The screenshot folder; its path is printed when the tests are done."""
    folder = Path(os.environ.get("SWEEPLAB_E2E_SHOTS") or tmp_path_factory.mktemp("ui-shots"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\nMLflow UI screenshots: {folder}", flush=True)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, data_cache: Path) -> Iterator[Sweep]:
    """A small sweep (models and plots logged) into a temporary MLflow store and journal."""
    _skip_without_a_browser()
    from sweeplab.sweep.controller import sweep_job

    store = tmp_path_factory.mktemp("e2e-store")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(data_cache)  # built-in datasets are cached there
        uri = use_mlflow_store(store, mp)
        cfg = compose_config(*SWEEP, f"sweep.storage=journal:{store / 'optuna.journal'}",
                             config_name="sweep_app")
        assert sweep_job(cfg) == 0
        client = MlflowClient(uri)
        experiment_id = client.get_experiment_by_name("sweeplab").experiment_id
        [parent] = client.search_runs([experiment_id], "tags.`sweeplab.role` = 'sweep'")
        trials = client.search_runs(
            [experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
            order_by=["metrics.final_val_cost ASC"])
        assert len(trials) == N_TRIALS
        yield Sweep(uri, experiment_id, parent, trials)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(sweep: Sweep, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`python -m sweeplab.cli.ui` over the sweep's store, in its own process group, which is
    stopped whatever happens."""
    port = _free_port()
    log = tmp_path_factory.mktemp("e2e-server") / "ui.log"
    yield from _serve([sys.executable, "-m", "sweeplab.cli.ui", "--port", str(port), "--uri",
                       sweep.uri], log, f"http://127.0.0.1:{port}/", "health", "the UI", 90)


def _serve(cmd: list[str], log: Path, url: str, probe: str, what: str,
           seconds: float) -> Iterator[Server]:
    """Start `cmd` in its own process group (output to `log`), yield once `url + probe`
    answers, stop the group whatever happens; fail with the log if it exits or is slow."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + seconds
        while not _answers(url + probe):
            if proc.poll() is not None:
                pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not answer on {url} in {seconds:g} s:\n"
                            f"{log.read_text()}")
            time.sleep(0.25)
        yield Server(url, log)
    finally:
        stop_process_group(proc)


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def open_page(page: Any, server: Server, route: str) -> None:
    """Open a UI route as sweeplab's printed addresses do (in the model-training layout) and
    wait for `load` (the UI keeps polling: the network is never idle). On a page's first
    load, close the Assistant side panel, which MLflow opens once per browser on a local
    server and which would cover a third of every screenshot."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from sweeplab.tracking.links import ui_route

    first = page.url == "about:blank"
    page.goto(server.url + ui_route(route), wait_until="load")
    if not first:
        return
    try:
        page.get_by_text("MLflow Assistant").first.wait_for(timeout=5000)
        page.get_by_role("button", name="Close").first.click(timeout=5000)
    except PlaywrightTimeout:  # no Assistant in this MLflow version
        pass


def run_name_cell(page: Any, name: str) -> Any:
    """The Run Name cell of the runs-table row of run `name`."""
    return page.locator("[col-id='attributes.`Run Name`']").filter(
        has=page.get_by_text(name, exact=True))


def assert_image_shown(page: Any, artifact: str) -> None:
    """The artifact view shows the PNG `artifact`, decoded (not a broken image)."""
    image = page.locator(f"img[alt='{artifact}']")
    image.wait_for()
    width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
    assert width > 100, f"{artifact} is not drawn (width {width})"


def test_runs_page_lists_the_sweep_with_every_trial_nested(page, server, sweep, shots) -> None:
    open_page(page, server, f"#/experiments/{sweep.experiment_id}/runs")
    parent = run_name_cell(page, sweep.parent.info.run_name)
    parent.wait_for()
    for trial in sweep.trials:  # nested: hidden until the parent is expanded
        assert run_name_cell(page, trial.info.run_name).count() == 0
    parent.get_by_role("button").first.click()
    for trial in sweep.trials:
        run_name_cell(page, trial.info.run_name).wait_for()
    assert {t.info.run_name for t in sweep.trials} == \
        {f"trial {t.data.tags['sweeplab.trial_number']}: depth={t.data.params['model.depth']} "
         f"width={t.data.params['model.width']} lr={float(t.data.params['optim.lr']):.3g}"
         for t in sweep.trials}
    page.get_by_text("moons", exact=False).first.wait_for()  # the Dataset column
    page.set_viewport_size({"width": 1400, "height": 480})
    page.screenshot(path=shots / "runs.png")


def test_sweep_view_ranks_the_trials_with_params_and_metrics(page, server, sweep,
                                                             shots) -> None:
    from sweeplab.sweep import view

    open_page(page, server, f"#/experiments/{sweep.experiment_id}/runs?viewStateShareKey="
                            f"{view.view_key('e2e')}")
    page.set_viewport_size({"width": 1800, "height": 700})  # columns off screen aren't drawn
    for column in ("model.depth", "model.width", "optim.lr", "final_val_cost", "val_accuracy",
                   "val_cost", "test_accuracy", "sweeplab.trial_state"):
        page.get_by_test_id(f"sort-header-{column}").wait_for()
    names = [t.info.run_name for t in sweep.trials]
    for name in names:
        run_name_cell(page, name).wait_for()
    cells = page.locator("[role=gridcell][col-id='attributes.`Run Name`']")
    deadline = time.monotonic() + 15  # the view's sort may land after the first rows
    while True:
        rows = cells.evaluate_all(
            "cells => cells.map(c => [Number(c.closest('.ag-row').getAttribute('row-index')),"
            " c.querySelector('a')?.innerText.trim()])")
        shown = [name for _, name in sorted(rows) if name in names]
        if shown == names or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert shown == names, "the trials are not shown best first"
    sidebar = page.get_by_role("button", name="Toggle sidebar")
    if sidebar.count():  # room for every column in a smaller picture
        sidebar.first.click()
    page.set_viewport_size({"width": 1540, "height": 500})
    page.wait_for_timeout(500)  # the table re-lays its columns out
    page.screenshot(path=shots / "sweep_view.png")


def test_trial_page_shows_the_cost_chart_and_the_model(page, server, sweep, shots) -> None:
    trial = sweep.trials[0]
    client = MlflowClient(sweep.uri)
    [output] = client.get_run(trial.info.run_id).outputs.model_outputs
    open_page(page, server, f"#/experiments/{sweep.experiment_id}/runs")
    parent = run_name_cell(page, sweep.parent.info.run_name)
    parent.get_by_role("button").first.click()
    run_name_cell(page, trial.info.run_name).get_by_role("link").click()  # open the trial
    page.get_by_role("heading", name=trial.info.run_name).wait_for()

    # Overview: its model, with a link to the logged model's page.
    page.get_by_text("Logged models (1)").wait_for()
    model_link = page.locator(f"a[href$='/models/{output.model_id}']").filter(has_text="model")
    model_link.first.wait_for()
    page.screenshot(path=shots / "trial_overview.png")

    # Model metrics: the train_cost chart, drawn.
    page.get_by_role("tab", name="Model metrics").click()
    # ten charts now (the sweep's `objective` among them): the UI draws only those in view,
    # so the chart wanted is searched for, as a user would
    page.get_by_placeholder("Search metric charts").fill("train_cost")
    card = page.locator("[data-testid='experiment-view-compare-runs-card']").filter(
        has=page.locator("h4[title='train_cost']"))
    card.scroll_into_view_if_needed()
    line = card.locator(".js-plotly-plot .scatterlayer .trace path.js-line")
    line.first.wait_for()
    points = line.first.get_attribute("d") or ""
    assert points.count("L") >= 2, f"the train_cost line has no points: {points!r}"
    card.screenshot(path=shots / "trial_train_cost.png")
    page.screenshot(path=shots / "trial_charts.png")

    # Artifacts: the config and the cost-curve plot.
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("config.yaml", exact=True).wait_for()
    page.get_by_text("plots", exact=True).click()
    page.get_by_text("cost_curve.png", exact=True).click()
    assert_image_shown(page, "plots/cost_curve.png")

    # The model's own page: its files.
    open_page(page, server, f"#/experiments/{sweep.experiment_id}/models/{output.model_id}"
                            "/artifacts")
    page.get_by_text("MLmodel", exact=True).wait_for()
    page.screenshot(path=shots / "trial_model.png")


def test_parent_run_shows_the_sweep_plots_and_the_trials_table(page, server, sweep,
                                                              shots) -> None:
    run = sweep.parent.info
    open_page(page, server, f"#/experiments/{sweep.experiment_id}/runs/{run.run_id}")
    best = sweep.trials[0].info.run_name
    page.get_by_text(f"{N_TRIALS} trials ({N_TRIALS} complete").wait_for()  # description
    page.get_by_role("link", name=best).first.wait_for()
    page.screenshot(path=shots / "parent_overview.png")
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("trials.md", exact=True).click()
    for trial in sweep.trials:  # the markdown table, rendered: a row per trial
        page.get_by_role("cell", name=trial.info.run_id, exact=True).wait_for(state="attached")
    page.get_by_text("plots", exact=True).click()
    page.get_by_text("optimization_history.png", exact=True).click()
    assert_image_shown(page, "plots/optimization_history.png")
    page.screenshot(path=shots / "parent_artifacts.png")


def test_the_registered_models_description_links_to_the_sweeps_parent_run(
        page, server, sweep, shots) -> None:
    version = MlflowClient(sweep.uri).get_model_version_by_alias("e2e-model", "champion")
    open_page(page, server, f"#/models/e2e-model/versions/{version.version}")
    parent = sweep.parent.info
    link = page.get_by_role("link", name=parent.run_id, exact=True)
    link.first.wait_for()
    page.screenshot(path=shots / "model_version.png")
    with page.context.expect_page() as opened:  # the UI opens description links in a tab
        link.first.click()
    tab = opened.value
    tab.get_by_role("heading", name=parent.run_name).wait_for()  # the parent run's page
    assert tab.url.startswith(server.url) and f"/runs/{parent.run_id}" in tab.url


def test_the_printed_address_opens_the_model_training_layout(page, server, sweep,
                                                            shots) -> None:
    """The address `make ui` prints, opened in a browser that has no layout remembered,
    shows the model-training menus (Runs, Models, Model registry), not the GenAI ones
    (Sessions, Prompts), as in the README's screenshot."""
    printed = server.log.read_text()
    [url] = re.findall(r"^MLflow UI: (\S+)$", printed, re.MULTILINE)
    assert url.startswith(server.url)
    page.goto(url, wait_until="load")
    page.get_by_role("link", name="Model registry").first.wait_for()
    page.get_by_role("link", name="Runs", exact=True).first.wait_for()
    run_name_cell(page, sweep.parent.info.run_name).wait_for()
    assert page.get_by_role("link", name="Sessions", exact=True).count() == 0
    assert page.get_by_role("link", name="Prompts", exact=True).count() == 0
    page.screenshot(path=shots / "printed_address.png")


# -- make dashboard: optuna-dashboard over the same sweep's journal ------------------------------

@pytest.fixture(scope="module")
def dashboard(sweep: Sweep, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`python -m sweeplab.cli.dashboard` on the sweep's journal, on a free loopback port."""
    journal = Path(sweep.uri.removeprefix("sqlite:///")).parent / "optuna.journal"
    port = _free_port()
    log = tmp_path_factory.mktemp("e2e-dashboard") / "dashboard.log"
    yield from _serve([sys.executable, "-m", "sweeplab.cli.dashboard", "--port", str(port),
                       "--storage", f"journal:{journal}"], log, f"http://127.0.0.1:{port}/",
                      "api/studies", "the dashboard", 60)


def test_dashboard_shows_the_sweeps_study(browser, dashboard, sweep, shots) -> None:
    """The address `make dashboard` prints lists the sweep's study; its page draws the
    optimisation history of its trials."""
    [printed] = re.findall(r"^optuna-dashboard: (\S+)$", dashboard.log.read_text(),
                           re.MULTILINE)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(printed, wait_until="load")
        # the study's card, "<id>. <sweep.name>"
        page.get_by_text(re.compile(r"^\d+\. e2e$")).first.click()
        page.wait_for_url(re.compile(r"/dashboard/studies/\d+"))
        page.locator(".js-plotly-plot").first.wait_for()  # the history plot, drawn
        page.wait_for_timeout(1000)  # plotly finishes drawing its points
        page.screenshot(path=shots / "dashboard_study.png")
    finally:
        context.close()
