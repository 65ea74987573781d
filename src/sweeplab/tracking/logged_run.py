"""Read a logged sweeplab run back: the run, its config.yaml, that config with overrides.

    client = open_store(uri); run = fetch_run(client, run_id, uri)
    logged = logged_config(client, run); cfg = apply_overrides(logged, ["train.epochs=500"])

Every failure is a `RunError` whose message says what is wrong and what to do.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweeplab.config import Config, flatten, to_config
from sweeplab.names import TAG_PREFIX, Role, Tag
from sweeplab.tracking.store import (
    TrackingServerError,
    TrackingStoreError,
    check_server,
    check_uri,
    check_writable,
    deleted,
    redact,
)

CONFIG_ARTIFACT = "config.yaml"
# Keys added to the schema after a run was logged take the value that reproduces that run,
# not today's default: before train.first_layer existed, every run used the direct form.
ADDED_KEYS = {"train.first_layer": "direct"}


class RunError(Exception):
    """A logged run cannot be read back or used as asked; the message says why."""


def open_store(uri: str, write: bool = True) -> MlflowClient:
    """A client on the existing store at `uri` (RunError if there is none, or if `write`
    and it may not be written)."""
    try:
        check_uri(uri, key="the tracking URI")
        check_server(uri)
    except (TrackingServerError, TrackingStoreError) as err:
        raise RunError(str(err)) from None
    # MLflow would quietly create an empty SQLite store where there is none.
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])  # without ?timeout=...
        if not db.is_file():
            raise RunError(f"no MLflow store at {db} (run from the folder holding mlflow.db, "
                           f"or pass --tracking-uri / set $MLFLOW_TRACKING_URI)")
        try:  # a rerun logs a run of its own
            if write:
                check_writable(db, uri, key="the tracking URI")
        except TrackingStoreError as err:
            raise RunError(str(err)) from None
    try:
        return MlflowClient(uri)
    except MlflowException as err:  # a scheme MLflow has no store for, say
        first = str(err.message).strip().splitlines()[0][:300] if err.message else ""
        raise RunError(f"cannot open the tracking store {uri} ({first}); pass --tracking-uri "
                       f"sqlite:///<path>/mlflow.db, postgresql://... or "
                       f"http(s)://<server>") from None


def fetch_run(client: MlflowClient, run_id: str, uri: str) -> Run:
    """Run `run_id` of the store at `uri`; RunError if it has none (or it is deleted)."""
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RunError(f"no run {run_id} in {uri}; a run logged to another store is "
                           f"rerun with --tracking-uri <that store> (make rerun RUN=... "
                           f"ARGS=\"--tracking-uri ...\")") from None
        raise RunError(f"cannot read run {run_id} from {uri}: {err.message}") from None
    # The rerun goes into the original's experiment, where MLflow refuses a new run once
    # it is deleted; restoring the experiment restores its runs, so it is named first.
    experiment = client.get_experiment(run.info.experiment_id)
    if experiment.lifecycle_stage == "deleted":
        raise RunError(f"run {run_id} is in experiment {experiment.name!r}, which "
                       f"{deleted(experiment, uri)}, then rerun")
    if run.info.lifecycle_stage == "deleted":  # rerun silently before
        raise RunError(f"run {run_id} is deleted in {redact(uri)}; restore it "
                       f"(MLFLOW_TRACKING_URI={redact(uri)} mlflow runs restore --run-id "
                       f"{run_id}) to rerun it")
    return run


def logged_config(client: MlflowClient, run: Run) -> DictConfig:
    """The run's config.yaml, after checking that sweeplab made the run."""
    run_id = run.info.run_id
    if not any(k.startswith(TAG_PREFIX) for k in run.data.tags):
        raise RunError(f"run {run_id} was not made by sweeplab (no {TAG_PREFIX}* tags)")
    if run.data.tags.get(Tag.ROLE) == Role.SWEEP:
        best = run.data.tags.get(Tag.BEST_RUN_ID)
        raise RunError(f"run {run_id} is a sweep's parent run, which trains nothing: rerun "
                       f"one of its trials, the runs nested under it"
                       + (f", e.g. its best, {best}" if best else ""))
    if CONFIG_ARTIFACT not in {a.path for a in client.list_artifacts(run_id)}:
        raise RunError(f"run {run_id} has no {CONFIG_ARTIFACT} artifact, so its config is "
                       f"unknown (was it interrupted before training started?)")
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, CONFIG_ARTIFACT, tmp)
        try:
            cfg = OmegaConf.load(path)
        except yaml.YAMLError as err:  # edited or damaged since it was logged
            where = str(getattr(err, "problem_mark", "")).strip().replace("\n", " ")
            raise RunError(f"run {run_id}: its {CONFIG_ARTIFACT} artifact is not valid YAML "
                           f"({getattr(err, 'problem', None) or type(err).__name__}"
                           f"{', ' + where if where else ''}); fix the artifact or rerun "
                           f"another run") from None
    if not isinstance(cfg, DictConfig):
        raise RunError(f"run {run_id}: {CONFIG_ARTIFACT} is not a mapping of config keys")
    for key, then in ADDED_KEYS.items():
        section = key.rsplit(".", 1)[0]
        if OmegaConf.select(cfg, section) is not None and \
                OmegaConf.select(cfg, key, default="<missing>") == "<missing>":
            OmegaConf.update(cfg, key, then)
    return cfg


def typed_config(logged: DictConfig, run_id: str) -> Config:
    """The logged config, typed and checked against today's schema."""
    try:
        return to_config(logged)
    except OmegaConfBaseException as err:
        raise RunError(f"the {CONFIG_ARTIFACT} of run {run_id} does not fit today's config "
                       f"schema: {err}") from None


# Where a rerun is logged is its original's store and experiment, whatever its config says.
PLACED_BY_ORIGINAL = ("tracking.uri", "tracking.experiment", "tracking.enabled")


def apply_overrides(logged: DictConfig, overrides: Sequence[str]) -> Config:
    """The logged config with `key=value` overrides (YAML values, existing keys only),
    type- and value-checked. Hydra's group choices (``data=planar``) and ``+key`` do not
    apply: a logged config is already composed."""
    cfg = OmegaConf.merge(OmegaConf.structured(Config), logged)
    known = set(flatten(cfg))
    for item in overrides:
        key, eq, _ = item.partition("=")
        if not eq or not key:
            raise RunError(f"override {item!r}: expected key=value, e.g. train.epochs=5000")
        inside = sorted(k for k in known if k.startswith(key + ".")
                        and k not in PLACED_BY_ORIGINAL)
        if key not in known and inside:
            raise RunError(f"override {item!r}: {key!r} is a config section, not a value; "
                           f"a logged config is already composed, so set its keys instead "
                           f"(e.g. {inside[0]}=...)")
        if key not in known:
            raise RunError(f"override {item!r}: the config has no key {key!r} (keys look "
                           f"like train.epochs, model.depth, optim.lr)")
        if key in PLACED_BY_ORIGINAL:  # they were ignored, yet recorded as the rerun's
            raise RunError(f"override {item!r}: a rerun is always logged beside its "
                           f"original, in its experiment, so {key} does not apply; "
                           f"--tracking-uri names the store the original is in")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as err:
            raise RunError(f"override {item!r}: {str(err).splitlines()[0]}") from None
        except yaml.YAMLError as err:  # `model.hidden=[5,5`, say
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise RunError(f"override {item!r}: its value is not YAML ({first}); write "
                           f"lists as [5, 5] and quote text with brackets or colons") from None
    return to_config(cfg)
