"""The confirmation stage after a sweep: the top configurations retrained across seeds,
their statistics on the parent run, the champion by best mean with a paired test, resume.

Each sweep is a grid over two configurations on 200 moons, full batch, in temporary
stores; everything is read back through MlflowClient. A sweep costs 15-60 s here (the
store, the plots, the replicates), so those tests are marked slow.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from helpers import compose_config, use_mlflow_store
from sweeplab.cli import rerun
from sweeplab.config import ConfigError, to_config
from sweeplab.names import Metric, MlflowTag, Role, Tag, confirm_metric
from sweeplab.sweep.confirm import (
    Candidate,
    close_replicate_runs,
    config_hash,
    missing,
    replicate_seeds,
)
from sweeplab.sweep.confirmed import analyse, table
from sweeplab.sweep.controller import sweep_job
from sweeplab.sweep.stats import describe, paired
from sweeplab.sweep.worker import close_trial_runs

BASE = ["data=moons", "data.n_samples=200", "train.batch_size=null", "train.epochs=60",
        "train.log_every=20", "model.depth=1", "optim=adam", "optim.lr=0.05",
        "tracking.log_model=false", "tracking.log_plots=false", "sweep.register_model=null",
        "sweep.sampler=grid", "sweep.pruner=none", "sweep.n_trials=2", "sweep.writer=inline"]


@pytest.fixture
def confirm_env(in_data_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(compose, MLflow URI) for one sweep with a confirmation stage, in temporary stores."""
    uri = use_mlflow_store(tmp_path, monkeypatch)
    journal = f"journal:{tmp_path / 'optuna.journal'}"

    def compose(params: dict[str, str], *overrides: str):
        cfg = compose_config(*BASE, f"sweep.storage={journal}", *overrides,
                             config_name="sweep_app")
        cfg.sweep.params = OmegaConf.create(params)  # exactly this space
        return cfg

    return compose, uri


def _parent(client: MlflowClient, name: str):
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, f"tags.`{Tag.ROLE}` = '{Role.SWEEP}' and "
                                    f"tags.`{Tag.STUDY}` = '{name}'")
    assert len(runs) == 1
    return runs[0]


def _replicates(client: MlflowClient, parent) -> list:
    return client.search_runs(
        [parent.info.experiment_id], f"tags.`{MlflowTag.PARENT_RUN_ID}` = "
        f"'{parent.info.run_id}' and tags.`{Tag.ROLE}` = '{Role.CONFIRM}'", max_results=500)


@pytest.mark.slow
def test_clearly_different_configs_give_a_tiny_p_value_and_the_right_champion(
        confirm_env, capsys) -> None:
    compose, uri = confirm_env
    # one hidden unit cannot bend around the moons; 32 can
    cfg = compose({"model.width": "choice(1, 32)"}, "sweep.name=widths",
                  "sweep.confirm.top_k=2", "sweep.confirm.seeds=5",
                  "tracking.log_model=true", "sweep.register_model=confirmed-widths")
    assert sweep_job(cfg) == 0
    out = capsys.readouterr().out
    client = MlflowClient(uri)
    parent = _parent(client, "widths")
    reps = _replicates(client, parent)
    assert len(reps) == 10  # 2 configurations x 5 seeds
    by_trial: dict[str, list] = {}
    for r in reps:
        assert r.info.status == "FINISHED"
        by_trial.setdefault(r.data.tags[Tag.TRIAL_NUMBER], []).append(r)
    assert len(by_trial) == 2
    widths = {}
    for trial, runs in by_trial.items():
        assert sorted(int(r.data.tags[Tag.REPLICATE]) for r in runs) == [1, 2, 3, 4, 5]
        assert len({r.data.tags[Tag.CONFIG_HASH] for r in runs}) == 1  # one group per config
        # the run seeds: the search's (1) + 1..5, never the search's own
        assert sorted(int(r.data.params["seed"]) for r in runs) == replicate_seeds(1, 5)
        widths[trial] = {r.data.params["model.width"] for r in runs}.pop()
    wide = next(t for t, w in widths.items() if w == "32")
    m, tags = parent.data.metrics, parent.data.tags
    assert tags[Tag.CONFIRM_CHAMPION] == wide
    assert m[confirm_metric(None, "champion_trial")] == float(wide)
    assert m[confirm_metric(None, "p_value")] < 0.01
    assert m[confirm_metric(None, "mean_diff")] < 0  # the champion's val_cost is lower
    assert "significantly better" in tags[Tag.CONFIRM_VERDICT]
    assert "not significantly" not in tags[Tag.CONFIRM_VERDICT]
    # what this confirmation covered: the champion first, the run seeds
    assert tags[Tag.CONFIRM_TRIALS].split(",")[0] == wide
    assert sorted(tags[Tag.CONFIRM_TRIALS].split(",")) == sorted(by_trial)
    assert tags[Tag.CONFIRM_SEEDS] == ",".join(map(str, replicate_seeds(1, 5)))
    for trial in by_trial:
        assert m[confirm_metric(int(trial), "n")] == 5
        for metric in (Metric.VAL_COST, Metric.VAL_ACCURACY):
            lo, mean, hi = (m[confirm_metric(int(trial), s, metric)]
                            for s in ("ci_low", "mean", "ci_high"))
            assert lo <= mean <= hi
    # the mean is the mean of the replicates' objective, as logged on each
    wide_runs = by_trial[wide]
    assert m[confirm_metric(int(wide), "mean", Metric.VAL_COST)] == pytest.approx(
        sum(r.data.metrics[Metric.OBJECTIVE] for r in wide_runs) / 5)
    assert confirm_metric(None, "mean", Metric.TEST_ACCURACY) in m
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "confirm.md" in artifacts
    assert "confirm.png" in {a.path.rsplit("/", 1)[-1]
                             for a in client.list_artifacts(parent.info.run_id, "plots")}
    # the registered model: the champion's best replicate, described with its statistics
    version = client.get_model_version_by_alias("confirmed-widths", "champion")
    best = min(wide_runs, key=lambda r: r.data.metrics[Metric.OBJECTIVE])
    assert version.run_id == best.info.run_id
    assert version.description.startswith("The confirmed champion of Optuna study `widths`")
    assert "mean ± 95% CI" in version.description
    assert (f"parent run: [{parent.info.run_id}](#/experiments/{parent.info.experiment_id}"
            f"/runs/{parent.info.run_id}?") in version.description
    assert "Test accuracy of the champion" in version.description
    assert "confirmed (5 seeds each" in out and f"trial {wide} is significantly better" in out
    # the test set's one figure in the terminal is the champion's, once it is chosen
    assert "test_accuracy=" not in out and "Test accuracy of the champion" in out
    # the parent's std is the replicates' sample standard deviation; confirm.md lists both
    import statistics
    assert m[confirm_metric(int(wide), "std", Metric.VAL_COST)] == pytest.approx(
        statistics.stdev(r.data.metrics[Metric.OBJECTIVE] for r in wide_runs))
    md = client.download_artifacts(parent.info.run_id, "confirm.md")
    text = Path(md).read_text()
    assert all(f"| {trial} |" in text for trial in by_trial), text


@pytest.mark.slow
def test_a_key_that_does_nothing_is_not_significant(confirm_env, capsys) -> None:
    compose, uri = confirm_env
    # log_every only changes when histories are logged (there is no pruner): the same runs
    cfg = compose({"train.log_every": "choice(20, 30)"}, "sweep.name=idle",
                  "sweep.confirm.top_k=2", "sweep.confirm.seeds=3")
    assert sweep_job(cfg) == 0
    out = capsys.readouterr().out
    client = MlflowClient(uri)
    parent = _parent(client, "idle")
    assert len(_replicates(client, parent)) == 6
    assert parent.data.metrics[confirm_metric(None, "p_value")] >= 0.05
    assert "not significantly better than trial" in parent.data.tags[Tag.CONFIRM_VERDICT]
    assert "not significantly better than trial" in out


