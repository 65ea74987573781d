"""make ui: the checks before the server starts (no store yet, port taken, a store it cannot
serve), the command it runs, the saved view of a sweep, and the dataset inputs a run shows.

Nothing here starts a server or a browser: that is tests/test_ui_e2e.py (marker e2e).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from mlflow.tracking import MlflowClient

from helpers import compose_config
from sweeplab import train
from sweeplab.cli import ui
from sweeplab.config import to_config
from sweeplab.sweep import view
from sweeplab.tracking import MlflowTracker

SWEEP = ["sweep.confirm.top_k=0",  # no confirmation stage: trials only
         "data=moons", "data.n_samples=200", "train.epochs=6", "train.log_every=3",
         "train.batch_size=null", "tracking.log_model=false", "tracking.log_plots=false"]


def run_ui(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = ui.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on 127.0.0.1 that something listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ui.HOST, 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def no_exec(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str], dict[str, str]]]:
    """os.execve recorded instead of run: the server command main() would become."""
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(ui.os, "execve", lambda path, args, env: calls.append((path, args, env)))
    return calls


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ui.HOST, 0))
        return s.getsockname()[1]


# -- errors before the server starts ------------------------------------------------------

def test_no_store_yet_says_to_run_make_sweep(tmp_path: Path, capsys, no_exec) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, out, err = run_ui(capsys, "--uri", uri, "--port", str(free_port()))
    assert code == 2
    assert uri in err and "run `make sweep`" in err
    assert not no_exec and not out
    assert not (tmp_path / "mlflow.db").exists()  # the check created no store


def test_the_store_comes_from_mlflow_tracking_uri(tmp_path: Path, capsys, no_exec,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code, _, err = run_ui(capsys, "--port", str(free_port()))
    assert code == 2
    assert f"no MLflow store at {uri}" in err


def test_port_taken_names_the_port_and_another_one(tmp_mlflow: str, listening: int, capsys,
                                                   no_exec) -> None:
    code, out, err = run_ui(capsys, "--uri", tmp_mlflow, "--port", str(listening))
    assert code == 2
    assert f"port {listening} on 127.0.0.1 is taken" in err
    assert f"make ui PORT={listening + 1}" in err
    assert not no_exec and not out


@pytest.mark.parametrize("port", ["0", "70000", "-1"])
def test_a_port_out_of_range_is_refused(tmp_mlflow: str, capsys, no_exec, port: str) -> None:
    code, _, err = run_ui(capsys, "--uri", tmp_mlflow, "--port", port)
    assert code == 2 and "not a port" in err


@pytest.mark.parametrize("uri,message", [
    ("http://127.0.0.1:5000", "is a tracking server already"),
    ("sqlite://", "in-memory store"),
    ("databricks", "give a sqlite:/// URI or a folder"),
])
def test_stores_mlflow_ui_cannot_serve(uri: str, message: str, capsys, no_exec,
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # "databricks" would be a folder here if it existed
    if uri == "databricks":
        uri = "databricks://profile"
    code, _, err = run_ui(capsys, "--uri", uri, "--port", str(free_port()))
    assert code == 2 and message in err


def test_a_file_that_is_no_mlflow_store_is_an_error(tmp_path: Path, capsys, no_exec) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not a database, " * 100)
    code, out, err = run_ui(capsys, "--uri", f"sqlite:///{db}", "--port", str(free_port()))
    assert code == 2 and "cannot read the MLflow store" in err
    assert not no_exec and not out


def test_store_problem_by_kind(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.touch()
    assert ui.store_problem(f"sqlite:///{db}") is None
    assert "make sweep" in ui.store_problem(f"sqlite:///{tmp_path / 'none.db'}")
    assert ui.store_problem(str(tmp_path)) is None  # a folder store
    assert ui.store_problem(tmp_path.as_uri()) is None
    assert "make sweep" in ui.store_problem(str(tmp_path / "mlruns"))
    assert ui.store_problem("postgresql://u@localhost/mlflow") is None


def test_port_free_sees_a_listener(listening: int) -> None:
    assert not ui.port_free(listening)
    assert ui.port_free(free_port())


# -- the server it becomes ------------------------------------------------------------------

def test_main_becomes_a_lean_loopback_server_and_prints_the_pages(
        tmp_mlflow: str, capsys, no_exec, compose) -> None:
    client = MlflowClient(tmp_mlflow)
    exp = client.create_experiment("sweeplab")
    sweep = to_config(compose(*SWEEP, "sweep.name=ui-test", config_name="sweep_app")).sweep
    key = view.save_sweep_view(client, exp, sweep)
    port = free_port()
    code, out, _ = run_ui(capsys, "--uri", tmp_mlflow, "--port", str(port))
    assert code == 0
    # every address opens the UI in its model-training layout
    assert f"http://127.0.0.1:{port}/#/experiments/{exp}/runs?workflowType=machine_learning\n" \
           in out
    assert f"sweep ui-test, best first: http://127.0.0.1:{port}/#/experiments/{exp}/runs" \
           f"?viewStateShareKey={key}&workflowType=machine_learning" in out
    [(path, args, env)] = no_exec
    assert args[:4] == [path, "-m", "mlflow", "ui"]
    opts = dict(zip(args[4::2], args[5::2], strict=True))
    assert opts["--host"] == "127.0.0.1" and opts["--port"] == str(port)
    assert opts["--workers"] == "1"
    assert opts["--backend-store-uri"] == tmp_mlflow
    assert opts["--default-artifact-root"] == \
        (Path(tmp_mlflow.removeprefix("sqlite:///")).parent / "mlruns").as_uri()
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_a_store_without_the_experiment_opens_the_experiment_list(tmp_mlflow: str, capsys,
                                                                  no_exec) -> None:
    port = free_port()
    code, out, _ = run_ui(capsys, "--uri", tmp_mlflow, "--port", str(port))
    assert code == 0 and len(no_exec) == 1
    assert f"http://127.0.0.1:{port}/#/experiments?workflowType=machine_learning   (no " \
           "experiment 'sweeplab'" in out


def test_the_command_uses_only_options_the_installed_mlflow_ui_has() -> None:
    from mlflow import environment_variables
    from mlflow.cli import cli

    command = cli.get_command(click.Context(cli), "ui")
    assert command is not None
    known = {opt for param in command.params for opt in param.opts}
    cmd = ui.server_command("sqlite:///x/mlflow.db", 5000)
    used = {a for before, a in zip(["", *cmd], cmd, strict=False)
            if a.startswith("--") and not before.endswith("-opts")}  # not --uvicorn-opts' value
    assert used <= known, f"mlflow ui has no {sorted(used - known)}"
    assert hasattr(environment_variables, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION")


# -- the saved view of a sweep ----------------------------------------------------------------

def sweep_cfg(*overrides: str):
    return to_config(compose_config(*SWEEP, *overrides, config_name="sweep_app")).sweep


def test_sweep_view_shows_the_searched_params_and_key_metrics_best_first(
        in_data_cache: Path) -> None:
    state = view.sweep_view_state(sweep_cfg("sweep.name=s1"))
    cols = state["selectedColumns"]
    assert cols[:3] == ["params.`model.depth`", "params.`model.width`", "params.`optim.lr`"]
    assert cols[3:7] == ["metrics.`final_val_cost`", "metrics.`val_accuracy`",
                         "metrics.`val_cost`", "metrics.`test_accuracy`"]
    assert "tags.`sweeplab.trial_state`" in cols
    # sorted by the metric only completed trials have: pruned and failed ones come last
    assert state["orderByKey"] == "metrics.`objective`" and state["orderByAsc"] is True
    assert state["searchFilter"] == "tags.`sweeplab.study` = 's1'"
    assert set(cols) <= set(state["columnOrder"])


def test_sweep_view_follows_the_objectives(in_data_cache: Path) -> None:
    state = view.sweep_view_state(sweep_cfg("sweep.objective=val_accuracy",
                                          "sweep.direction=maximize",
                                          "++sweep.params.model.depth=null"))
    assert state["orderByKey"] == "metrics.`objective`" and state["orderByAsc"] is False
    assert "params.`model.depth`" not in state["selectedColumns"]
    multi = view.sweep_view_state(sweep_cfg("sweep.objectives=[val_accuracy,n_params]",
                                          "sweep.directions=[maximize,minimize]"))
    assert "tags.`sweeplab.n_params`" in multi["selectedColumns"]
    assert multi["orderByKey"] == "metrics.`objective`" and multi["orderByAsc"] is False
    n_params = view.sweep_view_state(sweep_cfg("sweep.objective=n_params"))
    assert n_params["orderByKey"] == "metrics.`objective`" and n_params["orderByAsc"] is True


def test_saved_view_round_trips_through_the_experiment_tag(tmp_mlflow: str,
                                                           in_data_cache: Path) -> None:
    client = MlflowClient(tmp_mlflow)
    exp = client.create_experiment("views")
    s = sweep_cfg("sweep.name=my sweep.v2")
    key = view.save_sweep_view(client, exp, s)
    assert re.fullmatch(r"sweeplab-my-sweep-v2-[0-9a-f]{8}", key)  # its digest: unique
    tag = client.get_experiment(exp).tags[view.VIEW_TAG + key]
    assert view.read_view_state(tag) == view.sweep_view_state(s)
    view.save_sweep_view(client, exp, s)  # saving again replaces it
    assert [t for t in client.get_experiment(exp).tags if t.startswith(view.VIEW_TAG)] == \
           [view.VIEW_TAG + key]


# -- what a run shows: its data and its model's metrics ------------------------------------------

@pytest.fixture
def logged_run(tmp_mlflow: str, compose) -> tuple[MlflowClient, str, train.RunResult]:
    """(client, run id, result) of a short run logged with its model."""
    typed = to_config(compose("data=moons", "data.n_samples=200", "data.val_fraction=0.2",
                              "train.epochs=7", "train.log_every=3", "tracking.log_model=true",
                              "tracking.log_plots=false"))
    tracker = MlflowTracker(typed.tracking)
    with tracker:
        result = train.run(typed, [tracker])
    assert tracker.run_id is not None
    return MlflowClient(tmp_mlflow), tracker.run_id, result


def test_a_run_lists_its_data_splits_as_dataset_inputs(logged_run) -> None:
    client, run_id, result = logged_run
    run = client.get_run(run_id)
    inputs = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
              for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "validation", "test"}
    data = result.dataset
    for context, X in [("train", data.X_train), ("validation", data.X_val),
                       ("test", data.X_test)]:
        assert inputs[context].name == "moons"
        assert f'"features_shape": [{X.shape[1]}, {X.shape[0]}]' in inputs[context].profile
    assert inputs["train"].source_type == "local"
    assert inputs["train"].source.endswith('.h5"}')
    assert len({d.digest for d in inputs.values()}) == 3


def test_the_model_page_shows_the_final_metrics_not_the_first_ones(logged_run) -> None:
    client, run_id, result = logged_run
    [output] = client.get_run(run_id).outputs.model_outputs
    metrics = {m.key: m for m in client.get_logged_model(output.model_id).metrics}
    assert {m.step for m in metrics.values()} == {result.epochs_run}
    for key in ("val_accuracy", "test_accuracy", "final_val_cost"):
        assert metrics[key].value == pytest.approx(result.metrics[key])


def test_parent_description_links_the_best_trial(in_data_cache: Path) -> None:
    from optuna.distributions import IntDistribution
    from optuna.trial import create_trial

    from sweeplab.names import TrialAttr
    from sweeplab.sweep import study as st
    from sweeplab.sweep.report import parent_note

    best = create_trial(value=0.25, params={"model.depth": 2},
                        distributions={"model.depth": IntDistribution(1, 5)},
                        user_attrs={TrialAttr.RUN_ID: "abc123", "val_accuracy": 0.875,
                                    "test_accuracy": float("nan")})
    best.number = 4
    s = sweep_cfg("sweep.name=s1", "sweep.pruner=none")
    note = parent_note(s, st.Tally(done=5, complete=3, pruned=1, failed=1, running=0), [best],
                       ["val_cost"], "7")
    assert note.startswith("Optuna study `s1` (tpe sampler, no pruner): 5 trials (3 complete, "
                           "1 pruned, 1 failed)")
    assert "**Best**: [trial 4: depth=2](#/experiments/7/runs/abc123?workflowType=" \
           "machine_learning), val_cost 0.25, val_accuracy 0.875." in note
    assert "nan" not in note
    assert "Best" not in parent_note(s, st.Tally(done=1, complete=0, pruned=0, failed=1,
                                                 running=0), [], ["val_cost"], "7")


def test_hints_name_make_targets_in_a_checkout_and_scripts_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed sweeplab (pip install) has no Makefile: its hints name the scripts."""
    from helpers import REPO
    from sweeplab.tracking.links import command, ui_hint

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    monkeypatch.chdir(REPO)
    assert command("rerun", "abc") == "make rerun RUN=abc"
    assert ui_hint("sqlite:///x.db", "1").startswith("make ui   then open")
    monkeypatch.chdir(tmp_path)
    assert command("rerun", "abc") == "sweeplab-rerun abc"
    assert ui_hint("sqlite:///x.db", "1").startswith("sweeplab-ui   then open")


