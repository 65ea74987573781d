"""Dask worker plugins for the workers of a LocalCluster that a sweep starts itself.

Its own module, importing `distributed` at the top, so that the plugin classes can be
pickled to the workers, and a sweep that runs in one process never imports Dask.
"""

from __future__ import annotations

import signal
from typing import Any

from distributed import WorkerPlugin


class IgnoreCtrlC(WorkerPlugin):
    """A terminal's Ctrl-C, and a batch scheduler's SIGTERM (`kill -- -<pgid>`, `timeout`),
    reach every process of the sweep's process group: the local workers leave them to the
    controller, which stops their trials at a safe point and then closes the cluster,
    instead of dying mid-write with a traceback each (and, on SIGTERM, being reported as
    workers that died, their replicates queued again)."""

    name = "sweeplab-ignore-ctrl-c"

    def setup(self, worker: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
