"""The Optuna side of a sweep: storage, samplers, pruners, and the bookkeeping that lets
several workers and several sessions share one study without losing or doubling trials.

A trial counts as *done* when it completed, was pruned, or failed on its own (diverged or
raised). A trial left RUNNING by a process that no longer exists was *interrupted*: it is
marked failed and its parameters are queued again, so it is retried, not counted.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from sweeplab.config import ConfigError, SweepConfig, objectives_of
from sweeplab.names import DONE_FAILURES, RunStatus, TrialAttr
from sweeplab.pids import alive, started
from sweeplab.sweep import fast_tpe, journal
from sweeplab.sweep.gathering import GatheringJournal

STORE_DIR = Path(".sweeplab")


def storage_url(s: SweepConfig) -> str:
    return s.storage or f"journal:{STORE_DIR / 'optuna.journal'}"


# A journal write holds the lock for milliseconds: one this old was left by a killed process.
STALE_LOCK_SECONDS = 10.0


def open_storage(url: str) -> BaseStorage | str:
    """Optuna storage from a URL; ``journal:<path>`` is Optuna's journal file storage, its
    file checked first (a torn last record is dropped: sweep/journal.py)."""
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_stale_lock(path)
        journal.repair(path)
        return GatheringJournal(str(path))
    return url


def gathered(study: optuna.Study) -> contextlib.AbstractContextManager[None]:
    """Within the block, the study's journal writes a trial's params and user attributes
    with its next other record, in one append (sweep/gathering.py); other storages write
    as they go."""
    storage = study._storage  # Optuna gives no public handle on a study's storage
    return storage.gathered() if isinstance(storage, GatheringJournal) \
        else contextlib.nullcontext()


STORAGE_FORMS = ("journal:<path>", "sqlite:///<path>",
                 "postgresql+psycopg://user:password@host:port/db", "mysql+pymysql://...")


def check_storage(url: str) -> None:
    """Open the storage at `url` once, so that a scheme Optuna cannot open, a database that
    does not answer or a journal folder that cannot be written is a ConfigError naming
    sweep.storage (password hidden) before any study or trial exists."""
    from sqlalchemy.exc import SQLAlchemyError

    from sweeplab.tracking.store import redact

    shown = redact(url)
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            existed = path.exists()
            with path.open("ab"):  # Optuna appends to it
                pass
            if not existed:  # nothing is left behind by a sweep that stops before its study
                path.unlink()
                for folder in made:  # innermost first; open_storage makes them again
                    with contextlib.suppress(OSError):
                        folder.rmdir()
        except OSError as err:
            raise ConfigError(f"sweep.storage={shown!r}: cannot write the journal {path} "
                              f"({err.strerror}); choose a folder you can write") from None
        return
    try:
        optuna.storages.RDBStorage(url).remove_session()
    except (SQLAlchemyError, ImportError, ValueError) as err:
        # ImportError: the URL's database driver is not installed.
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"sweep.storage={shown!r}: Optuna cannot open it "
                          f"({type(err).__name__}: {redact(why)}); check the address and that "
                          f"the database runs, or use {', '.join(STORAGE_FORMS)}, or null "
                          f"for a journal in {STORE_DIR}/") from None


def _drop_stale_lock(journal: Path) -> None:
    """Remove the journal's lock (a symlink, Optuna 5.0) when a process killed during a write
    left it: every later sweep would wait on it."""
    lock = journal.with_name(journal.name + ".lock")
    try:
        age = time.time() - os.lstat(lock).st_mtime
    except FileNotFoundError:
        return
    if age > STALE_LOCK_SECONDS:
        print(f"warning: removed {lock}, left {age:.0f} s ago by a process killed while it "
              f"wrote the study", file=sys.stderr)
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def make_sampler(s: SweepConfig, space: dict[str, BaseDistribution], *,
                 seed_salt: tuple[int, ...] = ()) -> optuna.samplers.BaseSampler:
    """The sampler `s.sampler` names. The seed is mixed with `seed_salt` (worker index,
    trials already in the study) so parallel workers and resumed sweeps don't replay the
    same draws."""
    seed = None
    if s.seed is not None:
        seed = int(np.random.SeedSequence([s.seed, *seed_salt]).generate_state(1)[0])
    name = s.sampler
    if name == "tpe":
        fast_tpe.install()  # log Φ in SciPy: a quarter off `ask`, draws equal to rounding
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if name == "nsgaii":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ConfigError("sweep.sampler='gp': Optuna's GPSampler needs PyTorch, which is "
                              "not installed: `.venv/bin/pip install -e '.[gp]'`, or choose "
                              "tpe, random, cmaes, qmc, grid, nsgaii") from None
        return optuna.samplers.GPSampler(seed=seed)
    if name == "grid":
        grid: dict[str, list[Any]] = {}
        for key, dist in space.items():
            if isinstance(dist, CategoricalDistribution):
                grid[key] = list(dist.choices)
            elif isinstance(dist, IntDistribution) and not dist.log:
                grid[key] = list(range(dist.low, dist.high + 1, dist.step))
            else:
                raise ConfigError(f"sweep.sampler='grid': sweep.params.{key} is a continuous "
                                  f"or log range; grid search needs choice(...) or range(...)")
        return SweepGridSampler(grid, seed=seed)
    raise ConfigError(f"sweep.sampler={name!r}: unknown")


class SweepGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, without its `study.stop()` at the end of the grid, which
    works only inside `Study.optimize` (Optuna 5.0) and raises RuntimeError in a sweep that
    asks and tells itself. The sweep stops when `is_exhausted` says so."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        pass


def grid_exhausted(study: optuna.Study) -> bool:
    """Whether the study's sampler is a grid with every point drawn."""
    return isinstance(study.sampler, optuna.samplers.GridSampler) and \
        study.sampler.is_exhausted(study)