@pytest.mark.slow
def test_resume_runs_only_the_missing_replicates(confirm_env, capsys) -> None:
    compose, uri = confirm_env
    params = {"model.width": "choice(2, 16)"}
    assert sweep_job(compose(params, "sweep.name=again", "sweep.confirm.top_k=2",
                             "sweep.confirm.seeds=2")) == 0
    client = MlflowClient(uri)
    parent = _parent(client, "again")
    first = {r.info.run_id for r in _replicates(client, parent)}
    assert len(first) == 4
    capsys.readouterr()
    # a third seed: only replicate 3 of each configuration runs
    assert sweep_job(compose(params, "sweep.name=again", "sweep.confirm.top_k=2",
                             "sweep.confirm.seeds=3")) == 0
    out = capsys.readouterr().out
    assert "4 of 6 replicates already done" in out
    reps = _replicates(client, parent)
    assert len(reps) == 6
    assert first < {r.info.run_id for r in reps}
    new = [r for r in reps if r.info.run_id not in first]
    assert sorted(r.data.tags[Tag.REPLICATE] for r in new) == ["3", "3"]
    assert Counter((r.data.tags[Tag.CONFIG_HASH], r.data.tags[Tag.REPLICATE])
                   for r in reps).most_common(1)[0][1] == 1
    # a finished confirmation runs nothing
    assert sweep_job(compose(params, "sweep.name=again", "sweep.confirm.top_k=2",
                             "sweep.confirm.seeds=3")) == 0
    assert "6 of 6 replicates already done" in capsys.readouterr().out
    assert len(_replicates(client, parent)) == 6
    # another base seed: other replicate seeds (8, 9), none of them done yet
    assert sweep_job(compose(params, "sweep.name=again", "sweep.confirm.top_k=2",
                             "sweep.confirm.seeds=2", "seed=7")) == 0
    out = capsys.readouterr().out
    assert "x 2 seeds (8, 9)" in out and "already done" not in out
    reps = _replicates(client, parent)
    assert len(reps) == 10
    assert sorted(r.data.params["seed"] for r in reps if r.info.run_id not in first
                  and r.data.tags[Tag.REPLICATE] != "3") == ["8", "8", "9", "9"]
    assert _parent(client, "again").data.tags[Tag.CONFIRM_SEEDS] == "8,9"
    assert _parent(client, "again").data.metrics[confirm_metric(None, "champion_trial")] >= 0


@pytest.mark.slow
def test_make_rerun_of_a_replicate_gives_the_same_run(confirm_env, capsys) -> None:
    """`make rerun RUN=<a replicate>` works like for any run: the replicate's own seed and
    split, the same histories point for point, a run of its own outside the sweep."""
    compose, uri = confirm_env
    assert sweep_job(compose({"model.width": "choice(2, 16)"}, "sweep.name=rerep",
                             "sweep.confirm.top_k=1", "sweep.confirm.seeds=2",
                             "tracking.log_model=true")) == 0
    client = MlflowClient(uri)
    reps = _replicates(client, _parent(client, "rerep"))
    assert len(reps) == 2
    original = max(reps, key=lambda r: int(r.data.tags[Tag.REPLICATE]))  # seed 3, not 1
    capsys.readouterr()
    assert rerun.main([original.info.run_id]) == 0
    assert "identical" in capsys.readouterr().out
    exps = [e.experiment_id for e in client.search_experiments()]
    [again] = client.search_runs(exps, f"tags.`{Tag.RERUN_OF}` = "
                                       f"'{original.info.run_id}'")
    assert again.data.tags[Tag.RERUN_IDENTICAL] == "true"
    assert again.data.params["seed"] == original.data.params["seed"] == "3"
    assert MlflowTag.PARENT_RUN_ID not in again.data.tags  # not counted as a replicate
    for key in (Metric.TRAIN_COST, Metric.VAL_COST, Metric.VAL_ACCURACY):
        a, b = ([(m.step, m.value) for m in client.get_metric_history(r.info.run_id, key)]
                for r in (original, again))
        assert len(a) >= 3 and sorted(b) == sorted(a), key
    assert len(_replicates(client, _parent(client, "rerep"))) == 2


@pytest.mark.slow
def test_top_k_zero_runs_no_replicate(confirm_env) -> None:
    compose, uri = confirm_env
    assert sweep_job(compose({"model.width": "choice(2, 16)"}, "sweep.name=off",
                             "sweep.confirm.top_k=0")) == 0
    client = MlflowClient(uri)
    parent = _parent(client, "off")
    assert _replicates(client, parent) == []
    assert Tag.CONFIRM_CHAMPION not in parent.data.tags


