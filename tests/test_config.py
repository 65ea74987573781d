"""Config: every group file composes and type-checks; bad values fail naming key, value and
what is allowed; the CLI refuses a bad config before any MLflow run exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from helpers import CONF_DIR, REPO, compose_config
from sweeplab import train
from sweeplab.config import (
    ACTIVATIONS,
    DATASETS,
    Config,
    ConfigError,
    flatten,
    local_cores,
    to_config,
    validate,
)


def _groups() -> list[str]:
    """The groups conf/config.yaml's defaults list picks from."""
    defaults = yaml.safe_load((CONF_DIR / "config.yaml").read_text())["defaults"]
    return [next(iter(d)) for d in defaults if isinstance(d, dict)]


GROUP_FILES = [(g, f.stem) for g in _groups() for f in sorted((CONF_DIR / g).glob("*.yaml"))]


def test_groups_found() -> None:
    # The parametrisation below must not silently shrink to nothing.
    assert {"data", "model", "optim", "train", "tracking"} <= set(_groups())
    assert {g for g, _ in GROUP_FILES} >= {"data", "model", "optim", "train", "tracking"}


@pytest.mark.parametrize(("group", "name"), GROUP_FILES, ids=[f"{g}={n}" for g, n in GROUP_FILES])
def test_every_group_file_composes(compose, group: str, name: str) -> None:
    extra = ["data.train_file=train.h5"] if (group, name) == ("data", "h5") else []
    cfg = compose(f"{group}={name}", *extra)
    typed = to_config(cfg)  # type-checked against the schema and value-checked
    assert isinstance(typed, Config)
    # Each value the file sets is what the composed config holds (experiments are
    # `# @package _global_`, so their keys are top-level paths).
    raw = yaml.safe_load((CONF_DIR / group / f"{name}.yaml").read_text()) or {}
    raw.pop("defaults", None)
    node = OmegaConf.create(raw if group == "experiment" else {group: raw})
    overridden = {o.split("=", 1)[0] for o in extra}
    for key, value in flatten(node).items():
        if key not in overridden:
            assert OmegaConf.select(cfg, key) == value, key


def test_every_config_file_starts_with_a_usage_comment() -> None:
    files = [CONF_DIR / "config.yaml", *(CONF_DIR / g / f"{n}.yaml" for g, n in GROUP_FILES)]
    for f in files:
        lines = f.read_text().lstrip().splitlines()
        # Hydra needs a `# @package` header on the very first line; the usage line follows.
        first = lines[1] if lines[0].startswith("# @package") else lines[0]
        assert first.startswith("#") and "usage" in first.lower(), f


def test_default_config_is_valid(compose) -> None:
    typed = to_config(compose())
    assert typed.data.name in DATASETS
    assert typed.model.activation in ACTIVATIONS


BAD_VALUES = [
    ("model.depth=-1", "model.depth", "-1", ">= 0"),
    ("model.width=0", "model.width", "0", ">= 1"),
    ("optim.lr=0", "optim.lr", "0", "> 0"),
    ("model.keep_prob=0", "model.keep_prob", "0", "(0, 1]"),
    ("model.keep_prob=1.5", "model.keep_prob", "1.5", "(0, 1]"),
    ("model.activation=gelu", "model.activation", "gelu", ", ".join(ACTIVATIONS)),
    ("data.name=mnist", "data.name", "mnist", "planar"),
    ("train.batch_size=0", "train.batch_size", "0", ">= 1"),
    ("seed=-5", "seed", "-5", "[0, 4294967295]"),
    ("seed=4294967296", "seed", "4294967296", "[0, 4294967295]"),
    ("data.generator_seed=-1", "data.generator_seed", "-1", "[0, 4294967295]"),
]


# Sweep settings that used to start a study (a timeout of 0 s, a negative one, an empty
# model name registering nothing) or stop it on a traceback (a failure rate judged after 0
# trials, a negative sampler seed): composed with the sweep app.
BAD_SWEEP_VALUES = [
    ("sweep.min_trials_for_failure_rate=0", "sweep.min_trials_for_failure_rate", "0", ">= 1"),
    ("sweep.seed=-1", "sweep.seed", "-1", "[0, 4294967295]"),
    ("sweep.timeout=-5", "sweep.timeout", "-5.0", "> 0, or null"),
    ("sweep.timeout=0", "sweep.timeout", "0.0", "> 0, or null"),
    ("sweep.register_model=", "sweep.register_model", "''", "a model name, or null"),
    # refused by MLflow's registry once the whole sweep had run: a traceback, parent RUNNING
    ("sweep.register_model=a/b", "sweep.register_model", "a/b", "without '/' or ':'"),
    ("sweep.register_model=..champ", "sweep.register_model", "..champ", "not starting with"),
    # the saved view's key went over MLflow's 250 characters after the parent run existed
    ("sweep.name=" + "x" * 201, "sweep.name", "<201 characters>", "at most 200"),
    # a local cluster of 1000 workers: ~600 processes, which a SIGTERM did not stop
    (f"sweep.n_jobs={local_cores() + 1}", "sweep.n_jobs", str(local_cores() + 1),
     f"at most {local_cores()}, this machine's cores"),
]
BAD_CASES = [(*b, "config") for b in BAD_VALUES] + [(*b, "sweep_app") for b in BAD_SWEEP_VALUES]


