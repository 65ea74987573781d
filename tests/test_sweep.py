"""make sweep: search spaces, trial bookkeeping in Optuna and MLflow, pruning, failures,
parallel workers, resume after SIGKILL, the registered champion model.

Sweeps run on small data with few epochs, in a temporary MLflow store and journal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from helpers import compose_config, use_mlflow_store
from sweeplab.config import ConfigError
from sweeplab.names import Tag, TrialAttr
from sweeplab.sweep import study as st
from sweeplab.sweep.controller import sweep_job
from sweeplab.sweep.space import parse_space

FAST = ["sweep.confirm.top_k=0",  # no confirmation stage: trials only
        "data=moons", "data.n_samples=200", "train.epochs=12", "train.log_every=3",
        "train.batch_size=null", "tracking.log_model=false", "tracking.log_plots=false",
        "sweep.register_model=null",
        # rates that learn: a trial that does not is a failure (not_learning, its own test)
        "++sweep.params.optim.lr='tag(log, interval(1e-3, 0.05))'"]


@pytest.fixture
def sweep_env(in_data_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(compose, journal URL, MLflow URI) for one sweep test in temporary stores."""
    uri = use_mlflow_store(tmp_path, monkeypatch)
    journal = f"journal:{tmp_path / 'optuna.journal'}"

    def compose(*overrides: str):
        return compose_config(*FAST, f"sweep.storage={journal}", *overrides,
                              config_name="sweep_app")

    return compose, journal, uri


def only(cfg, params: dict[str, str]):
    """`cfg` with exactly this search space (the command line can only add to or null out
    keys of the default one)."""
    from omegaconf import OmegaConf

    cfg.sweep.params = OmegaConf.create(params)
    return cfg


def load(journal: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=st.open_storage(journal))


def child_runs(uri: str, parent: str) -> list:
    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps, f"tags.mlflow.parentRunId = '{parent}'", max_results=500)


# -- search space ------------------------------------------------------------------------

def test_search_space_reads_hydras_grammar(compose) -> None:
    base = compose("data=moons")
    space = parse_space({
        "model.depth": "range(1, 6)",
        "model.width": "tag(log, int(interval(4, 128)))",
        "optim.lr": "tag(log, interval(1e-4, 1.0))",
        "model.activation": "choice(relu, tanh)",
        "model.keep_prob": "interval(0.5, 1.0)",
    }, base)
    assert space["model.depth"] == IntDistribution(1, 5)
    assert space["model.width"] == IntDistribution(4, 128, log=True)
    assert space["optim.lr"] == FloatDistribution(1e-4, 1.0, log=True)
    assert space["model.activation"] == CategoricalDistribution(["relu", "tanh"])
    assert space["model.keep_prob"] == FloatDistribution(0.5, 1.0)


