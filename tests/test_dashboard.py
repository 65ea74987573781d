"""make dashboard: optuna-dashboard over a sweep's own study storage, on loopback.

The errors before it starts (no study yet, a storage it cannot open, a port taken) are one
line each; one test starts the real dashboard on a journal and sees a trial that a running
sweep adds after it started. The browser test is in tests/test_ui_e2e.py (marker e2e).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from servers import stop_process_group
from sweeplab.cli import dashboard


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def journal_study(path: Path, name: str = "dash", n_trials: int = 2) -> optuna.Study:
    """A study of `n_trials` complete trials in a journal file, as `make sweep` writes one."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=JournalStorage(
        JournalFileBackend(str(path))))
    study.optimize(lambda t: (t.suggest_float("x", -1, 1)) ** 2, n_trials=n_trials)
    return study


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = dashboard.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_no_study_yet_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys) -> None:
    monkeypatch.chdir(tmp_path)  # the default storage: .sweeplab/optuna.journal here
    code, out, err = run_main(capsys, "--port", str(free_port()))
    assert code == 2 and not out
    assert err == ("error: no Optuna study in journal:.sweeplab/optuna.journal yet: run "
                   "`make sweep` first, or point --storage at a sweep's storage (its "
                   "sweep.storage)\n")
    assert not (tmp_path / ".sweeplab").exists()  # nothing created


def test_a_database_that_is_not_there_or_not_a_study_storage_is_one_line(tmp_path: Path,
                                                                          capsys) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    code, _, err = run_main(capsys, "--storage", url, "--port", str(free_port()))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: no Optuna study in {url} yet")
    assert not (tmp_path / "none.db").exists()
    (tmp_path / "text.db").write_text("not a database")
    code, _, err = run_main(capsys, "--storage", f"sqlite:///{tmp_path / 'text.db'}",
                            "--port", str(free_port()))
    assert code == 2 and err.count("\n") == 1
    assert "cannot open it" in err and "sqlite:///<path>" in err


@pytest.mark.parametrize("content", [b"SQLite format 3\x00\xf7\x01\n\x02\xff\n",
                                     b"\x89HDF\r\n\x1a\n\x00\x00\xff\n",
                                     b"not a journal\n"],
                         ids=["a-database", "an-hdf5-file", "one-line-of-text"])
def test_a_file_that_is_not_a_journal_is_one_line(tmp_path: Path, capsys,
                                                  content: bytes) -> None:
    """`--storage journal:mlflow.db` (an easy slip) ended in Optuna's UnicodeDecodeError
    traceback; the file is read, never changed."""
    path = tmp_path / "not-a-journal"
    path.write_bytes(content)
    code, out, err = run_main(capsys, "--storage", f"journal:{path}", "--port",
                              str(free_port()))
    assert code == 2 and not out and err.count("\n") == 1
    assert err.startswith(f"error: --storage 'journal:{path}': {path} is not an Optuna "
                          f"journal"), err
    assert path.read_bytes() == content


def test_a_taken_port_names_another(tmp_path: Path, capsys) -> None:
    journal_study(tmp_path / "j.journal")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, _, err = run_main(capsys, "--storage", f"journal:{tmp_path / 'j.journal'}",
                                "--port", str(port))
    assert code == 2
    assert f"port {port} on 127.0.0.1 is taken" in err and f"PORT={port + 1}" in err


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_the_dashboard_serves_the_journal_live_on_loopback(tmp_path: Path) -> None:
    """Started on a sweep's journal, the dashboard lists its study, and shows a trial the
    sweep finishes afterwards without a restart."""
    path = tmp_path / "optuna.journal"
    study = journal_study(path)
    port = free_port()
    log = tmp_path / "dashboard.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sweeplab.cli.dashboard", "--port", str(port),
             "--storage", f"journal:{path}"], stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = get_json(f"{base}/api/studies")["study_summaries"]
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        [summary] = studies
        assert summary["study_name"] == "dash"
        study_id = summary["study_id"]
        assert len(get_json(f"{base}/api/studies/{study_id}?after=0")["trials"]) == 2
        study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=1)  # the sweep
        deadline = time.monotonic() + 15  # the dashboard caches trials for 2 s
        while len(get_json(f"{base}/api/studies/{study_id}?after=0")["trials"]) < 3:
            assert time.monotonic() < deadline, "the new trial never showed"
            time.sleep(0.5)
        printed = log.read_text()
        assert f"optuna-dashboard: {base}/dashboard/" in printed and "studies: dash" in printed
    finally:
        stop_process_group(proc)
