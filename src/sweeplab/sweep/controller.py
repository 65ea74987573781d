"""A sweep's controller: an Optuna study over the run config, one MLflow parent run.

The sweep is checked whole before any trial runs (config, search space, data, sampler,
pruner). Workers are processes that pull trials from one study as each finishes; the
study lives in a journal file, so a killed sweep resumes where it stopped when the same
command runs again: finished trials are kept, interrupted ones are retried.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
import time
import warnings
from typing import Any

import optuna
from mlflow.entities import Param
from omegaconf import DictConfig, OmegaConf

from sweeplab.config import SweepConfig, flatten, to_config
from sweeplab.names import ExitCode, MlflowTag, Role, Tag, TrialAttr
from sweeplab.sweep import study as st
from sweeplab.sweep.report import TrialPrinter, close_orphan_runs, summarize
from sweeplab.sweep.space import flat_params, parse_space
from sweeplab.sweep.view import save_sweep_view
from sweeplab.sweep.worker import Job, SweepAborted, work, worker_main
from sweeplab.tracking import check_server, get_experiment_id, prepare_store, resolve_uri
from sweeplab.train import load_data


def sweep_job(cfg: DictConfig) -> int:
    """Check everything, open the study and the parent run, run the workers, report."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    typed = to_config(cfg)
    s = typed.sweep
    assert s is not None
    base = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "sweep"])
    space = parse_space(s.params, base)
    # Fail here, not in a worker: data files, sampler needs, pruner arguments, a tracking
    # server that does not answer (before the study is created).
    load_data(typed)
    check_server(resolve_uri(typed.tracking))
    sampler = st.make_sampler(s, space)
    pruner = st.make_pruner(s, typed.train.epochs, typed.train.log_every)

    storage_url = st.storage_url(s)
    storage = st.open_storage(storage_url)
    with st.file_lock(st.lock_path(s)):
        study = st.create_or_load(s, storage, sampler, pruner)
        st.check_space(study, space)
        uri = resolve_uri(typed.tracking)
        client = prepare_store(uri)
        experiment_id = get_experiment_id(client, typed.tracking.experiment, uri)
        parent_run_id = _parent_run(client, study, experiment_id, cfg, s, storage_url)
        save_sweep_view(client, experiment_id, s)  # the UI's table of this sweep's trials
        orphans = st.orphaned(study)
        for t in orphans:
            st.requeue(study, t.number, t.params, "its process was killed")
        close_orphan_runs(client, orphans, parent_run_id, experiment_id)
    before = st.tally(study)
    print(f"sweep {s.name!r}: {before.done} of {s.n_trials} trials done"
          + (f", {len(orphans)} interrupted trial(s) queued again" if orphans else "")
          + f"; study in {storage_url}; MLflow parent run {parent_run_id}", flush=True)

    n_jobs = s.n_jobs
    threads = max(1, (os.cpu_count() or 1) // n_jobs) if n_jobs > 1 else None
    job = Job(base=OmegaConf.to_container(base, resolve=True),  # type: ignore[arg-type]
              sweep=OmegaConf.to_container(OmegaConf.structured(s), resolve=True),  # type: ignore[arg-type]
              storage=storage_url, parent_run_id=parent_run_id, threads=threads,
              started=time.time())
    printer = TrialPrinter(study, s, already=before.done)
    code, why = 0, "enough trials"
    try:
        if n_jobs == 1:
            why = work(job, on_trial_done=printer.poll)
        else:
            code, why = _run_workers(job, n_jobs, printer)
    except SweepAborted as err:
        print(f"error: {err}", file=sys.stderr)
        code, why = ExitCode.USAGE, str(err)
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
        why = "interrupted (Ctrl-C); run the same command again to resume"
    finally:
        printer.poll()
        printer.close()
        summarize(study, client, parent_run_id, typed, experiment_id, uri, why,
                  finished=code == ExitCode.OK)
    return code


def _parent_run(client: Any, study: optuna.Study, experiment_id: str, cfg: DictConfig,
                s: SweepConfig, storage_url: str) -> str:
    """The sweep's MLflow parent run: the one recorded on the study, or a new one."""
    run_id = study.user_attrs.get(TrialAttr.PARENT_RUN_ID)
    if run_id is not None:
        try:
            client.update_run(run_id, status="RUNNING")
            return str(run_id)
        except Exception:  # the store was wiped while the study was kept
            pass
    tags = {Tag.ROLE: Role.SWEEP, Tag.STUDY: s.name, Tag.STORAGE: storage_url,
            Tag.SAMPLER: s.sampler, Tag.PRUNER: s.pruner,
            MlflowTag.NOTE: f"Optuna study `{s.name}` ({s.sampler} sampler, {s.pruner} "
                            f"pruner): trials are the nested runs below."}
    run = client.create_run(experiment_id, run_name=f"sweep {s.name}", tags=tags)
    run_id = run.info.run_id
    params = [Param(f"sweep.{k}", str(v)) for k, v in
              flatten(OmegaConf.structured(s)).items() if not k.startswith("params.")]
    params += [Param(f"space.{k}", v) for k, v in flat_params(s.params).items()]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i:i + 100])
    client.log_text(run_id, OmegaConf.to_yaml(cfg), "sweep_config.yaml")
    client.log_text(run_id, OmegaConf.to_yaml(flat_params(s.params)), "search_space.yaml")
    study.set_user_attr(TrialAttr.PARENT_RUN_ID, run_id)
    return str(run_id)


def _run_workers(job: Job, n_jobs: int, printer: TrialPrinter) -> tuple[int, str]:
    """N worker processes pulling from the study; the parent prints what finishes."""
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for k in range(n_jobs):
        p = ctx.Process(target=worker_main, args=(dataclasses.replace(job, worker=k),),
                        name=f"sweeplab-worker-{k}")
        p.start()
        procs.append(p)
    try:
        while any(p.is_alive() for p in procs):
            printer.poll()
            if any(p.exitcode == ExitCode.ABORT for p in procs):
                break
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.exitcode is None and any(q.exitcode == ExitCode.ABORT for q in procs):
                p.terminate()
            p.join()
    if any(p.exitcode == ExitCode.ABORT for p in procs):
        return ExitCode.USAGE, "a trial had an invalid config"
    bad = [p.exitcode for p in procs if p.exitcode not in (ExitCode.OK, ExitCode.INTERRUPTED)]
    if bad:
        return ExitCode.FAILED, f"worker(s) exited with {bad}"
    return ExitCode.OK, "enough trials"

