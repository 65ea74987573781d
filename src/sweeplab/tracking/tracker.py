"""MLflow tracking of a run: a callback that opens the run, logs as training goes, closes it.

What one run logs (names are stable; the README documents them):
- params: the resolved config, flattened (``model.depth``, ``optim.lr``, ...);
- artifacts: ``config.yaml`` (enough to rerun), ``overrides.yaml``, ``summary.txt``,
  ``plots/cost_curve.png`` (tracking.log_plots), ``git_diff.patch`` when the tree was
  dirty; the model as a pyfunc (``runs:/<id>/model``) whose weights are an HDF5 file (no
  pickle);
- tags under ``sweeplab.``: git commit and dirty state, data fingerprint, seed, versions,
  BLAS library and thread count (``blas``, ``blas_threads``), status and its reason; the
  run description shows the network summary;
- metrics with step = epoch: ``train_cost``, ``val_cost``, ``val_accuracy`` (histories,
  sent in batches); final ``train_accuracy``, ``val_accuracy``, ``test_accuracy``,
  ``final_*_cost``, ``train_seconds``, at step = epochs run (after the last update).

The store is written through ops (the ``op_*`` functions below), run by a sink
(`tracking.writer`): now, in this process, or by a sweep's writer process while the next
trial trains. Each op makes as few store calls as it can: a tracked run costs about a
dozen round trips in all, whatever its length.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mlflow.entities import DatasetInput, Metric, Param, RunTag

from sweeplab.config import Config, TrackingConfig, flatten
from sweeplab.names import MLFLOW_STATUS, TAG_PREFIX, MlflowTag, RunStatus, Tag
from sweeplab.tracking import provenance
from sweeplab.tracking.errors import no_space, quiet_store_tracebacks, unavailable_reason
from sweeplab.tracking.store import check_server, get_experiment_id, redact, resolve_uri
from sweeplab.tracking.writer import Inline, Ref, TrackingWriter
from sweeplab.train.callbacks import Callback, RunStart

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from sweeplab.data import Dataset
    from sweeplab.nn import Network
    from sweeplab.train import RunResult

# MLflow's download bars would interleave with ours on every model logged.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow narrates every model it logs at INFO; sweeplab prints what matters itself.
logging.getLogger("mlflow").setLevel(logging.WARNING)
# MLflow's limits per log_batch call.
MAX_PARAMS, MAX_METRICS = 100, 1000

Sink = Inline | TrackingWriter


def dataset_inputs(data: Dataset) -> list[DatasetInput]:
    """The run's data as MLflow dataset inputs, one per split, tagged with its context
    (``train``, ``validation``, ``test``): named after the dataset, with MLflow's digest of
    the split, its shapes, and the HDF5 file it came from. The run page lists them; the
    runs table shows them in its Dataset column. Features are examples as rows, as MLflow
    expects: X.T, (m, n_x); targets are the labels y, (m,)."""
    import warnings

    import mlflow.data
    from mlflow.entities import Dataset as DatasetEntity
    from mlflow.entities import InputTag

    files = dict(part.split("=", 1) for part in data.source.split(", ") if "=" in part)
    splits = [("train", data.X_train, data.y_train, files.get("train")),
              ("validation", data.X_val, data.y_val, files.get("train")),
              ("test", data.X_test, data.y_test, files.get("test"))]
    inputs = []
    for context, X, y, file in splits:
        if X is None:
            continue
        with warnings.catch_warnings():  # "can be interpreted in multiple ways": a local file
            warnings.simplefilter("ignore", UserWarning)
            ds = mlflow.data.from_numpy(X.T, targets=y, name=data.name,
                                        source=str(Path(file).resolve()) if file else None)
        inputs.append(DatasetInput(DatasetEntity(**ds.to_dict()),
                                   tags=[InputTag("mlflow.data.context", context)]))
    return inputs


# -- what the ops are handed: plain data, picklable for a writer process -------------------
@dataclass(frozen=True)
class Started:
    """A run the store created."""

    run_id: str
    experiment_id: str


@dataclass(frozen=True)
class Curves:
    """What the cost-curve plot draws (`plots.cost_curve`)."""

    run_name: str
    costs: np.ndarray  # (epochs_run,)
    step: list[int]
    val_cost: list[float]
    val_accuracy: list[float]


@dataclass(frozen=True)
class ModelPayload:
    """The network to write as a pyfunc model, with a few input rows (m, n_x) for its
    signature and the class names."""

    network: Network
    rows: np.ndarray
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Ending:
    """How a run ended: final metrics at `step`, status tags, what to draw and write."""

    metrics: dict[str, float]
    step: int
    timestamp: int  # ms
    status: str
    tags: dict[str, str]
    curves: Curves | None = None
    model: ModelPayload | None = None


# -- the ops: each takes the client first; run in this process or the writer's -------------
def op_create(client: MlflowClient, experiment: str, uri: str, run_name: str | None,
              tags: dict[str, str], start_time: int) -> Started:
    """Create the run, with its tags, in experiment `experiment` (created if new)."""
    experiment_id = get_experiment_id(client, experiment, uri)
    run = client.create_run(experiment_id, start_time=start_time, tags=tags,
                            run_name=run_name)
    return Started(run.info.run_id, experiment_id)


def op_describe(client: MlflowClient, started: Started, config: Config, overrides: list[str],
                texts: dict[str, str], inputs: list[DatasetInput]) -> None:
    """The run's params, dataset inputs and text artifacts (config.yaml, overrides.yaml and
    `texts`, written together in one artifact upload)."""
    import yaml

    run_id = started.run_id
    params = [Param(k, str(v)) for k, v in flatten(config).items()]
    for i in range(0, len(params), MAX_PARAMS):
        client.log_batch(run_id, params=params[i:i + MAX_PARAMS])
    _log_datasets(client, run_id, inputs)
    # The YAML OmegaConf.to_yaml writes, without its structured-config pass (tens of ms).
    files = {"config.yaml": yaml.safe_dump(dataclasses.asdict(config), sort_keys=False),
             "overrides.yaml": yaml.safe_dump([redact(o) for o in overrides]), **texts}
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            Path(tmp, name).write_text(text, encoding="utf-8")
        client.log_artifacts(run_id, tmp)


def _log_datasets(client: MlflowClient, run_id: str, inputs: list[DatasetInput]) -> None:
    """Parallel sweep workers can race to add the same dataset to the store, and the
    loser's insert fails: it is tried again (it then finds the dataset), then only warned
    about, since the inputs describe the run and rerunning needs none. A store that does
    not answer (a server gone) or a full disk is no race: raised, for the run to stop with
    one line, as on any other write."""
    from mlflow.exceptions import MlflowException

    for attempt in range(2):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as err:
            if unavailable_reason(err) is not None or no_space(err) is not None:
                raise
            if attempt:
                logging.getLogger(__name__).warning("dataset inputs not logged: %s", err)


def op_metrics(client: MlflowClient, run_id: str, metrics: list[Metric]) -> None:
    for i in range(0, len(metrics), MAX_METRICS):
        client.log_batch(run_id, metrics=metrics[i:i + MAX_METRICS])


def op_tags(client: MlflowClient, run_id: str, tags: dict[str, str],
            metrics: list[Metric] | None = None) -> None:
    client.log_batch(run_id, metrics=metrics or [],
                     tags=[RunTag(k, v) for k, v in tags.items()])


def op_close(client: MlflowClient, run_id: str, status: str, reason: str) -> None:
    """Close a run that did not end normally (`status`: a RunStatus), with its reason."""
    client.log_batch(run_id, tags=[RunTag(Tag.STATUS, status),
                                   RunTag(Tag.REASON, reason[:5000])])
    client.set_terminated(run_id, MLFLOW_STATUS[status])


def op_close_if_running(client: MlflowClient, run_id: str, status: str, reason: str) -> None:
    """`op_close`, unless the run is closed already: a sweep's controller that stopped its
    trials closes what they left open, and a trial it gave up on (a Dask task cancelled
    after its grace) reaches its next log point only later."""
    if client.get_run(run_id).info.status == "RUNNING":
        op_close(client, run_id, status, reason)


def op_end(client: MlflowClient, started: Started, end: Ending) -> None:
    """Final metrics, status tags, the plot and the model; then the run's terminal status,
    only once its model is READY. If writing fails, the run is closed as interrupted (a
    full disk: the sweep runs the trial again) or failed, and the error raised."""
    try:
        _end(client, started, end)
    except Exception as err:
        full = no_space(err)
        status = RunStatus.INTERRUPTED if full else RunStatus.ERROR
        with contextlib.suppress(Exception):  # the store itself may be what failed
            op_close(client, started.run_id, status, full or f"{type(err).__name__}: {err}")
        raise


def _end(client: MlflowClient, started: Started, end: Ending) -> None:
    run_id = started.run_id
    # The model is created first, so the final metrics can name it (its page in the UI
    # shows them).
    model_id = artifacts = None
    if end.model is not None:
        logged = client.create_logged_model(started.experiment_id, name="model",
                                            source_run_id=run_id)
        model_id, artifacts = logged.model_id, logged.artifact_location
    metrics = [Metric(k, float(v), end.timestamp, end.step, model_id=model_id)
               for k, v in end.metrics.items()]
    tags = dict(end.tags)
    if model_id is not None:
        tags[Tag.MODEL_URI] = f"models:/{model_id}"
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
    if end.curves is not None:
        from sweeplab.tracking import plots

        fig = plots.cost_curve(end.curves)
        client.log_figure(run_id, fig, "plots/cost_curve.png")
        plots.close(fig)
    if model_id is not None and end.model is not None:
        _log_model(client, run_id, model_id, str(artifacts), end.model, end.step)
    client.set_terminated(run_id, MLFLOW_STATUS[end.status], end_time=end.timestamp)


def _log_model(client: MlflowClient, run_id: str, model_id: str, artifact_location: str,
               m: ModelPayload, step: int) -> None:
    """Write the network as an MLflow pyfunc model into LoggedModel `model_id` (created
    with the run as its source, `models:/<model_id>`), and mark it READY; FAILED if writing
    it fails. The signature says the input (a float tensor (-1, n_x)); no input example is
    stored, since MLflow would check that it serves (tens of milliseconds a model)."""
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model, infer_signature

    from sweeplab.tracking import model_file, pyfunc

    signature = infer_signature(m.rows, m.network.predict(np.ascontiguousarray(m.rows.T)))
    versions = provenance.versions()
    reqs = [f"numpy=={versions['numpy']}", f"h5py=={versions['h5py']}",
            f"mlflow=={versions['mlflow']}"]
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            # "An input example was not provided": the signature is the schema, on purpose
            warnings.filterwarnings("ignore", ".*An input example was not provided", UserWarning)
            weights = model_file.save(m.network, Path(tmp) / "network.h5", m.classes)
            local = Path(tmp) / "model"
            mlflow.pyfunc.save_model(
                local, python_model=pyfunc.__file__, artifacts={"network": str(weights)},
                signature=signature, pip_requirements=reqs,
                mlflow_model=Model(artifact_path=artifact_location,
                                   model_uuid=model_id, run_id=run_id, model_id=model_id))
            client.log_model_artifacts(model_id, str(local))
    except BaseException:
        client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(model_id, step)])


class MlflowTracker(Callback):
    """Logs one run to MLflow. Use as a context manager around `train.run`, so that a crash
    or Ctrl-C still closes the run as FAILED or KILLED with the reason.

    With `sink` a sweep's `TrackingWriter`, the calls are queued to its process and
    `run_id` stays None (the writer's ack carries it); by default they are made now."""

    def __init__(self, cfg: TrackingConfig, *, overrides: list[str] | None = None,
                 parent_run_id: str | None = None, tags: Mapping[str, str] | None = None,
                 flush_seconds: float = 5.0, sink: Sink | None = None) -> None:
        self.cfg = cfg
        self.uri = sink.uri if sink is not None else resolve_uri(cfg)
        self.sink: Sink = sink if sink is not None else Inline(self.uri)
        self.overrides = overrides or []
        self.parent_run_id = parent_run_id
        self.extra_tags = dict(tags or {})
        self.flush_seconds = flush_seconds
        self.started: Started | Ref | None = None
        self._pending: list[Metric] = []
        self._last_flush = 0.0
        self._closed = False
        quiet_store_tracebacks()  # on a Dask worker too, which called no prepare_store

    @property
    def run_id(self) -> str | None:
        """The run's id, once the store made it in this process (None with a writer)."""
        return self.started.run_id if isinstance(self.started, Started) else None

    @property
    def experiment_id(self) -> str | None:
        return self.started.experiment_id if isinstance(self.started, Started) else None

    @property
    def client(self) -> MlflowClient:
        """A client of the same store (for reading back)."""
        if isinstance(self.sink, Inline):
            return self.sink.client
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def _run(self) -> Any:
        assert self.started is not None, "on_train_start was not called"
        return self.started.run_id if isinstance(self.started, Started) \
            else self.started.field("run_id")

    # -- context manager: closes the run whatever happens ---------------------------------
    def __enter__(self) -> MlflowTracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if self.started is None or self._closed:
            return
        self.flush()
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        # A full disk is the machine's failure, not the run's: the sweep runs it again.
        full = no_space(exc) if exc is not None else None
        status = RunStatus.INTERRUPTED if interrupted or full else RunStatus.ERROR
        # what stopped it, when it says (a sweep's trial that lost its controller, say)
        said = str(exc) if interrupted and exc is not None else ""
        reason = (said or "interrupted") if interrupted else full if full else \
            f"{exc_type}: {exc}"
        self._closed = True
        # interrupted: the controller may have closed the run already, with its own reason
        self.sink.call(op_close_if_running if interrupted else op_close, self._run(),
                       status, reason)

    def tag(self, tags: Mapping[str, str], metrics: list[Metric] | None = None) -> None:
        """Set tags (and log metrics) on the run, after its end too."""
        if self.started is not None:
            self.sink.call(op_tags, self._run(), dict(tags), metrics or [])

    # -- callback -------------------------------------------------------------------------
    def on_train_start(self, start: RunStart) -> None:
        check_server(self.uri)  # one line now, rather than MLflow's retries for a minute
        commit, dirty, diff = provenance.git_state()
        tags: dict[str, str] = {
            Tag.DATA_FINGERPRINT: start.dataset.fingerprint,
            Tag.DATA_SOURCE: start.dataset.source,
            Tag.SEED: str(start.config.seed),
            Tag.LAYER_DIMS: str(start.network.layer_dims),
            Tag.N_PARAMS: str(start.network.n_params),
            Tag.FIRST_LAYER: start.stepper,
            Tag.STATUS: RunStatus.RUNNING,
            MlflowTag.NOTE: f"```\n{start.summary}\n```",
        }
        tags |= {Tag.VERSION + k: v for k, v in provenance.versions().items()}
        # blas, blas_threads: a rerun replays the thread count
        tags |= {TAG_PREFIX + k: v for k, v in provenance.blas().items()}
        if commit is not None:
            tags |= {Tag.GIT_COMMIT: commit, Tag.GIT_DIRTY: str(dirty).lower(),
                     MlflowTag.GIT_COMMIT: commit}
        if self.parent_run_id:
            tags[MlflowTag.PARENT_RUN_ID] = self.parent_run_id
        tags |= self.extra_tags
        # A password in tracking.uri is the user's, not the run's: logged redacted (MLflow
        # reads credentials from MLFLOW_TRACKING_USERNAME / _PASSWORD).
        logged = dataclasses.replace(start.config, tracking=dataclasses.replace(
            start.config.tracking, uri=redact(start.config.tracking.uri)
            if start.config.tracking.uri else None))
        texts = {"summary.txt": start.summary + "\n"}
        if dirty:
            texts["git_diff.patch"] = diff
        # Two ops: once the run exists, a Ctrl-C or SIGTERM during the rest still closes it.
        self.started = self.sink.call(op_create, self.cfg.experiment, self.uri,
                                      start.run_name, tags, int(time.time() * 1000))
        self.sink.call(op_describe, self.started, logged, self.overrides, texts,
                       _inputs(self.sink, start.dataset))
        self._last_flush = time.monotonic()

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        if isinstance(self.sink, TrackingWriter):
            self.sink.check()  # the writer could not write this run: stop training it
        ts = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        # Batched: one call per few seconds of training, never one per point.
        if time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.started is None:
            return
        if self._pending:
            self.sink.call(op_metrics, self._run(), self._pending)
        self._pending = []
        self._last_flush = time.monotonic()

    def on_train_end(self, result: RunResult) -> None:
        assert self.started is not None, "on_train_start was not called"
        self.flush()
        tags = {Tag.STATUS: result.status, Tag.EPOCHS_RUN: str(result.epochs_run)}
        if result.reason:
            tags[Tag.REASON] = result.reason[:5000]
        curves = model = None
        if self.cfg.log_plots and len(result.costs):
            h = result.history
            curves = Curves(result.run_name, result.costs, list(h.step), list(h.val_cost),
                            list(h.val_accuracy))
        if self.cfg.log_model and result.status != RunStatus.DIVERGED:
            data = result.dataset
            # one row is enough for wide inputs (a cat image is 12,288 numbers)
            rows = data.X_train[:, :5 if data.n_x <= 256 else 1].T.copy()
            model = ModelPayload(result.network, rows, tuple(data.classes))
        # Final metrics are measured after the last update, i.e. where epoch `epochs_run`
        # would start; at the last log step they would share it with val_accuracy's history
        # point, and MLflow's latest value would be either of the two.
        ending = Ending(dict(result.metrics), result.epochs_run, int(time.time() * 1000),
                        result.status, tags, curves, model)
        self._closed = True  # op_end closes the run itself if writing it fails
        self.sink.call(op_end, self.started, ending)


def _inputs(sink: Sink, data: Dataset) -> list[DatasetInput]:
    """The dataset inputs of `data`, computed once per sink (MLflow hashes every split)."""
    key = f"dataset inputs {data.fingerprint} {data.source}"
    if key not in sink.memo:
        sink.memo[key] = dataset_inputs(data)
    return list(sink.memo[key])
