"""What a sweep tells the researcher about its study and its trials: a study keeps its
search space and objective, pruned trials report what they were judged on, a trial that
ran its whole budget is complete, the progress bar shows the running best, the champion
says where it came from.

Sweeps run on small data with few epochs (test_sweep.FAST), in a temporary MLflow store
and journal, read back through MlflowClient and Optuna.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState

from helpers import compose_config, use_mlflow_store
from sweeplab.config import ConfigError, to_config
from sweeplab.names import Metric, TrialAttr
from sweeplab.sweep.controller import sweep_job
from test_sweep import FAST, child_runs, load

# In the slow suite (make test-slow, run by CI): every test here runs one or more whole
# sweeps (8 to 14 s each on 2 cores).
pytestmark = pytest.mark.slow


@pytest.fixture
def sweep_env(in_data_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              empty_mlflow_db: Path):
    """(compose, journal URL, MLflow URI) for one sweep test in temporary stores."""
    uri = use_mlflow_store(tmp_path, monkeypatch, empty_mlflow_db)
    journal = f"journal:{tmp_path / 'optuna.journal'}"

    def compose(*overrides: str):
        return compose_config(*FAST, f"sweep.storage={journal}", *overrides,
                              config_name="sweep_app")

    return compose, journal, uri


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


# -- pruned trials: what they were judged on ---------------------------------------------------

def test_a_pruned_trial_logs_the_point_it_was_judged_on_and_no_later_numbers(
        sweep_env) -> None:
    compose, journal, uri = sweep_env
    assert sweep_job(compose("sweep.name=judged", "sweep.n_trials=5", "sweep.pruner=median",
                             "+sweep.pruner_args.n_startup_trials=1",
                             "+sweep.pruner_args.n_warmup_steps=0", "train.epochs=15",
                             "sweep.sampler=random")) == 0
    study = load(journal, "judged")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert pruned and complete, [t.state for t in study.trials]
    client = MlflowClient(uri)
    for t in pruned:
        run_id = t.user_attrs[TrialAttr.RUN_ID]
        at = t.user_attrs["pruned_at_epoch"]
        judged = t.intermediate_values[at]
        # the history ends at the point the pruner judged, with the value it judged
        assert history(client, run_id, "val_cost")[-1] == (at, pytest.approx(judged))
        assert f"val_cost={judged:.4g}" in t.user_attrs[TrialAttr.REASON]
        # and nothing measured after the update that followed it
        metrics = client.get_run(run_id).data.metrics
        for key in (Metric.FINAL_VAL_COST, Metric.TEST_ACCURACY, Metric.TRAIN_ACCURACY,
                    Metric.OBJECTIVE):
            assert key not in metrics, (t.number, key)
        assert metrics["val_cost"] == pytest.approx(judged)
        assert "test_accuracy" not in t.user_attrs
    for t in complete:
        metrics = client.get_run(t.user_attrs[TrialAttr.RUN_ID]).data.metrics
        assert metrics[Metric.OBJECTIVE] == pytest.approx(t.values[0])


def test_the_saved_view_ranks_completed_trials_first_by_the_objective(sweep_env) -> None:
    """The view's sort, as MLflow's search applies it to trial runs as a sweep logs them: a
    completed trial first, though a pruned trial's last val_accuracy is better."""
    from sweeplab.sweep import view
    from sweeplab.sweep.worker import execute

    compose, _, uri = sweep_env
    cfg = compose("sweep.name=ranked", "sweep.objective=val_accuracy",
                  "sweep.direction=maximize", "train.epochs=12")
    slow = execute(_task(cfg, uri, 0, {"optim.lr": 1e-4}), lambda step, value: False)
    pruned = execute(_task(cfg, uri, 1, {"optim.lr": 0.05}), lambda step, value: step == 9)
    assert (slow.status, pruned.status) == ("finished", "pruned")
    client = MlflowClient(uri)
    assert history(client, pruned.run_id, "val_accuracy")[-1][1] > slow.values[0]

    experiment = client.get_experiment_by_name("trials")
    view.save_sweep_view(client, experiment.experiment_id, to_config(cfg).sweep)
    tag = client.get_experiment(experiment.experiment_id).tags[
        view.VIEW_TAG + view.view_key("ranked")]
    state = view.read_view_state(tag)
    order = f"{state['orderByKey']} {'ASC' if state['orderByAsc'] else 'DESC'}"
    runs = client.search_runs([experiment.experiment_id], state["searchFilter"],
                              order_by=[order])
    assert [r.info.run_id for r in runs] == [slow.run_id, pruned.run_id]


