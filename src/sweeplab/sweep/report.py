"""What a sweep shows: a line per finished trial as it goes, and at the end (also after
Ctrl-C) the summary on the MLflow parent run, the best model registered, the best five."""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import mlflow
import optuna
from mlflow.entities import Metric as MetricPoint
from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from sweeplab.config import Config, SweepConfig, objectives_of
from sweeplab.names import MLFLOW_STATUS, Metric, MlflowTag, RunStatus, Tag, TrialAttr
from sweeplab.sweep import study as st
from sweeplab.sweep.confirmed import Confirmation
from sweeplab.sweep.confirmed import description as confirmed_description
from sweeplab.sweep.confirmed import table as confirmed_table
from sweeplab.sweep.confirmed import test_line as confirmed_test_line
from sweeplab.sweep.plots import FINISHED, SKIPPED_ARTIFACT, log_plots, op_study_plots
from sweeplab.sweep.view import view_key
from sweeplab.sweep.worker import short
from sweeplab.tracking.links import run_link, runs_url, ui_base, ui_hint, ui_route
from sweeplab.tracking.writer import TrackingWriter, WriterDied

CHAMPION = "champion"  # the registered model's alias for a sweep's best trial
NONE_COMPLETE = "no trial completed"  # why a sweep whose trials all failed or pruned failed


def _value(t: FrozenTrial) -> str:
    if t.values is None:
        return "-"
    return ", ".join(f"{v:.4g}" for v in t.values)


def trial_line(t: FrozenTrial, objectives: Sequence[str]) -> str:
    secs = t.duration.total_seconds() if t.duration else 0.0
    state = st.status_of(t)
    line = (f"trial {t.number:>3}  {short(t.params):<40} {'/'.join(objectives)}={_value(t):<10}"
            f" {state:<12} {secs:5.1f}s")
    reason = st.reason_of(t)
    if t.state != TrialState.COMPLETE and reason:
        line += f"  ({reason})"
    return line


class TrialPrinter:
    """A progress bar over trials that shows the running best, and one line per finished
    trial, read from the study (so it also sees what worker processes finish)."""

    def __init__(self, study: optuna.Study, s: SweepConfig, already: int,
                 bar: bool | None = None) -> None:
        from tqdm.auto import tqdm

        self.study, self.objectives = study, objectives_of(s)[0]
        self.seen = {t.number for t in study.get_trials(deepcopy=False, states=FINISHED)}
        # The bar only on a terminal (`bar` None), as training's: in a log file its frames
        # are a line of carriage returns; the trials' lines are printed either way.
        shown = sys.stderr.isatty() if bar is None else bar
        self.bar = tqdm(total=s.n_trials, initial=min(already, s.n_trials), unit="trial",
                        desc=f"sweep {s.name}", dynamic_ncols=True, disable=not shown)
        self.show_best()  # a resumed study has one already

    def poll(self, _study: optuna.Study | None = None) -> None:
        new = False
        for t in self.study.get_trials(deepcopy=False, states=FINISHED):
            if t.number in self.seen:
                continue
            self.seen.add(t.number)
            self.bar.write(trial_line(t, self.objectives))
            if st.status_of(t) != RunStatus.INTERRUPTED:
                self.bar.update(1)
            new = True
        if new:  # the best can only change when a trial finishes
            self.show_best()

    def show_best(self) -> None:
        """The best completed trial so far after the bar: ``best val_cost=0.0841 (trial
        12)``; with several objectives, the size of the Pareto front."""
        best = ranked(self.study)
        if not best:
            return
        if len(self.objectives) > 1:
            text = f"Pareto front: {len(best)} trial{'s' if len(best) > 1 else ''}"
        else:
            text = f"best {self.objectives[0]}={_value(best[0])} (trial {best[0].number})"
        self.bar.set_postfix_str(text)

    def close(self) -> None:
        self.bar.close()


def close_orphan_runs(client: MlflowClient, study: optuna.Study, parent_run_id: str,
                      experiment_id: str) -> int:
    """Close, as KILLED, the sweep's child runs left RUNNING by trials that no longer run
    (a killed controller or worker, a tracking server lost mid-trial); returns how many.
    Found by trial number under the parent, in one query: a kill can come before anyone
    learnt the run's id."""
    running = {t.number for t in study.get_trials(deepcopy=False,
                                                  states=(TrialState.RUNNING,))}
    runs = client.search_runs(
        [experiment_id], f"tags.`{MlflowTag.PARENT_RUN_ID}` = '{parent_run_id}' and "
                         f"attributes.status = 'RUNNING'", max_results=1000)
    closed = 0
    for run in runs:
        number = run.data.tags.get(Tag.TRIAL_NUMBER, "")
        if number.isdigit() and int(number) in running:
            continue
        client.log_batch(run.info.run_id, tags=[
            RunTag(Tag.STATUS, RunStatus.INTERRUPTED), RunTag(Tag.TRIAL_STATE, "FAIL"),
            RunTag(Tag.REASON, "its trial was interrupted; the sweep queued it again")])
        client.set_terminated(run.info.run_id, MLFLOW_STATUS[RunStatus.INTERRUPTED])
        closed += 1
    return closed