@pytest.mark.parametrize(("override", "key", "value", "allowed", "app"), BAD_CASES,
                         ids=[b[0] for b in BAD_CASES])
def test_bad_value_names_key_value_and_allowed(compose, override, key, value, allowed,
                                               app) -> None:
    cfg = compose(override, config_name=app)
    with pytest.raises(ConfigError) as err:
        to_config(cfg)
    msg = str(err.value)
    assert f"{key}=" in msg and "\n" not in msg
    assert value in msg.split(f"{key}=", 1)[1].split(":", 1)[0]
    assert allowed in msg


def test_keys_another_option_uses_are_refused_only_away_from_their_defaults(compose) -> None:
    """They were logged as params and never used (optim.beta=0.5 with Adam)."""
    from sweeplab.config import check_used

    with pytest.raises(ConfigError, match=r"optim.beta1=0.8: optim=momentum does not use it "
                                          r"\(used only by optim=adam\); drop it, or choose "
                                          r"optim=adam"):
        check_used(to_config(compose("optim=momentum", "optim.beta1=0.8")))
    with pytest.raises(ConfigError, match=r"optim.beta=0.5: optim=adam does not use it"):
        check_used(to_config(compose("optim.beta=0.5")))
    with pytest.raises(ConfigError, match=r"data.digit=3: data=planar does not use it"):
        check_used(to_config(compose("data=planar", "data.digit=3")))
    with pytest.raises(ConfigError, match=r"data.n_samples=50: data=digits does not use it "
                                          r"\(used only by data=planar, moons, circles\)"):
        check_used(to_config(compose("data.n_samples=50")))
    # the option that uses it, or its default value stated: accepted
    check_used(to_config(compose("optim=momentum", "optim.beta=0.8")))
    check_used(to_config(compose("optim=adam", "optim.beta=0.9")))
    check_used(to_config(compose("data=planar", "data.n_samples=50")))
    # not part of validate: a sweep's trial of a conditional space (optim.name with
    # optim.beta), or a run logged before the check, is still a valid config
    assert to_config(compose("optim.beta=0.5")).optim.beta == 0.5


def test_a_sweep_name_the_registry_refuses_is_named_with_its_model(compose) -> None:
    """A ':' in sweep.name reaches the registered model's default name, sweeplab-<name>."""
    with pytest.raises(ConfigError, match=r"sweep.register_model='sweeplab-d:v2': must be a "
                                          r"model name without '/' or ':'"):
        to_config(compose("sweep.name=d:v2", config_name="sweep_app"))


def test_single_problem_is_one_line(compose) -> None:
    with pytest.raises(ConfigError) as err:
        to_config(compose("model.depth=-1"))
    assert "\n" not in str(err.value)


def test_every_problem_is_reported_at_once(compose) -> None:
    with pytest.raises(ConfigError) as err:
        to_config(compose("model.depth=-1", "optim.lr=-2", "model.activation=gelu"))
    msg = str(err.value)
    for key in ("model.depth=-1", "optim.lr=-2", "model.activation='gelu'"):
        assert key in msg


def test_early_stopping_needs_a_validation_split(compose) -> None:
    cfg = compose("data=planar", "data.val_fraction=0", "train.early_stopping.patience=3")
    with pytest.raises(ConfigError, match=r"train\.early_stopping\.patience=3.*val_fraction"):
        to_config(cfg)
    # The same patience with a validation split is fine.
    to_config(compose("data=planar", "data.val_fraction=0.2", "train.early_stopping.patience=3"))


def test_sigmoid_output_on_ten_classes_names_the_key(compose) -> None:
    cfg = compose("data=digits", "data.digit=null", "model.output=sigmoid", "train.epochs=1")
    typed = to_config(cfg)  # values are fine on their own; the data decides
    with pytest.raises(ConfigError) as err:
        train.run(typed)
    msg = str(err.value)
    assert "model.output='sigmoid'" in msg
    assert "10 classes" in msg
    assert "softmax" in msg


def test_sigmoid_output_on_two_classes_is_fine(compose) -> None:
    cfg = compose("data=digits", "data.digit=3", "model.output=sigmoid", "train.epochs=1",
                  "model.depth=0")
    assert train.run(cfg).network.output.name == "sigmoid"