# -- a verdict at the last epoch ------------------------------------------------------------------

def _task(cfg, uri: str, number: int = 0, params: dict | None = None):
    """Trial `number`'s task of sweep `cfg` (with `params`), its run logged to experiment
    "trials" under the sweep's parent run (made with the first trial)."""
    from sweeplab.sweep.worker import make_task

    base = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "sweep"])
    OmegaConf.update(base, "tracking.experiment", "trials", merge=False)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("trials")
    experiment_id = experiment.experiment_id if experiment else \
        client.create_experiment("trials")
    parents = client.search_runs([experiment_id], "tags.`sweeplab.role` = 'sweep'")
    parent = parents[0].info.run_id if parents else client.create_run(
        experiment_id, tags={"sweeplab.role": "sweep"}).info.run_id
    return make_task(number, params or {"model.depth": 1}, base, to_config(cfg).sweep,
                     parent)


@pytest.mark.parametrize("epochs", [9, 12])  # the last epoch is a log point, or not
def test_a_prune_verdict_at_the_last_epoch_leaves_the_trial_complete(sweep_env,
                                                                    epochs: int) -> None:
    from sweeplab.sweep.worker import execute

    compose, _, uri = sweep_env
    task = _task(compose(f"train.epochs={epochs}", "train.log_every=4"), uri)
    assert task.prune_metric == "val_cost"
    asked: list[int] = []

    def prune_at_the_end(step: int, value: float) -> bool:  # the pruner's verdict
        asked.append(step)
        return step == epochs - 1

    out = execute(task, prune_at_the_end)
    assert asked[-1] == epochs - 1  # reported, and its verdict was to prune
    assert out.status == "finished" and out.values is not None
    run = MlflowClient(uri).get_run(out.run_id)
    assert run.data.tags["sweeplab.trial_state"] == "COMPLETE"
    assert run.info.status == "FINISHED"
    assert run.data.metrics[Metric.OBJECTIVE] == pytest.approx(out.values[0])


def test_a_prune_verdict_before_the_last_epoch_still_prunes(sweep_env) -> None:
    from sweeplab.sweep.worker import execute

    compose, _, uri = sweep_env
    out = execute(_task(compose("train.epochs=12", "train.log_every=4"), uri),
                  lambda step, value: step == 8)
    assert out.status == "pruned" and out.attrs["pruned_at_epoch"] == 8
    assert out.values is None
    run = MlflowClient(uri).get_run(out.run_id)
    assert run.data.tags["sweeplab.pruned_at_epoch"] == "8"
    assert max(m.step for m in MlflowClient(uri).get_metric_history(out.run_id,
                                                                   "val_cost")) == 8


# -- a study keeps its search space and objective -------------------------------------------------

KEEP_PROB = "+sweep.params.model.keep_prob='interval(0.5, 1.0)'"


def test_a_changed_search_space_is_refused_with_a_new_name_to_use(sweep_env) -> None:
    compose, journal, uri = sweep_env
    assert sweep_job(compose("sweep.name=ident", "sweep.n_trials=1", "sweep.pruner=none")) == 0
    parent = load(journal, "ident").user_attrs[TrialAttr.PARENT_RUN_ID]
    with pytest.raises(ConfigError) as err:
        sweep_job(compose("sweep.name=ident", "sweep.n_trials=4", "sweep.pruner=none",
                          KEEP_PROB))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("sweep.name='ident': study 'ident' was made with another "
                              "search space or objective (sweep.params.model.keep_prob added "
                              "(interval(0.5, 1.0)))")
    assert "sweep.name=ident-keep_prob" in message
    # refused before any trial: the study and its parent run are as they were
    assert len(load(journal, "ident").trials) == 1
    assert len(child_runs(uri, parent)) == 1
    assert "space.model.keep_prob" not in MlflowClient(uri).get_run(parent).data.params
    # a moved range and a dropped key are changes too
    with pytest.raises(ConfigError, match=r"sweep.params.model.depth: range\(1, 6\) -> "
                                          r"range\(1, 3\); sweep.params.model.width removed "
                                          r"\(was tag\(log, int\(interval\(4, 128\)\)\)\)"):
        sweep_job(compose("sweep.name=ident", "++sweep.params.model.depth='range(1, 3)'",
                          "++sweep.params.model.width=null"))
    # the suggested name is a study of its own
    assert sweep_job(compose("sweep.name=ident-keep_prob", "sweep.n_trials=1",
                             "sweep.pruner=none", KEEP_PROB)) == 0
    assert "model.keep_prob" in load(journal, "ident-keep_prob").trials[0].params


