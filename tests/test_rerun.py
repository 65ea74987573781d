"""Tests of `python -m sweeplab.rerun`: a logged run reruns bit-identically, or the rerun
says why not. Originals are made in-process (train.run + MlflowTracker) in a temporary
SQLite store; `rerun.main` runs in-process; what it logged is read back with MlflowClient."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from mlflow.entities import Metric, Run
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from threadpoolctl import threadpool_limits

from helpers import use_mlflow_store
from sweeplab import train
from sweeplab.cli import rerun
from sweeplab.cli.common import absolute_config_path
from sweeplab.config import Config, to_config
from sweeplab.data.h5 import write_course_h5
from sweeplab.tracking import MlflowTracker, compare, provenance
from sweeplab.tracking.logged_run import RunError, apply_overrides
from sweeplab.train.callbacks import Callback, StopTraining

HISTORIES = ("train_cost", "val_cost", "val_accuracy")


@dataclass
class Store:
    folder: Path
    uri: str
    client: MlflowClient

    def config(self, **changes: Any) -> Config:
        """A small moons run (a second or less), with `changes` merged in by section."""
        base = {"seed": 3,
                "data": {"name": "moons", "n_samples": 200, "val_fraction": 0.25,
                         "dir": str(self.folder / "builtin")},
                "model": {"depth": 2, "width": 8, "activation": "tanh"},
                "optim": {"name": "adam", "lr": 0.02},
                "train": {"epochs": 30, "log_every": 5, "batch_size": None, "progress": False},
                "tracking": {"experiment": "rerun-tests", "log_model": False,
                             "log_plots": False}}
        # a section naming another `name` replaces the base's, as choosing a Hydra group
        # option does (a moons n_samples left under data=h5 is refused)
        for section, change in changes.items():
            if isinstance(change, dict) and change.get("name", base.get(section, {}).get(
                    "name")) != base.get(section, {}).get("name"):
                base[section] = {k: v for k, v in base[section].items() if k == "dir"}
        return to_config(OmegaConf.merge(base, changes))

    def original(self, cfg: Config, callbacks: tuple[Callback, ...] = (),
                 **tracker_args: Any) -> str:
        """Log `cfg` as `make train` would (the tracker as a context); returns the run id."""
        tracker = MlflowTracker(cfg.tracking, **tracker_args)
        with tracker:
            train.run(cfg, [tracker, *callbacks])
        assert tracker.run_id is not None
        return tracker.run_id

    def reruns_of(self, run_id: str) -> list[Run]:
        exp_ids = [e.experiment_id for e in self.client.search_experiments()]
        return self.client.search_runs(exp_ids, f"tags.`sweeplab.rerun_of` = '{run_id}'")

    def n_runs(self) -> int:
        exp_ids = [e.experiment_id for e in self.client.search_experiments()]
        return len(self.client.search_runs(exp_ids))

    def points(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path) -> Iterator[Store]:
    """One temporary store for the module; each test makes its own runs in it. Never the
    user's store: $MLFLOW_TRACKING_URI points here, which is also what `rerun.main` reads
    without --tracking-uri."""
    folder = tmp_path_factory.mktemp("rerun")
    with pytest.MonkeyPatch.context() as mp:
        uri = use_mlflow_store(folder, mp, empty_mlflow_db)
        yield Store(folder, uri, MlflowClient(uri))


def only_rerun(store: Store, run_id: str) -> Run:
    reruns = store.reruns_of(run_id)
    assert len(reruns) == 1, f"expected one rerun of {run_id}, found {len(reruns)}"
    return reruns[0]


# -- a run and its rerun are the same run ---------------------------------------------------

@pytest.mark.parametrize(("dtype", "batch_size", "keep_prob"), [
    ("float64", None, 1.0),
    ("float32", None, 1.0),
    ("float64", 32, 0.8),
    ("float32", 32, 0.8),
], ids=["f64-full", "f32-full", "f64-minibatch-dropout", "f32-minibatch-dropout"])
def test_rerun_is_bit_identical(store: Store, capsys: pytest.CaptureFixture[str], dtype: str,
                                batch_size: int | None, keep_prob: float) -> None:
    cfg = store.config(model={"dtype": dtype, "keep_prob": keep_prob},
                       train={"batch_size": batch_size})
    run_id = store.original(cfg)

    assert rerun.main([run_id]) == 0
    new = only_rerun(store, run_id)
    out = capsys.readouterr().out
    assert new.info.run_id in out and "identical" in out
    assert new.info.experiment_id == store.client.get_run(run_id).info.experiment_id
    assert new.data.tags["sweeplab.rerun_overrides"] == "[]"
    assert new.data.tags["sweeplab.rerun_identical"] == "true"
    for key in HISTORIES:
        a, b = store.points(run_id, key), store.points(new.info.run_id, key)
        assert len(a) >= 7  # steps 0, 5, ..., 25, 29 (and val_accuracy's final one)
        assert b == a, key  # exact float equality, no tolerance
    for key in ("train_accuracy", "test_accuracy", "final_train_cost", "final_test_cost"):
        assert new.data.metrics[key] == store.client.get_run(run_id).data.metrics[key]
    # The logged config is the original's: the rerun can be rerun in turn.
    params = store.client.get_run(run_id).data.params
    assert new.data.params == params


def test_rerun_goes_to_the_original_experiment(store: Store) -> None:
    run_id = store.original(store.config(tracking={"experiment": "elsewhere"}))
    assert rerun.main([run_id, "--tracking-uri", store.uri]) == 0
    new = only_rerun(store, run_id)
    assert store.client.get_experiment(new.info.experiment_id).name == "elsewhere"


def test_overrides_are_recorded_and_change_the_run(store: Store,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run_id = store.original(store.config())
    overrides = ["train.epochs=40", "optim.lr=0.05"]

    assert rerun.main([run_id, *overrides]) == 0  # different on purpose: not a failure
    new = only_rerun(store, run_id)
    assert json.loads(new.data.tags["sweeplab.rerun_overrides"]) == overrides
    assert new.data.params["train.epochs"] == "40" and new.data.params["optim.lr"] == "0.05"
    assert new.data.tags["sweeplab.rerun_identical"] == "false"
    overrides_yaml = Path(store.client.download_artifacts(
        new.info.run_id, "overrides.yaml", str(store.folder / new.info.run_id)))
    assert OmegaConf.to_object(OmegaConf.load(overrides_yaml)) == overrides
    a, b = store.points(run_id, "train_cost"), store.points(new.info.run_id, "train_cost")
    assert len(b) > len(a) and b[1] != a[1]
    assert "NOT identical (expected: overrides given)" in capsys.readouterr().out


def test_a_different_rerun_exits_1(store: Store, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The check can fail: nudge the rerun's learning rate by one ulp, inside train.run."""
    run_id = store.original(store.config())
    real_run = train.run

    def nudged(cfg: Config, *args: Any) -> train.RunResult:
        cfg.optim.lr = float(np.nextafter(cfg.optim.lr, 1.0))
        return real_run(cfg, *args)

    monkeypatch.setattr(train, "run", nudged)
    assert rerun.main([run_id]) == 1
    out = capsys.readouterr().out
    assert "NOT identical: largest difference" in out
    assert only_rerun(store, run_id).data.tags["sweeplab.rerun_identical"] == "false"