def ranked(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials, best first (single objective) or the Pareto front (several)."""
    if len(study.directions) > 1:
        return list(study.best_trials)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sign = -1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1
    return sorted(done, key=lambda t: sign * t.values[0])


def trials_table(study: optuna.Study, objectives: Sequence[str]) -> tuple[str, str]:
    """(CSV, markdown) of every trial: number, state, params, values, test accuracy, run."""
    keys = sorted({k for t in study.trials for k in t.params})
    head = ["trial", "state", "status", *keys, *objectives, Metric.VAL_ACCURACY,
            Metric.TEST_ACCURACY,
            "seconds", "mlflow_run_id", "reason"]
    rows = []
    for t in study.get_trials(deepcopy=False):
        values = list(t.values) if t.values else [None] * len(objectives)
        secs = t.duration.total_seconds() if t.duration else None
        rows.append([t.number, t.state.name, st.status_of(t),
                     *(t.params.get(k) for k in keys), *values,
                     t.user_attrs.get(Metric.VAL_ACCURACY), t.user_attrs.get(Metric.TEST_ACCURACY),
                     secs, t.user_attrs.get(TrialAttr.RUN_ID, ""), st.reason_of(t) or ""])
    buf = io.StringIO()
    csv.writer(buf).writerows([head, *rows])

    def cell(v: Any) -> str:
        return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(cell(v).replace("|", "/") for v in r) + " |" for r in rows]
    return buf.getvalue(), "\n".join(md) + "\n"


def champion_description(study_name: str, trial: FrozenTrial, objectives: Sequence[str],
                         parent_link: str) -> str:
    """The registered version's description: which study, trial and objective value it
    came from, and the sweep's parent run (`parent_link`: `tracking.links.run_link`)."""
    which = "One of the best trials (Pareto front)" if len(objectives) > 1 else "The best trial"
    return (f"{which} of Optuna study `{study_name}`: trial {trial.number} "
            f"({short(trial.params)}), {'/'.join(objectives)} {_value(trial)}. Its run: "
            f"{trial.user_attrs.get(TrialAttr.RUN_ID, '?')}; the sweep's parent run: "
            f"{parent_link}. Registered by sweeplab.")


def register_champion(client: MlflowClient, name: str, run_id: str, description: str = "",
                      tags: dict[str, str] | None = None) -> str | None:
    """Register run `run_id`'s model under `name` with `description` (and `tags`), and point
    alias `champion` at it (unless it already does: then only the description is brought
    up to date). Returns the version."""
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
        if current.run_id == run_id:
            if description and current.description != description:
                client.update_model_version(name, current.version, description=description)
            return str(current.version)
    except MlflowException:  # no such model or alias yet
        pass
    # MLflow 3 keeps a model as a LoggedModel (models:/<model id>), not in run artifacts.
    uri = client.get_run(run_id).data.tags.get(Tag.MODEL_URI, f"runs:/{run_id}/model")
    model_id = uri.removeprefix("models:/") if uri.startswith("models:/") else None
    source = uri
    if model_id is not None and client.tracking_uri != mlflow.get_tracking_uri():
        # MLflow's registry looks a models:/ source up through the process-wide tracking
        # URI, not this client's (a TODO in its SqlAlchemyStore, MLflow 3.17): a sweep given
        # tracking.uri failed here, and made a store in the working folder. The model's own
        # location registers the same model (the version's source is then the model's
        # folder rather than its models:/ URI).
        source = client.get_logged_model(model_id).artifact_location
    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, source=source, run_id=run_id, model_id=model_id,
                                          description=description or None, tags=tags)
    client.set_registered_model_alias(name, CHAMPION, version.version)
    return str(version.version)


def _finite(v: Any) -> bool:
    return isinstance(v, float) and math.isfinite(v)


