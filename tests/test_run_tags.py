"""Runs that can be told apart and filtered (issue 14, item 9): the seed in a run's name when
it is not the default, Hydra's choices of config groups as tags (``sweeplab.experiment``,
``sweeplab.data``, ...), and the jobs of one Hydra multirun (``-m``) tagged as one group.

The commands run in this process through their Hydra apps (`sweeplab.cli.train.main`,
`sweeplab.cli.sweep.main`, as `python -m` runs them), into temporary stores; what they
logged is read back with MlflowClient.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import compose_config, use_mlflow_store
from sweeplab.cli import sweep as sweep_cli
from sweeplab.cli import train as train_cli
from sweeplab.config import to_config
from sweeplab.train import describe

# In the slow suite (make test-slow, run by CI): every test here runs whole commands or sweeps.
pytestmark = pytest.mark.slow

SMALL = ["data=moons", "data.n_samples=200", "train.epochs=6", "train.log_every=3",
         "train.batch_size=null", "train.progress=false", "tracking.log_model=false",
         "tracking.log_plots=false"]


def runs(uri: str) -> list:
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name("sweeplab").experiment_id])


def run_app(main, monkeypatch: pytest.MonkeyPatch, *argv: str) -> None:
    """Run a command's Hydra app in this process with `argv`, as its script would."""
    monkeypatch.setattr(sys, "argv", ["sweeplab", *argv])
    try:
        main()
    except SystemExit as err:  # Hydra's apps end a multirun, or an error, with one
        assert not err.code, f"the command exited with {err.code}"


def test_a_seed_other_than_the_default_is_in_the_run_name(in_data_cache: Path) -> None:
    default = describe(to_config(compose_config(*SMALL)))
    assert "seed" not in default
    assert describe(to_config(compose_config(*SMALL, "seed=7"))) == f"{default} seed7"


def test_a_network_without_hidden_layers_is_named_d0() -> None:
    """model.hidden=[] was named `digits h adam ...`; depth 0 `d0w32`, its width unused."""
    for overrides in (["model.hidden=[]"], ["model.depth=0"]):
        assert describe(to_config(compose_config(*SMALL, *overrides))).split()[1] == "d0"
    assert describe(to_config(compose_config(*SMALL, "model.hidden=[5,3]"))).split()[1] == \
        "h5-3"


def test_train_tags_hydras_choices_and_a_multirun_as_one_group(
        in_data_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        empty_mlflow_db: Path) -> None:
    """`python -m sweeplab.train -m experiment=course_2layer data=moons seed=1,5`: both runs
    say which preset, data and optimiser Hydra chose, share the multirun's tag, and are
    named apart by their seed."""
    uri = use_mlflow_store(tmp_path, monkeypatch, empty_mlflow_db)
    run_app(train_cli.main, monkeypatch, "-m", "experiment=course_2layer", *SMALL,
            "data.val_fraction=0", "seed=1,5")
    logged = runs(uri)
    assert len(logged) == 2
    tags = [r.data.tags for r in logged]
    for t in tags:
        assert t["sweeplab.experiment"] == "course_2layer"
        assert t["sweeplab.data"] == "moons" and t["sweeplab.optim"] == "gd"
        assert t["sweeplab.model"] == "default"
        assert not any(k.startswith("sweeplab.hydra") for k in t)
    assert tags[0]["sweeplab.multirun"] == tags[1]["sweeplab.multirun"]
    assert tags[0]["sweeplab.multirun"].startswith("multirun/")
    assert sorted(t["sweeplab.multirun_job"] for t in tags) == ["0", "1"]
    names = sorted(r.info.run_name for r in logged)
    assert names == ["moons h7 gd lr0.0075", "moons h7 gd lr0.0075 seed5"]


def test_a_single_run_has_no_multirun_tag_and_no_empty_preset(
        in_data_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        empty_mlflow_db: Path) -> None:
    uri = use_mlflow_store(tmp_path, monkeypatch, empty_mlflow_db)
    run_app(train_cli.main, monkeypatch, *SMALL)
    [run] = runs(uri)
    assert run.data.tags["sweeplab.data"] == "moons"
    assert "sweeplab.experiment" not in run.data.tags  # no preset chosen
    assert "sweeplab.multirun" not in run.data.tags


def test_a_sweep_tags_its_parent_and_its_trials_with_hydras_choices(
        in_data_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        empty_mlflow_db: Path) -> None:
    uri = use_mlflow_store(tmp_path, monkeypatch, empty_mlflow_db)
    run_app(sweep_cli.main, monkeypatch, *SMALL, "optim=momentum", "sweep.n_trials=2",
            "sweep.register_model=null", "sweep.confirm.top_k=0", "sweep.pruner=none",
            f"sweep.storage=journal:{tmp_path / 'optuna.journal'}",
            "++sweep.params.optim.lr=tag(log, interval(1e-3, 0.05))")
    logged = runs(uri)
    roles = sorted(r.data.tags["sweeplab.role"] for r in logged)
    assert roles == ["sweep", "trial", "trial"]
    for r in logged:
        assert r.data.tags["sweeplab.optim"] == "momentum", r.info.run_name
        assert r.data.tags["sweeplab.sweep"] == "default"
        assert r.data.tags["sweeplab.data"] == "moons"
