"""MLflow tracking: runs logged into a temporary store and read back only through
MlflowClient (and mlflow.pyfunc.load_model), never through sweeplab's own objects."""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from helpers import REPO, compose_config, use_mlflow_store
from sweeplab import train
from sweeplab.config import to_config
from sweeplab.data import load_dataset
from sweeplab.tracking import MlflowTracker, model_file
from sweeplab.train.callbacks import Callback, StopTraining

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MOONS = ["data=moons", "data.val_fraction=0.2", "model.depth=2", "model.width=8",
         "model.activation=tanh", "optim=adam", "optim.lr=0.05", "train.batch_size=null"]
EPOCHS, LOG_EVERY = 23, 5
STEPS = [0, 5, 10, 15, 20, 22]  # every LOG_EVERY epochs, and the last of EPOCHS


def flatten_by_hand(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out |= flatten_by_hand(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: node}


def tracked_run(cfg: Any, callbacks: tuple[Callback, ...] = (), **kwargs: Any
                ) -> tuple[MlflowTracker, train.RunResult]:
    """A run tracked as `python -m sweeplab.train` tracks it (the tracker as a context)."""
    typed = to_config(cfg)
    tracker = MlflowTracker(typed.tracking, **kwargs)
    with tracker:
        result = train.run(typed, [tracker, *callbacks])
    return tracker, result


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, data_cache: Path, empty_mlflow_db: Path):
    """One fully logged run (model and plot included), shared by the read-back tests."""
    store = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(data_cache)
        uri = use_mlflow_store(store, mp, empty_mlflow_db)
        overrides = [*MOONS, f"train.epochs={EPOCHS}", f"train.log_every={LOG_EVERY}",
                     "tracking.experiment=tracked"]
        cfg = compose_config(*overrides)
        tracker, result = tracked_run(cfg, overrides=overrides)
        yield SimpleNamespace(uri=uri, store=store, cfg=cfg, overrides=overrides,
                              result=result, run_id=tracker.run_id,
                              client=MlflowClient(uri))


def test_run_is_in_the_temporary_store(tracked) -> None:
    client = tracked.client
    run = client.get_run(tracked.run_id)
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == "tracked"
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "moons d2w8 adam lr0.05"
    assert (tracked.store / "mlflow.db").is_file()
    # Artifacts land beside the database, not in the working directory's mlruns/.
    assert Path(mlflow.utils.file_utils.local_file_uri_to_path(run.info.artifact_uri)
                ).is_relative_to(tracked.store / "mlruns")


def test_params_are_the_flattened_config(tracked) -> None:
    params = tracked.client.get_run(tracked.run_id).data.params
    want = flatten_by_hand(OmegaConf.to_container(tracked.cfg, resolve=True))
    assert params == {k: str(v) for k, v in want.items()}
    assert params["model.depth"] == "2"
    assert params["optim.lr"] == "0.05"
    assert params["train.early_stopping.patience"] == "None"


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_train_cost_history_steps_and_values(tracked) -> None:
    h = history(tracked.client, tracked.run_id, "train_cost")
    assert [s for s, _ in h] == STEPS
    assert [v for _, v in h] == [tracked.result.costs[s] for s in STEPS]


def test_validation_histories(tracked) -> None:
    r = tracked.result
    val_cost = history(tracked.client, tracked.run_id, "val_cost")
    assert val_cost == list(zip(STEPS, r.history.val_cost, strict=True))
    # val_accuracy: the history at the log points, then the final value after the last
    # update, one step after the last epoch.
    val_acc = history(tracked.client, tracked.run_id, "val_accuracy")
    assert val_acc == [*zip(STEPS, r.history.val_accuracy, strict=True),
                       (EPOCHS, r.metrics["val_accuracy"])]


def test_final_metrics(tracked) -> None:
    metrics = tracked.client.get_run(tracked.run_id).data.metrics
    r, d = tracked.result, tracked.result.dataset
    for split in ("train", "val", "test"):
        X, y = getattr(d, f"X_{split}"), getattr(d, f"y_{split}")
        assert metrics[f"{split}_accuracy"] == np.mean(r.network.predict(X) == y)
    assert metrics["train_seconds"] == r.metrics["train_seconds"] > 0
    # The run's latest train_cost is the last logged one, not a final metric.
    assert metrics["train_cost"] == r.costs[-1]


