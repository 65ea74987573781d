"""sweep/fast_tpe.py: TPE with SciPy's log Φ draws what stock Optuna draws."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import scipy.special
from optuna.samplers._tpe import _truncnorm

from helpers import compose_config
from sweeplab.config import to_config
from sweeplab.sweep import fast_tpe
from sweeplab.sweep import study as st

SHIPPED = _truncnorm._log_ndtr  # at import, before any sweep in this session installed it


@pytest.fixture
def shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Optuna's own log Φ for the test, whatever ran before; put back after."""
    monkeypatch.setattr(_truncnorm, "_log_ndtr", SHIPPED)
    monkeypatch.setattr(fast_tpe, "_installed", False)


def test_scipys_log_ndtr_agrees_with_optunas_through_every_case() -> None:
    # each case of Optuna's scalar function and its edges, more finely than install()'s grid
    a = np.concatenate([np.linspace(-60, 40, 100_001), -np.logspace(-12, 2, 500),
                        np.logspace(-12, 2, 500), [-20.0, 6.0, np.nextafter(6.0, 7.0),
                                                   np.nextafter(-20.0, -21.0)]])
    ours, theirs = SHIPPED(a), scipy.special.log_ndtr(a)
    assert np.allclose(ours, theirs, rtol=1e-14, atol=1e-15)
    assert SHIPPED(np.array([-np.inf, np.inf])).tolist() == [-np.inf, 0.0]


def _search(n_trials: int) -> list[tuple[int, int, float]]:
    """A seeded TPE search over the default sweep's kind of space (int, log int, log float)."""
    def objective(trial: optuna.Trial) -> float:
        depth = trial.suggest_int("model.depth", 1, 5)
        width = trial.suggest_int("model.width", 4, 128, log=True)
        lr = trial.suggest_float("optim.lr", 1e-4, 1.0, log=True)
        return (depth - 3) ** 2 + abs(np.log(width / 40)) + abs(np.log10(lr) + 2)

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3))
    study.optimize(objective, n_trials=n_trials)
    return [(t.params["model.depth"], t.params["model.width"], t.params["optim.lr"])
            for t in study.trials]


def test_a_seeded_tpe_search_draws_the_same_trials_with_scipys_log_ndtr(shipped) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stock = _search(40)
    assert fast_tpe.install()
    assert _truncnorm._log_ndtr is scipy.special.log_ndtr  # the search below uses it
    fast = _search(40)
    assert [(d, w) for d, w, _ in fast] == [(d, w) for d, w, _ in stock]
    np.testing.assert_allclose([lr for *_, lr in fast], [lr for *_, lr in stock],
                               rtol=1e-12)
    assert len({lr for *_, lr in stock}) == 40  # TPE drew them, not one repeated value


def test_install_changes_nothing_when_optunas_function_is_not_the_one_it_checked(
        shipped, monkeypatch: pytest.MonkeyPatch) -> None:
    def other(a: np.ndarray) -> np.ndarray:  # say, a later Optuna's approximation
        return SHIPPED(a) * (1 + 1e-6)

    monkeypatch.setattr(_truncnorm, "_log_ndtr", other)
    assert not fast_tpe.install()
    assert _truncnorm._log_ndtr is other
    monkeypatch.delattr(_truncnorm, "_log_ndtr")
    assert not fast_tpe.install()


def test_the_tpe_sampler_of_a_sweep_installs_it(shipped, in_data_cache) -> None:
    s = to_config(compose_config(config_name="sweep_app")).sweep
    assert s.sampler == "tpe"
    st.make_sampler(s, {})
    assert _truncnorm._log_ndtr is scipy.special.log_ndtr