def test_type_error_names_the_key(compose) -> None:
    with pytest.raises(Exception) as err:  # Hydra wraps OmegaConf's ValidationError
        compose("model.depth=abc")
    assert "model.depth" in str(err.value)
    assert "abc" in str(err.value)


def test_type_error_from_a_plain_dict_names_the_key() -> None:
    with pytest.raises(ValidationError, match=r"model\.depth"):
        to_config({"model": {"depth": "abc"}})


def test_unknown_key_is_refused_with_the_key_it_resembles() -> None:
    with pytest.raises(ConfigError, match=r"model\.deepth: no such key \(did you mean "
                                          r"model\.depth\?\)"):
        to_config({"model": {"deepth": 3}})


def test_a_key_added_with_plus_is_refused_not_dropped(compose) -> None:
    """Hydra lets `+model.foo=1` into the composed config; merged onto the schema it would
    vanish without a word, and the run would log a config the user did not ask for."""
    with pytest.raises(ConfigError, match=r"model\.foo: no such key; model has depth"):
        to_config(compose("+model.foo=1"))
    with pytest.raises(ConfigError, match=r"sweep\.n_trails: no such key \(did you mean "
                                          r"sweep\.n_trials"):
        to_config(compose("+sweep.n_trails=3", config_name="sweep_app"))
    # free-form dicts of the schema take any key
    to_config(compose("+sweep.pruner_args.n_startup_trials=3", config_name="sweep_app"))


def test_the_default_sweeps_study_is_named_after_its_dataset(compose) -> None:
    """A sweep of another dataset is a study of its own: with one default name, data=moons
    would have resumed the digits study (its sampler learning from digits' values) and
    registered its champion as digits'."""
    digits = to_config(compose(config_name="sweep_app")).sweep
    assert (digits.name, digits.register_model) == ("digits-default", "sweeplab-digits-default")
    moons = to_config(compose("data=moons", config_name="sweep_app")).sweep
    assert (moons.name, moons.register_model) == ("moons-default", "sweeplab-moons-default")
    named = to_config(compose("data=moons", "sweep.name=mine", config_name="sweep_app")).sweep
    assert (named.name, named.register_model) == ("mine", "sweeplab-mine")


def test_validate_accepts_schema_defaults() -> None:
    validate(Config())


def test_flatten_uses_dotted_keys(compose) -> None:
    flat = flatten(to_config(compose("model.depth=3", "optim.lr=0.05")))
    assert flat["model.depth"] == 3
    assert flat["optim.lr"] == 0.05
    assert flat["train.early_stopping.patience"] is None
    assert not any(isinstance(v, dict) for v in flat.values())


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env["PYTHONPATH"] = str(REPO / "src")
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def test_cli_refuses_bad_value_without_creating_a_run(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    env = _cli_env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "sweeplab.train", "model.depth=-1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "model.depth" in errors[0] and "-1" in errors[0]
    assert "Traceback" not in proc.stderr
    # No run anywhere in the store (the store may not even exist).
    db = tmp_path / "mlflow.db"
    if db.exists():
        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        exps = [e.experiment_id for e in client.search_experiments()]
        assert client.search_runs(exps) == []
    assert not (tmp_path / "data").exists()  # refused before any data was loaded



@pytest.mark.parametrize(("pruner", "args", "said"), [
    ("median", {"n_startup_trials": -3}, "ValueError: Number of startup trials"),
    ("hyperband", {"reduction_factor": 1}, "ZeroDivisionError"),
    ("hyperband", {"min_resource": "abc"}, "TypeError"),
    ("successive_halving", {"reduction_factor": 1}, "reduction_factor"),
], ids=["median-negative", "hyperband-factor-1", "hyperband-text", "halving-factor-1"])
def test_pruner_arguments_it_cannot_work_with_are_a_config_error(pruner: str, args: dict,
                                                                 said: str) -> None:
    """Some fail when the pruner is made (a traceback before), some only when it first
    judges a trial (every trial failed, exit 0): both are found before any study."""
    from sweeplab.sweep.study import make_pruner

    s = to_config(_compose_sweep(f"sweep.pruner={pruner}")).sweep
    s.pruner_args = args
    with pytest.raises(ConfigError) as err:
        make_pruner(s, epochs=60, log_every=5)
    msg = str(err.value)
    assert msg.startswith(f"sweep.pruner_args={args}: pruner {pruner!r} cannot work with them")
    assert said in msg and "optuna.pruners." in msg and "\n" not in msg


@pytest.mark.parametrize("pruner", ["median", "hyperband", "successive_halving", "none"])
def test_every_pruner_with_its_defaults_passes_the_rehearsal(pruner: str) -> None:
    from sweeplab.sweep.study import make_pruner

    s = to_config(_compose_sweep(f"sweep.pruner={pruner}")).sweep
    assert make_pruner(s, epochs=60, log_every=5) is not None


def _compose_sweep(override: str) -> DictConfig:
    return compose_config(override, config_name="sweep_app")
