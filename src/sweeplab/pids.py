"""Whether a process of this host still runs, and the removal of what a killed process
left behind (its scratch files, its temporary folders)."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (another user's counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def started(pid: int) -> str:
    """When process `pid` started, in clock ticks since boot (Linux's /proc), so that a
    process is told from a later one given the same pid; "" where that is unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # the command name, in parentheses, may hold spaces: fields count from after it
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


def remove_stale(folder: Path, name: re.Pattern[str], remove: Callable[[Path], None],
                 age: float) -> None:
    """`remove` each entry of `folder` whose name fullmatches `name` (its group 1: the pid
    of the process that made it), whose process is gone and which was last changed over
    `age` seconds ago (a pid is only this host's: on a folder that other hosts share, the
    age keeps theirs). Housekeeping: nothing here fails the caller."""
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            match = name.fullmatch(entry.name)
            if match is None:
                continue
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > age and not alive(int(match[1])):
                    remove(entry)
