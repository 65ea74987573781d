"""Telling a tracking store that stopped answering, or a full disk, from a run that went
wrong.

MLflow wraps a failed HTTP request in a plain MlflowException (and does not always chain
it with ``from``): the requests or urllib3 error that says "connection refused" or "timed
out" is somewhere in the exception's cause or context. Such a failure is the
environment's, not the run's: the run is retried later, not counted as a failed trial.
"""

from __future__ import annotations


def unavailable_reason(err: BaseException) -> str | None:
    """Why the tracking store did not answer, if that is what `err` comes from; else None."""
    import requests

    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, requests.exceptions.RequestException | ConnectionError | TimeoutError):
            return _short(e)
        e = e.__cause__ or e.__context__
    return None


def _short(e: BaseException) -> str:
    """"connection refused (POST .../runs/log-batch)" rather than urllib3's paragraph."""
    import re

    text = str(e)
    kind = ("connection refused" if "refused" in text.lower()
            else "timed out" if "timeout" in text.lower() or "timed out" in text.lower()
            else type(e).__name__)
    where = re.search(r"url: (\S+?)[ )]", text)
    return f"{kind} on {where[1]}" if where else kind


# What SQLite (SQLITE_FULL) says when its disk is full; MLflow passes it on as text.
_SQLITE_FULL = "database or disk is full"


def no_space(err: BaseException) -> str | None:
    """What ran out, if `err` comes from a full disk (ENOSPC) or an exhausted quota
    (EDQUOT), written by MLflow, SQLite or sweeplab itself; else None. Such a failure is
    the machine's, not the run's: the trial is retried once there is room again."""
    import errno

    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            what = f" writing {e.filename}" if e.filename else ""
            return f"{'disk quota exceeded' if e.errno == errno.EDQUOT else 'no space left'}{what}"
        if _SQLITE_FULL in str(e):
            return f"SQLite: {_SQLITE_FULL}"
        e = e.__cause__ or e.__context__
    return None


def quiet_store_tracebacks() -> None:
    """Silence the traceback MLflow 3.17 logs (mlflow/store/db/utils.py, at ERROR) for every
    SQLAlchemy OperationalError before it raises the same error as an MlflowException: the
    caller handles that exception (a full disk is one line), and the log printed a
    traceback on stderr besides. Also urllib3's warning at each retry of a request to a
    tracking server that went away (six lines before the command's own one, under Hydra's
    logging): the error after the last retry says it."""
    import logging

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