def test_hints_for_a_store_named_by_override_name_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make train ARGS="tracking.uri=sqlite:///other.db"` printed `make rerun RUN=...`,
    which looked for the run in the default store (and `make ui` showed that one)."""
    from helpers import REPO
    from sweeplab.tracking.links import command, ui_hint

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(REPO)
    other = "sqlite:///other.db"
    assert command("rerun", "abc", other) == f"MLFLOW_TRACKING_URI={other} make rerun RUN=abc"
    hint = ui_hint(other, "1")
    assert hint.startswith(f"MLFLOW_TRACKING_URI={other} make ui   then open")
    assert f"MLFLOW_TRACKING_URI={other} make ui PORT=5001" in hint
    default = f"sqlite:///{REPO / 'mlflow.db'}"
    assert command("rerun", "abc", default) == "make rerun RUN=abc"
    assert command("rerun", "abc", "http://u:pw@h:1") == \
        "MLFLOW_TRACKING_URI=http://u:***@h:1 make rerun RUN=abc"


# -- the layout the UI opens in, and its port ---------------------------------------------------

def test_printed_addresses_open_the_model_training_layout_and_say_how_to_change_the_port(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3.17's UI opens in its GenAI layout unless the address asks for another (or the
    browser remembers one): every address sweeplab prints asks for model training. The
    local store's UI is not running yet, so the hint says how to serve it on another port."""
    from helpers import REPO
    from sweeplab.tracking.links import runs_url, ui_hint

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    monkeypatch.chdir(REPO)
    hint = ui_hint("sqlite:///x.db", "3", "abc")
    assert "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning " \
           in hint
    assert "on another port: make ui PORT=5001 and 5001 in the address" in hint
    monkeypatch.chdir(tmp_path)
    assert "sweeplab-ui --port 5001" in ui_hint("sqlite:///x.db", "3")
    server = ui_hint("http://127.0.0.1:5005", "3")  # a server's own UI: its port, nothing to say
    assert server.startswith("open http://127.0.0.1:5005/#/experiments/3/runs?workflowType=")
    assert "another port" not in server
    assert runs_url("http://h:1", "2", "v 1") == \
        "http://h:1/#/experiments/2/runs?viewStateShareKey=v%201&workflowType=machine_learning"


def test_sweeplabs_experiments_are_of_the_model_training_kind(tmp_mlflow: str) -> None:
    """MLflow 3 records an experiment's kind in the tag mlflow.experimentKind: sweeplab's are
    model training, also an experiment made before sweeplab set it; a kind the user chose
    is kept."""
    from sweeplab.names import MlflowTag
    from sweeplab.tracking.store import get_experiment_id

    client = MlflowClient(tmp_mlflow)
    new = get_experiment_id(client, "fresh", tmp_mlflow)
    old = client.create_experiment("older")
    assert get_experiment_id(client, "older", tmp_mlflow) == old
    chosen = client.create_experiment("chosen", tags={MlflowTag.EXPERIMENT_KIND:
                                                      "genai_development"})
    get_experiment_id(client, "chosen", tmp_mlflow)
    kinds = {e: MlflowClient(tmp_mlflow).get_experiment(e).tags.get(MlflowTag.EXPERIMENT_KIND)
             for e in (new, old, chosen)}
    assert kinds == {new: "custom_model_development", old: "custom_model_development",
                     chosen: "genai_development"}