@pytest.mark.parametrize("change,said", [
    ("sweep.objective=train_cost", "objective: val_cost -> train_cost"),
    ("sweep.direction=maximize", "direction: minimize -> maximize"),
])
def test_a_changed_objective_or_direction_is_refused(sweep_env, change: str, said: str) -> None:
    compose, journal, _ = sweep_env
    assert sweep_job(compose("sweep.name=obj", "sweep.n_trials=1", "sweep.pruner=none")) == 0
    with pytest.raises(ConfigError, match=rf"study 'obj' was made with .*\({said}\)"):
        sweep_job(compose("sweep.name=obj", "sweep.n_trials=2", change))
    assert len(load(journal, "obj").trials) == 1


def test_raising_n_trials_resumes_and_updates_the_parent_run(sweep_env) -> None:
    compose, journal, uri = sweep_env
    assert sweep_job(compose("sweep.name=more", "sweep.n_trials=2", "sweep.pruner=none")) == 0
    parent = load(journal, "more").user_attrs[TrialAttr.PARENT_RUN_ID]
    client = MlflowClient(uri)
    assert client.get_run(parent).data.tags["sweeplab.sweep.n_trials"] == "2"
    # another sampler is no change of identity either: only the space and objective are
    assert sweep_job(compose("sweep.name=more", "sweep.n_trials=3", "sweep.pruner=none",
                             "sweep.sampler=random")) == 0
    assert len(load(journal, "more").trials) == 3
    run = client.get_run(parent)
    assert run.data.tags["sweeplab.sweep.n_trials"] == "3"
    assert run.data.tags["sweeplab.sweep.sampler"] == "random"
    assert run.data.tags["sweeplab.sampler"] == "random"
    # the settings a resume may change are not params, which MLflow cannot change
    assert "sweep.n_trials" not in run.data.params
    assert run.data.params["sweep.name"] == "more"
    assert run.data.params["space.model.depth"] == "range(1, 6)"
    config = Path(client.download_artifacts(parent, "sweep_config.yaml")).read_text()
    assert "n_trials: 3" in config and "sampler: random" in config  # this session's


def test_a_study_made_before_identities_were_kept_is_judged_by_its_trials(sweep_env) -> None:
    """A study an older sweeplab made (no identity recorded) is adopted when its trials were
    drawn from this space, and refused when not; Optuna's directions are checked too."""
    import optuna
    from optuna.trial import create_trial

    from sweeplab.sweep import study as st
    from sweeplab.sweep.space import parse_space

    compose, journal, _ = sweep_env
    cfg = compose("sweep.name=old", "sweep.n_trials=2", "sweep.pruner=none")
    base = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "sweep"])
    space = parse_space(cfg.sweep.params, base)
    params = {"model.depth": 2, "model.width": 8, "optim.lr": 0.01}
    storage = st.open_storage(journal)
    for name, direction, dists in (("old", "minimize", space),
                                   ("older", "minimize", {"model.depth": space["model.depth"]}),
                                   ("flipped", "maximize", space)):
        study = optuna.create_study(study_name=name, storage=storage, direction=direction)
        study.add_trial(create_trial(params={k: params[k] for k in dists}, distributions=dists,
                                     value=0.5))

    assert sweep_job(cfg) == 0  # the same space: adopted, one more trial
    adopted = load(journal, "old")
    assert len(adopted.trials) == 2 and TrialAttr.IDENTITY in adopted.user_attrs
    with pytest.raises(ConfigError, match=r"study 'older' .*sweep.params.model.width added"):
        sweep_job(compose("sweep.name=older", "sweep.n_trials=2", "sweep.pruner=none"))
    with pytest.raises(ConfigError, match=r"study 'flipped' .*direction: maximize -> minimize"):
        sweep_job(compose("sweep.name=flipped", "sweep.n_trials=2", "sweep.pruner=none"))
    assert len(load(journal, "older").trials) == len(load(journal, "flipped").trials) == 1


# -- the progress bar --------------------------------------------------------------------------

