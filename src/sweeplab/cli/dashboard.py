"""`make dashboard`: optuna-dashboard over the sweep's own study storage, on loopback only.

Usage: python -m sweeplab.cli.dashboard [--port 8080] [--storage journal:.sweeplab/optuna.journal]
       (or: make dashboard PORT=8081, sweeplab-dashboard --port 8081)

The storage is ``--storage`` (a URL as `sweep.storage` takes it: ``journal:<path>``,
``sqlite:///<path>``, ``postgresql+psycopg://...``), else the journal `make sweep` writes by
default, ``.sweeplab/optuna.journal`` in the working directory. The dashboard reads the
storage on every request, so it follows a sweep that is running. It stops with one line
when the storage holds no study yet, or when the port is taken.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from sweeplab.cli.ui import port_free
from sweeplab.config import SweepConfig
from sweeplab.names import ExitCode
from sweeplab.sweep.journal import JournalDamaged, scan
from sweeplab.sweep.study import STORAGE_FORMS, storage_url
from sweeplab.tracking.links import HOST
from sweeplab.tracking.store import redact

DEFAULT_PORT = 8080  # optuna-dashboard's own default; `make ui` has 5000


class DashboardError(Exception):
    """The dashboard cannot start: no study in the storage, a storage it cannot open."""


def open_study_storage(url: str) -> Any:
    """Optuna storage for `url` as `sweep.storage` writes it, opened to read: a journal
    file is read as it is (never repaired, as the sweep does on start: a sweep running now
    may be writing its last record); DashboardError when it holds no study."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    shown = redact(url)
    no_study = (f"no Optuna study in {shown} yet: run `make sweep` first, or point --storage "
                f"at a sweep's storage (its sweep.storage)")
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        if not path.is_file() or path.stat().st_size == 0:
            raise DashboardError(no_study)
        # A torn last line is a record being written (Optuna skips it), unless it is the
        # only line: then nothing in the file was ever a record.
        try:
            torn = scan(path)
            not_journal = torn is not None and torn.keep == 0
        except JournalDamaged:
            not_journal = True
        if not_journal:
            raise DashboardError(
                f"--storage {shown!r}: {path} is not an Optuna journal, or a damaged one (it "
                f"holds lines that are not journal records); point --storage at a sweep's "
                f"storage (its sweep.storage)")
        try:
            storage: Any = JournalStorage(JournalFileBackend(str(path)))
        except Exception as err:  # what the scan lets through and Optuna still refuses
            raise DashboardError(f"--storage {shown!r}: Optuna cannot read it as a journal "
                                 f"({type(err).__name__}); point --storage at a sweep's "
                                 f"storage (its sweep.storage)") from None
    else:
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
            raise DashboardError(no_study)  # opening it would create an empty database
        try:
            storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
        except Exception as err:  # SQLAlchemy's, a missing driver, a malformed URL
            raise DashboardError(
                f"--storage {shown!r}: cannot open it ({type(err).__name__}: "
                f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}); "
                f"give one of {', '.join(STORAGE_FORMS)}") from None
    try:
        studies = storage.get_all_studies()
    except Exception as err:  # a database without Optuna's tables, a damaged journal
        raise DashboardError(f"{no_study} ({type(err).__name__} reading it)") from None
    if not studies:
        raise DashboardError(no_study)
    return storage


class _Server(ThreadingMixIn, WSGIServer):
    """wsgiref's server, a thread per request (the page polls while another loads)."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No line per request on the terminal: the dashboard polls every few seconds."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeplab.cli.dashboard",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1")
    parser.add_argument("--storage", default=None,
                        help="the study storage (default: the sweep's, "
                             f"{storage_url(SweepConfig())})")
    args = parser.parse_args(argv)
    url = args.storage or storage_url(SweepConfig())
    if not 0 < args.port < 65536:
        print(f"error: --port {args.port} is not a port (1-65535)", file=sys.stderr)
        return ExitCode.USAGE
    try:
        storage = open_study_storage(url)
    except DashboardError as err:
        print(f"error: {err}", file=sys.stderr)
        return ExitCode.USAGE
    if not port_free(args.port):
        print(f"error: port {args.port} on {HOST} is taken (another `make dashboard`?): stop "
              f"it, or use another port: make dashboard PORT={args.port + 1}", file=sys.stderr)
        return ExitCode.USAGE
    from optuna_dashboard import wsgi

    names = ", ".join(s.study_name for s in storage.get_all_studies())
    httpd = make_server(HOST, args.port, wsgi(storage), server_class=_Server,
                        handler_class=_QuietHandler)
    print(f"optuna-dashboard: http://{HOST}:{args.port}/dashboard/\n"
          f"studies: {names}\nstorage: {redact(url)} (read live: a running sweep shows as it "
          f"goes; Ctrl-C stops the dashboard)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        print("dashboard stopped", file=sys.stderr)
    finally:
        httpd.server_close()
    return ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
