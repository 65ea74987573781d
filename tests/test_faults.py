"""make sweep under faults of the machine: a journal torn by a full disk or a crash, a disk
that fills up mid-sweep, an MLflow store deleted or a journal emptied between sessions.

Whatever happens, nothing is lost, nothing hangs, no run is left RUNNING, and a failure is
one line on stderr with exit code 2.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweeplab.sweep.controller import sweep_job
from test_sweep import _sweep_cmd, load, process_stores, sweep_env  # noqa: F401


def _path(journal: str) -> Path:
    return Path(journal.removeprefix("journal:"))


# -- a torn journal ------------------------------------------------------------------------

@pytest.mark.parametrize("tail", [b'{"op_code": 4, "worker_id": "ab', b"\0" * 300],
                         ids=["half-record", "nul-bytes"])
def test_a_torn_journal_tail_is_dropped_and_the_sweep_resumes(sweep_env, capsys,  # noqa: F811
                                                             tail: bytes) -> None:
    compose, journal, _ = sweep_env
    assert sweep_job(compose("sweep.name=torn", "sweep.n_trials=2")) == 0
    path = _path(journal)
    good = path.read_bytes()
    with open(path, "ab") as f:  # what a write cut short by a full disk leaves
        f.write(tail)
    capsys.readouterr()
    assert sweep_job(compose("sweep.name=torn", "sweep.n_trials=4")) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and str(path) in warning[0]
    assert f"dropped its last {len(tail)} bytes" in warning[0]
    backups = list(path.parent.glob("optuna.journal.torn-*.bak"))
    assert len(backups) == 1 and str(backups[0]) in warning[0]
    assert backups[0].read_bytes() == good + tail
    study = load(journal, "torn")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4


def test_a_damaged_journal_line_stops_the_sweep_with_one_line(tmp_path: Path,
                                                              data_cache: Path) -> None:
    _, journal, env = process_stores(tmp_path)
    path = _path(journal)
    lines = [b'{"op_code": 0, "worker_id": "w", "study_name": "dmg", "directions": [1]}\n',
             b'{"op_code": 5, "wor\0\0\0\0\0\n', b'{"op_code": 0, "worker_id": "w"}\n']
    path.write_bytes(b"".join(lines))
    proc = subprocess.run(_sweep_cmd(journal, "sweep.name=dmg", "sweep.n_trials=1"),
                          cwd=data_cache, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert f"{path}: line 2" in errors[0] and "move it away" in errors[0]
    assert path.read_bytes() == b"".join(lines)  # left as it was, for the user to judge
