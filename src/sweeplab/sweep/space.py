"""Search spaces written in Hydra's override grammar, turned into Optuna distributions.

The grammar and its reading are those of Hydra's Optuna sweeper, so its search spaces
carry over unchanged:

    choice(relu, tanh)                 -> CategoricalDistribution
    range(1, 6)                        -> IntDistribution(1, 5)      (stop excluded)
    interval(0.1, 0.9)                 -> FloatDistribution(0.1, 0.9)
    int(interval(4, 128))              -> IntDistribution(4, 128)
    tag(log, interval(1e-4, 1.0))      -> FloatDistribution(1e-4, 1.0, log=True)
    tag(log, int(interval(4, 128)))    -> IntDistribution(4, 128, log=True)

`parse_space` checks every key against the run config and every corner of every range
against the config's value checks, so a bad space fails before any trial runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sweeplab.config import ConfigError, to_config

GRAMMAR = ("choice(a, b, ...), range(start, stop[, step]), interval(low, high), "
           "int(interval(low, high)), tag(log, interval(low, high))")

def _distribution(key: str, override: Override) -> BaseDistribution:
    if not override.is_sweep_override():
        raise ConfigError(f"sweep.params.{key}={override.get_value_element_as_str()!r}: "
                          f"not a search space; use one of {GRAMMAR}")
    value = override.value()
    if isinstance(value, ChoiceSweep):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        assert value.start is not None and value.stop is not None
        if value.shuffle:
            return CategoricalDistribution(
                list(override.sweep_iterator(transformer=Transformer.encode)))
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop, step=value.step)
        return IntDistribution(int(value.start), int(value.stop - 1), step=int(value.step))
    if isinstance(value, IntervalSweep):
        assert value.start is not None and value.end is not None
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(value.start, value.end, log=log)
    raise ConfigError(f"sweep.params.{key}: {type(value).__name__} is not supported; "
                      f"use one of {GRAMMAR}")


def _corners(dist: BaseDistribution) -> list[Any]:
    """The values worth checking against the config: every choice, or both ends."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    assert isinstance(dist, IntDistribution | FloatDistribution)
    return [dist.low, dist.high]


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"model.depth": "range(1, 6)"} from dotted keys, nested ones, or a mix of both; a
    later entry wins, and null drops a key (``++sweep.params.model.depth=null``)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            for k, v in flat_params(value, f"{full}.").items():
                out.pop(k, None)
                out[k] = v
            for k in [k for k, v in _nulls(value, f"{full}.")]:
                out.pop(k, None)
        elif value is None:
            out.pop(full, None)
        else:
            out.pop(full, None)
            out[full] = str(value)
    return out


def _nulls(params: Mapping[str, Any], prefix: str) -> list[tuple[str, None]]:
    out: list[tuple[str, None]] = []
    for key, value in params.items():
        if isinstance(value, Mapping):
            out += _nulls(value, f"{prefix}{key}.")
        elif value is None:
            out.append((f"{prefix}{key}", None))
    return out


def parse_space(params: Mapping[str, Any], base: DictConfig) -> dict[str, BaseDistribution]:
    """Optuna distributions for `params` (key -> expression), checked against `base`.

    Raises ConfigError naming the key and expression when an expression does not parse,
    a key is not in the config, or a value in the space fails the config's checks.
    """
    flat = flat_params(params) if params else {}
    if not flat:  # none named, or every one dropped with null
        raise ConfigError("sweep.params is empty" + (" (every key in it is null)" if params
                                                     else "")
                          + ": name at least one key to search, e.g. "
                            "++sweep.params.model.depth='range(1, 6)'")
    parser = OverridesParser.create()
    space: dict[str, BaseDistribution] = {}
    for key, expr in flat.items():
        if key.startswith("sweep.") or key == "sweep":
            raise ConfigError(f"sweep.params.{key}: the sweep's own settings cannot be searched")
        if OmegaConf.select(base, key, default="__missing__") == "__missing__" or \
                isinstance(OmegaConf.select(base, key), DictConfig):
            raise ConfigError(f"sweep.params.{key}: no such config key (keys look like "
                              f"model.depth, model.width, optim.lr, train.batch_size)")
        try:
            (override,) = parser.parse_overrides([f"{key}={expr}"])
        except HydraException as err:
            raise ConfigError(f"sweep.params.{key}={expr!r} does not parse: "
                              f"{str(err).splitlines()[0]}; use one of {GRAMMAR}") from None
        try:
            dist = _distribution(key, override)
        except ValueError as err:  # Optuna's own checks, e.g. interval(1, 0.1)
            raise ConfigError(f"sweep.params.{key}={expr!r}: {err}") from None
        for value in _corners(dist):
            try:
                to_config(apply(base, {key: value}))
            except ConfigError as err:
                raise ConfigError(f"sweep.params.{key}={expr!r} reaches {value!r}, which the "
                                  f"config does not allow: {err}") from None
            except Exception as err:  # OmegaConf's type errors (their first line says it)
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                if "ListConfig" in first:  # choice([4],[8,8]) reaches the string '[4]'
                    raise ConfigError(
                        f"sweep.params.{key}={expr!r}: {key} holds a list, and a search "
                        f"space's values are single numbers, strings or booleans; search "
                        f"what the list is made of instead (model.depth and model.width "
                        f"for the hidden layers)") from None
                raise ConfigError(f"sweep.params.{key}={expr!r} reaches {value!r}, which "
                                  f"does not fit the config: {first}") from None
        space[key] = dist
    return space


def apply(base: DictConfig, values: Mapping[str, Any]) -> DictConfig:
    """A copy of `base` with each dotted key set to its value."""
    cfg = OmegaConf.create(OmegaConf.to_container(base, resolve=False))
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg
