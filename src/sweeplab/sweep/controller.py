"""A sweep's controller: an Optuna study over the run config, one MLflow parent run.

The sweep is checked whole before any trial runs (config, search space, data, sampler,
pruner). This process is the controller: the only one that asks the study for trials and
tells it results, so the count is exact without locks. Trials run in this process (one
job), on a LocalCluster of Dask workers it starts (sweep.n_jobs > 1), or on the workers of
an existing Dask scheduler (sweep.cluster). The study lives in a journal file beside the
controller (or sweep.storage), so a killed sweep resumes where it stopped when the same
command runs again: finished trials are kept, interrupted ones are retried.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from typing import Any

import optuna
from mlflow.entities import Param, RunTag
from omegaconf import DictConfig, OmegaConf

from sweeplab.config import Config, ConfigError, SweepConfig, check_used, to_config
from sweeplab.names import ExitCode, MlflowTag, Role, RunStatus, Tag, TrialAttr
from sweeplab.sweep import generation as gen
from sweeplab.sweep import study as st
from sweeplab.sweep.confirm import confirm_sweep
from sweeplab.sweep.confirmed import Confirmation
from sweeplab.sweep.executors import (
    WORKER_DIED,
    DaskPool,
    Finished,
    InProcess,
    SchedulerLost,
    killed_worker,
)
from sweeplab.sweep.identity import check_identity, settings
from sweeplab.sweep.plots import PLOT_MODULES
from sweeplab.sweep.report import (
    NONE_COMPLETE,
    TrialPrinter,
    close_orphan_runs,
    queue_plots,
    ranked,
    summarize,
)
from sweeplab.sweep.space import flat_params, parse_space
from sweeplab.sweep.view import save_sweep_view
from sweeplab.sweep.worker import (
    DiskFull,
    SweepAborted,
    TrackingUnavailable,
    close_trial_runs,
    make_task,
)
from sweeplab.tracking import get_experiment_id, prepare_store, resolve_uri
from sweeplab.tracking.errors import no_space, unavailable_reason
from sweeplab.tracking.quick_exit import settle
from sweeplab.tracking.store import check_experiment, source_key
from sweeplab.tracking.writer import TrackingWriter, discard_prestarted
from sweeplab.train import load_data
from sweeplab.train.interrupt import StopRequest, deferred_interrupt, exit_code, interruption


def sweep_job(cfg: DictConfig, run_tags: dict[str, str] | None = None) -> int:
    """Check everything, open the study and the parent run, run the workers, report.
    `run_tags` go on the parent run and every trial's run (Hydra's choices: cli/sweep.py)."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    typed = to_config(cfg)
    check_used(typed)  # the base the user wrote; the space may set such keys per trial
    s = typed.sweep
    if s is None:  # a training run's config (its --experimental-rerun pickle, say)
        raise ConfigError("this config has no sweep section: it is a training run's; run "
                          "it with python -m sweeplab.train (make train)")
    if not typed.tracking.enabled:
        # It used to be ignored: every trial was logged all the same, its confirmation skipped.
        raise ConfigError(
            "tracking.enabled=false: a sweep keeps each trial's run, its summary and its "
            "champion in MLflow and cannot run without it; leave tracking.enabled=true "
            "(tracking.uri=sqlite:///<file> keeps the sweep in a store of its own)")
    base = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "sweep"])
    space = parse_space(s.params, base)
    uri = resolve_uri(typed.tracking)
    # The writer process now, so that its start-up (importing MLflow: seconds) runs beside
    # this process's checks and data rather than before the first trial's result is told;
    # it opens the store once the store exists.
    writer = TrackingWriter(uri, open_store=False, idle_imports=PLOT_MODULES) \
        if s.n_jobs == 1 and s.cluster is None and s.writer == "process" else None
    discard_prestarted()  # the command's early writer, when this sweep does not use it
    try:
        # Fail here, not in a worker: data files, sampler needs, pruner arguments, a
        # tracking server that does not answer (before the study is created).
        load_data(typed)
        sampler = st.make_sampler(s, space)
        pruner = st.make_pruner(s, typed.train.epochs, typed.train.log_every)
        if s.cluster is not None and not uri.startswith(("http://", "https://")):
            raise ConfigError(
                f"sweep.cluster={s.cluster!r}: workers on other hosts cannot write to the "
                f"local tracking store {uri}; start a tracking server (make server) and set "
                f"tracking.uri=http://<host>:<port> (or $MLFLOW_TRACKING_URI)")
        # The two stores, before any study, run or worker exists: one line if either
        # cannot be opened or written.
        st.check_storage(st.storage_url(s))
        client = prepare_store(uri, source_key(typed.tracking))
        check_experiment(client, typed.tracking.experiment, uri)
        settle()  # MLflow's store and Optuna's storage imported
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if writer is not None:
        writer.open()
    pin_tracking_uri(base, s, uri)
    # The executor first: an unreachable Dask scheduler fails before a study or run exists.
    with deferred_interrupt() as stop:
        executor = _executor(s, stop, uri, writer)
        try:
            return _sweep(cfg, typed, base, space, sampler, pruner, uri, executor, stop,
                          dict(run_tags or {}))
        finally:
            executor.close()


def pin_tracking_uri(base: DictConfig, s: SweepConfig, uri: str) -> None:
    """On a cluster, trials log to the tracking URI this controller resolved and checked:
    workers on other hosts share neither its environment ($MLFLOW_TRACKING_URI) nor its
    working folder, and would otherwise log to a store of their own (their own
    $MLFLOW_TRACKING_URI, else an mlflow.db in their working folder)."""
    if s.cluster is not None:
        OmegaConf.update(base, "tracking.uri", uri, merge=False)


def _sweep(cfg: DictConfig, typed: Config, base: DictConfig, space: dict[str, Any],
           sampler: Any, pruner: Any, uri: str, executor: InProcess | DaskPool,
           stop: StopRequest, run_tags: dict[str, str]) -> int:
    """Open the study and the parent run, run the trials, report; returns the exit code."""
    s = typed.sweep
    assert s is not None
    storage_url = st.storage_url(s)
    storage = st.open_storage(storage_url)
    study = st.create_or_load(s, storage, sampler, pruner)
    check_identity(study, s, space, storage)  # another space or objective: a new name
    st.claim(study)  # no other controller of this study on this host
    try:
        return _control(cfg, typed, base, space, study, uri, executor, stop, run_tags)
    finally:
        st.release(study)


def _control(cfg: DictConfig, typed: Config, base: DictConfig, space: dict[str, Any],
             study: optuna.Study, uri: str, executor: InProcess | DaskPool,
             stop: StopRequest, run_tags: dict[str, str]) -> int:
    """The claimed study's sweep: its parent run, its trials, its report; the exit code."""
    s = typed.sweep
    assert s is not None
    storage_url = st.storage_url(s)
    if study.trials:  # a resumed study: new draws, not a replay of the first session's
        study.sampler = st.make_sampler(s, space, seed_salt=(len(study.trials),))
    client = prepare_store(uri)
    experiment_id = get_experiment_id(client, typed.tracking.experiment, uri)
    resumed = TrialAttr.PARENT_RUN_ID in study.user_attrs
    parent_run_id = _parent_run(client, study, experiment_id, cfg, s, storage_url, run_tags)
    generation = int(study.user_attrs.get(TrialAttr.GENERATION, 1))
    # the UI's table of this sweep's trials (of this generation only)
    save_sweep_view(client, experiment_id, s, generation)
    orphans = st.orphaned(study)
    for t in orphans:
        st.requeue(study, t.number, t.params, "its controller was killed")
        # a run its writer finished after the controller died, before it told the study
        close_trial_runs(client, parent_run_id, t.number, "its controller was killed "
                         "before the sweep recorded it; the trial was queued again",
                         statuses=("FINISHED",))
    if resumed:  # a parent run made just now has no child runs yet (a query saved)
        close_orphan_runs(client, study, parent_run_id, experiment_id)
    before = st.tally(study)
    print(f"sweep {s.name!r}: {before.done} of {s.n_trials} trials done"
          + (f", {len(orphans)} interrupted trial(s) queued again" if orphans else "")
          + f"; study in {storage_url}; MLflow parent run {parent_run_id}; trials run in "
          + executor.where, flush=True)

    printer = TrialPrinter(study, s, already=before.done)
    code, why, error = ExitCode.OK, "enough trials", None
    confirmed: Confirmation | None = None
    plots_writer: TrackingWriter | None = None
    controller = Controller(study, space, base, s, parent_run_id, client, executor, printer)
    controller.run_tags = run_tags
    ended = False  # the search (and its confirmation) ran to its end: register the champion
    try:
        why = controller.run(stop, started=time.time())
        if controller.failed_out:  # the search space cannot learn: not a success
            code = ExitCode.FAILED
        elif st.tally(study).complete == 0:  # nothing to confirm or register: no success
            code = ExitCode.FAILED
            why += f"; {NONE_COMPLETE}"
        else:  # the search ended normally: confirm its best across seeds
            printer.poll()
            printer.close()
            if isinstance(executor, InProcess) and executor.writer is not None:
                plots_writer = queue_plots(executor.writer, study, parent_run_id, s)
            confirmed = confirm_sweep(
                ranked(study), base, typed, controller.typed_base, parent_run_id, client,
                experiment_id, stop, generation=generation, tags=run_tags,
                writer=executor.writer if isinstance(executor, InProcess) else None,
                pool=executor if isinstance(executor, DaskPool) else None,
                threads=controller.threads)
            ended = True
    except SweepAborted as err:
        code, why, error = ExitCode.USAGE, str(err), str(err)
    except KeyboardInterrupt as err:
        code = exit_code(err)
        why = f"{interruption(err)}; run the same command again to resume"
    except Exception as err:  # a bug or an unforeseen fault: the parent run says so
        code, why = ExitCode.FAILED, f"stopped on {type(err).__name__}: {err}"
        raise
    finally:
        printer.poll()
        printer.close()
        if error is not None:  # on a line of its own, after the progress bar
            print(f"error: {error}", file=sys.stderr, flush=True)
        elif code == ExitCode.OUTPUT_CLOSED:  # the summary's lines go nowhere: why, here
            print(f"sweep {s.name!r} stopped: {why}", file=sys.stderr, flush=True)
        try:
            summarize(study, client, parent_run_id, typed, experiment_id, uri, why,
                      confirmed=confirmed, plots_writer=plots_writer, register=ended,
                      status={ExitCode.OK: "FINISHED", ExitCode.FAILED: "FAILED"}.get(
                          code, "KILLED"))
        except KeyboardInterrupt as err:  # a second Ctrl-C (or SIGTERM) while it reports
            code = exit_code(err)
            cut = (f"{interruption(err)} while the sweep reported; run the same command to "
                   f"log its summary")
            with contextlib.suppress(Exception):  # no parent run left claiming to run
                client.set_tag(parent_run_id, Tag.STOPPED_BECAUSE, cut)
                client.set_terminated(parent_run_id, "KILLED")
            print(f"sweep {s.name!r} stopped: {cut}", file=sys.stderr, flush=True)
        except Exception as err:
            down = unavailable_reason(err) or no_space(err)
            if down is None:
                raise
            if code == ExitCode.OK:  # the search ended, but its outcome is not in MLflow
                code = ExitCode.USAGE
                print(f"error: the sweep's summary was not logged: the tracking store {uri} "
                      f"did not take it ({down}); once it answers, run the same command: it "
                      f"logs the summary and registers the champion", file=sys.stderr)
            else:  # the reason the sweep stopped is printed already
                print(f"warning: the sweep's summary was not logged: the tracking store "
                      f"{uri} did not take it ({down}); the next run of the same command "
                      f"logs it", file=sys.stderr)
    return code


