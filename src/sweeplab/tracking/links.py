"""Where to look next: addresses in the MLflow UI that sweeplab prints."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from sweeplab.names import MODEL_TRAINING_LAYOUT
from sweeplab.tracking.store import default_uri, is_server, redact

# The UI and every server sweeplab starts listen on loopback unless told otherwise.
HOST = "127.0.0.1"
DEFAULT_UI_PORT = 5000
# MLflow 3.17's UI picks its layout from this query parameter of the address, else from
# the browser's last choice, else GenAI (its menus of traces and prompts, the Assistant):
# every address sweeplab prints asks for the model-training layout the README shows.
LAYOUT_QUERY = f"workflowType={MODEL_TRAINING_LAYOUT}"


def ui_route(route: str) -> str:
    """`route` of the UI (``#/experiments/1/runs``), asking for the model-training layout."""
    return f"{route}{'&' if '?' in route else '?'}{LAYOUT_QUERY}"


def ui_base(uri: str) -> str:
    """The UI's address for the store at `uri`: a tracking server serves its own UI; any
    other store is shown by `make ui` on its default port."""
    return redact(uri).rstrip("/") if is_server(uri) else f"http://{HOST}:{DEFAULT_UI_PORT}"


def runs_url(base: str, experiment_id: str, view: str | None = None) -> str:
    """The address of an experiment's runs table, or of one of its saved views, in the UI
    at `base` (``http://127.0.0.1:5000``)."""
    route = f"#/experiments/{experiment_id}/runs"
    return f"{base}/" + ui_route(route + (f"?viewStateShareKey={quote(view)}" if view else ""))


def run_link(experiment_id: str, run_id: str) -> str:
    """A Markdown link to run `run_id` for text the MLflow UI renders (a model version's
    description): relative to the page, so it opens in whichever UI shows it, whatever
    its host and port."""
    return f"[{run_id}](" + ui_route(f"#/experiments/{experiment_id}/runs/{run_id}") + ")"


def command(target: str, run_id: str = "", uri: str | None = None) -> str:
    """How to run sweeplab's `target` (ui, rerun) from here: the Makefile's target in a
    checkout (the README's commands), else the installed script (pip install sweeplab);
    on the store at `uri` when it is not the one the command finds by default (a
    tracking.uri override), which it is then told through $MLFLOW_TRACKING_URI."""
    here = Path.cwd()
    env = f"MLFLOW_TRACKING_URI={redact(uri)} " if uri and uri != default_uri() else ""
    if (here / "Makefile").is_file() and (here / "src" / "sweeplab").is_dir():
        return f"{env}make {target}" + (f" RUN={run_id}" if run_id else "")
    return f"{env}sweeplab-{target}" + (f" {run_id}" if run_id else "")


def ui_hint(uri: str, experiment_id: str | None, run_id: str | None = None) -> str:
    """The command that opens the MLflow UI, and the page to look at."""
    page = ui_route("#/experiments" if experiment_id is None else
                    f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "/runs"))
    if is_server(uri):
        return f"open {ui_base(uri)}/{page}   (the tracking server's UI)"
    # The UI is not running yet, so its port is the one the user will choose: say how.
    other = DEFAULT_UI_PORT + 1
    return (f"{command('ui', uri=uri)}   then open {ui_base(uri)}/{page}   (on another port: "
            f"{ui_command_with_port(other, uri)} and {other} in the address; store: "
            f"{redact(uri)})")


def ui_command_with_port(port: int, uri: str | None = None) -> str:
    """`make ui PORT=<port>` in a checkout, else `sweeplab-ui --port <port>`."""
    ui = command("ui", uri=uri)
    return f"{ui} PORT={port}" if "make ui" in ui else f"{ui} --port {port}"