def test_blas_thread_count_is_replayed(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """A sweep worker runs with fewer BLAS threads than the default; the rerun uses the
    thread count the original recorded."""
    with threadpool_limits(1, user_api="blas"):
        run_id = store.original(store.config())
    assert store.client.get_run(run_id).data.tags["sweeplab.blas_threads"].startswith("1")
    assert rerun.main([run_id]) == 0
    assert "1 thread(s) as the original" in capsys.readouterr().out
    assert only_rerun(store, run_id).data.tags["sweeplab.blas_threads"].startswith("1")


# -- sweep trials -----------------------------------------------------------------------------

def test_rerun_of_a_sweep_trial(store: Store) -> None:
    exp_id = store.client.get_experiment_by_name("rerun-tests")
    exp = exp_id.experiment_id if exp_id else store.client.create_experiment("rerun-tests")
    parent = store.client.create_run(exp, run_name="sweep").info.run_id
    run_id = store.original(store.config(), parent_run_id=parent,
                            tags={"sweeplab.trial_number": "0"})

    assert rerun.main([run_id]) == 0
    new = only_rerun(store, run_id)
    assert "mlflow.parentRunId" not in new.data.tags  # a run of its own, not in the sweep
    assert new.info.experiment_id == exp


class PruneAt(Callback):
    """A stand-in for the sweep's pruner: stops the run at log step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_log(self, step: int, metrics: Any) -> None:
        if step == self.step:
            raise StopTraining("pruned", f"pruned at epoch {step}")


@pytest.mark.parametrize("pruner_first", [True, False])
def test_rerun_of_a_pruned_trial_stops_where_it_did(store: Store, pruner_first: bool) -> None:
    cfg = store.config()
    tracker = MlflowTracker(cfg.tracking, tags={"sweeplab.trial_number": "1"})
    callbacks = [PruneAt(10), tracker] if pruner_first else [tracker, PruneAt(10)]
    with tracker:
        train.run(cfg, callbacks)
    run_id = tracker.run_id
    assert run_id is not None

    assert rerun.main([run_id]) == 0
    new = only_rerun(store, run_id)
    assert new.data.tags["sweeplab.status"] == "pruned"
    assert new.data.tags["sweeplab.epochs_run"] == "11"
    for key in HISTORIES:
        assert store.points(new.info.run_id, key) == store.points(run_id, key)


# -- provenance -------------------------------------------------------------------------------

def h5_config(store: Store, folder: Path) -> Config:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=60) > 0).astype(np.int64)
    write_course_h5(folder / "train.h5", X, y, ["no", "yes"], "train")
    return store.config(data={"name": "h5", "dir": str(folder), "train_file": "train.h5",
                              "val_fraction": 0.2})


def test_changed_data_is_caught_before_any_run(store: Store, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = h5_config(store, tmp_path)
    run_id = store.original(cfg)
    recorded = store.client.get_run(run_id).data.tags["sweeplab.data_fingerprint"]
    with h5py.File(tmp_path / "train.h5", "r+") as f:
        f["train_set_x"][5, 1] += 1.0
    now = train.load_data(cfg).fingerprint
    assert now != recorded
    n_runs = store.n_runs()

    assert rerun.main([run_id]) == 2
    err = capsys.readouterr().err
    assert recorded in err and now in err and str(tmp_path / "train.h5") in err
    assert "--allow-data-change" in err
    assert err.startswith("error: the data changed") and err.count("\n") == 1, err  # one line
    assert store.n_runs() == n_runs  # nothing was created

    # Allowed: it reruns on today's data, warns, and (the data differs) is not identical.
    assert rerun.main([run_id, "--allow-data-change"]) == 1
    out = capsys.readouterr().out
    assert "warning:   the data changed" in out and "expected: the data changed" in out
    assert only_rerun(store, run_id).data.tags["sweeplab.data_fingerprint"] == now


def test_data_that_moved_is_found_with_a_data_dir_override(
        store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The original's data was loaded first, from where it was: data.dir=<its new folder>
    could never help (--allow-data-change neither)."""
    cfg = h5_config(store, tmp_path / "then")
    run_id = store.original(cfg)
    (tmp_path / "then").rename(tmp_path / "now")
    assert rerun.main([run_id]) == 2
    err = capsys.readouterr().err
    assert "train.h5" in err and "data.dir=<folder>" in err
    assert rerun.main([run_id, f"data.dir={tmp_path / 'now'}"]) == 0
    out = capsys.readouterr().out
    assert "the overrides find the same data" in out
    assert "identical: every compared point is bit-identical" in out
    # other data where it points: refused as the original's changed data is
    with h5py.File(tmp_path / "now" / "train.h5", "r+") as f:
        f["train_set_x"][5, 1] += 1.0
    n_runs = store.n_runs()
    assert rerun.main([run_id, f"data.dir={tmp_path / 'now'}"]) == 2
    assert "is not the data of run" in capsys.readouterr().err
    assert store.n_runs() == n_runs
    assert rerun.main([run_id, f"data.dir={tmp_path / 'now'}", "--allow-data-change"]) == 0


def test_changed_code_and_versions_are_reported(store: Store,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run_id = store.original(store.config())
    c = store.client
    c.set_tag(run_id, "sweeplab.version.numpy", "1.0.0")
    c.set_tag(run_id, "sweeplab.git_commit", "0" * 40)
    c.set_tag(run_id, "sweeplab.git_dirty", "true")
    c.log_text(run_id, "diff --git a/x b/x\n", "git_diff.patch")

    assert rerun.main([run_id]) == 0  # warnings, not errors: the run is still the same
    out = capsys.readouterr().out
    assert f"numpy 1.0.0 -> {provenance.versions()['numpy']}" in out
    now_commit = provenance.git_state()[0]
    if now_commit is not None:
        assert f"git commit {'0' * 10} -> {now_commit[:10]}" in out
    assert "dirty tree" in out and "git_diff.patch" in out


# -- errors: nothing is rerun, exit 2 ---------------------------------------------------------

def test_unknown_run(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert rerun.main(["0123456789abcdef0123456789abcdef"]) == 2
    err = capsys.readouterr().err
    assert f"no run 0123456789abcdef0123456789abcdef in {store.uri}" in err
    assert "--tracking-uri" in err


def test_a_deleted_run_is_not_rerun(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = store.original(store.config())
    store.client.delete_run(run_id)
    n_runs = store.n_runs()
    assert rerun.main([run_id]) == 2
    assert f"mlflow runs restore --run-id {run_id}" in capsys.readouterr().err
    assert store.n_runs() == n_runs


def test_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    assert rerun.main(["abc", "--tracking-uri", uri]) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()  # and none was created


@pytest.mark.parametrize(("where", "said"), [
    ("folder", "is a folder (MLflow's file store)"),
    ("nosuch://x", "cannot open the tracking store nosuch://x ("),
], ids=["folder", "unknown-scheme"])
def test_a_store_mlflow_cannot_open_is_one_line(tmp_path: Path, where: str, said: str,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder used to end in MLflow's 'maintenance mode' exception, a traceback."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = str(tmp_path / "mlruns") if where == "folder" else where
    assert rerun.main(["abc", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and "\n" not in err and err.startswith("error: ")


def test_rerun_of_a_sweeps_parent_run_names_its_best_trial(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    exp = store.client.create_experiment("a-sweep")
    parent = store.client.create_run(exp, tags={"sweeplab.role": "sweep",
                                                "sweeplab.best_run_id": "f00d"}).info.run_id
    assert rerun.main([parent]) == 2
    assert (f"run {parent} is a sweep's parent run, which trains nothing: rerun one of its "
            f"trials, the runs nested under it, e.g. its best, f00d") in capsys.readouterr().err


def test_run_not_made_by_sweeplab(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    exp = store.client.create_experiment("not-sweeplab")
    run_id = store.client.create_run(exp, tags={"team": "other"}).info.run_id
    store.client.log_text(run_id, "seed: 1\n", "config.yaml")
    assert rerun.main([run_id]) == 2
    assert f"run {run_id} was not made by sweeplab (no sweeplab.* tags)" in \
        capsys.readouterr().err


def test_run_without_config_artifact(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    exp = store.client.create_experiment("no-config")
    run_id = store.client.create_run(exp, tags={"sweeplab.status": "running"}).info.run_id
    assert rerun.main([run_id]) == 2
    assert f"run {run_id} has no config.yaml artifact" in capsys.readouterr().err


@pytest.mark.parametrize(("override", "message"), [
    ("model.colour=red", "the config has no key 'model.colour'"),
    ("model.depth=abc", "model.depth=abc"),
    ("model.depth=-1", "model.depth=-1: must be an integer >= 0"),
    ("data=planar", "'data' is a config section"),
    ("train.epochs", "expected key=value"),
    # a traceback (yaml's ParserError), then ignored yet recorded as the rerun's config
    ("model.hidden=[5,5", "its value is not YAML"),
    ("tracking.enabled=false", "a rerun is always logged beside its original"),
    ("tracking.uri=sqlite:///other.db", "--tracking-uri names the store"),
])
def test_bad_override_creates_no_run(store: Store, capsys: pytest.CaptureFixture[str],
                                     override: str, message: str) -> None:
    run_id = store.original(store.config())
    n_runs = store.n_runs()
    assert rerun.main([run_id, override]) == 2
    assert message in capsys.readouterr().err
    assert store.n_runs() == n_runs


# -- pieces -----------------------------------------------------------------------------------

def test_apply_overrides_types_values() -> None:
    logged = OmegaConf.structured(Config)
    cfg = apply_overrides(logged, ["model.hidden=[8,4]", "train.batch_size=null",
                                   "optim.lr=1e-3", "model.keep_prob=0.5"])
    assert cfg.model.hidden == [8, 4] and cfg.train.batch_size is None
    assert cfg.optim.lr == 1e-3 and cfg.model.keep_prob == 0.5
    with pytest.raises(RunError, match=re.escape("no key '+model.depth'")):
        apply_overrides(logged, ["+model.depth=3"])


def test_flags_may_follow_overrides() -> None:
    args = rerun.parse_args(["abc", "train.epochs=5", "--allow-data-change", "optim.lr=0.1"])
    assert args.run_id == "abc" and args.allow_data_change
    assert args.overrides == ["train.epochs=5", "optim.lr=0.1"]


@pytest.mark.parametrize("argv", [[], ["--tracking-uri", "sqlite:///x.db"]])
def test_a_missing_run_id_is_said_alone(argv: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """argparse said "required: run_id, key=value": the overrides are optional."""
    with pytest.raises(SystemExit) as exit_:
        rerun.parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "the run id to rerun is required" in err and "key=value" not in err.splitlines()[-1]


def metric(step: int, value: float, ts: int = 0) -> Metric:
    return Metric("m", value, ts, step)


def test_compare_points() -> None:
    a = [metric(0, 1.0), metric(5, 0.5), metric(5, 0.9, ts=1)]
    # The same points at one step in another logged order are the same history.
    same = compare.compare_points("m", a, [metric(0, 1.0), metric(5, 0.9), metric(5, 0.5, ts=2)])
    assert same.identical and same.points == 3 and same.max_abs == 0
    nudged = [metric(0, 1.0), metric(5, float(np.nextafter(0.5, 1))), metric(5, 0.9)]
    d = compare.compare_points("m", a, nudged)
    assert not d.identical and d.step == 5 and d.max_abs == pytest.approx(2 ** -53)
    assert d.original == 0.5 and d.max_rel == pytest.approx(2 ** -52)
    short = compare.compare_points("m", a, a[:1])
    assert not short.identical and "only in the original" in short.note
    nan = compare.compare_points("m", [metric(0, math.nan)], [metric(0, math.nan)])
    assert nan.identical
    assert not compare.compare_points("m", [metric(0, math.nan)], [metric(0, 1.0)]).identical
    assert compare.largest([same, short, d]) is d
    assert compare.largest([same, same]) is None


def test_relative_config_path_is_made_absolute(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["prog", "--config-path", "dl", "-cp=x", "--config-path=/abs", "-cp", "pkg://y",
            "--config-name", "config"]
    assert absolute_config_path(argv) == [
        "prog", "--config-path", str(tmp_path / "dl"), f"-cp={tmp_path / 'x'}",
        "--config-path=/abs", "-cp", "pkg://y", "--config-name", "config"]


def test_logged_config_composes_with_hydra(store: Store, tmp_path: Path) -> None:
    """`make train ARGS="--config-path <dir> --config-name config"` on a downloaded
    config.yaml: Hydra composes it (no defaults list needed) and it types back to the same
    config, overrides included."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    cfg = store.config()
    run_id = store.original(cfg)
    store.client.download_artifacts(run_id, "config.yaml", str(tmp_path))
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
            composed = compose("config", overrides=["train.epochs=7"])
    finally:
        GlobalHydra.instance().clear()
    typed = to_config(composed)
    assert typed.train.epochs == 7
    typed.train.epochs = cfg.train.epochs
    assert typed == cfg


@pytest.mark.slow
def test_train_on_a_downloaded_config(store: Store, tmp_path: Path) -> None:
    """The documented command itself, with a relative --config-path, in a subprocess."""
    import subprocess
    import sys

    run_id = store.original(store.config())
    store.client.download_artifacts(run_id, "config.yaml", str(tmp_path / "dl"))
    proc = subprocess.run(
        [sys.executable, "-m", "sweeplab.train", "--config-path", "dl", "--config-name",
         "config", "train.epochs=3", "tracking.enabled=false",
         f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "finished after 3 epochs" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "sweeplab.train", "--config-path", "dl", "--config-name",
         "config", "model.depth=abc", f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "model.depth" in bad.stderr


def test_a_config_logged_before_first_layer_existed_reruns_in_the_direct_form(
        store: Store) -> None:
    from sweeplab.tracking.logged_run import logged_config

    run_id = store.original(store.config())
    run = store.client.get_run(run_id)
    logged = logged_config(store.client, run)
    assert logged.train.first_layer == "auto"  # what today's runs log
    old = OmegaConf.to_container(logged)
    del old["train"]["first_layer"]  # type: ignore[index, union-attr]
    exp = store.client.create_experiment("before-first-layer")
    old_id = store.client.create_run(exp, tags={"sweeplab.status": "finished"}).info.run_id
    store.client.log_text(old_id, OmegaConf.to_yaml(old), "config.yaml")
    again = logged_config(store.client, store.client.get_run(old_id))
    assert again.train.first_layer == "direct"
    assert again.train.epochs == logged.train.epochs


def test_a_config_artifact_that_is_not_yaml_is_one_line(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """config.yaml edited or damaged after it was logged: one line, nothing rerun."""
    exp = store.client.create_experiment("bad-yaml")
    run_id = store.client.create_run(exp, tags={"sweeplab.status": "finished"}).info.run_id
    store.client.log_text(run_id, "model: {depth: [1,\n", "config.yaml")
    assert rerun.main([run_id]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"run {run_id}: its config.yaml artifact is not valid YAML" in lines[0]


def test_rerun_of_a_run_that_did_not_learn_is_identical_without_a_warning(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """A not_learning run trained its whole history: its rerun replays it, same status."""
    run_id = store.original(store.config(optim={"lr": 50.0}, train={"batch_size": 32}))
    assert store.client.get_run(run_id).data.tags["sweeplab.status"] == "not_learning"
    capsys.readouterr()
    assert rerun.main([run_id]) == 0
    out = capsys.readouterr()
    assert "identical" in out.out
    assert "may be partial" not in out.out + out.err
    new = only_rerun(store, run_id)
    assert new.data.tags["sweeplab.status"] == "not_learning"
    assert new.info.status == "FAILED"


# -- a rerun with overrides: the two runs side by side (issue 14, item 7) -----------------------

def test_a_rerun_with_overrides_shows_both_runs_side_by_side(
        store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """`make rerun RUN=... ARGS="train.epochs=40"`: the changed config key, both runs' final
    metrics with their values, and the histories at the steps both logged."""
    run_id = store.original(store.config())
    capsys.readouterr()
    assert rerun.main([run_id, "train.epochs=40"]) == 0
    out = capsys.readouterr().out
    new = only_rerun(store, run_id).info.run_id
    assert "config, original -> rerun:\n  train.epochs: 30 -> 40\n" in out
    a = store.client.get_run(run_id).data.metrics
    b = store.client.get_run(new).data.metrics
    for key in ("train_accuracy", "test_accuracy", "final_train_cost", "final_val_cost"):
        [row] = [line.split() for line in out.splitlines() if line.split()[:1] == [key]]
        assert row[1:3] == [f"{a[key]:.6g}", f"{b[key]:.6g}"], key
    # the steps both logged (0, 5, ..., 25; not 29, which the rerun did not log) agree
    rows = {int(line.split()[0]): line.split() for line in out.splitlines()
            if re.fullmatch(r"\s+\d+\s+\S+ \| .*", line)}
    assert sorted(rows) == [0, 5, 10, 15, 20, 25]
    cost = dict(store.points(run_id, "train_cost"))
    assert rows[5][1:4] == [f"{cost[5]:.6g}", "|", f"{cost[5]:.6g}"]
    assert "6 of the 6 steps both runs logged; bit-identical at every one" in out
    assert "identical\n" not in out  # no table of "no"s: the runs differ on purpose


def test_the_blas_recorded_is_the_one_numpy_calls(store: Store,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """SciPy (imported by scikit-learn and Optuna) brings a BLAS of its own that NumPy never
    calls: a run records NumPy's alone, and a run logged before, which listed every BLAS
    loaded, reruns without a false warning, with NumPy's thread count."""
    import numpy
    import scipy.linalg  # noqa: F401 - loads SciPy's BLAS into the process
    from threadpoolctl import threadpool_info

    home = Path(numpy.__file__).resolve().parent
    loaded = [i for i in threadpool_info() if i["user_api"] == "blas"]
    mine = [i for i in loaded if Path(i["filepath"]).resolve().is_relative_to(home.parent)
            and Path(i["filepath"]).resolve().parent.name in ("numpy.libs", "numpy")]
    if len(loaded) < 2 or len(mine) != 1:
        pytest.skip("needs NumPy's bundled BLAS and another one loaded (wheels of both)")
    [lib] = mine
    recorded = provenance.blas()
    assert recorded["blas"] == f"{lib['internal_api']} {lib['version']} {lib['architecture']}"
    run_id = store.original(store.config())
    assert store.client.get_run(run_id).data.tags["sweeplab.blas"] == recorded["blas"]

    # As logged before: every BLAS in the process, NumPy's second, with its own threads.
    store.client.set_tag(run_id, "sweeplab.blas", f"openblas 0.3.1 Zen, {recorded['blas']}")
    store.client.set_tag(run_id, "sweeplab.blas_threads", "7,1")
    capsys.readouterr()
    assert rerun.main([run_id]) == 0
    out = capsys.readouterr().out
    assert "BLAS openblas" not in out and "warning:   BLAS" not in out
    assert f"blas:      {recorded['blas']}, 1 thread(s) as the original" in out