@pytest.mark.parametrize("override,message", [
    ("sweep.confirm.seeds=1", "sweep.confirm.seeds=1: must be an integer >= 2"),
    ("sweep.confirm.top_k=-1", "sweep.confirm.top_k=-1: must be an integer >= 0"),
])
def test_bad_confirm_settings_are_one_line_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        to_config(compose_config(override, config_name="sweep_app"))
    assert str(err.value) == f"invalid config: {message}" + str(err.value).split(message)[1]
    assert "\n" not in str(err.value)


def test_defaults_confirm_five_configurations_with_five_seeds() -> None:
    s = to_config(compose_config(config_name="sweep_app")).sweep
    assert (s.confirm.top_k, s.confirm.seeds) == (5, 5)


def test_closing_a_replicate_closes_that_replicate_alone(tmp_mlflow: str) -> None:
    """A replicate whose Dask worker died is found by its config hash and replicate number
    (its run id is known only to the dead worker): its run alone is closed, not another
    replicate of the same trial running on another worker, nor a trial's run; without
    `which` (the sweep stopping), every replicate still running is."""
    client = MlflowClient(tmp_mlflow)
    exp = client.create_experiment("close")
    parent = client.create_run(exp).info.run_id

    def child(role: str, h: str = "", rep: str = "") -> str:
        tags = {MlflowTag.PARENT_RUN_ID: parent, Tag.ROLE: role, Tag.TRIAL_NUMBER: "3"}
        if role == Role.CONFIRM:
            tags |= {Tag.CONFIG_HASH: h, Tag.REPLICATE: rep}
        return client.create_run(exp, tags=tags).info.run_id

    a1, a2, b2 = child(Role.CONFIRM, "a", "1"), child(Role.CONFIRM, "a", "2"), \
        child(Role.CONFIRM, "b", "2")
    trial = child(Role.TRIAL)
    client.set_terminated(a1, "FINISHED")
    assert close_replicate_runs(client, parent, "its Dask worker died", ("a", 2)) == 1
    status = {r: client.get_run(r).info.status for r in (a1, a2, b2, trial)}
    assert status == {a1: "FINISHED", a2: "KILLED", b2: "RUNNING", trial: "RUNNING"}
    assert client.get_run(a2).data.tags[Tag.REASON] == "its Dask worker died"
    assert close_replicate_runs(client, parent, "terminated (SIGTERM)") == 1
    status = {r: client.get_run(r).info.status for r in (a1, a2, b2, trial)}
    assert status == {a1: "FINISHED", a2: "KILLED", b2: "KILLED", trial: "RUNNING"}
    assert client.get_run(b2).data.tags[Tag.REASON] == "terminated (SIGTERM)"


def test_closing_a_trials_runs_leaves_its_replicates(tmp_mlflow: str) -> None:
    """A trial's runs are found by its number, which its confirmation replicates carry
    too: closing the trial's (its worker died, its controller was killed) closes those of
    role trial only, with any of the statuses asked for."""
    client = MlflowClient(tmp_mlflow)
    exp = client.create_experiment("close-trial")
    parent = client.create_run(exp).info.run_id

    def child(role: str, number: str = "3") -> str:
        tags = {MlflowTag.PARENT_RUN_ID: parent, Tag.ROLE: role, Tag.TRIAL_NUMBER: number}
        return client.create_run(exp, tags=tags).info.run_id

    trial, other, replicate, done = (child(Role.TRIAL), child(Role.TRIAL, "4"),
                                     child(Role.CONFIRM), child(Role.CONFIRM))
    client.set_terminated(done, "FINISHED")
    assert close_trial_runs(client, parent, 3, "its Dask worker died",
                            statuses=("RUNNING", "FINISHED")) == 1
    status = {r: client.get_run(r).info.status for r in (trial, other, replicate, done)}
    assert status == {trial: "KILLED", other: "RUNNING", replicate: "RUNNING",
                      done: "FINISHED"}
    assert client.get_run(trial).data.tags[Tag.REASON] == "its Dask worker died"


def test_missing_replicates_leave_out_the_done_ones_in_order() -> None:
    cands = _candidates((3, "a"), (7, "b"))
    todo = missing(cands, [11, 12], {("a", 2): object(), ("b", 1): object()})
    assert [(c.hash, i, seed) for c, i, seed in todo] == [("a", 1, 11), ("b", 2, 12)]


def test_config_hash_ignores_seed_and_run_name_only() -> None:
    cfg = {"seed": 1, "model": {"width": 4}, "tracking": {"run_name": "a"}}
    same = {"seed": 9, "model": {"width": 4}, "tracking": {"run_name": "b"}}
    other = {"seed": 1, "model": {"width": 5}, "tracking": {"run_name": "a"}}
    assert config_hash(cfg) == config_hash(same) != config_hash(other)


def test_statistics_match_scipy_reference_values() -> None:
    # t(0.975, 4) = 2.7764451; mean 3, sd sqrt(2.5), sem sqrt(0.5)
    s = describe([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s.n, s.mean) == (5, 3.0)
    assert s.std == pytest.approx(math.sqrt(2.5))
    assert s.ci_high - 3.0 == pytest.approx(2.7764451 * math.sqrt(0.5), rel=1e-6)
    # paired: differences 1, 2, 3 -> mean 2, t = 2 / (1 / sqrt 3) = 3.4641, df 2, p = 0.0742
    p = paired({1: 2.0, 2: 4.0, 3: 6.0}, {1: 1.0, 2: 2.0, 3: 3.0})
    assert (p.n, p.mean_diff) == (3, 2.0)
    assert p.p_value == pytest.approx(0.07418, abs=1e-4)
    assert p.ci_low < 2.0 < p.ci_high
    # identical values: no difference at all
    assert paired({1: 1.0, 2: 2.0}, {1: 1.0, 2: 2.0}).p_value == 1.0
    # the same difference on every seed: no t statistic; the sign test's p is 2 / 2**n
    same = paired({1: 0.7, 2: 0.8}, {1: 0.6, 2: 0.7})
    assert same.test == "sign test" and same.p_value == pytest.approx(0.5)
    assert math.isnan(same.ci_low) and same.mean_diff == pytest.approx(0.1)
    assert paired({i: 0.8 for i in range(5)}, {i: 0.6 for i in range(5)}).p_value \
        == pytest.approx(0.0625)
    assert p.test == "paired t-test"
    # only shared seeds count
    assert paired({1: 1.0, 2: 2.0, 3: 9.0}, {1: 1.0, 2: 2.0}).n == 2


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["process", "inline"])
def test_sigkill_during_confirmation_resumes_each_replicate_once(tmp_path: Path,
                                                                  data_cache: Path,
                                                                  writer: str) -> None:
    """The controller SIGKILLed once two replicates are FINISHED (a third one training),
    with its writer process (the default) or without: the same command runs only the
    missing replicates, and the one it killed again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    base = [o for o in BASE if not o.startswith("sweep.writer=")]
    cmd = [sys.executable, "-m", "sweeplab.sweep", *base, f"sweep.writer={writer}",
           # Replicates of seconds, longer than the writer process can lag behind the
           # controller (the plots it draws first): when MLflow shows two FINISHED, the
           # controller is still training the others, and the kill comes mid-confirmation.
           "train.epochs=20000",
           f"sweep.storage=journal:{tmp_path / 'optuna.journal'}", "sweep.name=killed",
           "++sweep.params.model.width='choice(2, 16)'", "++sweep.params.model.depth=null",
           "++sweep.params.optim.lr=null", "sweep.confirm.top_k=2", "sweep.confirm.seeds=3"]
    # the store made before the sweep starts: two processes creating one SQLite store at
    # once (this client's migrations and the sweep's) break each other's
    client = MlflowClient(uri)
    client.search_experiments(max_results=1)
    proc = subprocess.Popen(cmd, cwd=data_cache, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.3)
            try:
                parent = _parent(client, "killed")
            except Exception:  # the store or the parent run does not exist yet
                continue
            if sum(r.info.status == "FINISHED" for r in _replicates(client, parent)) >= 2:
                break
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        family = psutil.Process(proc.pid).children(recursive=True)
        assert any("spawn_main" in " ".join(p.cmdline()) for p in family) == \
            (writer == "process"), [p.cmdline() for p in family]  # the writer process
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # an orphaned writer process writes what it was handed, closes what is left open as
    # KILLED and exits: what the resume finds is what is there once it is gone
    _, alive = psutil.wait_procs(family, timeout=60)
    assert not alive, [p.cmdline() for p in alive]
    before = {r.info.run_id for r in _replicates(client, parent) if r.info.status == "FINISHED"}
    assert 2 <= len(before) < 6
    again = subprocess.run(cmd, cwd=data_cache, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    reps = _replicates(client, parent)
    finished = [r for r in reps if r.info.status == "FINISHED"]
    assert Counter((r.data.tags[Tag.CONFIG_HASH], r.data.tags[Tag.REPLICATE])
                   for r in finished) == Counter(
        {k: 1 for k in {(r.data.tags[Tag.CONFIG_HASH], r.data.tags[Tag.REPLICATE])
                        for r in finished}})
    assert len(finished) == 6 and before <= {r.info.run_id for r in finished}
    # what the kill left RUNNING was closed as KILLED, never counted
    assert all(r.info.status in ("FINISHED", "KILLED") for r in reps)
    assert f"{len(before)} of 6 replicates already done" in again.stdout


def _run(run_id: str, value: float | None, val_accuracy: float = 0.9) -> SimpleNamespace:
    """A stand-in for a replicate's MLflow run: its objective (None: failed)."""
    metrics = {} if value is None else {Metric.OBJECTIVE: value,
                                        Metric.VAL_ACCURACY: val_accuracy,
                                        Metric.TEST_ACCURACY: 0.9}
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id),
                           data=SimpleNamespace(metrics=metrics))


