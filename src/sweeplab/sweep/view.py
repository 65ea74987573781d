"""The saved view of a sweep in the MLflow UI: its trials as a table, best first.

Each sweep saves a view of its trials in the experiment (`save_sweep_view`): the table
filtered to the sweep, the searched params and the key metrics as columns, best completed
trial first, then the pruned and failed ones. It is MLflow's own saved view ("Views" above
the runs table), written as MLflow 3.17's UI writes it; an MLflow UI that reads another
format ignores it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import zlib
from typing import TYPE_CHECKING, Any

from sweeplab.config import SweepConfig, objectives_of
from sweeplab.names import METRIC_OBJECTIVES, OBJECTIVE_METRICS, Metric, Tag
from sweeplab.sweep.generation import parent_run_name
from sweeplab.sweep.space import flat_params

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# An experiment tag per saved view; the UI opens one at runs?viewStateShareKey=<key>.
VIEW_TAG = "mlflow.sharedViewState."
VIEW_KEY_PREFIX = "sweeplab-"
# Columns of a sweep's view besides the searched params, after the objective(s).
VIEW_METRICS = (Metric.VAL_ACCURACY, Metric.VAL_COST, Metric.TEST_ACCURACY)
VIEW_TAGS = (Tag.TRIAL_STATE,)


def view_key(study: str) -> str:
    """The saved-view key of sweep `study`: ``sweeplab-<study>``, safe in a tag and a URL.
    A name with other characters gets a short digest of itself after them, so that two
    sweeps' keys never meet (`a b` and `a.b` were both ``sweeplab-a-b``)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", study)
    if safe != study:
        safe += "-" + hashlib.sha1(study.encode()).hexdigest()[:8]
    return VIEW_KEY_PREFIX + safe


def _col(kind: str, name: str) -> str:
    """A runs-table column id as the UI names it: ``params.`model.depth```."""
    return f"{kind}.`{name}`"


def sweep_view_state(s: SweepConfig, generation: int = 1) -> dict[str, Any]:
    """The runs-table state of sweep `s`'s view: its runs, the searched params, the
    objective(s) and VIEW_METRICS as columns, sorted by the first objective (best first;
    completed trials before pruned and failed ones), which shows the trials as a flat
    ranked list. From the second `generation` on
    (sweep/generation.py) only that generation's runs are shown."""
    objectives, directions = objectives_of(s)
    metrics = [OBJECTIVE_METRICS.get(o, o) for o in objectives if o in METRIC_OBJECTIVES]
    metrics += [m for m in VIEW_METRICS if m not in metrics]
    tags = [Tag.N_PARAMS] if "n_params" in objectives else []
    columns = ([_col("params", p) for p in flat_params(s.params)]
               + [_col("metrics", m) for m in metrics]
               + [_col("tags", t) for t in [*tags, *VIEW_TAGS]])
    search = f"tags.`{Tag.STUDY}` = '{s.name}'" if "'" not in s.name else ""
    if search and generation > 1:  # generation 1's runs may predate the tag
        search += f" and tags.`{Tag.GENERATION}` = '{generation}'"
    return {
        # The sweep's parent run and trials carry the tag sweeplab.study.
        "searchFilter": search,
        # Only completed trials have the metric `objective` (the study's first objective,
        # n_params too), and MLflow sorts runs without it last: pruned and failed trials
        # (and the parent run) come after every completed one, whatever their histories.
        "orderByKey": _col("metrics", Metric.OBJECTIVE),
        "orderByAsc": directions[0] == "minimize",
        "startTime": "ALL", "lifecycleFilter": "Active", "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": columns,
        # Widths apply to the columns named in columnOrder.
        "columnOrder": [_col("attributes", "Run Name"), "runDateAndNestInfo", *columns,
                        "duration"],
        "columnWidths": {_col("attributes", "Run Name"): 330},
        "runsHiddenMode": "FIRST_10_RUNS", "viewMaximized": False, "runListHidden": False,
        "isAccordionReordered": False, "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True, "groupBy": None, "groupsExpanded": {},
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0,
                                  "selectedXAxisMetricKey": ""},
    }


def save_sweep_view(client: MlflowClient, experiment_id: str, s: SweepConfig,
                    generation: int = 1) -> str:
    """Save (or replace) sweep `s`'s view in the experiment, named as its parent run;
    returns its key. The state is zlib-compressed JSON in base64, as the UI stores it."""
    key = view_key(s.name)
    now = int(time.time() * 1000)
    packed = zlib.compress(json.dumps(sweep_view_state(s, generation)).encode())
    value = {"name": parent_run_name(s.name, generation), "createdAt": now, "updatedAt": now,
             "state": "deflate;" + base64.b64encode(packed).decode()}
    client.set_experiment_tag(experiment_id, VIEW_TAG + key, json.dumps(value))
    return key


def read_view_state(tag_value: str) -> dict[str, Any]:
    """The runs-table state inside a saved view's tag value (the inverse of the above)."""
    packed = json.loads(tag_value)["state"].removeprefix("deflate;")
    return json.loads(zlib.decompress(base64.b64decode(packed)))
