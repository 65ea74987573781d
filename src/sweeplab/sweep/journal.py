"""Checking Optuna's journal file (JSON lines) before a sweep opens it.

A disk that fills up (or a machine that loses power) while the journal is appended to
leaves a half-written last line, or a tail of NUL bytes. Optuna 5.0 then reads the file
until the next append glues a new record onto the torn one, and every later sweep fails
with JSONDecodeError. A torn *last* line holds a write nobody saw finish: it is dropped,
after a backup of the whole file. A bad line anywhere else is damage sweeplab cannot mend;
the sweep stops and says which line.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from optuna.storages.journal import JournalFileSymlinkLock

from sweeplab.config import ConfigError


class JournalDamaged(ConfigError):
    """A line of the journal other than the last is not a record: the message names the
    file, the line and what to do. A ConfigError, so the CLI prints it as one line."""


@dataclass(frozen=True)
class Torn:
    """The journal's last line is unfinished: the good records end at byte `keep`."""

    keep: int
    size: int


def scan(path: Path) -> Torn | None:
    """One pass over the journal: None when every line is a complete JSON record, a `Torn`
    when only the last is not; JournalDamaged when another line is not."""
    offset, bad_line, bad_at = 0, 0, -1
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if bad_line:  # the bad line was not the last
                raise JournalDamaged(
                    f"{path}: line {bad_line} (byte {bad_at}) is not an Optuna journal record "
                    f"(garbage or NUL bytes) and later lines follow it, so the study cannot "
                    f"be read; restore the file from a backup (a `{path.name}.torn-*.bak` "
                    f"beside it, if any), or move it away to start the study over")
            if not _record(line):
                bad_line, bad_at = number, offset
            offset += len(line)
    return Torn(bad_at, offset) if bad_line else None


def _record(line: bytes) -> bool:
    """Whether `line` is one complete journal record (JSON object, newline-terminated)."""
    if not line.endswith(b"\n") or b"\0" in line:
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # JSONDecodeError, and UnicodeDecodeError of bytes that are no text
        return False


def repair(path: Path) -> None:
    """Drop a torn last line of journal `path` (a backup of the file is kept beside it) and
    say so in one line on stderr; raise JournalDamaged when an earlier line is bad."""
    if not path.exists() or scan(path) is None:
        return
    # Under Optuna's own lock, so that a sweep appending right now is not mistaken for a
    # torn write: what is still torn with the lock held was left by a process that died.
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        torn = scan(path)
        if torn is None:
            return
        backup = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}.bak")
        shutil.copy2(path, backup)
        with open(path, "r+b") as f:
            f.truncate(torn.keep)
            os.fsync(f.fileno())
    finally:
        lock.release()
    print(f"warning: {path} ended in a half-written record (a full disk or a crash while "
          f"it was written): dropped its last {torn.size - torn.keep} bytes; the whole file "
          f"is kept in {backup}", file=sys.stderr)