def parent_note(s: SweepConfig, t: st.Tally, best: Sequence[FrozenTrial],
                objectives: Sequence[str], experiment_id: str) -> str:
    """The parent run's description (markdown): the study, its tally, the best trial with a
    link to its run, and where the table of trials and the plots are."""
    pruner = "no pruner" if s.pruner == "none" else f"{s.pruner} pruner"
    note = (f"Optuna study `{s.name}` ({s.sampler} sampler, {pruner}): {t.done} trials "
            f"({t.complete} complete, {t.pruned} pruned, {t.failed} failed) are the nested "
            f"runs below.")
    if best:
        top = best[0]
        run_id = top.user_attrs.get(TrialAttr.RUN_ID)
        name = f"trial {top.number}: {short(top.params)}"
        route = ui_route(f"#/experiments/{experiment_id}/runs/{run_id}")
        link = f"[{name}]({route})" if run_id else name
        extra = "".join(f", {k} {top.user_attrs[k]:.4g}" for k in (
            Metric.VAL_ACCURACY, Metric.TEST_ACCURACY) if _finite(top.user_attrs.get(k)))
        note += (f"\n\n**{'One of the best' if len(objectives) > 1 else 'Best'}**: {link}, "
                 f"{'/'.join(objectives)} {_value(top)}{extra}.")
    return note + ("\n\nArtifacts: `trials.md` and `trials.csv` (every trial), `plots/` "
                   "(Optuna's plots of the study; `plots/study.html` is interactive).")


# The writer group of the sweep's plots: apart from trial numbers, replicates and syncs.
PLOTS_GROUP = 2_000_000_000


def queue_plots(writer: TrackingWriter, study: optuna.Study, parent_run_id: str,
                s: SweepConfig) -> TrackingWriter | None:
    """Hand the finished search's plots to the writer process, which draws them while the
    confirmation stage trains (several seconds of matplotlib and plotly otherwise spent
    after it); the writer, or None when there is nothing to draw."""
    if not st.tally(study).complete:
        return None
    objectives, directions = objectives_of(s)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED]
    with writer.group(PLOTS_GROUP):
        writer.call(op_study_plots, parent_run_id, study.study_name, directions, trials,
                    objectives)
    writer.barrier(PLOTS_GROUP)
    return writer


def plots_written(writer: TrackingWriter) -> bool:
    """Wait for the writer to have run everything queued, the plots included; False when
    it died or could not write them (the caller then draws them itself)."""
    try:
        acks = writer.sync()
    except WriterDied:
        return False
    return not any(a.group == PLOTS_GROUP and a.failure is not None for a in acks)


def summarize(study: optuna.Study, client: MlflowClient, parent_run_id: str, cfg: Config,
              experiment_id: str, uri: str, why: str, *, status: str,
              confirmed: Confirmation | None = None,
              plots_writer: TrackingWriter | None = None, register: bool = True) -> None:
    """Put the sweep's outcome on the parent run (ended with MLflow `status`) and print
    it. With `register` (the sweep ran to its end) and `sweep.register_model`, the best
    model is registered: with a confirmation stage's outcome, its champion's best
    replicate, not the search's best trial. With `plots_writer`, the sweep's plots were
    queued to that writer (`queue_plots`): waited for here, and drawn here only if it could
    not draw them."""
    s = cfg.sweep
    assert s is not None
    objectives, _ = objectives_of(s)
    t = st.tally(study)
    best = ranked(study)
    now, step = int(time.time() * 1000), t.done
    metrics = [MetricPoint(k, float(v), now, step) for k, v in
               {"n_done": t.done, "n_complete": t.complete, "n_pruned": t.pruned,
                "n_failed": t.failed}.items()]
    tags = [RunTag(Tag.STOPPED_BECAUSE, why[:5000]),
            RunTag(MlflowTag.NOTE, parent_note(s, t, best, objectives, experiment_id))]
    if best:
        top = best[0]
        for obj, v in zip(objectives, top.values, strict=True):
            metrics.append(MetricPoint(f"best_{obj}", v, now, step))
        metrics += [MetricPoint(f"best.{k}", float(v), now, step) for k, v in top.params.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)]
        for k in (Metric.VAL_ACCURACY, Metric.TEST_ACCURACY):
            if k in top.user_attrs:
                metrics.append(MetricPoint(f"best_trial_{k}", float(top.user_attrs[k]), now, step))
        tags += [RunTag(Tag.BEST_TRIAL, str(top.number)),
                 RunTag(Tag.BEST_RUN_ID, str(top.user_attrs.get(TrialAttr.RUN_ID, "")))]
        tags += [RunTag(Tag.BEST + k, str(v)) for k, v in top.params.items()]
    client.log_batch(parent_run_id, metrics=metrics, tags=tags)
    table_csv, table_md = trials_table(study, objectives)
    client.log_text(parent_run_id, table_csv, "trials.csv")
    client.log_text(parent_run_id, table_md, "trials.md")
    if not (plots_writer is not None and plots_written(plots_writer)):
        skipped = log_plots(client, parent_run_id, study, objectives) if t.complete else []
        if skipped:
            client.log_text(parent_run_id, "\n".join(skipped) + "\n", SKIPPED_ARTIFACT)
    version = None
    parent_link = run_link(experiment_id, parent_run_id)
    # Only a sweep that ended registers: one stopped early (Ctrl-C, SIGTERM, a store gone)
    # has not confirmed its best, and its resume registers the champion it then finds.
    register = bool(register and s.register_model)
    champion = _first_with_run(client, best) if register else None
    confirmed_champ = confirmed.champion if confirmed is not None else None
    if confirmed is not None and confirmed_champ is not None and confirmed.best_run_id \
            and register:
        version = register_champion(
            client, s.register_model, confirmed.best_run_id,
            confirmed_description(confirmed, s.name, parent_link),
            tags={Tag.STUDY: s.name, Tag.TRIAL_NUMBER: str(confirmed_champ.trial),
                  Tag.CONFIG_HASH: confirmed_champ.hash})
    elif champion is not None and register:
        run_id = str(champion.user_attrs[TrialAttr.RUN_ID])
        version = register_champion(
            client, s.register_model, run_id,
            champion_description(s.name, champion, objectives, parent_link),
            tags={Tag.STUDY: s.name, Tag.TRIAL_NUMBER: str(champion.number)})
    client.set_terminated(parent_run_id, status)
    _print_summary(study, best, objectives, t, parent_run_id, experiment_id, uri, why,
                   s.register_model if version else None, version,
                   test_shown=confirmed is None,
                   held=bool(s.register_model and best and status == "KILLED"))
    if confirmed is not None:
        print(f"confirmed ({len(confirmed.seeds)} seeds each; best mean first):")
        for line in confirmed_table(confirmed):
            print(f"  {line}")
        print(f"  {confirmed.verdict()}")
        print(f"  {confirmed_test_line(confirmed)}")


