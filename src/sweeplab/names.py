"""Every name sweeplab writes somewhere another program (or a later sweeplab) reads back:
metric names, MLflow tag keys, run statuses, the Optuna trial attributes. Spelled here once.

They are StrEnums, so a member *is* its string: ``Metric.VAL_COST == "val_cost"`` and an
f-string or an MLflow call takes it as it is. The README's "What is logged" lists them.
"""

from __future__ import annotations

from enum import StrEnum


class Metric(StrEnum):
    """MLflow metric names (and the keys of `RunResult.metrics`)."""

    # Histories, with step = epoch, every train.log_every epochs and at the last.
    TRAIN_COST = "train_cost"
    VAL_COST = "val_cost"
    VAL_ACCURACY = "val_accuracy"
    # Final values, after the last update (step = epochs run).
    TRAIN_ACCURACY = "train_accuracy"
    TEST_ACCURACY = "test_accuracy"
    FINAL_TRAIN_COST = "final_train_cost"
    FINAL_VAL_COST = "final_val_cost"
    FINAL_TEST_COST = "final_test_cost"
    TRAIN_SECONDS = "train_seconds"
    # A completed sweep trial's value of the study's (first) objective, which the sweep's
    # saved view sorts by: pruned and failed trials have none, so they come after it.
    OBJECTIVE = "objective"


HISTORY_METRICS = (Metric.TRAIN_COST, Metric.VAL_COST, Metric.VAL_ACCURACY)
# Logged once, after training; train_seconds is wall time and never compared.
FINAL_METRICS = (Metric.TRAIN_ACCURACY, Metric.TEST_ACCURACY, Metric.FINAL_TRAIN_COST,
                 Metric.FINAL_VAL_COST, Metric.FINAL_TEST_COST)
# What a trial can be judged on: validation and training metrics, never the test set.
OBJECTIVES = ("val_cost", "val_accuracy", "train_cost", "train_accuracy", "n_params")
# The metric an objective is read from after training, where the names differ: a cost
# objective is the cost after the last update, not the last history point.
OBJECTIVE_METRICS = {"val_cost": Metric.FINAL_VAL_COST, "train_cost": Metric.FINAL_TRAIN_COST}
# Objectives that are costs: positive, and spread over decades once a trial diverges
# (2.3 against 0.09), so their plots use a log axis.
COST_OBJECTIVES = ("val_cost", "train_cost")
# Objectives that are logged as metrics (n_params is the tag Tag.N_PARAMS).
METRIC_OBJECTIVES = ("val_cost", "val_accuracy", "train_cost", "train_accuracy")


TAG_PREFIX = "sweeplab."


class Tag(StrEnum):
    """MLflow run tags. sweeplab's own live under ``sweeplab.``."""

    # every run
    STATUS = "sweeplab.status"  # a RunStatus, finer than MLflow's run status
    REASON = "sweeplab.reason"
    EPOCHS_RUN = "sweeplab.epochs_run"
    SEED = "sweeplab.seed"
    DATA_FINGERPRINT = "sweeplab.data_fingerprint"
    DATA_SOURCE = "sweeplab.data_source"
    LAYER_DIMS = "sweeplab.layer_dims"
    N_PARAMS = "sweeplab.n_params"
    FIRST_LAYER = "sweeplab.first_layer"  # how W[1] X was computed: direct or dual
    MODEL_URI = "sweeplab.model_uri"
    GIT_COMMIT = "sweeplab.git_commit"
    GIT_DIRTY = "sweeplab.git_dirty"
    VERSION = "sweeplab.version."  # + package name
    BLAS = "sweeplab.blas"
    BLAS_THREADS = "sweeplab.blas_threads"
    # + a config group: the option Hydra chose for it (sweeplab.experiment=course2_baseline,
    # sweeplab.data=digits, sweeplab.optim=adam, ...); runs made through a Hydra app only
    CHOICE = "sweeplab."
    # the runs of one Hydra multirun (`-m`): its output folder, and the job's number in it
    MULTIRUN = "sweeplab.multirun"
    MULTIRUN_JOB = "sweeplab.multirun_job"
    # sweeps
    ROLE = "sweeplab.role"  # a Role
    STUDY = "sweeplab.study"
    # 1, 2, ...: which sweep of this study name, when its Optuna study was started afresh
    # (an emptied or new journal) while MLflow kept the runs of the earlier one.
    GENERATION = "sweeplab.generation"
    STORAGE = "sweeplab.storage"
    SAMPLER = "sweeplab.sampler"
    PRUNER = "sweeplab.pruner"
    # + a sweep setting that may change between sessions of a study (n_trials, ...), on
    # its parent run; the fixed ones are params (sweep/identity.py)
    SWEEP_SETTING = "sweeplab.sweep."
    TRIAL_NUMBER = "sweeplab.trial_number"
    TRIAL_STATE = "sweeplab.trial_state"  # the Optuna TrialState's name
    PRUNED_AT_EPOCH = "sweeplab.pruned_at_epoch"
    STOPPED_BECAUSE = "sweeplab.stopped_because"
    BEST_TRIAL = "sweeplab.best_trial"
    BEST_RUN_ID = "sweeplab.best_run_id"
    BEST = "sweeplab.best."  # + the searched key
    # confirmation replicates (sweep/confirm.py): Tag.ROLE confirm, Tag.TRIAL_NUMBER the
    # search trial whose configuration they retrain
    CONFIG_HASH = "sweeplab.config_hash"  # the resolved config without seed and run name
    REPLICATE = "sweeplab.replicate"  # 1..sweep.confirm.seeds
    # on the parent run: the confirmed champion and how it compares with the runner-up
    CONFIRM_CHAMPION = "sweeplab.confirm.champion_trial"
    CONFIRM_VERDICT = "sweeplab.confirm.verdict"
    # what the last confirmation covered: its trials (best mean first) and run seeds,
    # comma-separated (earlier confirmations' replicates stay under the parent too)
    CONFIRM_TRIALS = "sweeplab.confirm.trials"
    CONFIRM_SEEDS = "sweeplab.confirm.seeds"
    # reruns
    RERUN_OF = "sweeplab.rerun_of"
    RERUN_OVERRIDES = "sweeplab.rerun_overrides"
    RERUN_IDENTICAL = "sweeplab.rerun_identical"


