"""`make ui`: the MLflow UI over sweeplab's store, on loopback only.

Usage: python -m sweeplab.ui [--port 5000] [--uri sqlite:///mlflow.db]   (or: make ui PORT=5001)

The store is ``--uri``, else $MLFLOW_TRACKING_URI, else ``mlflow.db`` in the working
directory, as for ``make train`` and ``make sweep``. The server is ``mlflow ui`` bound to
127.0.0.1 with one worker and no job runner: 2 processes under 0.5 GB instead of ~15 and
~3 GB. This process becomes the server (exec), so Ctrl-C or SIGTERM stops all of it.

Each sweep saves a view of its trials in the experiment (``save_sweep_view``): the table
filtered to the sweep, the searched params and the key metrics as columns, best trial
first. It is MLflow's own saved view ("Views" above the runs table), written as MLflow
3.17's UI writes it; an MLflow UI that reads another format ignores it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import sys
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlparse

from sweeplab.tracking import default_uri

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from sweeplab.config import SweepConfig

HOST = "127.0.0.1"
# An experiment tag per saved view; the UI opens one at runs?viewStateShareKey=<key>.
VIEW_TAG = "mlflow.sharedViewState."
VIEW_KEY_PREFIX = "sweeplab-"
# Columns of a sweep's view besides the searched params, after the objective(s).
VIEW_METRICS = ("val_accuracy", "val_cost", "test_accuracy")
VIEW_TAGS = ("sweeplab.trial_state",)
TAG_N_PARAMS = "sweeplab.n_params"  # a column when n_params is an objective
# Metrics are logged; any other objective (n_params) is a run tag.
METRIC_OBJECTIVES = {"val_cost", "val_accuracy", "train_cost", "train_accuracy"}
# Stores `mlflow ui` serves besides SQLite and folders (SQLAlchemy URLs).
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")


def port_free(port: int) -> bool:
    """Whether a server can listen on HOST:`port` now (as uvicorn binds: SO_REUSEADDR, so a
    port left in TIME_WAIT by a stopped server counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def store_problem(uri: str) -> str | None:
    """Why `mlflow ui` cannot show the store at `uri` (None when it can)."""
    no_store = f"no MLflow store at {uri} yet: run `make sweep` (or `make train`) first"
    scheme = urlparse(uri).scheme.split("+")[0] if "://" in uri or uri.startswith("file:") else ""
    if scheme == "sqlite":
        path = uri.removeprefix("sqlite:///").split("?")[0]
        if uri.startswith("sqlite:///") and path and path != ":memory:":
            return None if Path(path).is_file() else no_store
        return f"{uri} is an in-memory store: it holds no runs to show"
    if scheme in ("", "file"):
        path = Path(urlparse(uri).path if scheme else uri)
        return None if path.is_dir() else no_store
    if scheme in ("http", "https"):
        return f"{uri} is a tracking server already: open it in a browser instead"
    if scheme in DATABASE_SCHEMES:
        return None
    return f"`mlflow ui` cannot serve the store {uri}: give a sqlite:/// URI or a folder"


def server_command(uri: str, port: int) -> list[str]:
    """`mlflow ui` lean enough for a laptop: one worker, on loopback. For SQLite, artifacts
    of experiments made in the UI go to mlruns/ beside the database, as sweeplab's do."""
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", HOST, "--port", str(port), "--workers", "1"]
    if uri.startswith("sqlite:///"):
        root = Path(uri.removeprefix("sqlite:///").split("?")[0]).parent / "mlruns"
        cmd += ["--default-artifact-root", root.resolve().as_uri()]
    return cmd


def server_env() -> dict[str, str]:
    """The environment for `mlflow ui`: no job runner (it starts a dozen more processes)."""
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


# -- the saved view of a sweep ------------------------------------------------------------

def view_key(study: str) -> str:
    """The saved-view key of sweep `study`: ``sweeplab-<study>``, safe in a tag and a URL."""
    return VIEW_KEY_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "-", study)


def _col(kind: str, name: str) -> str:
    """A runs-table column id as the UI names it: ``params.`model.depth```."""
    return f"{kind}.`{name}`"