def _first_with_run(client: MlflowClient, trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The first of `trials` whose MLflow run still exists: a store deleted while the study
    was kept took the runs (and models) of the trials before it."""
    from mlflow.exceptions import MlflowException

    for t in trials:
        run_id = t.user_attrs.get(TrialAttr.RUN_ID)
        if not run_id:
            continue
        try:
            client.get_run(run_id)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            continue
        return t
    return None


def _print_summary(study: optuna.Study, best: list[FrozenTrial], objectives: Sequence[str],
                   t: st.Tally, parent_run_id: str, experiment_id: str, uri: str, why: str,
                   model: str | None, version: str | None, *, test_shown: bool = True,
                   held: bool = False) -> None:
    """The end of a sweep in the terminal. With a confirmation stage (`test_shown` False)
    the trials' test accuracies stay out of it: the champion's, over its replicates, is the
    one figure of the test set printed, after it was chosen. `held`: a model would have
    been registered had the sweep not stopped early."""
    print(f"\nsweep {study.study_name!r}: {t.done} trials done ({t.complete} complete, "
          f"{t.pruned} pruned, {t.failed} failed); stopped: {why}")
    title = "Pareto front" if len(objectives) > 1 else "best five"
    if best:
        print(f"{title} by {'/'.join(objectives)}:")
        for trial in best[:5] if len(objectives) == 1 else best:
            test = trial.user_attrs.get(Metric.TEST_ACCURACY)
            val = trial.user_attrs.get(Metric.VAL_ACCURACY)
            extra = "" if val is None or (isinstance(val, float) and math.isnan(val)) \
                else f"  val_accuracy={val:.4f}"
            extra += f"  test_accuracy={test:.4f}" if test is not None and test_shown else ""
            print(f"  trial {trial.number:>3}  {short(trial.params):<40} "
                  f"{_value(trial)}{extra}")
    elif not why.endswith(NONE_COMPLETE):  # else said on the line above
        print(NONE_COMPLETE)
    if model:
        print(f"best model registered: models:/{model}@champion (version {version})")
    elif held:
        print("no model registered: the sweep stopped before its end; the same command "
              "resumes it and registers its champion")
    print(f"parent run: {parent_run_id}")
    print(f"look: {ui_hint(uri, experiment_id)}")
    print(f"      this sweep's trials, best first: "
          f"{runs_url(ui_base(uri), experiment_id, view_key(study.study_name))}")