PRUNERS: dict[str, Any] = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
}


def make_pruner(s: SweepConfig, epochs: int, log_every: int) -> optuna.pruners.BasePruner:
    """The pruner `s.pruner` names, with defaults that fit the run's epochs, then
    `s.pruner_args` on top (checked against the pruner's own arguments)."""
    if s.pruner == "none":
        return optuna.pruners.NopPruner()
    cls = PRUNERS[s.pruner]
    defaults: dict[str, Any] = {
        "median": {"n_startup_trials": 5, "n_warmup_steps": min(2 * log_every, epochs // 4)},
        "hyperband": {"min_resource": max(log_every, 1), "max_resource": epochs},
        "successive_halving": {"min_resource": max(log_every, 1)},
    }[s.pruner]
    allowed = set(inspect.signature(cls).parameters)
    unknown = set(s.pruner_args) - allowed
    if unknown:
        raise ConfigError(f"sweep.pruner_args={dict(s.pruner_args)}: {sorted(unknown)} not "
                          f"accepted by pruner {s.pruner!r}; allowed: {sorted(allowed)}")
    # Built, then rehearsed: some values fail only when the pruner first judges a trial
    # (hyperband's reduction_factor=1 divides by zero), which would fail every trial.
    try:
        pruner = cls(**(defaults | dict(s.pruner_args)))
        if len(objectives_of(s)[0]) == 1:
            _rehearse(pruner, epochs, log_every)
    except Exception as err:
        raise ConfigError(
            f"sweep.pruner_args={dict(s.pruner_args)}: pruner {s.pruner!r} cannot work with "
            f"them ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})"
            f"; see optuna.pruners.{cls.__name__} for what each argument allows") from None
    return pruner


def _rehearse(pruner: optuna.pruners.BasePruner, epochs: int, log_every: int) -> None:
    """Let `pruner` judge three made-up trials that report at the run's log points, in a
    study of its own in memory: what it raises there, it would raise in every trial."""
    study = optuna.create_study(pruner=pruner, sampler=optuna.samplers.RandomSampler(0))
    every = max(log_every, 1)
    for i in range(3):
        trial = study.ask()
        for step in range(every, max(epochs, every) + 1, every):
            trial.report(1.0 / (step + i + 1), step)
            if trial.should_prune():
                break
        study.tell(trial, 1.0 / (i + 1))


def create_or_load(s: SweepConfig, storage: BaseStorage | str, sampler: Any,
                   pruner: Any) -> optuna.Study:
    """The study named `s.name`, created if new (loaded as it is: Optuna keeps an existing
    study's directions; sweep/identity.py checks them and the rest of its identity)."""
    _, directions = objectives_of(s)
    try:
        return optuna.create_study(study_name=s.name, storage=storage, sampler=sampler,
                                   pruner=pruner, directions=directions, load_if_exists=True)
    except ValueError as err:
        raise ConfigError(f"sweep.name={s.name!r}: an existing study of that name does not "
                          f"match this sweep ({err}); choose another sweep.name") from None


@dataclass(frozen=True)
class Tally:
    done: int
    running: int
    failed: int
    complete: int
    pruned: int


def tally(study: optuna.Study) -> Tally:
    trials = study.get_trials(deepcopy=False)
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    failed = sum(t.state == TrialState.FAIL and status_of(t) in DONE_FAILURES for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return Tally(complete + pruned + failed, running, failed, complete, pruned)


def controller_id() -> str:
    """``host:pid`` of this controller, recorded on each trial it asks for."""
    return f"{socket.gethostname()}:{os.getpid()}"


# How long a controller waits after writing its claim before reading it back.
CLAIM_SETTLE = 0.05


def claim(study: optuna.Study) -> None:
    """Record this process as the study's controller, unless another one on this host runs
    it now: then a ConfigError, before this one touches the study or MLflow. Two
    controllers of one study overshot n_trials, shared a parent run and ran each
    confirmation replicate twice. (A controller on another host is not seen: its pid
    means nothing here.) Two starting at the same moment both write their claim: each
    reads it again `CLAIM_SETTLE` seconds later, and the one whose claim was overwritten
    refuses. (No storage offers a compare-and-set: two claims written more than that
    apart after both read none would both stand.)"""
    mine = f"{controller_id()}:{started(os.getpid())}"
    other = _running_controller(study)
    if other is None:
        study.set_user_attr(TrialAttr.RUN_BY, mine)
        time.sleep(CLAIM_SETTLE)  # a competitor that read no claim writes its own now
        other = _running_controller(study)  # a claim written meanwhile wins
    if other is not None:
        pid = other.split(":")[1]
        raise ConfigError(
            f"sweep.name={study.study_name!r}: another sweep controls this study now "
            f"(process {pid} on this host); wait for it to end or stop it (Ctrl-C, or "
            f"kill {pid}), or choose another sweep.name")


def release(study: optuna.Study) -> None:
    """Say that this process no longer controls the study (if its claim is still the one
    recorded); a storage that fails here leaves the claim, which the next start sees is
    from a process that is gone."""
    mine = f"{controller_id()}:{started(os.getpid())}"
    with contextlib.suppress(Exception):
        if study.user_attrs.get(TrialAttr.RUN_BY) == mine:
            study.set_user_attr(TrialAttr.RUN_BY, "")


def _running_controller(study: optuna.Study) -> str | None:
    """The claim of another live controller of the study on this host, if any."""
    claim_ = str(study.user_attrs.get(TrialAttr.RUN_BY) or "")
    host, _, rest = claim_.partition(":")
    pid, _, since = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return None
    if not alive(int(pid)) or (since and started(int(pid)) not in ("", since)):
        return None  # gone, or its pid now another process's
    return claim_


def orphaned(study: optuna.Study) -> list[FrozenTrial]:
    """RUNNING trials whose controller on this host is gone (a killed sweep), and those
    without one (killed between asking for the trial and recording itself)."""
    host = socket.gethostname()
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(t.user_attrs.get(TrialAttr.CONTROLLER, ""))
        where, _, pid = owner.rpartition(":")
        if not owner or (where == host and pid.isdigit() and not alive(int(pid))):
            out.append(t)
    return out


def tell_outcome(study: optuna.Study, trial: Trial, status: str, reason: str | None = None,
                 values: list[float] | None = None,
                 attrs: dict[str, Any] | None = None) -> None:
    """Record how `trial` ended: complete with `values`, pruned, or failed (diverged or an
    error, which count as done), with its status, reason and `attrs` as user attributes."""
    with gathered(study):  # the attributes in one append (study.tell reads the trial first)
        for key, value in (attrs or {}).items():
            trial.set_user_attr(key, value)
        trial.set_user_attr(TrialAttr.STATUS, status)
        if reason:
            trial.set_user_attr(TrialAttr.REASON, reason[:2000])
        if status == RunStatus.PRUNED:
            study.tell(trial, state=TrialState.PRUNED)
        elif values is not None:
            study.tell(trial, values)
        else:
            study.tell(trial, state=TrialState.FAIL)


def status_of(t: FrozenTrial) -> str:
    """The trial's sweeplab status (a RunStatus), else Optuna's state in lower case. A
    failed trial without one was interrupted: `requeue` closes trials of processes that
    are gone with Optuna's state alone, as no public API writes another process's trial."""
    status = t.user_attrs.get(TrialAttr.STATUS)
    if status is not None:
        return str(status)
    return RunStatus.INTERRUPTED if t.state == TrialState.FAIL else t.state.name.lower()


def reason_of(t: FrozenTrial) -> str | None:
    """Why the trial ended as it did (None for a complete one)."""
    return t.user_attrs.get(TrialAttr.REASON)


def requeue(study: optuna.Study, number: int, params: dict[str, Any], reason: str,
            trial: Trial | None = None) -> None:
    """Mark trial `number` failed (interrupted: not counted as done) and queue its
    parameters to run again; the retry records which trial it retries, and why. With the
    live `trial` (one this process asked for), the failed one records it too."""
    with gathered(study):
        if trial is not None:
            trial.set_user_attr(TrialAttr.STATUS, RunStatus.INTERRUPTED)
            trial.set_user_attr(TrialAttr.REASON, reason)
        study.tell(number, state=TrialState.FAIL)
    study.enqueue_trial(params, user_attrs={TrialAttr.RETRY_OF: number,
                                            TrialAttr.RETRY_REASON: reason},
                        skip_if_exists=False)
