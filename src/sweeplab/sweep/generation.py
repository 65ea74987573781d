"""Generations of a sweep name: a study started afresh while MLflow kept the earlier one.

The Optuna study is the sweep's memory; the MLflow store only records it. When the study
is new (its journal was emptied, deleted or pointed elsewhere) but the store still holds
parent runs of a sweep of the same name, the new sweep would number its trials 0, 1, ...
again under a second parent run of the same name, and the two could not be told apart.
Each such restart is a new *generation*: its parent run is named ``sweep <name> (<n>)``,
and the parent and its trial runs carry the tag ``sweeplab.generation=<n>``. Parent runs
made before generations existed have no tag and count as generation 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeplab.names import Role, Tag

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient


def earlier_parents(client: MlflowClient, experiment_id: str, name: str) -> list[Run]:
    """The active parent runs of sweeps named `name` in the experiment, newest first."""
    if "'" in name:  # MLflow's filter grammar has no escape for a quote in a value
        return []
    return list(client.search_runs(
        [experiment_id], f"tags.`{Tag.ROLE}` = '{Role.SWEEP}' and tags.`{Tag.STUDY}` = '{name}'",
        max_results=1000, order_by=["attributes.start_time DESC"]))


def generation_of(run: Run) -> int:
    """The generation recorded on a parent run (1 when untagged or unreadable)."""
    value = run.data.tags.get(Tag.GENERATION, "1")
    return int(value) if value.isdigit() else 1


def next_generation(parents: list[Run]) -> int:
    """The generation of a new study whose name already has these parent runs."""
    return max((generation_of(r) for r in parents), default=0) + 1


def parent_run_name(name: str, generation: int) -> str:
    """``sweep <name>``, and ``sweep <name> (<n>)`` from the second generation on."""
    return f"sweep {name}" if generation <= 1 else f"sweep {name} ({generation})"


def restart_warning(name: str, storage_url: str, parents: list[Run], generation: int) -> str:
    """The one line saying the study was new while MLflow holds earlier sweeps of its name."""
    n = len(parents)
    return (f"warning: sweep {name!r}: the study is new in {storage_url} (its journal was "
            f"empty, deleted or moved) while MLflow holds {n} earlier sweep{'s' if n > 1 else ''}"
            f" of this name (latest parent run {parents[0].info.run_id}); its trials start "
            f"again at 0 as generation {generation}: parent run "
            f"'{parent_run_name(name, generation)}', runs tagged "
            f"{Tag.GENERATION}={generation}")