def sweep_view_state(s: SweepConfig) -> dict[str, Any]:
    """The runs-table state of sweep `s`'s view: its runs, the searched params, the
    objective(s) and VIEW_METRICS as columns, sorted by the first objective (best first),
    which shows the trials as a flat ranked list."""
    from sweeplab import study as st
    from sweeplab.search_space import flat_params
    from sweeplab.trial import OBJECTIVE_METRICS

    objectives, directions = st.objectives_of(s)
    metrics = [OBJECTIVE_METRICS.get(o, o) for o in objectives if o in METRIC_OBJECTIVES]
    metrics += [m for m in VIEW_METRICS if m not in metrics]
    tags = [TAG_N_PARAMS] if "n_params" in objectives else []
    columns = ([_col("params", p) for p in flat_params(s.params)]
               + [_col("metrics", m) for m in metrics]
               + [_col("tags", t) for t in [*tags, *VIEW_TAGS]])
    sort = None
    if objectives[0] in METRIC_OBJECTIVES:
        sort = (_col("metrics", OBJECTIVE_METRICS.get(objectives[0], objectives[0])),
                directions[0] == "minimize")
    return {
        # The sweep's parent run and trials carry the tag sweeplab.study.
        "searchFilter": f"tags.`sweeplab.study` = '{s.name}'" if "'" not in s.name else "",
        "orderByKey": sort[0] if sort else "attributes.start_time",
        "orderByAsc": sort[1] if sort else False,
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


def save_sweep_view(client: MlflowClient, experiment_id: str, s: SweepConfig) -> str:
    """Save (or replace) sweep `s`'s view in the experiment, named ``sweep <name>``;
    returns its key. The state is zlib-compressed JSON in base64, as the UI stores it."""
    key = view_key(s.name)
    now = int(time.time() * 1000)
    packed = zlib.compress(json.dumps(sweep_view_state(s)).encode())
    value = {"name": f"sweep {s.name}", "createdAt": now, "updatedAt": now,
             "state": "deflate;" + base64.b64encode(packed).decode()}
    client.set_experiment_tag(experiment_id, VIEW_TAG + key, json.dumps(value))
    return key


def read_view_state(tag_value: str) -> dict[str, Any]:
    """The runs-table state inside a saved view's tag value (the inverse of the above)."""
    packed = json.loads(tag_value)["state"].removeprefix("deflate;")
    return json.loads(zlib.decompress(base64.b64decode(packed)))


def runs_url(port: int, experiment_id: str, view: str | None = None) -> str:
    """The address of an experiment's runs table, or of one of its saved views."""
    url = f"http://{HOST}:{port}/#/experiments/{experiment_id}/runs"
    return url + (f"?viewStateShareKey={quote(view)}" if view else "")


# -- the command ----------------------------------------------------------------------------

def pages(client: MlflowClient, experiment: str, port: int) -> list[str]:
    """What to open: the experiment's runs (parent runs with their trials nested), and each
    sweep's view; or the experiment list when there is no such experiment yet."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return [f"MLflow UI: http://{HOST}:{port}/   (no experiment {experiment!r} in this "
                "store yet)"]
    lines = [f"MLflow UI: {runs_url(port, exp.experiment_id)}"]
    for tag in sorted(exp.tags):
        if tag.startswith(VIEW_TAG + VIEW_KEY_PREFIX):
            name = json.loads(exp.tags[tag]).get("name", tag)
            lines.append(f"  {name}, best first: "
                         f"{runs_url(port, exp.experiment_id, tag.removeprefix(VIEW_TAG))}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeplab.ui",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1")
    parser.add_argument("--uri", default=None,
                        help="tracking store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    parser.add_argument("--experiment", default="sweeplab", help="experiment to open")
    args = parser.parse_args(argv)
    uri = args.uri or default_uri()
    if not 0 < args.port < 65536:
        print(f"error: --port {args.port} is not a port (1-65535)", file=sys.stderr)
        return 2
    problem = store_problem(uri)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if not port_free(args.port):
        print(f"error: port {args.port} on {HOST} is taken (another `make ui`?): stop it, or "
              f"use another port: make ui PORT={args.port + 1}", file=sys.stderr)
        return 2
    from mlflow.tracking import MlflowClient

    try:
        lines = pages(MlflowClient(uri), args.experiment, args.port)
    except Exception as err:  # e.g. not an MLflow database
        print(f"error: cannot read the MLflow store at {uri}: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    print(f"store: {uri}\nstarting `mlflow ui` (ready in a few seconds; Ctrl-C stops it) ...",
          flush=True)
    cmd = server_command(uri, args.port)
    os.execve(cmd[0], cmd, server_env())
    return 0  # not reached: this process is now the server


if __name__ == "__main__":
    raise SystemExit(main())
