"""Typed run configuration: the schema Hydra checks types against, and the value checks.

The dataclasses are registered in Hydra's ConfigStore (`register_configs`), so a
composed config is type-checked by OmegaConf (``model.depth=abc`` fails with the key
named). `validate` then checks values and reports every problem at once, each naming
the key, the value and what is allowed, before any run is created.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweeplab import nn
from sweeplab.names import OBJECTIVES, Metric

# Choices the network offers come from sweeplab.nn's own registries.
ACTIVATIONS = tuple(nn.ACTIVATIONS)
OUTPUTS = ("auto", *nn.OUTPUTS)  # auto: sigmoid for 2 classes, softmax beyond
INITS = tuple(nn.INITS)
OPTIMIZERS = tuple(nn.OPTIMIZERS)
DTYPES = tuple(nn.DTYPES)
FIRST_LAYER_FORMS = ("auto", *nn.STEPPERS)  # auto: see nn.resolve_stepper
BUILTIN_DATASETS = ("planar", "moons", "circles", "digits", "breast_cancer")
DATASETS = (*BUILTIN_DATASETS, "catvnoncat", "h5")


# Schemes of a tracking URI MLflow's client opens (a plain path is a folder store).
TRACKING_SCHEMES = ("file", "sqlite", "postgresql", "mysql", "mssql", "http", "https",
                    "databricks")
# MLflow 3.17 accepts 500 characters but its SQL stores keep 256 (experiments.name).
MAX_EXPERIMENT_NAME = 256
# A sweep's name goes into the key of its saved view in the MLflow UI, an experiment tag
# (mlflow.sharedViewState.sweeplab-<name>), whose keys MLflow caps at 250 characters.
MAX_SWEEP_NAME = 200

# Seeds feed NumPy's SeedSequence and, for the course's initialisations, RandomState.
MAX_SEED = 2**32 - 1
# Replicates per confirmed configuration: each is a full training run.
MAX_CONFIRM_SEEDS = 1000


class ConfigError(ValueError):
    """A config value is not allowed; the message lists every offending key."""


@dataclass
class DataConfig:
    name: str = "digits"
    # Folder holding the HDF5 files (catvnoncat, h5); for built-ins, where they are cached.
    dir: str | None = None
    train_file: str | None = None
    test_file: str | None = None
    x_train_key: str = "train_set_x"
    y_train_key: str = "train_set_y"
    x_test_key: str = "test_set_x"
    y_test_key: str = "test_set_y"
    classes_key: str = "list_classes"
    # Divide X by this; null = 255 for uint8 images, 16 for digits, 1 otherwise.
    scale: float | None = None
    # Standardise each feature with the training split's mean and std (always on for
    # breast_cancer, whose features span very different ranges).
    standardize: bool = False
    val_fraction: float = 0.0
    # Built-in generators.
    n_samples: int = 400
    noise: float = 0.2
    # digits: null = all 10 classes; an int = that digit vs the rest.
    digit: int | None = None
    # Seed of the built-in generators and of their train/test split (not the run's seed).
    generator_seed: int = 1


@dataclass
class ModelConfig:
    depth: int = 2
    width: int = 32
    hidden: list[int] | None = None
    activation: str = "relu"
    output: str = "auto"
    init: str = "he"
    dtype: str = "float64"
    keep_prob: float = 1.0
    leaky_slope: float = 0.01


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 0.01
    beta: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    l2: float = 0.0


@dataclass
class EarlyStoppingConfig:
    # Stop after this many log points without val_cost improving; null = off.
    patience: int | None = None
    min_delta: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int | None = None
    log_every: int = 10
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    # null = a bar on a terminal for runs longer than a couple of seconds.
    progress: bool | None = None
    # How layer 1's W[1] X is computed: direct, or dual (W[1] = a W1₀ + R Xᵀ with XᵀX
    # computed once, see sweeplab.nn.dual); auto = dual for full-batch gd/momentum when
    # m <= n_x / 4 (the course's cat images), else direct.
    first_layer: str = "auto"


@dataclass
class TrackingConfig:
    enabled: bool = True
    # null = $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory.
    uri: str | None = None
    experiment: str = "sweeplab"
    run_name: str | None = None
    log_model: bool = True
    log_plots: bool = True


SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc", "grid", "nsgaii")
PRUNERS = ("median", "hyperband", "successive_halving", "none")
WRITERS = ("process", "inline")
DIRECTIONS = ("minimize", "maximize")


@dataclass
class ConfirmConfig:
    """The confirmation stage after a search (sweep/confirm.py)."""

    # Retrain the best `top_k` distinct configurations of the search; 0 = no confirmation.
    top_k: int = 5
    # Replicates per configuration, each with its own run seed (initialisation, validation
    # split, mini-batch order, dropout); at least 2, for a confidence interval.
    seeds: int = 5


@dataclass
class SweepConfig:
    # The study's name: running the same name again resumes it.
    name: str = "default"
    # Finished trials wanted in total (complete, pruned or diverged), resumes included.
    n_trials: int = 40
    # Trials at once: 1 runs them in the sweep process; N > 1 on a local Dask cluster of N
    # single-threaded worker processes (unless `cluster` is set).
    n_jobs: int = 1
    # An existing Dask scheduler (tcp://host:8786) whose workers run the trials; null = none.
    cluster: str | None = None
    # Who writes a trial's MLflow run when trials run in the sweep process (n_jobs=1):
    # `process`, a writer process beside it, so the logging overlaps the next trial's
    # training on another core; `inline`, the trial itself. Dask workers log inline.
    writer: str = "process"
    # Optuna storage URL; null = a journal file in .sweeplab/ (safe for parallel workers).
    storage: str | None = None
    sampler: str = "tpe"
    seed: int | None = 0
    pruner: str = "median"
    # Extra keyword arguments for the pruner (e.g. n_warmup_steps for median).
    pruner_args: dict[str, Any] = field(default_factory=dict)
    objective: str = Metric.VAL_COST
    direction: str = "minimize"
    # Multi-objective: a list of metrics and one direction each (then no pruning).
    objectives: list[str] | None = None
    directions: list[str] | None = None
    # Search space in Hydra's override grammar: key -> choice(...), range(...),
    # interval(...), tag(log, interval(...)), int(interval(...)). Keys are dotted
    # (model.depth: ...) as in Hydra's Optuna sweeper, or nested, which the command line
    # can add to: +sweep.params.model.keep_prob='interval(0.5, 1.0)'.
    params: dict[str, Any] = field(default_factory=dict)
    # Stop when this fraction of finished trials failed (after min_trials_for_failure_rate).
    max_failure_rate: float = 0.5
    min_trials_for_failure_rate: int = 5
    # Register the best trial's model under this name with alias `champion`; null = don't.
    register_model: str | None = "sweeplab-${sweep.name}"
    # Stop starting new trials after this many seconds; null = no limit.
    timeout: float | None = None
    # After a search that ended normally: its top configurations retrained across seeds.
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)


@dataclass
class Config:
    seed: int = 1
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # Only the sweep app (conf/sweep_app.yaml) fills this; a single run leaves it null.
    sweep: SweepConfig | None = None


def objectives_of(s: SweepConfig) -> tuple[list[str], list[str]]:
    """The sweep's objectives and their directions, one objective or several alike."""
    objectives = list(s.objectives) if s.objectives is not None else [s.objective]
    directions = list(s.directions) if s.directions is not None else [s.direction]
    return objectives, directions