def test_tags(tracked) -> None:
    tags = tracked.client.get_run(tracked.run_id).data.tags
    r = tracked.result
    reloaded = load_dataset(r.config.data, seed=r.config.seed, cache_dir=tracked.store / "d")
    assert tags["sweeplab.data_fingerprint"] == r.dataset.fingerprint == reloaded.fingerprint
    assert tags["sweeplab.seed"] == "1"
    assert tags["sweeplab.status"] == "finished"
    assert tags["sweeplab.version.python"] == platform.python_version()
    assert tags["sweeplab.version.numpy"] == np.__version__
    assert tags["sweeplab.version.mlflow"] == mlflow.__version__
    assert tags["sweeplab.version.sweeplab"] == metadata.version("sweeplab")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True)
    if head.returncode == 0:
        assert tags["sweeplab.git_commit"] == head.stdout.strip()
        assert tags["sweeplab.git_dirty"] in ("true", "false")
    # The description shows the network summary.
    assert r.summary in tags["mlflow.note.content"]


def download_text(client: MlflowClient, run_id: str, path: str, dst: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(dst))).read_text()


def test_artifacts(tracked, tmp_path: Path) -> None:
    client, run_id = tracked.client, tracked.run_id
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "overrides.yaml", "summary.txt", "plots"} <= top
    assert download_text(client, run_id, "summary.txt", tmp_path) == tracked.result.summary + "\n"
    assert OmegaConf.to_container(OmegaConf.create(
        download_text(client, run_id, "overrides.yaml", tmp_path))) == tracked.overrides
    png = Path(client.download_artifacts(run_id, "plots/cost_curve.png", str(tmp_path)))
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert png.stat().st_size > 1000


def test_logged_config_reproduces_the_run(tracked, tmp_path: Path) -> None:
    text = download_text(tracked.client, tracked.run_id, "config.yaml", tmp_path)
    rerun = train.run(OmegaConf.create(text))
    np.testing.assert_array_equal(rerun.costs, tracked.result.costs)
    assert rerun.dataset.fingerprint == tracked.result.dataset.fingerprint


def test_pyfunc_predicts_like_the_network(tracked) -> None:
    r = tracked.result
    loaded = mlflow.pyfunc.load_model(f"runs:/{tracked.run_id}/model")
    for X in (r.dataset.X_test, r.dataset.X_val):
        rows = np.ascontiguousarray(X.T)
        np.testing.assert_array_equal(np.asarray(loaded.predict(rows)), r.network.predict(X))
    assert loaded.metadata.get_input_schema() is not None  # logged with a signature
    # The weights came back from the HDF5 file in the store, bit for bit.
    net = loaded.unwrap_python_model().net
    for (k, p), (k2, q) in zip(r.network.params().items(), net.params().items(), strict=True):
        assert k == k2
        np.testing.assert_array_equal(p, q)


def test_the_model_uri_tag_names_the_logged_model(tracked) -> None:
    uri = tracked.client.get_run(tracked.run_id).data.tags["sweeplab.model_uri"]
    assert uri.startswith("models:/")
    X = tracked.result.dataset.X_test
    np.testing.assert_array_equal(
        np.asarray(mlflow.pyfunc.load_model(uri).predict(np.ascontiguousarray(X.T))),
        tracked.result.network.predict(X))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_model_file_round_trip(compose, tmp_path: Path, dtype: str) -> None:
    r = train.run(compose("data=digits", "model.hidden=[7,5]", "model.activation=leaky_relu",
                          "model.leaky_slope=0.2", "model.keep_prob=0.9", f"model.dtype={dtype}",
                          "train.epochs=2", "train.log_every=1"))
    path = model_file.save(r.network, tmp_path / "net.h5", r.dataset.classes)
    net, classes = model_file.load(path)
    assert classes == list(r.dataset.classes)
    assert net.layer_dims == r.network.layer_dims == [64, 7, 5, 10]
    assert (net.activation.name, net.output.name, net.keep_prob) == ("leaky_relu", "softmax", 0.9)
    assert net.activation.slope == 0.2
    for (k, p), q in zip(r.network.params().items(), net.params().values(), strict=True):
        assert q.dtype == np.dtype(dtype), k
        np.testing.assert_array_equal(p, q)
    X = r.dataset.X_test
    np.testing.assert_array_equal(net.predict_proba(X), r.network.predict_proba(X))


