"""What makes a study the same study: its search space, its objectives and their directions.

A sweep name resumes its study. Trials drawn from another space, or judged on another
objective, cannot join it: the sampler would learn from values that mean something else,
and the study's record (its parent run's ``space.*`` params, ``search_space.yaml``) would
describe a space its trials were not drawn from. So the identity is written on the study
when it is created (a study user attribute, JSON), and a sweep whose identity differs stops
before any trial with one line that names the study, says what changed, and suggests a new
``sweep.name``. Everything else (``n_trials``, the sampler, the pruner, workers, ...) may
change between sessions.

A study made before identities were recorded (an older sweeplab) is judged by its trials:
the space their parameters were drawn from (the latest trial's, where an older sweeplab let
a numeric range move) must be this one, and then the study adopts this identity; its
directions are Optuna's own. Its objective names were never stored, so they are adopted
as they are now.
"""

from __future__ import annotations

import json
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.storages import BaseStorage

from sweeplab.config import ConfigError, SweepConfig, flatten, objectives_of
from sweeplab.names import TrialAttr
from sweeplab.sweep.space import flat_params

# The sweep settings fixed with its study (the parent run's params `sweep.<key>`); the
# others may change from one session to the next (n_trials, sampler, pruner, workers, ...)
# and are the parent run's tags `sweeplab.sweep.<key>`, set again at every start: MLflow
# params cannot change once logged.
FIXED_SETTINGS = ("name", "storage", "objective", "direction", "objectives", "directions")


def settings(s: SweepConfig) -> tuple[dict[str, str], dict[str, str]]:
    """(fixed, per session) settings of sweep `s`, flattened (``pruner_args.x``), as
    strings; the search space is neither (it is the parent run's ``space.*`` params)."""
    flat = {k: str(v) for k, v in flatten(OmegaConf.structured(s)).items()
            if not k.startswith("params.") and k != "params"}
    fixed = {k: v for k, v in flat.items() if k.split(".")[0] in FIXED_SETTINGS}
    return fixed, {k: v for k, v in flat.items() if k not in fixed}


def identity_of(s: SweepConfig, space: dict[str, BaseDistribution]) -> dict[str, Any]:
    """The identity of sweep `s` with parsed `space`, as JSON-ready data: the objectives and
    directions, and per searched key its expression (for people) and distribution (to
    compare: ``range(1,6)`` and ``range(1, 6)`` are the same space)."""
    objectives, directions = objectives_of(s)
    exprs = flat_params(s.params)
    return {"objectives": objectives, "directions": directions,
            "space": {k: exprs[k] for k in sorted(space)},
            "distributions": {k: distribution_to_json(space[k]) for k in sorted(space)}}


def check_identity(study: optuna.Study, s: SweepConfig, space: dict[str, BaseDistribution],
                   storage: BaseStorage | str) -> None:
    """Record sweep `s`'s identity on a study (in `storage`) that has none; raise
    ConfigError (one line) when the study's differs. Call before any trial is asked for."""
    new = identity_of(s, space)
    stored = study.user_attrs.get(TrialAttr.IDENTITY)
    if stored is not None:
        old = json.loads(stored) if isinstance(stored, str) else stored
        changes = _changes(old["objectives"], old["directions"], old["space"],
                           {k: json_to_distribution(v) for k, v in old["distributions"].items()},
                           new, space)
    else:  # made by an older sweeplab: judged by its trials, then adopted
        # no trial drawn yet: there is no space to contradict (Optuna's directions still are)
        drawn = _space_of_trials(study) or dict(space)
        directions = [d.name.lower() for d in study.directions]
        changes = _changes(new["objectives"], directions,
                           {k: str(d) for k, d in drawn.items()}, drawn, new, space)
    if changes:
        other = _suggest(storage, s.name, changes, new["objectives"])
        raise ConfigError(
            f"sweep.name={s.name!r}: study {s.name!r} was made with another search space "
            f"or objective ({'; '.join(changes)}); a study keeps both for life: start a new "
            f"study with sweep.name={other} (or undo the change to resume this one)")
    if stored is None:
        study.set_user_attr(TrialAttr.IDENTITY, json.dumps(new))


def _space_of_trials(study: optuna.Study) -> dict[str, BaseDistribution]:
    """The space a study's trials were drawn from: per key, its latest trial's distribution
    (enqueued trials that never ran have none)."""
    drawn: dict[str, BaseDistribution] = {}
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        drawn |= t.distributions
    return drawn


def _changes(old_objectives: list[str], old_directions: list[str], old_space: dict[str, str],
             old_dists: dict[str, BaseDistribution], new: dict[str, Any],
             space: dict[str, BaseDistribution]) -> list[str]:
    """What differs, one phrase per change: ``sweep.params.x: a -> b``, ``... added``."""
    out = []
    if old_objectives != new["objectives"]:
        out.append(f"objective: {_one(old_objectives)} -> {_one(new['objectives'])}")
    if old_directions != new["directions"]:
        out.append(f"direction: {_one(old_directions)} -> {_one(new['directions'])}")
    for key in sorted(old_dists.keys() | space.keys()):
        if key not in space:
            out.append(f"sweep.params.{key} removed (was {old_space[key]})")
        elif key not in old_dists:
            out.append(f"sweep.params.{key} added ({new['space'][key]})")
        elif old_dists[key] != space[key]:
            out.append(f"sweep.params.{key}: {old_space[key]} -> {new['space'][key]}")
    return out


def _one(values: list[str]) -> str:
    return values[0] if len(values) == 1 else "[" + ", ".join(values) + "]"


def _suggest(storage: BaseStorage | str, name: str, changes: list[str],
             objectives: list[str]) -> str:
    """A new study name that says what changed (``digits-default-keep_prob``,
    ``digits-default-val_accuracy``) and is not taken in `storage`."""
    first = changes[0].split(":")[0].split(" ")[0]  # sweep.params.model.keep_prob, objective
    what = "-".join(objectives) if first in ("objective", "direction") \
        else first.rsplit(".", 1)[-1]
    taken = set(optuna.get_all_study_names(storage))
    candidate, n = f"{name}-{what}", 2
    while candidate in taken:
        candidate, n = f"{name}-{what}-{n}", n + 1
    return candidate
