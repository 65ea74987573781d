"""Where to look next: addresses in the MLflow UI that sweeplab prints."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from sweeplab.tracking.store import is_server, redact

# The UI and every server sweeplab starts listen on loopback unless told otherwise.
HOST = "127.0.0.1"
DEFAULT_UI_PORT = 5000


def ui_base(uri: str) -> str:
    """The UI's address for the store at `uri`: a tracking server serves its own UI; any
    other store is shown by `make ui` on its default port."""
    return redact(uri).rstrip("/") if is_server(uri) else f"http://{HOST}:{DEFAULT_UI_PORT}"


def runs_url(base: str, experiment_id: str, view: str | None = None) -> str:
    """The address of an experiment's runs table, or of one of its saved views, in the UI
    at `base` (``http://127.0.0.1:5000``)."""
    url = f"{base}/#/experiments/{experiment_id}/runs"
    return url + (f"?viewStateShareKey={quote(view)}" if view else "")


def command(target: str, run_id: str = "") -> str:
    """How to run sweeplab's `target` (ui, rerun) from here: the Makefile's target in a
    checkout (the README's commands), else the installed script (pip install sweeplab)."""
    here = Path.cwd()
    if (here / "Makefile").is_file() and (here / "src" / "sweeplab").is_dir():
        return f"make {target}" + (f" RUN={run_id}" if run_id else "")
    return f"sweeplab-{target}" + (f" {run_id}" if run_id else "")


def ui_hint(uri: str, experiment_id: str | None, run_id: str | None = None) -> str:
    """The command that opens the MLflow UI, and the page to look at."""
    page = ""
    if experiment_id is not None:
        page = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "/runs")
    if is_server(uri):
        return f"open {ui_base(uri)}/{page}   (the tracking server's UI)"
    return f"{command('ui')}   then open {ui_base(uri)}/{page}   (store: {redact(uri)})"
