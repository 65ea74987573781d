"""MLflow tracking of a run: a callback that opens the run, logs as training goes, closes it.

What one run logs (names are stable; the README documents them):
- params: the resolved config, flattened (``model.depth``, ``optim.lr``, ...);
- artifacts: ``config.yaml`` (enough to rerun), ``overrides.yaml``, ``summary.txt``,
  ``plots/cost_curve.png``, ``git_diff.patch`` when the tree was dirty; the model as a
  pyfunc (``runs:/<id>/model``) whose weights are an HDF5 file (no pickle);
- tags under ``sweeplab.``: git commit and dirty state, data fingerprint, seed, versions,
  BLAS library and thread count (``blas``, ``blas_threads``), status and its reason; the
  run description shows the network summary;
- metrics with step = epoch: ``train_cost``, ``val_cost``, ``val_accuracy`` (histories,
  sent in batches); final ``train_accuracy``, ``val_accuracy``, ``test_accuracy``,
  ``final_*_cost``, ``train_seconds``, at step = epochs run (after the last update).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.entities import DatasetInput, Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from sweeplab.config import TrackingConfig, flatten
from sweeplab.names import MLFLOW_STATUS, TAG_PREFIX, MlflowTag, RunStatus, Tag
from sweeplab.tracking import provenance
from sweeplab.tracking.errors import no_space, quiet_store_tracebacks
from sweeplab.tracking.store import check_server, get_experiment_id, redact, resolve_uri
from sweeplab.train.callbacks import Callback, RunStart

if TYPE_CHECKING:
    from sweeplab.data import Dataset
    from sweeplab.train import RunResult

# MLflow's download bars would interleave with ours on every model logged.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow narrates every model it logs at INFO; sweeplab prints what matters itself.
logging.getLogger("mlflow").setLevel(logging.WARNING)
# MLflow's limits per log_batch call.
MAX_PARAMS, MAX_METRICS = 100, 1000


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


class MlflowTracker(Callback):
    """Logs one run to MLflow. Use as a context manager around `train.run`, so that a crash
    or Ctrl-C still closes the run as FAILED or KILLED with the reason."""

    def __init__(self, cfg: TrackingConfig, *, overrides: list[str] | None = None,
                 parent_run_id: str | None = None, tags: Mapping[str, str] | None = None,
                 flush_seconds: float = 5.0) -> None:
        self.cfg = cfg
        self.uri = resolve_uri(cfg)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.overrides = overrides or []
        self.parent_run_id = parent_run_id
        self.extra_tags = dict(tags or {})
        self.flush_seconds = flush_seconds
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._pending: list[Metric] = []
        self._last_flush = 0.0
        self._closed = False
        quiet_store_tracebacks()  # on a Dask worker too, which called no prepare_store

    # -- context manager: closes the run whatever happens ---------------------------------
    def __enter__(self) -> MlflowTracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if self.run_id is None or self._closed:
            return
        self.flush()
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        # A full disk is the machine's failure, not the run's: the sweep runs it again.
        full = no_space(exc) if exc is not None else None
        status = RunStatus.INTERRUPTED if interrupted or full else RunStatus.ERROR
        reason = "interrupted" if interrupted else full if full else f"{exc_type}: {exc}"
        self.client.log_batch(self.run_id, tags=[RunTag(Tag.STATUS, status),
                                                 RunTag(Tag.REASON, reason[:5000])])
        self.client.set_terminated(self.run_id, MLFLOW_STATUS[status])
        self._closed = True

    # -- callback -------------------------------------------------------------------------
    def on_train_start(self, start: RunStart) -> None:
        check_server(self.uri)  # one line now, rather than MLflow's retries for a minute
        self.experiment_id = get_experiment_id(self.client, self.cfg.experiment, self.uri)
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
        run = self.client.create_run(self.experiment_id, run_name=start.run_name, tags=tags)
        self.run_id = run.info.run_id
        # A password in tracking.uri is the user's, not the run's: logged redacted (MLflow
        # reads credentials from MLFLOW_TRACKING_USERNAME / _PASSWORD).
        logged = dataclasses.replace(start.config, tracking=dataclasses.replace(
            start.config.tracking, uri=redact(start.config.tracking.uri)
            if start.config.tracking.uri else None))
        params = [Param(k, str(v)) for k, v in flatten(logged).items()]
        for i in range(0, len(params), MAX_PARAMS):
            self.client.log_batch(self.run_id, params=params[i:i + MAX_PARAMS])
        self._log_datasets(start.dataset)
        config_yaml = OmegaConf.to_yaml(OmegaConf.structured(logged))
        self.client.log_text(self.run_id, config_yaml, "config.yaml")
        self.client.log_text(self.run_id, OmegaConf.to_yaml([redact(o) for o in self.overrides]),
                             "overrides.yaml")
        self.client.log_text(self.run_id, start.summary + "\n", "summary.txt")
        if dirty:
            self.client.log_text(self.run_id, diff, "git_diff.patch")
        self._last_flush = time.monotonic()

    def _log_datasets(self, data: Dataset) -> None:
        """The dataset inputs. Parallel sweep workers can race to add the same dataset to the
        store, and the loser's insert fails: it is tried again (it then finds the dataset),
        then only warned about, since the inputs describe the run and rerunning needs none."""
        from mlflow.exceptions import MlflowException

        assert self.run_id is not None
        inputs = dataset_inputs(data)
        for attempt in range(2):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except MlflowException as err:
                if attempt:
                    logging.getLogger(__name__).warning("dataset inputs not logged: %s", err)

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        ts = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        # Batched: one call per few seconds of training, never one per point.
        if time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.run_id is None:
            return
        for i in range(0, len(self._pending), MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=self._pending[i:i + MAX_METRICS])
        self._pending = []
        self._last_flush = time.monotonic()

    def on_train_end(self, result: RunResult) -> None:
        assert self.run_id is not None, "on_train_start was not called"
        # The model is created first, so the final metrics can name it (its page in the UI
        # shows them); the run is marked finished only once the model is READY.
        model_id = None
        if self.cfg.log_model and result.status != RunStatus.DIVERGED:
            model_id = self.client.create_logged_model(
                self.experiment_id, name="model", source_run_id=self.run_id).model_id
        ts = int(time.time() * 1000)
        # Final metrics are measured after the last update, i.e. where epoch `epochs_run`
        # would start; at the last log step they would share it with val_accuracy's history
        # point, and MLflow's latest value would be either of the two.
        step = result.epochs_run
        self._pending += [Metric(k, float(v), ts, step, model_id=model_id)
                          for k, v in result.metrics.items()]
        self.flush()
        tags = [RunTag(Tag.STATUS, result.status),
                RunTag(Tag.EPOCHS_RUN, str(result.epochs_run))]
        if result.reason:
            tags.append(RunTag(Tag.REASON, result.reason[:5000]))
        self.client.log_batch(self.run_id, tags=tags)
        if self.cfg.log_plots and len(result.costs):
            from sweeplab.tracking import plots

            fig = plots.cost_curve(result)
            self.client.log_figure(self.run_id, fig, "plots/cost_curve.png")
            plots.close(fig)
        if model_id is not None:
            self.log_model(result, model_id)
            self.client.set_tag(self.run_id, Tag.MODEL_URI, f"models:/{model_id}")
        self.client.set_terminated(self.run_id, MLFLOW_STATUS[result.status])
        self._closed = True

    def log_model(self, result: RunResult, model_id: str) -> None:
        """Write the network as an MLflow pyfunc model into LoggedModel `model_id` (created
        with this run as its source, `models:/<model_id>`), and mark it READY; FAILED if
        writing it fails."""
        import mlflow.pyfunc
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus
        from mlflow.models import Model, infer_signature

        from sweeplab.tracking import model_file, pyfunc

        assert self.run_id is not None
        net, data = result.network, result.dataset
        # MLflow stores the example as JSON: one row is enough for wide inputs (a cat image
        # is 12,288 numbers).
        example = data.X_train[:, :5 if data.n_x <= 256 else 1].T.copy()
        signature = infer_signature(example, net.predict(example.T.copy()))
        versions = provenance.versions()
        reqs = [f"numpy=={versions['numpy']}", f"h5py=={versions['h5py']}",
                f"mlflow=={versions['mlflow']}"]
        try:
            logged = self.client.get_logged_model(model_id)
            with tempfile.TemporaryDirectory() as tmp:
                weights = model_file.save(net, Path(tmp) / "network.h5", data.classes)
                local = Path(tmp) / "model"
                mlflow.pyfunc.save_model(
                    local, python_model=pyfunc.__file__, artifacts={"network": str(weights)},
                    signature=signature, input_example=example, pip_requirements=reqs,
                    mlflow_model=Model(artifact_path=logged.artifact_location,
                                       model_uuid=model_id, run_id=self.run_id,
                                       model_id=model_id))
                self.client.log_model_artifacts(model_id, str(local))
        except BaseException:
            self.client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)
            raise
        self.client.finalize_logged_model(model_id, LoggedModelStatus.READY)
        self.client.log_outputs(self.run_id, [LoggedModelOutput(model_id, result.epochs_run)])