def _executor(s: SweepConfig, stop: StopRequest, uri: str,
              writer: TrackingWriter | None = None) -> InProcess | DaskPool:
    """Trials in this process (one job, no cluster), logged by `writer`, a writer process
    for tracking store `uri` (sweep.writer=process; started here if not given), else on
    Dask."""
    if s.n_jobs == 1 and s.cluster is None:
        if writer is None and s.writer == "process":
            writer = TrackingWriter(uri)
        return InProcess(stop, writer, overlap=s.sampler != "grid")
    try:
        return DaskPool(s.n_jobs, s.cluster)
    except OSError as err:  # the scheduler did not answer (TimeoutError is an OSError)
        raise ConfigError(f"sweep.cluster={s.cluster!r}: cannot reach the Dask scheduler "
                          f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); start "
                          f"it with `dask scheduler` (and `dask worker <address>` on each "
                          f"host), or set sweep.cluster=null") from None


class Controller:
    """The only one that asks the study for trials and tells it results: hands each trial to
    the executor as soon as it has a free slot, and tells outcomes as they come back."""

    def __init__(self, study: optuna.Study, space: dict[str, Any], base: DictConfig,
                 s: SweepConfig, parent_run_id: str, client: Any,
                 executor: InProcess | DaskPool, printer: TrialPrinter) -> None:
        self.study, self.space, self.base, self.s = study, space, base, s
        self.parent_run_id, self.client = parent_run_id, client
        self.executor, self.printer = executor, printer
        if isinstance(executor, InProcess):
            executor.tell = self.finish_and_show
        self.live: dict[int, optuna.trial.Trial] = {}
        self.typed_base = to_config(base)  # checked once; each trial checks its params
        self.failed_out = False  # stopped by sweep.max_failure_rate
        self.run_tags: dict[str, str] = {}  # on every trial's run
        # BLAS threads per trial: the cores shared among this machine's workers.
        self.threads = max(1, (os.cpu_count() or 1) // s.n_jobs) \
            if s.n_jobs > 1 and s.cluster is None else None
        # With a writer process, one core is its: BLAS threads spinning for a core it holds
        # slowed training by half when tried.
        if isinstance(executor, InProcess) and executor.writer is not None:
            self.threads = max(1, (os.cpu_count() or 1) - 1)

    def run(self, stop: StopRequest, started: float) -> str:
        """Run trials until the sweep has enough; returns why it stopped."""
        settle()  # the sweep's start-up: its study, parent run and first imports
        try:
            while True:
                stop.check()
                why = self.why_stop(started)
                while why is None and self.executor.busy < self.executor.slots:
                    self.start_one()
                    why = self.why_stop(started)
                if not self.live:
                    return why or "enough trials"
                for finished in self.executor.wait(timeout=0.5):
                    self.finish(finished)
                self.printer.poll()
        except (TrackingUnavailable, SchedulerLost) as err:
            self.interrupt_all(err.reason)
            raise SweepAborted(str(err)) from None
        except Exception as err:  # the journal's (or the store's) disk filled up, say
            full = no_space(err)
            self.interrupt_all(DiskFull.reason if full else
                               f"the controller stopped on {type(err).__name__}")
            if full is None:
                raise
            raise SweepAborted(f"no space left on the device ({full}; the study is in "
                               f"{st.storage_url(self.s)}); free space, then run the same "
                               f"command to resume") from None
        except BaseException as err:
            self.interrupt_all(interruption(err))
            raise

    def why_stop(self, started: float) -> str | None:
        s, t = self.s, st.tally(self.study)
        if t.done >= s.min_trials_for_failure_rate and t.failed / t.done >= s.max_failure_rate:
            self.failed_out = True
            return (f"{t.failed} of {t.done} finished trials failed "
                    f"(sweep.max_failure_rate={s.max_failure_rate})")
        if t.done + len(self.live) >= s.n_trials:
            return "enough trials"
        if st.grid_exhausted(self.study):
            return "every point of the grid was tried"
        if s.timeout is not None and time.time() - started > s.timeout:
            return f"timeout of {s.timeout}s reached"
        return None

    def start_one(self) -> None:
        with st.gathered(self.study):  # its creation, then its params and controller at once
            trial = self.study.ask(self.space)
            trial.set_user_attr(TrialAttr.CONTROLLER, st.controller_id())
        try:
            task = make_task(trial.number, trial.params, self.base, self.s,
                             self.parent_run_id, self.threads, self.typed_base,
                             generation=int(self.study.user_attrs.get(TrialAttr.GENERATION, 1)),
                             tags=self.run_tags)
        except ConfigError as err:
            st.tell_outcome(self.study, trial, RunStatus.ERROR, str(err))
            raise SweepAborted(f"trial {trial.number} has an invalid config: {err}") from None
        self.live[trial.number] = trial
        self.executor.submit(task, trial)

    def finish_and_show(self, f: Finished) -> None:
        """`finish`, then the trial's line: told while the next trial trains, in `run`'s
        inner loop, it would otherwise be printed only once every trial has started."""
        self.finish(f)
        self.printer.poll()

    def finish(self, f: Finished) -> None:
        trial = self.live.pop(f.number)
        if f.outcome is not None:
            o = f.outcome
            attrs = {**o.attrs, TrialAttr.HOST: o.host, TrialAttr.WORKER: o.worker}
            if o.run_id:
                attrs[TrialAttr.RUN_ID] = o.run_id
            st.tell_outcome(self.study, trial, o.status, o.reason, o.values, attrs)
            return
        err = f.error
        if isinstance(err, TrackingUnavailable):
            self.live[f.number] = trial  # queued again with the others still out
            raise err
        if killed_worker(err):
            reason = WORKER_DIED
            st.requeue(self.study, trial.number, trial.params, reason, trial)
            close_trial_runs(self.client, self.parent_run_id, trial.number, reason)
            return
        # The task itself raised before or outside the run: the data cannot be read on
        # that worker, say; every other trial would fail the same way.
        st.tell_outcome(self.study, trial, RunStatus.ERROR, f"{type(err).__name__}: {err}")
        raise SweepAborted(f"trial {trial.number} could not run on its worker: "
                           f"{type(err).__name__}: {err}")

    def interrupt_all(self, reason: str) -> None:
        """Queue every trial still out again, and close the runs they left open (when the
        tracking store answers). Trials whose runs are written meanwhile are told."""
        self.executor.stop_all()
        with contextlib.suppress(Exception):  # the store or the writer may be what failed
            for f in self.executor.drain():
                if f.outcome is not None and f.number in self.live:
                    self.finish(f)
        for number, trial in list(self.live.items()):
            # A journal on a full disk takes no more writes: the trial stays RUNNING there,
            # and the next start queues it again (its controller is gone: st.orphaned).
            with contextlib.suppress(OSError):
                st.requeue(self.study, number, trial.params, reason, trial)
            with contextlib.suppress(Exception):  # the store may be what failed
                # FINISHED too: a run its writer wrote, of a trial never told
                close_trial_runs(self.client, self.parent_run_id, number, reason,
                                 statuses=("RUNNING", "FINISHED"))
        self.live.clear()


def _parent_run(client: Any, study: optuna.Study, experiment_id: str, cfg: DictConfig,
                s: SweepConfig, storage_url: str, run_tags: dict[str, str]) -> str:
    """The sweep's MLflow parent run: the one recorded on the study, or a new one (tagged
    with `run_tags` too)."""
    old_id = study.user_attrs.get(TrialAttr.PARENT_RUN_ID)
    fixed, session = settings(s)
    # this session's settings (n_trials raised, another sampler, ...): tags, which can change
    session_tags = [RunTag(Tag.SWEEP_SETTING + k, v) for k, v in session.items()]
    session_tags += [RunTag(Tag.SAMPLER, s.sampler), RunTag(Tag.PRUNER, s.pruner)]
    if old_id is not None:
        try:
            client.update_run(old_id, status="RUNNING")
        except Exception:  # the store was wiped while the study was kept
            pass
        else:
            client.log_batch(old_id, tags=session_tags)
            client.log_text(old_id, OmegaConf.to_yaml(cfg), "sweep_config.yaml")  # this session's
            return str(old_id)
    generation = int(study.user_attrs.get(TrialAttr.GENERATION, 1))
    if old_id is None:  # a new study: is the name's MLflow record already taken?
        parents = gen.earlier_parents(client, experiment_id, s.name)
        generation = gen.next_generation(parents)
        if parents:
            print(gen.restart_warning(s.name, storage_url, parents, generation),
                  file=sys.stderr, flush=True)
    tags = {**run_tags, Tag.ROLE: Role.SWEEP, Tag.STUDY: s.name, Tag.STORAGE: storage_url,
            Tag.SAMPLER: s.sampler, Tag.PRUNER: s.pruner, Tag.GENERATION: str(generation),
            MlflowTag.NOTE: f"Optuna study `{s.name}` ({s.sampler} sampler, {s.pruner} "
                            f"pruner): trials are the nested runs below."}
    run = client.create_run(experiment_id, run_name=gen.parent_run_name(s.name, generation),
                            tags=tags)
    run_id = run.info.run_id
    params = [Param(f"sweep.{k}", v) for k, v in fixed.items()]
    params += [Param(f"space.{k}", v) for k, v in flat_params(s.params).items()]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i:i + 100])
    client.log_batch(run_id, tags=session_tags)
    client.log_text(run_id, OmegaConf.to_yaml(cfg), "sweep_config.yaml")
    client.log_text(run_id, OmegaConf.to_yaml(flat_params(s.params)), "search_space.yaml")
    study.set_user_attr(TrialAttr.GENERATION, generation)
    study.set_user_attr(TrialAttr.PARENT_RUN_ID, run_id)
    if old_id is not None:
        print(f"the study's parent run {old_id} is not in the tracking store (deleted?): "
              f"started a new parent run {run_id}; the trials already done keep their "
              f"results in the study, without their MLflow runs", flush=True)
    return str(run_id)