def _candidates(*trials: tuple[int, str]) -> list[Candidate]:
    """Candidates for (trial number, config hash) pairs."""
    return [Candidate(SimpleNamespace(number=n, params={"n": n}), h, None) for n, h in trials]


def test_a_configuration_with_a_failed_replicate_is_not_the_champion() -> None:
    """A replicate that diverged or did not learn has no objective value: its configuration
    ranks after those whose replicates all completed, however good its survivors' mean."""
    cands = _candidates((1, "lucky"), (2, "steady"))
    runs = {("lucky", 1): _run("a", 0.05), ("lucky", 2): _run("b", None),
            ("steady", 1): _run("c", 0.10), ("steady", 2): _run("d", 0.11)}
    result = analyse(cands, runs, "val_cost", "minimize", [2, 3])
    assert [k.trial for k in result.configs] == [2, 1]
    assert result.configs[1].failed == 1 and result.configs[0].failed == 0


@pytest.mark.parametrize("direction, good, bad", [("minimize", 0.1, 0.3),
                                                  ("maximize", 0.9, 0.6)])
def test_a_champion_worse_seed_for_seed_is_never_called_significantly_better(
        direction: str, good: float, bad: float) -> None:
    """The runner-up lost its rank to a failed replicate, yet beats the champion on every
    shared seed: the verdict says so, whichever way the objective goes."""
    cands = _candidates((1, "better"), (2, "worse"))
    noise = (0.0, 0.013, 0.021)
    runs = {("better", 4): _run("x", None)}
    for i, e in enumerate(noise, start=1):
        runs["better", i] = _run(f"b{i}", good + e)
        runs["worse", i] = _run(f"w{i}", bad - e / 2)
    runs["worse", 4] = _run("w4", bad)
    result = analyse(cands, runs, "val_cost", direction, [2, 3, 4, 5])
    assert [k.trial for k in result.configs] == [2, 1]
    verdict = result.verdict()
    assert result.configs[1].vs_champion.p_value < 0.05
    assert "significantly better than trial" not in verdict
    assert verdict.startswith("trial 2 ranks first only because 1 of trial 1's replicates "
                              "failed; on their shared seeds trial 1 is significantly better")


@pytest.mark.parametrize("objective, direction, columns", [
    ("val_cost", "minimize", 7), ("val_accuracy", "maximize", 6)])
def test_the_confirmed_table_shows_val_accuracy_once(objective: str, direction: str,
                                                     columns: int) -> None:
    """Beside the objective the table shows validation accuracy, unless that is the
    objective: then one column, not the same figures twice."""
    cands = _candidates((1, "one"), (2, "two"))
    runs = {("one", 1): _run("a", 0.6, 0.6), ("one", 2): _run("b", 0.7, 0.7),
            ("two", 1): _run("c", 0.8, 0.8), ("two", 2): _run("d", 0.85, 0.85)}
    lines = table(analyse(cands, runs, objective, direction, [2, 3]))
    assert [line.count("|") - 1 for line in lines] == [columns] * len(lines)
    assert lines[0].count("val_accuracy mean") == 1