class MlflowTag(StrEnum):
    """MLflow's own tags that sweeplab sets."""

    PARENT_RUN_ID = "mlflow.parentRunId"
    NOTE = "mlflow.note.content"
    GIT_COMMIT = "mlflow.source.git.commit"
    # An experiment tag: what kind of work the experiment holds (MLflow 3's UI offers
    # "GenAI apps & agents" or "Machine learning"), set by the UI's kind selector.
    EXPERIMENT_KIND = "mlflow.experimentKind"


# MLflow 3's value of MlflowTag.EXPERIMENT_KIND for model training (its GenAI value is
# "genai_development"); the UI's ExperimentKind enum, MLflow 3.17.
MODEL_TRAINING_KIND = "custom_model_development"
# The UI's layout for it: the `workflowType` query parameter of a page's address (else
# the browser's last choice, else GenAI), MLflow 3.17.
MODEL_TRAINING_LAYOUT = "machine_learning"


class Role(StrEnum):
    SWEEP = "sweep"
    TRIAL = "trial"
    CONFIRM = "confirm"  # a replicate of the confirmation stage


# The parent run's confirmation metrics: ``confirm.<trial>.<stat>_<metric>``, e.g.
# ``confirm.7.mean_val_cost``, ``confirm.7.ci_low_val_accuracy``, ``confirm.7.n``; and
# ``confirm.<stat>`` for the comparison of the champion with the runner-up.
CONFIRM_PREFIX = "confirm."
CONFIRM_STATS = ("mean", "std", "ci_low", "ci_high")


def confirm_metric(trial: int | None, stat: str, metric: str | None = None) -> str:
    """The parent run's metric name for `stat` of `metric` over the replicates of search
    trial `trial`'s configuration (None: the champion-vs-runner-up comparison)."""
    where = CONFIRM_PREFIX if trial is None else f"{CONFIRM_PREFIX}{trial}."
    return f"{where}{stat}" if metric is None else f"{where}{stat}_{metric}"


class RunStatus(StrEnum):
    """How a run ended (tag Tag.STATUS; `RunResult.status`)."""

    RUNNING = "running"
    FINISHED = "finished"
    EARLY_STOPPED = "early_stopped"
    DIVERGED = "diverged"
    # trained to the end, but its train cost is no better than the untrained network's
    NOT_LEARNING = "not_learning"
    PRUNED = "pruned"
    STOPPED = "stopped"  # by a callback other than a pruner
    INTERRUPTED = "interrupted"  # Ctrl-C, or the process was killed
    ERROR = "error"  # an exception inside the run


# What MLflow's coarser run status says for each.
MLFLOW_STATUS = {RunStatus.FINISHED: "FINISHED", RunStatus.EARLY_STOPPED: "FINISHED",
                 RunStatus.DIVERGED: "FAILED", RunStatus.NOT_LEARNING: "FAILED",
                 RunStatus.PRUNED: "KILLED",
                 RunStatus.STOPPED: "KILLED", RunStatus.INTERRUPTED: "KILLED",
                 RunStatus.ERROR: "FAILED"}
# A trial that failed with one of these is done (counted); an interrupted one is retried.
DONE_FAILURES = (RunStatus.DIVERGED, RunStatus.NOT_LEARNING, RunStatus.ERROR)


class TrialAttr(StrEnum):
    """Optuna user attributes of a sweeplab trial (and of the study)."""

    STATUS = "sweeplab_status"  # a RunStatus
    REASON = "sweeplab_reason"
    RUN_ID = "mlflow_run_id"
    CONTROLLER = "controller"  # host:pid of the controller that asked for the trial
    HOST = "host"  # where the trial ran
    WORKER = "worker"  # which worker ran it: a Dask worker's name, or "controller"
    RETRY_OF = "retry_of"  # on a requeued trial: the number of the interrupted one
    RETRY_REASON = "retry_reason"  # and why it was interrupted
    PRUNED_AT_EPOCH = "pruned_at_epoch"
    PARENT_RUN_ID = "mlflow_parent_run_id"  # on the study
    GENERATION = "sweeplab_generation"  # on the study: its parent run's Tag.GENERATION
    # on the study: its search space, objectives and directions (JSON, sweep/identity.py)
    IDENTITY = "sweeplab_identity"
    # on the study: "host:pid:start" of the controller running it now ("" once it ended)
    RUN_BY = "sweeplab_run_by"


class ExitCode:
    """Process exit codes of the command-line tools."""

    OK = 0
    FAILED = 1  # a run diverged; a rerun is not identical
    USAGE = 2  # bad input or environment: one line on stderr says what and what to do
    ABORT = 3  # a sweep worker found a trial whose config is invalid: the sweep stops
    INTERRUPTED = 130  # Ctrl-C
    TERMINATED = 143  # SIGTERM
    OUTPUT_CLOSED = 141  # the reader of its output went away (128 + SIGPIPE)