def test_the_progress_bar_shows_the_running_best(in_data_cache: Path) -> None:
    import optuna
    from optuna.distributions import IntDistribution
    from optuna.trial import create_trial

    from sweeplab.sweep.report import TrialPrinter

    def trial(value: float | None, depth: int):
        return create_trial(value=value, params={"model.depth": depth},
                            distributions={"model.depth": IntDistribution(1, 5)},
                            state=TrialState.COMPLETE if value is not None
                            else TrialState.PRUNED)

    s = to_config(compose_config(*FAST, "sweep.n_trials=5", config_name="sweep_app")).sweep
    study = optuna.create_study(direction="minimize")
    study.add_trial(trial(None, 1))  # pruned: not a best
    printer = TrialPrinter(study, s, already=1, bar=True)
    try:
        assert "best" not in str(printer.bar)
        study.add_trial(trial(0.5, 2))
        study.add_trial(trial(0.25, 3))
        study.add_trial(trial(0.75, 4))
        printer.poll()
        assert "4/5" in str(printer.bar) and "best val_cost=0.25 (trial 2)" in str(printer.bar)
        study.add_trial(trial(0.125, 5))
        printer.poll()
        assert "best val_cost=0.125 (trial 4)" in str(printer.bar)
    finally:
        printer.close()
    # a resumed sweep shows its best from the start; several objectives: the Pareto front
    multi = to_config(compose_config(*FAST, "sweep.objectives=[val_cost,n_params]",
                                     "sweep.directions=[minimize,minimize]",
                                     config_name="sweep_app")).sweep
    front = optuna.create_study(directions=["minimize", "minimize"])
    for values in ([0.2, 30], [0.1, 60], [0.3, 90]):
        front.add_trial(create_trial(values=values, params={}, distributions={}))
    printer = TrialPrinter(front, multi, already=3, bar=True)
    try:
        assert "Pareto front: 2 trials" in str(printer.bar)
    finally:
        printer.close()


def test_off_a_terminal_the_trials_lines_are_printed_without_the_bar(
        in_data_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`make sweep > sweep.log 2>&1` filled the log with the bar's carriage-return frames."""
    import optuna
    from optuna.distributions import IntDistribution
    from optuna.trial import create_trial

    from sweeplab.sweep.report import TrialPrinter

    s = to_config(compose_config(*FAST, "sweep.n_trials=3", config_name="sweep_app")).sweep
    study = optuna.create_study(direction="minimize")
    printer = TrialPrinter(study, s, already=0)  # pytest's captured stderr: no terminal
    study.add_trial(create_trial(value=0.5, params={"model.depth": 2},
                                 distributions={"model.depth": IntDistribution(1, 5)}))
    printer.poll()
    printer.close()
    out, err = capsys.readouterr()
    assert "trial   0" in out and "depth=2" in out
    assert "\r" not in out + err and "trial/s" not in err


# -- the registered champion ------------------------------------------------------------------

def test_the_champion_says_which_study_value_and_parent_run_it_came_from(sweep_env) -> None:
    compose, journal, uri = sweep_env
    assert sweep_job(compose("sweep.name=crowned", "sweep.n_trials=1", "sweep.pruner=none",
                             "tracking.log_model=true", "sweep.register_model=crowned-model")) == 0
    study = load(journal, "crowned")
    best = study.best_trial
    parent = study.user_attrs[TrialAttr.PARENT_RUN_ID]
    version = MlflowClient(uri).get_model_version_by_alias("crowned-model", "champion")
    assert version.run_id == best.user_attrs[TrialAttr.RUN_ID]
    text = version.description
    assert text.startswith(f"The best trial of Optuna study `crowned`: trial {best.number} (")
    assert f"val_cost {best.values[0]:.4g}" in text
    # a link the UI follows from the model's page, whatever its host and port
    experiment = MlflowClient(uri).get_run(parent).info.experiment_id
    assert f"the sweep's parent run: [{parent}](#/experiments/{experiment}/runs/{parent}?" \
        in text
    assert version.tags == {"sweeplab.study": "crowned",
                            "sweeplab.trial_number": str(best.number)}


def test_view_keys_of_two_sweeps_never_meet() -> None:
    """`a b`, `a.b` and `a-b` shared one saved view: the link printed for one showed
    another's trials."""
    from sweeplab.sweep.view import VIEW_TAG, view_key

    keys = [view_key(n) for n in ("a-b", "a b", "a.b", "a/b")]
    assert keys[0] == "sweeplab-a-b" and len(set(keys)) == 4
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", k) for k in keys)
    assert len(VIEW_TAG + view_key("ü" * 200)) <= 250  # MLflow's cap on a tag's key
