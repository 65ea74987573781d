"""Where to look next: addresses in the MLflow UI that sweeplab prints."""

from __future__ import annotations

from urllib.parse import quote

# The UI and every server sweeplab starts listen on loopback unless told otherwise.
HOST = "127.0.0.1"
DEFAULT_UI_PORT = 5000


def runs_url(port: int, experiment_id: str, view: str | None = None) -> str:
    """The address of an experiment's runs table, or of one of its saved views."""
    url = f"http://{HOST}:{port}/#/experiments/{experiment_id}/runs"
    return url + (f"?viewStateShareKey={quote(view)}" if view else "")


def ui_hint(uri: str, experiment_id: str | None, run_id: str | None = None) -> str:
    """The command that opens the MLflow UI, and the page to look at."""
    page = ""
    if experiment_id is not None:
        page = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "/runs")
    return f"make ui   then open http://{HOST}:{DEFAULT_UI_PORT}/{page}   (store: {uri})"