def register_configs() -> None:
    """Put the schema in Hydra's ConfigStore as `base_config` (used by conf/config.yaml)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="sweep", name="base_sweep", node=SweepConfig)


def _check(problems: list[str], ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        problems.append(f"{key}={value!r}: {allowed}")


# Keys only some choices read, and which: a value set away from its default for a choice
# that ignores it was accepted, logged as a param and never used (optim.beta under adam).
OPTIM_USES = {"beta": ("momentum",), "beta1": ("adam",), "beta2": ("adam",), "eps": ("adam",)}
DATA_USES = {"digit": ("digits",), "n_samples": ("planar", "moons", "circles"),
             "noise": ("planar", "moons", "circles")}


def check_used(cfg: Config) -> None:
    """Raise ConfigError if a key only some options read is set away from its default
    under another (optim.beta with Adam): a command's own config, which the user wrote.

    Not part of `validate`: a sweep's conditional space (optim.name with optim.beta) sets
    beta for every trial, and a run logged before this check must still rerun."""
    p: list[str] = []
    _unused(p, "data", cfg.data, DataConfig(), cfg.data.name, DATA_USES)
    _unused(p, "optim", cfg.optim, OptimConfig(), cfg.optim.name, OPTIM_USES)
    if p:
        raise ConfigError(f"invalid config: {p[0]}")


def _unused(problems: list[str], section: str, cfg: Any, defaults: Any, choice: str,
            uses: dict[str, tuple[str, ...]]) -> None:
    """A problem for each key of `uses` that `choice` ignores and that is not its default."""
    for key, choices in uses.items():
        value = getattr(cfg, key)
        if choice not in choices and value != getattr(defaults, key):
            problems.append(f"{section}.{key}={value!r}: {section}={choice} does not use it "
                            f"(used only by {section}={', '.join(choices)}); drop it, or "
                            f"choose {section}={choices[0]}")


def _one_of(problems: list[str], key: str, value: Any, choices: tuple[str, ...]) -> None:
    _check(problems, value in choices, key, value, f"must be one of {', '.join(choices)}")


def _finite(x: float) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def validate(cfg: Config) -> None:
    """Raise ConfigError listing every value that is not allowed (types are Hydra's job)."""
    p: list[str] = []
    d, m, o, t = cfg.data, cfg.model, cfg.optim, cfg.train
    _check(p, 0 <= cfg.seed <= MAX_SEED, "seed", cfg.seed,
           f"must be an integer in [0, {MAX_SEED}] (NumPy's seeds; the course's "
           f"initialisations take 32 bits)")
    _one_of(p, "data.name", d.name, DATASETS)
    _check(p, 0.0 <= d.val_fraction < 1.0, "data.val_fraction", d.val_fraction,
           "must be in [0, 1)")
    _check(p, d.scale is None or (_finite(d.scale) and d.scale > 0), "data.scale", d.scale,
           "must be > 0, or null (255 for uint8 images, 16 for digits, else 1)")
    _check(p, d.n_samples >= 20, "data.n_samples", d.n_samples, "must be >= 20")
    _check(p, 0 <= d.generator_seed <= MAX_SEED, "data.generator_seed", d.generator_seed,
           f"must be an integer in [0, {MAX_SEED}]")
    _check(p, _finite(d.noise) and d.noise >= 0, "data.noise", d.noise, "must be >= 0")
    _check(p, d.digit is None or 0 <= d.digit <= 9, "data.digit", d.digit,
           "must be null (all 10 classes) or a digit 0..9 (that digit vs the rest)")
    if d.name == "h5":
        _check(p, d.train_file is not None, "data.train_file", d.train_file,
               "must name the training HDF5 file when data.name=h5")

    _check(p, m.depth >= 0, "model.depth", m.depth,
           "must be an integer >= 0 (0 = logistic regression)")
    _check(p, m.width >= 1, "model.width", m.width, "must be an integer >= 1")
    if m.hidden is not None:
        _check(p, all(n >= 1 for n in m.hidden), "model.hidden", list(m.hidden),
               "must be a list of layer sizes >= 1 (or null to use depth and width)")
        _hidden_or_depth(p, cfg)
    _one_of(p, "model.activation", m.activation, ACTIVATIONS)
    _one_of(p, "model.output", m.output, OUTPUTS)
    _one_of(p, "model.init", m.init, INITS)
    _one_of(p, "model.dtype", m.dtype, DTYPES)
    _check(p, _finite(m.keep_prob) and 0 < m.keep_prob <= 1, "model.keep_prob", m.keep_prob,
           "must be in (0, 1] (1 = no dropout)")
    _check(p, _finite(m.leaky_slope) and 0 <= m.leaky_slope < 1, "model.leaky_slope",
           m.leaky_slope, "must be in [0, 1)")

    _one_of(p, "optim.name", o.name, OPTIMIZERS)
    _check(p, _finite(o.lr) and o.lr > 0, "optim.lr", o.lr, "must be a number > 0")
    for key in ("beta", "beta1", "beta2"):
        v = getattr(o, key)
        _check(p, _finite(v) and 0 <= v < 1, f"optim.{key}", v, "must be in [0, 1)")
    _check(p, _finite(o.eps) and o.eps > 0, "optim.eps", o.eps, "must be > 0")
    _check(p, _finite(o.l2) and o.l2 >= 0, "optim.l2", o.l2, "must be >= 0 (0 = no L2)")

    _check(p, t.epochs >= 1, "train.epochs", t.epochs, "must be an integer >= 1")
    _check(p, t.batch_size is None or t.batch_size >= 1, "train.batch_size", t.batch_size,
           "must be an integer >= 1, or null for full batch")
    _check(p, t.log_every >= 1, "train.log_every", t.log_every, "must be an integer >= 1")
    _one_of(p, "train.first_layer", t.first_layer, FIRST_LAYER_FORMS)
    if t.first_layer == "dual":
        _check(p, o.name in ("gd", "momentum"), "train.first_layer", t.first_layer,
               f"needs optim.name gd or momentum (got {o.name!r}: Adam's update is not "
               f"linear in the gradient); use auto or direct")
        _check(p, t.batch_size is None, "train.first_layer", t.first_layer,
               f"needs full batch, train.batch_size=null (got {t.batch_size}); "
               f"use auto or direct")
    es = t.early_stopping
    _check(p, es.patience is None or es.patience >= 1, "train.early_stopping.patience",
           es.patience, "must be an integer >= 1, or null for no early stopping")
    if es.patience is not None:
        _check(p, d.val_fraction > 0, "train.early_stopping.patience", es.patience,
               "needs a validation split: set data.val_fraction > 0")
    _check(p, _finite(es.min_delta) and es.min_delta >= 0, "train.early_stopping.min_delta",
           es.min_delta, "must be >= 0")
    _check_tracking(p, cfg.tracking)

    if cfg.sweep is not None:
        _validate_sweep(p, cfg)
    if len(p) == 1:  # one line, so the CLI's "error: ..." names the key
        raise ConfigError(f"invalid config: {p[0]}")
    if p:
        raise ConfigError("invalid config:\n  " + "\n  ".join(p))


def _hidden_or_depth(p: list[str], cfg: Config) -> None:
    """An explicit model.hidden wins over depth and width: refuse a depth or width that
    would then be logged but not used (their defaults are taken as not given), and a search
    over them, whose every trial would train the same network."""
    m, default = cfg.model, ModelConfig()
    hidden = list(m.hidden or [])
    for key in ("depth", "width"):
        if getattr(m, key) != getattr(default, key):
            p.append(f"model.hidden={hidden} and model.{key}={getattr(m, key)}: an explicit "
                     f"hidden list sets every layer and would ignore model.{key}; give one "
                     f"or the other (model.hidden=null to use depth and width)")
    searched = [k for k in ("model.depth", "model.width")
                if cfg.sweep is not None and k in cfg.sweep.params]
    for key in searched:
        p.append(f"sweep.params.{key} with model.hidden={hidden}: the hidden list would "
                 f"ignore {key} in every trial; set model.hidden=null to search it")


def _check_tracking(p: list[str], t: TrackingConfig) -> None:
    _check(p, bool(t.experiment), "tracking.experiment", t.experiment,
           "must be a non-empty name")
    _check(p, len(t.experiment) <= MAX_EXPERIMENT_NAME, "tracking.experiment",
           t.experiment[:40] + "...", f"is {len(t.experiment)} characters long; MLflow's "
           f"stores keep at most {MAX_EXPERIMENT_NAME}")
    if t.uri is not None and "://" in t.uri:
        scheme = t.uri.split("://", 1)[0]
        # The value shown without what follows the scheme: it may hold a password.
        _check(p, scheme.split("+", 1)[0].lower() in TRACKING_SCHEMES, "tracking.uri",
               f"{scheme}://...", "MLflow cannot open this scheme; use sqlite:///<path>, "
               "postgresql://..., mysql://..., http(s)://<server>, or null "
               "($MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")


def _registrable(name: str) -> bool:
    """Whether MLflow's model registry takes `name` (MLflow 3.17 refuses '/' and ':', and a
    name a path would read otherwise, such as '..champ', only once the sweep has run)."""
    return not name.strip() or (not any(c in name for c in "/:") and
                                not name.startswith(".") and os.path.normpath(name) == name)


def local_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _validate_sweep(p: list[str], cfg: Config) -> None:
    s = cfg.sweep
    assert s is not None
    _check(p, bool(s.name) and "/" not in s.name, "sweep.name", s.name,
           "must be a non-empty name without '/'")
    _check(p, len(s.name) <= MAX_SWEEP_NAME, "sweep.name", f"<{len(s.name)} characters>",
           f"must be at most {MAX_SWEEP_NAME} characters (it names the sweep's saved view "
           f"in the MLflow UI)")
    _check(p, s.n_trials >= 1, "sweep.n_trials", s.n_trials, "must be an integer >= 1")
    _check(p, s.n_jobs >= 1, "sweep.n_jobs", s.n_jobs, "must be an integer >= 1")
    cores = local_cores()
    # A worker per core at most: 1000 started ~600 processes that a SIGTERM could not stop.
    _check(p, s.cluster is not None or s.n_jobs <= cores, "sweep.n_jobs", s.n_jobs,
           f"must be at most {cores}, this machine's cores, for a local cluster (more workers "
           f"would only wait for a core); for more, run `dask worker` on other hosts and set "
           f"sweep.cluster=tcp://<scheduler>:8786")
    _check(p, s.cluster is None or s.cluster.startswith(("tcp://", "tls://")), "sweep.cluster",
           s.cluster, "must be a Dask scheduler address such as tcp://host:8786, or null")
    _one_of(p, "sweep.sampler", s.sampler, SAMPLERS)
    _one_of(p, "sweep.pruner", s.pruner, PRUNERS)
    _one_of(p, "sweep.writer", s.writer, WRITERS)
    _check(p, 0 < s.max_failure_rate <= 1, "sweep.max_failure_rate", s.max_failure_rate,
           "must be in (0, 1]")
    _check(p, s.min_trials_for_failure_rate >= 1, "sweep.min_trials_for_failure_rate",
           s.min_trials_for_failure_rate,
           "must be an integer >= 1 (finished trials before the failure rate is judged)")
    _check(p, s.seed is None or 0 <= s.seed <= MAX_SEED, "sweep.seed", s.seed,
           f"must be an integer in [0, {MAX_SEED}] (the sampler's seed), or null")
    _check(p, s.register_model is None or bool(s.register_model.strip()),
           "sweep.register_model", s.register_model,
           "must be a model name, or null (register nothing)")
    # MLflow's registry refuses these only when the sweep has run (and its summary with it)
    _check(p, s.register_model is None or _registrable(s.register_model),
           "sweep.register_model", s.register_model,
           "must be a model name without '/' or ':', not starting with '.' (MLflow's "
           "registry refuses them; it is sweeplab-${sweep.name} by default: rename the "
           "sweep, or set sweep.register_model), or null (register nothing)")
    _check(p, s.register_model is None or len(s.register_model) <= MAX_EXPERIMENT_NAME,
           "sweep.register_model", f"<{len(s.register_model or '')} characters>",
           f"must be at most {MAX_EXPERIMENT_NAME} characters")
    _check(p, s.timeout is None or s.timeout > 0, "sweep.timeout", s.timeout,
           "must be a number of seconds > 0, or null (no limit)")
    _check(p, s.params != {}, "sweep.params", s.params,
           "must name at least one config key to search, e.g. {model.depth: 'range(1, 6)'}")
    objectives, directions = objectives_of(s)
    key = "sweep.objectives" if s.objectives is not None else "sweep.objective"
    for obj in objectives:
        if obj.startswith("test"):
            p.append(f"{key}={obj!r}: the test set is never an objective; use val_cost or "
                     f"val_accuracy (test_accuracy is reported, not optimised)")
        else:
            _one_of(p, key, obj, OBJECTIVES)
        if obj.startswith("val") and cfg.data.val_fraction == 0:
            p.append(f"{key}={obj!r}: needs a validation split, but data.val_fraction=0")
    for d in directions:
        _one_of(p, "sweep.directions" if s.directions is not None else "sweep.direction", d,
                DIRECTIONS)
    c = s.confirm
    _check(p, c.top_k >= 0, "sweep.confirm.top_k", c.top_k,
           "must be an integer >= 0 (0 = no confirmation stage)")
    _check(p, c.top_k == 0 or c.seeds >= 2, "sweep.confirm.seeds", c.seeds,
           "must be an integer >= 2 (a confidence interval needs two replicates), or set "
           "sweep.confirm.top_k=0")
    _check(p, c.seeds <= MAX_CONFIRM_SEEDS, "sweep.confirm.seeds", c.seeds,
           f"must be at most {MAX_CONFIRM_SEEDS}")
    if len(directions) != len(objectives):
        p.append(f"sweep.directions={directions}: needs one direction per objective "
                 f"({len(objectives)}: {objectives})")


def unknown_keys(node: Any, schema: type | None = None, path: str = "") -> list[str]:
    """Every key of `node` (a mapping) that the schema has no place for, each with a hint.
    (Merging onto the schema would drop them silently: ``+model.foo=1`` would do nothing.)"""
    schema = schema or Config
    if not isinstance(node, dict):
        return []
    names = [f.name for f in dataclasses.fields(schema)]
    hints = typing.get_type_hints(schema)
    out = []
    for key, value in node.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            out.append(f"{path}{key}: no such key" + (
                f" (did you mean {path}{close[0]}?)" if close
                else f"; {path.rstrip('.') or 'the config'} has {', '.join(names)}"))
            continue
        sub = next((t for t in (hints[key], *typing.get_args(hints[key]))
                    if dataclasses.is_dataclass(t)), None)
        if sub is not None:
            out += unknown_keys(value, sub, f"{path}{key}.")  # type: ignore[arg-type]
    return out


def to_config(cfg: DictConfig | Config | dict[str, Any]) -> Config:
    """Merge any config (Hydra's, a logged config.yaml, a dict) onto the schema, type-check it,
    check its values, and return the typed object."""
    if not isinstance(cfg, Config):
        plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) \
            else cfg
        unknown = unknown_keys(plain)
        if unknown:
            raise ConfigError("invalid config: " + "; ".join(unknown))
    merged = OmegaConf.merge(OmegaConf.structured(Config), cfg)
    typed: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    validate(typed)
    return typed


def flatten(cfg: Config | DictConfig, prefix: str = "") -> dict[str, Any]:
    """Flatten a config to dotted keys (``model.depth``), the way MLflow params are named."""
    # A typed config is resolved and checked already: its plain dict is the same data,
    # in a tenth of OmegaConf's time (a sweep's writer flattens one per trial).
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) \
        else dataclasses.asdict(cfg)
    out: dict[str, Any] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        else:
            out[path] = node

    walk(container, prefix)
    return out