def test_model_load_refuses_other_files(tmp_path: Path) -> None:
    import h5py

    with pytest.raises(FileNotFoundError, match=r"nope\.h5"):
        model_file.load(tmp_path / "nope.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["W1"] = np.zeros((1, 1))
    with pytest.raises(ValueError, match="not a sweeplab-network/1 file"):
        model_file.load(tmp_path / "other.h5")


# --- how runs end -------------------------------------------------------------------------

QUICK = ["tracking.log_model=false", "tracking.log_plots=false"]


def test_diverged_run_is_failed(compose, tmp_mlflow: str) -> None:
    tracker, r = tracked_run(compose("data=planar", "model.activation=relu", "optim=gd",
                                     "optim.lr=1e200", "train.batch_size=null",
                                     "train.epochs=50", "train.log_every=5",
                                     "tracking.log_plots=true"))
    assert r.status == "diverged"
    client = MlflowClient(tmp_mlflow)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["sweeplab.status"] == "diverged"
    assert f"epoch {r.epochs_run - 1}" in run.data.tags["sweeplab.reason"]
    # The curve holds the log points reached before the cost blew up (callbacks never see
    # the non-finite cost; the reason tag says where it happened).
    logged = history(client, tracker.run_id, "train_cost")
    assert logged == list(zip(r.history.step[:-1], r.history.train_cost[:-1], strict=True))
    assert all(math.isfinite(v) for _, v in logged)
    assert "train_accuracy" not in run.data.metrics
    assert "model" not in {a.path for a in client.list_artifacts(tracker.run_id)}


class Boom(Callback):
    def __init__(self, at: int, exc: BaseException) -> None:
        self.at, self.exc = at, exc

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        if step >= self.at:
            raise self.exc


@pytest.mark.parametrize(("exc", "status", "tag"), [
    (RuntimeError("boom"), "FAILED", "error"),
    (KeyboardInterrupt(), "KILLED", "interrupted"),
])
def test_exception_inside_training_closes_the_run(compose, tmp_mlflow: str, exc: BaseException,
                                                  status: str, tag: str) -> None:
    cfg = compose("data=planar", "train.epochs=30", "train.log_every=5", *QUICK)
    typed = to_config(cfg)
    tracker = MlflowTracker(typed.tracking)
    with pytest.raises(type(exc)), tracker:
        train.run(typed, [tracker, Boom(10, exc)])
    client = MlflowClient(tmp_mlflow)
    run = client.get_run(tracker.run_id)
    assert run.info.status == status
    assert run.info.end_time is not None
    assert run.data.tags["sweeplab.status"] == tag
    if isinstance(exc, RuntimeError):
        assert "boom" in run.data.tags["sweeplab.reason"]
    # What was measured before the crash is kept.
    assert [s for s, _ in history(client, tracker.run_id, "train_cost")] == [0, 5, 10]


class ClosedFromOutside(Callback):
    """Closes its run as a sweep's controller does (op_close from another client), then
    stops the training with `exc`, as a Dask task reaching its next log point does."""

    def __init__(self, tracker: MlflowTracker, uri: str, exc: BaseException) -> None:
        self.tracker, self.uri, self.exc = tracker, uri, exc

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        if step >= 10:
            from sweeplab.tracking.tracker import op_close

            op_close(MlflowClient(self.uri), self.tracker.run_id, "interrupted",
                     "interrupted (Ctrl-C)")
            raise self.exc


def test_an_interrupted_run_says_why_and_leaves_a_close_made_before_it(
        compose, tmp_mlflow: str) -> None:
    """A trial stopped with a reason keeps it (it was "interrupted" whatever stopped it);
    one its controller closed already is not closed again: a Dask task cancelled after the
    controller's grace reached its next log point later and overwrote the controller's
    reason and end time."""
    cfg = compose("data=planar", "train.epochs=30", "train.log_every=5", *QUICK)
    typed = to_config(cfg)
    tracker = MlflowTracker(typed.tracking)
    with pytest.raises(KeyboardInterrupt), tracker:
        train.run(typed, [tracker, Boom(10, KeyboardInterrupt("lost its controller (x)"))])
    run = MlflowClient(tmp_mlflow).get_run(tracker.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["sweeplab.reason"] == "lost its controller (x)"

    tracker = MlflowTracker(typed.tracking)
    with pytest.raises(KeyboardInterrupt), tracker:
        train.run(typed, [tracker, ClosedFromOutside(tracker, tmp_mlflow,
                                                     KeyboardInterrupt("lost it (y)"))])
    run = MlflowClient(tmp_mlflow).get_run(tracker.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["sweeplab.reason"] == "interrupted (Ctrl-C)"


def test_pruned_run_is_killed_with_its_status(compose, tmp_mlflow: str) -> None:
    class Prune(Callback):
        def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
            if step == 5:
                raise StopTraining("pruned", "trial pruned at step 5")

    tracker, r = tracked_run(compose("data=planar", "train.epochs=30", "train.log_every=5",
                                     *QUICK), (Prune(),))
    run = MlflowClient(tmp_mlflow).get_run(tracker.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["sweeplab.status"] == "pruned"
    assert run.data.tags["sweeplab.reason"] == "trial pruned at step 5"
    # judged at step 5 and abandoned: no final metrics from the update after it
    assert "train_accuracy" not in run.data.metrics and "train_accuracy" not in r.metrics
    assert [s for s, _ in history(MlflowClient(tmp_mlflow), tracker.run_id,
                                  "train_cost")] == [0, 5]


def test_metrics_are_sent_in_batches(compose, tmp_mlflow: str, monkeypatch) -> None:
    calls: dict[str, list[int]] = {"log_batch": [], "log_metric": []}
    real_batch = MlflowClient.log_batch

    def log_batch(self: MlflowClient, run_id: str, metrics: Any = (), *args: Any,
                  **kwargs: Any) -> Any:
        if metrics:
            calls["log_batch"].append(len(metrics))
        return real_batch(self, run_id, metrics, *args, **kwargs)

    def log_metric(self: MlflowClient, *args: Any, **kwargs: Any) -> None:
        calls["log_metric"].append(1)
        raise AssertionError("one MLflow call per point")

    monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
    monkeypatch.setattr(MlflowClient, "log_metric", log_metric)
    monkeypatch.setattr(mlflow, "log_metric", log_metric)
    epochs = 500
    tracker, r = tracked_run(compose(*MOONS, "model.width=4", f"train.epochs={epochs}",
                                     "train.log_every=1", *QUICK))
    assert calls["log_metric"] == []
    points = 3 * epochs + len(r.metrics)  # train_cost, val_cost, val_accuracy; finals
    assert sum(calls["log_batch"]) == points
    assert len(calls["log_batch"]) <= 4
    client = MlflowClient(tmp_mlflow)
    assert len(client.get_metric_history(tracker.run_id, "train_cost")) == epochs
    assert len(client.get_metric_history(tracker.run_id, "val_cost")) == epochs


# --- the command line, end to end ---------------------------------------------------------

def test_cli_trains_and_logs_a_run(tmp_path: Path, data_cache: Path) -> None:
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env["PYTHONPATH"] = str(REPO / "src")
    cmd = [sys.executable, "-m", "sweeplab.train", "data=planar", "train.epochs=5",
           "train.log_every=1", f"data.dir={data_cache / 'data' / 'builtin'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # The summary: planar has 2 features and 2 classes; the default model is 2 x 32 relu.
    assert "layer_dims [2, 32, 32, 1]" in out
    assert re.search(r"^2 +32 +relu +\(32, 32\)", out, re.M), out
    found = re.search(r"logged to MLflow run ([0-9a-f]{32})", out)
    assert found, out
    assert "Add type hints" not in proc.stderr
    client = MlflowClient(uri)
    run = client.get_run(found.group(1))
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "sweeplab"
    assert run.data.params["data.name"] == "planar"
    assert [s for s, _ in history(client, run.info.run_id, "train_cost")] == [0, 1, 2, 3, 4]
    assert not (tmp_path / "data").exists()  # the cached built-in was used


@pytest.mark.parametrize(("uri", "said"), [
    ("sqlite:///", "is an in-memory database"),
    ("sqlite:///:memory:", "is an in-memory database"),
    ("sqlite:///:memory:?cache=shared", "is an in-memory database"),
    ("sqlite+pysqlite:///:memory:", "is an in-memory database"),
    ("sqlite:///file:mem1?mode=memory&uri=true", "is an in-memory database"),
    ("SQLITE:///:memory:", "is an in-memory database"),
    ("relative/folder", "is a folder (MLflow's file store)"),
    ("file:///tmp/x", "is a folder (MLflow's file store)"),
    ("databricks", "names a Databricks workspace"),
    ("databricks://profile", "names a Databricks workspace"),
], ids=["sqlite-empty", "sqlite-memory", "sqlite-memory-query", "sqlite-driver",
        "sqlite-uri-filename", "sqlite-upper-case", "folder", "file-uri", "databricks",
        "databricks-profile"])
def test_a_store_that_would_lose_or_refuse_the_runs_is_named_at_once(
        uri: str, said: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each process opening an in-memory SQLite store gets its own (the sweep's writer
    and workers wrote to theirs, and the sweep ended 0 with nothing kept); MLflow 3 refuses
    a folder, with a paragraph of its own, unless MLFLOW_ALLOW_FILE_STORE says otherwise."""
    from sweeplab.tracking.store import TrackingStoreError, check_uri

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(TrackingStoreError) as err:
        check_uri(uri)
    msg = str(err.value)
    assert msg.startswith(f"tracking.uri={uri!r} {said}") and "\n" not in msg
    assert "sqlite:///<path>" in msg


def test_file_stores_pass_when_mlflow_is_told_to_allow_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sweeplab.tracking.store import check_uri

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    check_uri("relative/folder")
    check_uri("databricks/runs")  # a folder of that name, not the workspace
    check_uri("sqlite:///x/mlflow.db")
    check_uri("sqlite+pysqlite:///x/memory.db")
    check_uri("sqlite:///file:x.db?mode=rwc&uri=true")
    check_uri("http://127.0.0.1:5000")