@pytest.mark.parametrize("params,message", [
    ({"model.dpth": "range(1, 3)"}, "sweep.params.model.dpth: no such config key"),
    ({"model.depth": "range(1, "}, "does not parse"),
    ({"model.depth": "3"}, "not a search space"),
    ({"model.activation": "choice(relu, gelu)"}, "reaches 'gelu'"),
    ({"optim.lr": "interval(0, 1)"}, "optim.lr"),
    ({"optim.lr": "interval(1, 0.1)"}, r"sweep.params.optim.lr='interval\(1, 0.1\)': "
                                       r"`low <= high` must hold"),
    ({"model": "choice(a, b)"}, "no such config key"),
    # every key dropped with null: the trials were all the same run
    ({"model.depth": None, "optim.lr": None}, r"sweep.params is empty \(every key in it "
                                              r"is null\)"),
    # OmegaConf's message over four lines, saying nothing of what to do instead
    ({"model.hidden": "choice([4],[8,8])"}, r"model.hidden holds a list, .* search what "
                                            r"the list is made of instead \(model.depth "
                                            r"and model.width"),
])
def test_bad_search_space_names_the_key(compose, params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_space(params, compose())
    assert "\n" not in str(err.value)


def test_a_conditional_space_over_the_optimizer_and_its_keys_parses(compose) -> None:
    """beta matters under momentum only: a trial of Adam carries one all the same, which a
    check of keys the optimizer ignores must not refuse (it failed trial 1 of the sweep)."""
    space = parse_space({"optim.name": "choice(adam, momentum)",
                         "optim.beta": "interval(0.8, 0.99)"}, compose())
    assert space["optim.beta"] == FloatDistribution(0.8, 0.99)


def test_params_from_the_command_line_add_override_and_drop(compose) -> None:
    from sweeplab.sweep.space import flat_params

    cfg = compose("+sweep.params.model.keep_prob='interval(0.5, 1.0)'",
                  "++sweep.params.optim.lr='choice(0.1, 0.01)'",
                  "++sweep.params.model.depth=null", config_name="sweep_app")
    flat = flat_params(cfg.sweep.params)
    assert flat == {"model.width": "tag(log, int(interval(4, 128)))",
                    "optim.lr": "choice(0.1, 0.01)",
                    "model.keep_prob": "interval(0.5, 1.0)"}


def test_search_space_expressions_on_the_command_line_need_no_quotes() -> None:
    from sweeplab.cli.common import quote_space_overrides

    argv = ["sweeplab.sweep", "+sweep.params.model.keep_prob=interval(0.5, 1.0)",
            "++sweep.params.model.depth='range(1, 3)'", "~sweep.params.optim.lr",
            "++sweep.params.model.width=null", "sweep.params.x=choice('a', b)",
            "sweep.n_trials=3", "model.depth=2"]
    assert quote_space_overrides(argv) == [
        "sweeplab.sweep", "+sweep.params.model.keep_prob='interval(0.5, 1.0)'",
        "++sweep.params.model.depth='range(1, 3)'", "~sweep.params.optim.lr",
        "++sweep.params.model.width=null", "sweep.params.x=\"choice('a', b)\"",
        "sweep.n_trials=3", "model.depth=2"]


def test_bad_space_fails_before_any_trial(sweep_env) -> None:
    compose, journal, uri = sweep_env
    cfg = compose("sweep.name=bad", "+sweep.params.model.nope='range(1,3)'")
    with pytest.raises(ConfigError, match=r"model\.nope"):
        sweep_job(cfg)
    with pytest.raises(KeyError):  # no study was created
        load(journal, "bad")
    assert not [r for e in MlflowClient(uri).search_experiments()
                for r in MlflowClient(uri).search_runs([e.experiment_id])]


def test_bad_override_fails_before_any_trial(tmp_path: Path, data_cache: Path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    for override, key in [("sweep.sampler=bayes", "sweep.sampler"),
                          ("sweep.objective=test_accuracy", "test set is never an objective"),
                          ("sweep.n_trials=0", "sweep.n_trials"),
                          # unquoted, as `make sweep ARGS="...='range(1, 3)'"` passes it on
                          ("+sweep.params.model.nope=range(1, 3)", "model.nope")]:
        proc = subprocess.run([sys.executable, "-m", "sweeplab.sweep", *FAST, override,
                               f"sweep.storage=journal:{tmp_path / 'j.journal'}"],
                              cwd=data_cache, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert key in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "j.journal").exists()


# -- a sweep in Optuna and MLflow ----------------------------------------------------------

def test_trials_agree_between_optuna_and_mlflow(sweep_env) -> None:
    compose, journal, uri = sweep_env
    # learning rates that learn: a trial that does not is failed (its own test)
    assert sweep_job(only(compose("sweep.name=agree", "sweep.n_trials=5", "sweep.pruner=none"),
                          {"model.depth": "range(1, 6)", "model.width": "int(interval(4, 64))",
                           "optim.lr": "tag(log, interval(1e-3, 0.05))"})) == 0
    study = load(journal, "agree")
    assert len(study.trials) == 5
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    parent = study.user_attrs[TrialAttr.PARENT_RUN_ID]
    runs = child_runs(uri, parent)
    assert len(runs) == 5
    by_number = {int(r.data.tags["sweeplab.trial_number"]): r for r in runs}
    assert sorted(by_number) == [t.number for t in study.trials]
    for t in study.trials:
        run = by_number[t.number]
        assert run.info.run_id == t.user_attrs[TrialAttr.RUN_ID]
        assert run.data.tags["sweeplab.trial_state"] == "COMPLETE"
        assert run.info.status == "FINISHED"
        # the trial's params are the run's params, and its value the run's final val_cost
        for key, value in t.params.items():
            assert run.data.params[key] == str(value)
        assert run.data.metrics["final_val_cost"] == pytest.approx(t.values[0])
    client = MlflowClient(uri)
    parent_run = client.get_run(parent)
    assert parent_run.info.status == "FINISHED"
    assert parent_run.data.params["sweep.objective"] == "val_cost"  # fixed with the study
    assert parent_run.data.tags["sweeplab.sweep.sampler"] == "tpe"  # may change on resume
    assert parent_run.data.params["space.model.depth"] == "range(1, 6)"
    best = min(study.trials, key=lambda t: t.values[0])
    assert parent_run.data.metrics["best_val_cost"] == pytest.approx(best.values[0])
    assert parent_run.data.tags["sweeplab.best_trial"] == str(best.number)
    arts = {a.path for a in client.list_artifacts(parent)}
    assert {"trials.csv", "trials.md", "sweep_config.yaml", "search_space.yaml"} <= arts
    csv_text = Path(client.download_artifacts(parent, "trials.csv")).read_text()
    assert len(csv_text.strip().splitlines()) == 1 + 5


def test_sweep_plots_are_logged(sweep_env) -> None:
    compose, _, uri = sweep_env
    assert sweep_job(compose("sweep.name=plots", "sweep.n_trials=4", "sweep.pruner=none")) == 0
    client = MlflowClient(uri)
    parent = client.search_runs([client.get_experiment_by_name("sweeplab").experiment_id],
                                "tags.`sweeplab.role` = 'sweep'")[0].info.run_id
    plots = {a.path for a in client.list_artifacts(parent, "plots")}
    for name in ("optimization_history", "parallel_coordinate", "param_importances",
                 "objective_vs_model.depth", "objective_vs_model.width",
                 "objective_vs_optim.lr"):
        assert f"plots/{name}.png" in plots, plots
    assert "plots/study.html" in plots  # Optuna's interactive plotly plots
    png = Path(client.download_artifacts(parent, "plots/optimization_history.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# a whole sweep or bench run: the slow suite (make test stays under 10 minutes)
@pytest.mark.slow
def test_resume_runs_only_the_missing_trials(sweep_env) -> None:
    compose, journal, uri = sweep_env
    sweep_job(compose("sweep.name=resume", "sweep.n_trials=3", "sweep.pruner=none"))
    first = load(journal, "resume")
    parent = first.user_attrs[TrialAttr.PARENT_RUN_ID]
    sweep_job(compose("sweep.name=resume", "sweep.n_trials=5", "sweep.pruner=none"))
    study = load(journal, "resume")
    assert len(study.trials) == 5
    assert study.user_attrs[TrialAttr.PARENT_RUN_ID] == parent  # the same parent run, reused
    assert len(child_runs(uri, parent)) == 5
    # running it again with the total reached starts nothing
    sweep_job(compose("sweep.name=resume", "sweep.n_trials=5", "sweep.pruner=none"))
    assert len(load(journal, "resume").trials) == 5


def test_aggressive_pruner_prunes_and_mlflow_says_so(sweep_env) -> None:
    compose, journal, uri = sweep_env
    sweep_job(compose("sweep.name=prune", "sweep.n_trials=8", "sweep.pruner=median",
                      "+sweep.pruner_args.n_startup_trials=1",
                      "+sweep.pruner_args.n_warmup_steps=0", "train.epochs=30",
                      "sweep.sampler=random"))
    study = load(journal, "prune")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, [t.state for t in study.trials]
    runs = {r.info.run_id: r for r in child_runs(uri, study.user_attrs[TrialAttr.PARENT_RUN_ID])}
    for t in pruned:
        run = runs[t.user_attrs[TrialAttr.RUN_ID]]
        assert run.data.tags["sweeplab.status"] == "pruned"
        assert run.data.tags["sweeplab.trial_state"] == "PRUNED"
        assert run.info.status == "KILLED"
        stopped = int(run.data.tags["sweeplab.pruned_at_epoch"])
        assert stopped < 29 and stopped == t.user_attrs["pruned_at_epoch"]
        assert max(t.intermediate_values) == stopped


def test_diverging_trials_are_recorded_and_the_sweep_goes_on(sweep_env) -> None:
    # The costs are computed in the stable form, so it takes a learning rate that
    # overflows the weights to make the cost NaN.
    compose, journal, uri = sweep_env
    code = sweep_job(only(compose("sweep.name=diverge", "sweep.n_trials=4",
                                  "sweep.pruner=none", "optim=gd", "sweep.sampler=random",
                                  "sweep.max_failure_rate=1.0"),
                          {"optim.lr": "choice(1e300, 0.1)"}))
    assert code == 0
    study = load(journal, "diverge")
    states = Counter((t.params["optim.lr"], t.state) for t in study.trials)
    assert states[(1e300, TrialState.FAIL)] >= 1
    assert states[(0.1, TrialState.COMPLETE)] >= 1
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs[TrialAttr.STATUS] == "diverged" for t in failed)
    assert all("epoch" in t.user_attrs[TrialAttr.REASON] for t in failed)
    runs = {r.info.run_id: r for r in child_runs(uri, study.user_attrs[TrialAttr.PARENT_RUN_ID])}
    for t in failed:
        assert runs[t.user_attrs[TrialAttr.RUN_ID]].info.status == "FAILED"


def test_max_failure_rate_stops_a_sweep_that_only_fails(sweep_env) -> None:
    compose, journal, _ = sweep_env
    sweep_job(only(compose("sweep.name=allfail", "sweep.n_trials=20", "sweep.pruner=none",
                           "optim=gd", "sweep.max_failure_rate=0.5",
                           "sweep.min_trials_for_failure_rate=3"),
                   {"optim.lr": "tag(log, interval(1e250, 1e300))"}))
    study = load(journal, "allfail")
    assert 3 <= len(study.trials) < 20
    assert all(t.state == TrialState.FAIL for t in study.trials)


def test_a_training_runs_config_given_to_the_sweep_is_refused(compose) -> None:
    """`python -m sweeplab.sweep --experimental-rerun <a training run's config.pickle>`:
    an AssertionError traceback."""
    with pytest.raises(ConfigError, match=r"no sweep section: it is a training run's"):
        sweep_job(compose("data=planar"))


def test_a_sweep_with_no_trial_completed_exits_1_with_its_parent_failed(
        sweep_env, capsys: pytest.CaptureFixture[str]) -> None:
    """Fewer trials than min_trials_for_failure_rate, all failed: it exited 0, parent
    FINISHED, with "no trial completed" as its only word (printed twice at its end)."""
    compose, journal, uri = sweep_env
    code = sweep_job(only(compose("sweep.name=nonedone", "sweep.n_trials=2",
                                  "sweep.pruner=none", "optim=gd"),
                          {"optim.lr": "tag(log, interval(1e250, 1e300))"}))
    assert code == 1
    study = load(journal, "nonedone")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    parent = MlflowClient(uri).get_run(study.user_attrs[TrialAttr.PARENT_RUN_ID])
    assert parent.info.status == "FAILED"
    assert parent.data.tags[Tag.STOPPED_BECAUSE].endswith("no trial completed")
    assert capsys.readouterr().out.count("no trial completed") == 1


@pytest.mark.slow
def test_champion_model_is_registered_and_predicts(sweep_env) -> None:
    import mlflow

    compose, journal, uri = sweep_env
    sweep_job(compose("sweep.name=champ", "sweep.n_trials=3", "sweep.pruner=none",
                      "tracking.log_model=true", "sweep.register_model=champ-model"))
    study = load(journal, "champ")
    best = min(study.trials, key=lambda t: t.values[0])
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("champ-model", "champion")
    assert version.run_id == best.user_attrs[TrialAttr.RUN_ID]
    model = mlflow.pyfunc.load_model("models:/champ-model@champion")
    X = np.random.default_rng(0).standard_normal((7, 2))
    labels = model.predict(X)
    assert labels.shape == (7,) and set(labels.tolist()) <= {0, 1}


# -- processes: parallel workers, SIGKILL and resume ----------------------------------------

def _sweep_cmd(journal: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "sweeplab.sweep", *FAST, f"sweep.storage={journal}",
            *overrides]


def process_stores(tmp_path: Path) -> tuple[str, str, dict[str, str]]:
    """(MLflow URI, Optuna journal URL, environment) for a sweep run as a subprocess."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, f"journal:{tmp_path / 'optuna.journal'}", {**os.environ,
                                                           "MLFLOW_TRACKING_URI": uri}


def wait_mid_trial(journal: str, name: str, done: int, proc: subprocess.Popen | None = None,
                   seconds: float = 300) -> None:
    """Return once study `name` has `done` trials finished and one training (asked, all
    its parameters drawn and claimed by its controller). Fails at once if `proc` (the
    sweep) ends first. Trials must train for seconds: the journal is polled, and a trial
    shorter than a poll can be missed."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        time.sleep(0.3)
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep ended (exit {proc.returncode}) before study "
                                 f"{name} had {done} trials done and one running")
        try:
            study = load(journal, name)
        except KeyError:  # the study does not exist yet
            continue
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if st.tally(study).done >= done and len(running) == 1 \
                and TrialAttr.CONTROLLER in running[0].user_attrs:
            return
    raise AssertionError(f"study {name} never had {done} trials done and one running")


@pytest.mark.slow
def test_two_workers_complete_exactly_n_trials(tmp_path: Path, data_cache: Path) -> None:
    uri, journal, env = process_stores(tmp_path)
    proc = subprocess.run(_sweep_cmd(journal, "sweep.name=par", "sweep.n_trials=10",
                                     "sweep.n_jobs=2", "tracking.log_model=true"),
                          cwd=data_cache, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "database is locked" not in proc.stderr + proc.stdout
    # Dask says nothing (its nannies' "still alive after 4 s, killing" at the end included)
    assert "distributed." not in proc.stderr + proc.stdout
    study = load(journal, "par")
    assert len(study.trials) == 10
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    # both Dask workers ran trials; the controller ran none itself
    assert {t.user_attrs[TrialAttr.WORKER] for t in study.trials} == {"0", "1"}
    runs = child_runs(uri, study.user_attrs[TrialAttr.PARENT_RUN_ID])
    assert sorted(int(r.data.tags["sweeplab.trial_number"]) for r in runs) == list(range(10))


# a whole sweep or bench run: the slow suite (make test stays under 10 minutes)
@pytest.mark.slow
def test_a_trial_killed_before_it_recorded_its_process_is_retried(sweep_env) -> None:
    """A controller killed between asking for a trial and recording itself on it leaves a
    RUNNING trial nobody owns: the next start must queue it again, not count it as
    running."""
    compose, journal, _ = sweep_env
    assert sweep_job(compose("sweep.name=gap", "sweep.n_trials=2")) == 0
    load(journal, "gap").ask()  # the kill came right after this write
    assert sweep_job(compose("sweep.name=gap", "sweep.n_trials=4")) == 0
    study = load(journal, "gap")
    assert Counter(t.state for t in study.trials) == {
        TrialState.COMPLETE: 4, TrialState.FAIL: 1}
    orphan = study.trials[2]
    assert orphan.state == TrialState.FAIL
    assert st.status_of(orphan) == "interrupted"
    assert [t.user_attrs.get(TrialAttr.RETRY_OF) for t in study.trials[3:]] == [2, None]


@pytest.mark.slow
def test_sigkilled_sweep_resumes_without_losing_or_doubling(tmp_path: Path,
                                                           data_cache: Path) -> None:
    uri, journal, env = process_stores(tmp_path)
    # trials of seconds (4000 epochs): one of 400 could start and end between two polls
    cmd = _sweep_cmd(journal, "sweep.name=kill", "sweep.n_trials=5", "sweep.pruner=none",
                     "train.epochs=4000", "train.log_every=20")
    proc = subprocess.Popen(cmd, cwd=data_cache, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_mid_trial(journal, "kill", done=2, proc=proc)  # then kill it mid-trial
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = load(journal, "kill")
    done_before = {t.number: t.params for t in before.trials
                   if t.state == TrialState.COMPLETE}
    assert 2 <= len(done_before) < 5
    assert any(t.state == TrialState.RUNNING for t in before.trials)

    again = subprocess.run(cmd, cwd=data_cache, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "interrupted trial(s) queued again" in again.stdout
    study = load(journal, "kill")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 5
    for number, params in done_before.items():  # nothing finished was lost or redone
        assert study.trials[number].state == TrialState.COMPLETE
        assert study.trials[number].params == params
    interrupted = [t for t in study.trials if st.status_of(t) == "interrupted"]
    assert len(interrupted) == 1
    retried = [t for t in complete if t.user_attrs.get(TrialAttr.RETRY_OF) == interrupted[0].number]
    assert len(retried) == 1 and retried[0].params == interrupted[0].params
    runs = child_runs(uri, study.user_attrs[TrialAttr.PARENT_RUN_ID])
    finished = Counter(r.data.tags["sweeplab.trial_number"] for r in runs
                       if r.info.status == "FINISHED")
    assert sorted(int(n) for n in finished) == sorted(t.number for t in complete)
    assert max(finished.values()) == 1  # no duplicate child runs
    assert not [r for r in runs if r.info.status == "RUNNING"]  # the orphan was closed


# -- more of what a sweep promises ------------------------------------------------------------

# the default in the fast suite; the others in the slow one (14 s each, for make test's 10 min)
@pytest.mark.parametrize("sampler", ["tpe", *(pytest.param(name, marks=pytest.mark.slow)
                                             for name in ("random", "cmaes", "qmc", "grid",
                                                          "nsgaii"))])
def test_every_sampler_runs(sweep_env, sampler: str) -> None:
    compose, journal, uri = sweep_env
    cfg = compose(f"sweep.name=s-{sampler}", "sweep.n_trials=3", "sweep.pruner=none",
                  f"sweep.sampler={sampler}", "train.epochs=3")
    if sampler == "grid":  # grid search needs a discrete space
        cfg = only(cfg, {"model.depth": "range(1, 3)", "model.activation": "choice(relu, tanh)"})
    else:  # rates that learn in 3 epochs (a trial that does not is failed, not complete)
        cfg.sweep.params["optim.lr"] = "tag(log, interval(1e-3, 1e-2))"
    assert sweep_job(cfg) == 0
    study = load(journal, f"s-{sampler}")
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 3, \
        [(t.params, t.user_attrs.get(TrialAttr.REASON)) for t in study.trials]
    parent = MlflowClient(uri).get_run(study.user_attrs[TrialAttr.PARENT_RUN_ID])
    assert parent.data.tags["sweeplab.sampler"] == sampler
    if sampler == "grid":  # three distinct points of the 2 x 2 grid
        points = {(t.params["model.depth"], t.params["model.activation"]) for t in study.trials}
        assert len(points) == 3
        assert points <= {(d, a) for d in (1, 2) for a in ("relu", "tanh")}


def test_gp_sampler_without_torch_says_what_to_install(sweep_env, monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_torch(name: str, *a, **k):  # type: ignore[no-untyped-def]
        if name == "torch":
            raise ImportError("no torch here")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    compose, journal, _ = sweep_env
    with pytest.raises(ConfigError, match=r"sweep.sampler='gp'.*PyTorch.*\[gp\]"):
        sweep_job(compose("sweep.name=gp", "sweep.sampler=gp"))
    with pytest.raises(KeyError):
        load(journal, "gp")


def test_multi_objective_reports_the_pareto_front(sweep_env, capsys) -> None:
    compose, journal, uri = sweep_env
    code = sweep_job(compose("sweep.name=multi", "sweep.n_trials=6",
                             "sweep.objectives=[val_accuracy,n_params]",
                             "sweep.directions=[maximize,minimize]", "sweep.sampler=random"))
    assert code == 0
    study = load(journal, "multi")
    assert len(study.directions) == 2
    front = {t.number for t in study.best_trials}
    # No trial on the front is dominated by another completed trial.
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    for t in done:
        dominated = any(o.values[0] >= t.values[0] and o.values[1] <= t.values[1]
                        and o.values != t.values for o in done)
        assert (t.number in front) == (not dominated)
    out = capsys.readouterr().out
    assert "Pareto front by val_accuracy/n_params" in out
    assert "test_accuracy=" in out  # no confirmation stage after a multi-objective search
    for n in front:
        assert f"trial {n:>3}" in out
    client = MlflowClient(uri)
    parent = study.user_attrs[TrialAttr.PARENT_RUN_ID]
    plots = {a.path for a in client.list_artifacts(parent, "plots")}
    assert "plots/pareto_front.png" in plots
    # n_params really is the network's parameter count
    for t in done:
        run = client.get_run(t.user_attrs[TrialAttr.RUN_ID])
        assert t.values[1] == float(run.data.tags["sweeplab.n_params"])


def test_a_trial_with_an_invalid_config_stops_the_sweep(sweep_env, monkeypatch) -> None:
    compose, journal, _ = sweep_env
    from sweeplab.sweep import worker as trial_module

    real = trial_module._with_params

    def corrupt(typed_base, params, run_name):  # type: ignore[no-untyped-def]
        typed = real(typed_base, params, run_name)
        typed.model.width = 0  # what a config bug in a trial looks like
        trial_module.validate(typed)
        return typed

    monkeypatch.setattr(trial_module, "_with_params", corrupt)
    code = sweep_job(compose("sweep.name=broken", "sweep.n_trials=5"))
    assert code == 2
    study = load(journal, "broken")
    assert len(study.trials) == 1  # it stopped at once
    assert "model.width" in study.trials[0].user_attrs[TrialAttr.REASON]


# a whole sweep or bench run: the slow suite (make test stays under 10 minutes)
@pytest.mark.slow
def test_a_better_trial_in_a_resumed_sweep_moves_the_champion(sweep_env) -> None:
    compose, journal, uri = sweep_env
    common = ["sweep.name=alias", "sweep.pruner=none", "tracking.log_model=true",
              "sweep.register_model=alias-model", "optim=gd"]
    space = {"optim.lr": "tag(log, interval(1e-5, 0.5))"}
    sweep_job(only(compose(*common, "sweep.n_trials=1"), space))
    client = MlflowClient(uri)
    first = client.get_model_version_by_alias("alias-model", "champion")
    # A study keeps its space (tests/test_sweep_study.py): a point known to be good is
    # queued in it, as a researcher can with Optuna's enqueue_trial.
    load(journal, "alias").enqueue_trial({"optim.lr": 0.5})
    sweep_job(only(compose(*common, "sweep.n_trials=2"), space))
    study = load(journal, "alias")
    best = min(study.trials, key=lambda t: t.values[0])
    assert study.trials[0].params["optim.lr"] < 0.1
    assert best.number == 1  # lr 0.5 learns most in 12 epochs
    second = client.get_model_version_by_alias("alias-model", "champion")
    assert second.run_id == best.user_attrs[TrialAttr.RUN_ID] != first.run_id
    assert int(second.version) == int(first.version) + 1


def test_resuming_with_a_changed_choice_list_fails_before_any_trial(sweep_env) -> None:
    compose, journal, _ = sweep_env
    sweep_job(only(compose("sweep.name=space", "sweep.n_trials=1", "sweep.pruner=none"),
                   {"model.activation": "choice(relu, tanh)"}))
    with pytest.raises(ConfigError, match=r"study 'space' was made with another search space.*"
                                          r"sweep.params.model.activation: choice\(relu, tanh\)"
                                          r" -> choice\(relu, sigmoid\)"):
        sweep_job(only(compose("sweep.name=space", "sweep.n_trials=3"),
                       {"model.activation": "choice(relu, sigmoid)"}))
    assert len(load(journal, "space").trials) == 1


@pytest.mark.slow
def test_ctrl_c_writes_the_summary_and_the_sweep_resumes(tmp_path: Path,
                                                         data_cache: Path) -> None:
    uri, journal, env = process_stores(tmp_path)
    cmd = _sweep_cmd(journal, "sweep.name=ctrlc", "sweep.n_trials=3", "sweep.pruner=none",
                     "train.epochs=4000", "train.log_every=20")
    proc = subprocess.Popen(cmd, cwd=data_cache, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_mid_trial(journal, "ctrlc", done=1, proc=proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted (Ctrl-C)" in out
    study = load(journal, "ctrlc")
    client = MlflowClient(uri)
    parent = client.get_run(study.user_attrs[TrialAttr.PARENT_RUN_ID])
    assert parent.info.status == "KILLED"
    assert "trials.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "Ctrl-C" in parent.data.tags["sweeplab.stopped_because"]
    again = subprocess.run(cmd, cwd=data_cache, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    study = load(journal, "ctrlc")
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 3


@pytest.mark.slow
def test_trial_lines_reach_a_redirected_stdout_while_the_sweep_runs(tmp_path: Path,
                                                                    data_cache: Path) -> None:
    """`make sweep > sweep.log` (or a cluster job's log): each finished trial's line is in
    the file as soon as the trial is recorded (while the next one trains), not only once
    the sweep exits."""
    _, journal, env = process_stores(tmp_path)
    cmd = _sweep_cmd(journal, "sweep.name=logfile", "sweep.n_trials=4", "sweep.pruner=none",
                     "train.epochs=8000", "train.log_every=20")
    log = tmp_path / "sweep.log"
    # Python's own buffering (not PYTHONUNBUFFERED's), without tqdm's bar (its redraws
    # happen to flush stdout)
    env = {**{k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}, "TQDM_DISABLE": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=data_cache, env=env, stdout=out,
                                stderr=subprocess.DEVNULL)
    try:
        wait_mid_trial(journal, "logfile", done=1, proc=proc)
        while True:  # trial 0's line, read while trial 1 still trains
            done = st.tally(load(journal, "logfile")).done  # before the file is read
            text = log.read_text()
            assert done < 2, f"trial 0's line was not in the file before trial 1 ended:\n{text}"
            if re.search(r"^trial +0 ", text, re.MULTILINE):
                break
            assert proc.poll() is None, f"the sweep ended early:\n{text}"
            time.sleep(0.2)
    finally:  # Ctrl-C: the sweep stops its trial and its writer process itself
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def test_each_study_registers_its_own_model_by_default(compose) -> None:
    from sweeplab.config import to_config

    cfg = to_config(compose("sweep.name=mine", config_name="sweep_app"))
    assert cfg.sweep is not None and cfg.sweep.register_model == "sweeplab-mine"


def ctrl_c_at_trials_params(monkeypatch: pytest.MonkeyPatch, n: int) -> list[str]:
    """Send this process Ctrl-C inside the MLflow write of the `n`th trial's parameters;
    the run ids of the trials whose parameters were written, in order."""
    original = MlflowClient.log_batch
    hits: list[str] = []

    def log_batch(self, run_id, metrics=(), params=(), tags=(), **kw):
        if params and any(p.key == "model.width" for p in params):
            hits.append(run_id)
            if len(hits) == n:
                os.kill(os.getpid(), signal.SIGINT)
        return original(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
    return hits


def test_ctrl_c_inside_an_mlflow_write_lets_the_write_finish(sweep_env, monkeypatch) -> None:
    """Ctrl-C lands inside a trial's first MLflow write (sweep.writer=inline: the trial logs
    itself): the write completes (an SQLite transaction cut there could lock the store for
    the summary), the trial stops at its next log point, is marked KILLED, queued again,
    and the summary is written."""
    compose, journal, uri = sweep_env
    hits = ctrl_c_at_trials_params(monkeypatch, 2)
    code = sweep_job(compose("sweep.name=mid", "sweep.n_trials=4", "sweep.pruner=none",
                             "train.epochs=60", "train.log_every=5", "sweep.writer=inline"))
    assert code == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    client = MlflowClient(uri)
    killed = client.get_run(hits[1])
    assert "model.width" in killed.data.params  # the interrupted write went through
    assert killed.info.status == "KILLED"
    assert killed.data.tags["sweeplab.status"] == "interrupted"
    study = load(journal, "mid")
    assert Counter(t.state for t in study.trials) == {
        TrialState.COMPLETE: 1, TrialState.FAIL: 1, TrialState.WAITING: 1}
    assert study.trials[1].user_attrs[TrialAttr.STATUS] == "interrupted"
    assert study.trials[2].user_attrs[TrialAttr.RETRY_OF] == 1
    parent = client.get_run(study.user_attrs[TrialAttr.PARENT_RUN_ID])
    assert parent.info.status == "KILLED"
    assert "Ctrl-C" in parent.data.tags["sweeplab.stopped_because"]


@pytest.mark.parametrize("stage", ["search", "confirmation"])
def test_a_sweep_stopped_early_registers_no_model_and_its_resume_does(
        sweep_env, monkeypatch, capsys, stage: str) -> None:
    """Ctrl-C at the third run's start, in the search (two trials done) or in the
    confirmation stage (its first replicate): the registry is left alone (the champion is
    what the whole sweep finds, confirmed), the summary says so; the same command resumes
    and registers the champion: the search's best, or the confirmation's best replicate."""
    compose, journal, uri = sweep_env
    common = ["sweep.name=early", "sweep.pruner=none", "train.epochs=60",
              "sweep.writer=inline", "tracking.log_model=true",
              "sweep.register_model=early-model",
              *(["sweep.n_trials=3"] if stage == "search" else
                ["sweep.n_trials=2", "sweep.confirm.top_k=1", "sweep.confirm.seeds=2"])]
    with monkeypatch.context() as m:
        starts = ctrl_c_at_trials_params(m, 3)
        assert sweep_job(compose(*common)) == 130
    assert len(starts) == 3
    out = capsys.readouterr().out
    assert "no model registered: the sweep stopped before its end" in out
    assert "best model registered" not in out
    client = MlflowClient(uri)
    assert client.search_registered_models(filter_string="name = 'early-model'") == []
    assert sweep_job(compose(*common)) == 0
    out = capsys.readouterr().out
    assert "best model registered: models:/early-model@champion (version 1)" in out
    champion = client.get_model_version_by_alias("early-model", "champion")
    study = load(journal, "early")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == (3 if stage == "search" else 2)
    if stage == "search":
        best = min(complete, key=lambda t: t.values[0])
        assert champion.run_id == best.user_attrs[TrialAttr.RUN_ID]
    else:  # a replicate's run, not a search trial's
        assert client.get_run(champion.run_id).data.tags[Tag.ROLE] == "confirm"
        assert champion.run_id not in {t.user_attrs[TrialAttr.RUN_ID] for t in complete}


def test_a_sweep_that_crashes_leaves_its_parent_failed_and_registers_nothing(
        sweep_env, monkeypatch) -> None:
    """An unforeseen error after the search (here in the confirmation stage) propagates;
    the parent run says FAILED and why, not FINISHED, and no model is registered."""
    import sweeplab.sweep.controller as controller

    compose, journal, uri = sweep_env

    def confirm_sweep(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(controller, "confirm_sweep", confirm_sweep)
    with pytest.raises(RuntimeError, match="boom"):
        sweep_job(compose("sweep.name=crash", "sweep.n_trials=2", "sweep.pruner=none",
                          "tracking.log_model=true", "sweep.register_model=crash-model"))
    client = MlflowClient(uri)
    parent = client.get_run(load(journal, "crash").user_attrs[TrialAttr.PARENT_RUN_ID])
    assert parent.info.status == "FAILED"
    assert parent.data.tags["sweeplab.stopped_because"] == "stopped on RuntimeError: boom"
    assert client.search_registered_models(filter_string="name = 'crash-model'") == []


def test_a_second_ctrl_c_interrupts_at_once() -> None:
    from sweeplab.train.interrupt import deferred_interrupt

    previous = signal.getsignal(signal.SIGINT)
    with deferred_interrupt() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler runs; nothing is raised yet
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            stop.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is previous


def test_a_seed_searched_sweep_draws_each_trials_own_split_and_reruns(sweep_env, capsys) -> None:
    """The seed draws the validation split: a worker's data cache must not hand a later
    trial the split of an earlier trial with another seed (the cache once keyed on data
    config alone), and each trial's rerun must then find the data it logged."""
    from sweeplab import train
    from sweeplab.cli import rerun
    from sweeplab.config import to_config

    compose, journal, uri = sweep_env
    cfg = only(compose("sweep.name=seeds", "sweep.n_trials=4", "sweep.pruner=none",
                       "sweep.sampler=grid", "data.val_fraction=0.25"),
               {"seed": "choice(1, 2, 3, 4)"})
    assert sweep_job(cfg) == 0
    study = load(journal, "seeds")
    runs = child_runs(uri, study.user_attrs[TrialAttr.PARENT_RUN_ID])
    assert sorted(int(r.data.params["seed"]) for r in runs) == [1, 2, 3, 4]
    for r in runs:
        # what the run logged is the split its own seed draws
        want = train.load_data(to_config(compose(f"seed={r.data.params['seed']}",
                                                 "data.val_fraction=0.25"))).fingerprint
        assert r.data.tags["sweeplab.data_fingerprint"] == want
    assert len({r.data.tags["sweeplab.data_fingerprint"] for r in runs}) == 4
    capsys.readouterr()
    last = max(runs, key=lambda r: int(r.data.tags["sweeplab.trial_number"]))
    assert rerun.main([last.info.run_id]) == 0, capsys.readouterr().out
    assert "identical" in capsys.readouterr().out


def test_a_grid_sweep_stops_when_its_grid_is_done(sweep_env) -> None:
    """Optuna's grid sampler calls study.stop() after the last point, which raises outside
    Study.optimize: the sweep must end cleanly with every point tried once."""
    compose, journal, _ = sweep_env
    cfg = only(compose("sweep.name=grid", "sweep.n_trials=10", "sweep.pruner=none",
                       "sweep.sampler=grid"), {"model.depth": "range(1, 3)"})
    assert sweep_job(cfg) == 0
    study = load(journal, "grid")
    assert sorted(t.params["model.depth"] for t in study.trials) == [1, 2]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


@pytest.mark.slow
def test_a_dask_worker_killed_mid_trial_has_its_trial_queued_again(tmp_path: Path,
                                                                  data_cache: Path) -> None:
    """SIGKILL one of the local cluster's worker processes while both train: its trial is
    failed as interrupted and retried with the same parameters, its MLflow run is closed
    with the reason, the other worker goes on, and exactly n_trials finish."""
    import psutil

    uri, journal, env = process_stores(tmp_path)
    # reports go to the pruner (so the test sees trials training), which prunes nothing;
    # two trials, so that when both train neither worker is between trials (where the
    # killed one's next trial may not have its run yet: CI saw it)
    cmd = _sweep_cmd(journal, "sweep.name=wkill", "sweep.n_trials=2",
                     "+sweep.pruner_args.n_startup_trials=100", "sweep.n_jobs=2",
                     # trials that train for many seconds: a worker's first trial spends
                     # some seconds starting (imports, its run), and 2000 epochs (3 s of
                     # training) could end before the other worker's trial reported (CI saw it)
                     "data.n_samples=1000", "train.epochs=8000", "train.log_every=50")
    proc = subprocess.Popen(cmd, cwd=data_cache, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_mid_trial_any(journal, "wkill", running=2, proc=proc)
        # the local workers: forked by multiprocessing's fork server, which has them as
        # its children (executors.start_local_cluster), and run nothing below them
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "multiprocessing.forkserver" in " ".join(p.cmdline())
                   and p.children() == []]
        assert len(workers) >= 2, [p.cmdline() for p in workers]
        workers[0].kill()
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    study = load(journal, "wkill")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2
    lost = [t for t in study.trials if st.status_of(t) == "interrupted"]
    assert len(lost) == 1
    retry = [t for t in study.trials if t.user_attrs.get(TrialAttr.RETRY_OF) == lost[0].number]
    assert len(retry) == 1 and retry[0].params == lost[0].params
    assert retry[0].user_attrs[TrialAttr.RETRY_REASON] == "its Dask worker died"
    runs = child_runs(uri, study.user_attrs[TrialAttr.PARENT_RUN_ID])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    killed = [r for r in runs if r.data.tags["sweeplab.trial_number"] == str(lost[0].number)]
    assert [r.info.status for r in killed] == ["KILLED"]
    assert killed[0].data.tags["sweeplab.reason"] == "its Dask worker died"
    finished = Counter(r.data.tags["sweeplab.trial_number"] for r in runs
                       if r.info.status == "FINISHED")
    assert sorted(int(n) for n in finished) == sorted(t.number for t in complete)


def wait_mid_trial_any(journal: str, name: str, running: int, seconds: float = 240,
                       proc: subprocess.Popen | None = None) -> None:
    """Return once study `name` has `running` trials training (each reported once); fail
    at once, with the sweep's output, if its process `proc` ends first."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        time.sleep(0.2)
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the sweep ended (exit {proc.returncode}) before {running} "
                                 f"trials trained together:\n{out[-3000:]}")
        try:
            study = load(journal, name)
        except KeyError:
            continue
        training = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                    if t.intermediate_values]
        if len(training) >= running:
            return
    raise AssertionError(f"study {name} never had {running} trials training")


def test_remote_workers_with_a_local_store_fail_before_any_trial(sweep_env) -> None:
    compose, journal, _ = sweep_env
    with pytest.raises(ConfigError, match="tracking server"):
        sweep_job(compose("sweep.name=remote", "sweep.cluster=tcp://127.0.0.1:1"))
    with pytest.raises(KeyError):  # no study was created
        load(journal, "remote")


@pytest.mark.slow
def test_a_sigkilled_controller_takes_its_dask_workers_along_and_resumes(
        tmp_path: Path, data_cache: Path) -> None:
    """SIGKILL the controller alone (as a batch scheduler may): its local Dask workers stop
    too, and the same command resumes to exactly n_trials, under one parent run."""
    import psutil

    uri, journal, env = process_stores(tmp_path)
    # trials of many seconds each (as above), so that the kill lands while both train
    cmd = _sweep_cmd(journal, "sweep.name=ckill", "sweep.n_trials=5", "sweep.n_jobs=2",
                     "+sweep.pruner_args.n_startup_trials=100", "data.n_samples=1000",
                     "train.epochs=8000", "train.log_every=50")
    proc = subprocess.Popen(cmd, cwd=data_cache, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_mid_trial_any(journal, "ckill", running=2, proc=proc)
        family = psutil.Process(proc.pid).children(recursive=True)
        assert family, "the controller started no worker processes"
        proc.kill()
        proc.wait()
        _, alive = psutil.wait_procs(family, timeout=60)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = load(journal, "ckill")
    cut = sum(t.state == TrialState.RUNNING for t in before.trials)
    assert cut >= 1
    again = subprocess.run(cmd, cwd=data_cache, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{cut} interrupted trial(s) queued again" in again.stdout
    study = load(journal, "ckill")
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 5
    client = MlflowClient(uri)
    parents = client.search_runs([client.get_experiment_by_name("sweeplab").experiment_id],
                                 "tags.`sweeplab.role` = 'sweep'")
    assert len(parents) == 1
    runs = child_runs(uri, parents[0].info.run_id)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    finished = Counter(r.data.tags["sweeplab.trial_number"] for r in runs
                       if r.info.status == "FINISHED")
    assert max(finished.values()) == 1 and len(finished) == 5


def test_a_stale_journal_lock_left_by_a_killed_sweep_is_removed(sweep_env, tmp_path,
                                                                capsys) -> None:
    """A sweep SIGKILLed while it wrote the journal leaves Optuna's lock symlink behind;
    the next start must not wait on it for good."""
    compose, journal, _ = sweep_env
    path = Path(journal.removeprefix("journal:"))
    lock = path.with_name(path.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.symlink(path, lock)
    old = time.time() - 60
    os.utime(lock, (old, old), follow_symlinks=False)
    assert sweep_job(compose("sweep.name=stale", "sweep.n_trials=2")) == 0
    assert "warning: removed" in capsys.readouterr().err
    assert not os.path.lexists(lock)
    assert len(load(journal, "stale").trials) == 2


def test_a_dask_pool_sends_each_dataset_once_without_checking_configs_again(
        in_data_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """make_task names the trial's data (its DataKey); DaskPool.submit uses that name and
    checks a trial's config (to_config, ~20 ms) only to load a dataset it has not sent."""
    from omegaconf import OmegaConf

    from sweeplab.config import to_config
    from sweeplab.sweep import executors
    from sweeplab.sweep.worker import make_task
    from sweeplab.train import data_key

    cfg = compose_config(*FAST, config_name="sweep_app")
    base = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "sweep"])
    s = to_config(cfg).sweep
    tasks = [make_task(n, p, base, s, "parent") for n, p in enumerate(
        [{"model.depth": 1}, {"model.depth": 2}, {"data.val_fraction": 0.3}])]
    for task in tasks:
        assert task.data == data_key(to_config(task.config))
    assert tasks[0].data == tasks[1].data != tasks[2].data

    checks: list[int] = []

    def counted(c):  # type: ignore[no-untyped-def]
        checks.append(1)
        return to_config(c)

    class Client:
        scattered = 0

        def scatter(self, data, hash, broadcast):  # type: ignore[no-untyped-def]
            assert broadcast  # every worker a copy: one that dies takes no dataset with it
            self.scattered += 1
            return SimpleNamespace(status="finished")

        def submit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return object()

    monkeypatch.setattr(executors, "to_config", counted)
    pool = executors.DaskPool.__new__(executors.DaskPool)  # no cluster: only submit runs
    pool.client, pool.token, pool._data, pool._trials, pool._futures = Client(), "t", {}, {}, {}
    pool._attempts = {}
    for task in tasks:
        pool.submit(task, None)
    assert pool.client.scattered == 2 and len(checks) == 2  # one per dataset loaded
    assert pool.busy == 3
    # a dataset lost with the workers that held it is sent again, and only that one
    pool._data[tasks[0].data].status = "lost"
    pool.submit(tasks[1], None)
    pool.submit(tasks[2], None)
    assert pool.client.scattered == 3 and len(checks) == 3


def test_trials_on_a_cluster_log_where_the_controller_checked(
        in_data_cache: Path) -> None:
    """With the tracking server named only in the controller's $MLFLOW_TRACKING_URI, workers
    of sweep.cluster (other hosts: not this environment) are told the URI in their tasks,
    instead of logging to an mlflow.db in their own folder. Local runs keep it unset."""
    from omegaconf import OmegaConf

    from sweeplab.config import to_config
    from sweeplab.sweep.controller import pin_tracking_uri
    from sweeplab.sweep.worker import make_task

    for cluster, expected in (("tcp://127.0.0.1:8786", "http://127.0.0.1:5000"), (None, None)):
        cfg = compose_config(*FAST, config_name="sweep_app")
        cfg.sweep.cluster = cluster
        base = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "sweep"])
        s = to_config(cfg).sweep
        assert base.tracking.uri is None
        pin_tracking_uri(base, s, "http://127.0.0.1:5000")
        task = make_task(0, {"model.depth": 1}, base, s, "parent")
        assert task.config["tracking"]["uri"] == expected


@pytest.mark.parametrize("params", [
    {"model.depth": 3, "model.width": 40, "optim.lr": 0.0123},
    {"optim.lr": 1, "model.activation": "tanh", "model.keep_prob": 0.8},  # int -> float
    {"data.val_fraction": 0.3, "train.batch_size": 32, "optim.name": "momentum"},
    {"train.early_stopping.patience": 5, "seed": 7, "data.standardize": True},
    {"model.width": "16"},  # OmegaConf turns "16" into 16: left to the full path
    {"train.batch_size": None},
])
def test_a_trials_task_is_the_same_on_the_fast_path_as_through_omegaconf(
        in_data_cache: Path, params: dict) -> None:
    """make_task with the sweep's typed base (the controller's path) gives the config, the
    data key and the run name that the whole OmegaConf merge and check give."""
    from omegaconf import OmegaConf

    from sweeplab.config import to_config
    from sweeplab.sweep.worker import make_task

    cfg = compose_config(*FAST, config_name="sweep_app")
    base = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "sweep"])
    s = to_config(cfg).sweep
    slow = make_task(4, params, base, s, "parent")
    fast = make_task(4, params, base, s, "parent", typed_base=to_config(base))
    assert fast == slow
    assert leaves(fast.config) == leaves(slow.config)  # types too: 1 == 1.0 above
    assert fast.config["tracking"]["run_name"].startswith("trial 4: ")
    for key, value in params.items():
        node = fast.config
        for part in key.split("."):
            node = node[part]
        assert node == (16 if value == "16" else value)


def leaves(node: Any, path: str = "") -> list[tuple[str, type, Any]]:
    """Every leaf of a nested dict as (dotted key, type, value)."""
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in leaves(v, f"{path}{k}.")]
    return [(path, type(node), node)]


@pytest.mark.parametrize("params", [{"model.keep_prob": 1.5}, {"optim.name": "nosuch"},
                                    {"model.depth": -1}])
def test_a_trial_with_an_invalid_value_fails_alike_on_both_paths(
        in_data_cache: Path, params: dict) -> None:
    from omegaconf import OmegaConf

    from sweeplab.config import to_config
    from sweeplab.sweep.worker import make_task

    cfg = compose_config(*FAST, config_name="sweep_app")
    base = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "sweep"])
    s = to_config(cfg).sweep
    with pytest.raises(ConfigError) as slow:
        make_task(0, params, base, s, "parent")
    with pytest.raises(ConfigError) as fast:
        make_task(0, params, base, s, "parent", typed_base=to_config(base))
    assert str(fast.value) == str(slow.value)
    assert next(iter(params)) in str(fast.value)


def test_a_sweep_that_cannot_learn_fails_and_crowns_no_champion(sweep_env) -> None:
    """optim.lr 50..100: every trial trains to the end at a cost above the untrained
    network's. Each is failed as not learning (MLflow FAILED), the failure rate stops the
    sweep with exit code 1, its parent run is FAILED, and no model is registered."""
    compose, journal, uri = sweep_env
    code = sweep_job(only(compose("sweep.name=nolearn", "sweep.n_trials=10",
                                  "sweep.pruner=none", "train.batch_size=32",
                                  "train.epochs=30", "sweep.register_model=nolearn-model",
                                  "tracking.log_model=true", "sweep.max_failure_rate=0.5",
                                  "sweep.min_trials_for_failure_rate=3"),
                          {"optim.lr": "interval(50, 100)"}))
    assert code == 1
    study = load(journal, "nolearn")
    assert 3 <= len(study.trials) < 10
    assert all(t.state == TrialState.FAIL for t in study.trials)
    assert {t.user_attrs[TrialAttr.STATUS] for t in study.trials} == {"not_learning"}
    assert all("untrained" in t.user_attrs[TrialAttr.REASON] for t in study.trials)
    client = MlflowClient(uri)
    parent = client.get_run(study.user_attrs[TrialAttr.PARENT_RUN_ID])
    assert parent.info.status == "FAILED"
    assert "failed" in parent.data.tags["sweeplab.stopped_because"]
    runs = child_runs(uri, parent.info.run_id)
    assert {(r.info.status, r.data.tags["sweeplab.status"]) for r in runs} == \
        {("FAILED", "not_learning")}
    assert client.search_registered_models(filter_string="name = 'nolearn-model'") == []


def test_a_sweep_given_tracking_uri_registers_its_champion_in_that_store(
        in_data_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's registry looks a models:/ source up in the process-wide store, not the
    client's: a sweep whose tracking.uri differs from it ($MLFLOW_TRACKING_URI here) failed
    to register its champion, after making a store of its own there."""
    elsewhere = tmp_path / "elsewhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{elsewhere}")
    uri = f"sqlite:///{tmp_path / 'given.db'}"
    cfg = compose_config(*[o for o in FAST if not o.startswith("sweep.register_model")],
                         f"tracking.uri={uri}", "tracking.log_model=true",
                         f"sweep.storage=journal:{tmp_path / 'optuna.journal'}",
                         "sweep.name=given", "sweep.n_trials=2",
                         "sweep.register_model=given-model", config_name="sweep_app")
    assert sweep_job(cfg) == 0
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("given-model", "champion")
    trials = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                f"tags.`{Tag.ROLE}` = 'trial'")
    assert version.run_id in {r.info.run_id for r in trials}
    assert not elsewhere.exists()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_claim_counts_only_while_its_process_lives_and_is_the_same_one() -> None:
    """Another live controller's claim refuses this one; a dead one's, or a claim whose pid
    now belongs to a later process, is taken over; this process's own is its own."""
    import socket

    from sweeplab.pids import started

    study = optuna.create_study(study_name="claimed")
    other = subprocess.Popen(["sleep", "60"])
    try:
        host, since = socket.gethostname(), started(other.pid)
        assert since.isdigit()
        study.set_user_attr(TrialAttr.RUN_BY, f"{host}:{other.pid}:{since}")
        with pytest.raises(ConfigError, match=rf"\(process {other.pid} on this host\)"):
            st.claim(study)
        study.set_user_attr(TrialAttr.RUN_BY, f"{host}:{other.pid}:{int(since) + 1}")
        st.claim(study)  # the pid's process started at another time: not that controller
        mine = study.user_attrs[TrialAttr.RUN_BY]
        assert mine == f"{host}:{os.getpid()}:{started(os.getpid())}"
        st.claim(study)  # its own claim again: still its own
        study.set_user_attr(TrialAttr.RUN_BY, f"{host}:{other.pid}:{since}")
    finally:
        other.kill()
        other.wait()
    st.claim(study)  # the claimant is gone
    st.release(study)
    assert study.user_attrs[TrialAttr.RUN_BY] == ""
    study.set_user_attr(TrialAttr.RUN_BY, f"elsewhere:{other.pid}:{since}")
    st.claim(study)  # another host's pid means nothing here
