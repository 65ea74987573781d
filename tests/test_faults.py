"""make sweep under faults of the machine: a journal torn by a full disk or a crash, a disk
that fills up mid-sweep, an MLflow store deleted or a journal emptied between sessions.

Whatever happens, nothing is lost, nothing hangs, no run is left RUNNING, and a failure is
one line on stderr with exit code 2.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweeplab.names import TrialAttr
from sweeplab.sweep import study as st
from sweeplab.sweep.controller import sweep_job
from test_sweep import (  # noqa: F401
    _sweep_cmd,
    child_runs,
    load,
    process_stores,
    sweep_env,
    wait_mid_trial,
)


def _path(journal: str) -> Path:
    return Path(journal.removeprefix("journal:"))


# -- a torn journal ------------------------------------------------------------------------

# a whole sweep or bench run: the slow suite (make test stays under 10 minutes)
@pytest.mark.slow
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


# a whole sweep or bench run: the slow suite (make test stays under 10 minutes)
@pytest.mark.slow
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


# -- a disk that fills up mid-sweep --------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs of its own, to fill up for real; skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up (needs root): {proc.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte with one file; returns it (delete it to free the disk)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as err:
                assert err.errno == errno.ENOSPC
    return filler


@pytest.mark.slow
@pytest.mark.parametrize("full", ["tracking", "journal"])
def test_a_disk_filling_up_mid_trial_stops_the_sweep_and_it_resumes(
        tmp_path: Path, data_cache: Path, small_disk: Path, full: str) -> None:
    """The tracking store (or the journal) on a disk that fills up during a trial: the
    trial is not a failed one but queued again, the sweep stops with one line and exit
    code 2, and once space is freed the same command finishes the sweep."""
    roomy = tmp_path
    uri = f"sqlite:///{(small_disk if full == 'tracking' else roomy) / 'mlflow.db'}"
    journal = f"journal:{(small_disk if full == 'journal' else roomy) / 'optuna.journal'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cmd = _sweep_cmd(journal, "sweep.name=full", "sweep.n_trials=3", "sweep.pruner=none",
                     "train.epochs=8000", "train.log_every=2000")
    proc = subprocess.Popen(cmd, cwd=data_cache, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_mid_trial(journal, "full", done=1, proc=proc)
        filler = fill(small_disk)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # its writer process too
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "no space left" in errors[0] and "run the same command to resume" in errors[0]

    filler.unlink()
    done = subprocess.run(cmd, cwd=data_cache, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(journal, "full")
    assert st.tally(study).done == 3 and st.tally(study).failed == 0
    counted = [t for t in study.trials if t.state != TrialState.FAIL]
    assert len(counted) == 3
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL]
    assert interrupted and all(st.status_of(t) == "interrupted" for t in interrupted)
    runs = child_runs(uri, study.user_attrs[TrialAttr.PARENT_RUN_ID])
    assert not [r for r in runs if r.info.status == "RUNNING"]


# -- an MLflow store or a journal lost between sessions ------------------------------------

# a whole sweep or bench run: the slow suite (make test stays under 10 minutes)
@pytest.mark.slow
def test_an_emptied_journal_starts_a_second_generation_kept_apart_in_mlflow(
        sweep_env, capsys) -> None:  # noqa: F811
    """The journal truncated to 0 bytes, mlflow.db kept: the study starts over (trials 0..
    again), but as generation 2, with a warning, a parent run of its own named apart, its
    runs tagged, and a saved view and summary that count only its own trials."""
    from mlflow.tracking import MlflowClient

    from sweeplab.sweep.view import VIEW_TAG, read_view_state, view_key

    compose, journal, uri = sweep_env
    cfg = compose("sweep.name=gen", "sweep.n_trials=2", "sweep.pruner=none")
    assert sweep_job(cfg) == 0
    first_parent = load(journal, "gen").user_attrs[TrialAttr.PARENT_RUN_ID]
    _path(journal).write_bytes(b"")  # emptied: a bad copy, a restore gone wrong
    capsys.readouterr()
    assert sweep_job(cfg) == 0
    out, err = capsys.readouterr()
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1, err
    assert "'gen'" in warning[0] and "is new" in warning[0] and first_parent in warning[0]
    assert "generation 2" in warning[0]
    assert "2 trials done" in out

    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(exps, "tags.`sweeplab.role` = 'sweep' and "
                                       "tags.`sweeplab.study` = 'gen'",
                                 order_by=["attributes.start_time ASC"])
    second_parent = load(journal, "gen").user_attrs[TrialAttr.PARENT_RUN_ID]
    assert [p.info.run_id for p in parents] == [first_parent, second_parent]
    assert [p.info.run_name for p in parents] == ["sweep gen", "sweep gen (2)"]
    for generation, parent in enumerate(parents, start=1):
        assert parent.data.tags["sweeplab.generation"] == str(generation)
        assert parent.data.metrics["n_done"] == 2  # its summary counts its own trials
        runs = child_runs(uri, parent.info.run_id)
        assert sorted(r.data.tags["sweeplab.trial_number"] for r in runs) == ["0", "1"]
        assert {r.data.tags["sweeplab.generation"] for r in runs} == {str(generation)}
    # The UI's saved view shows generation 2 only: its parent and its two trials.
    tag = client.get_experiment(parents[1].info.experiment_id).tags[VIEW_TAG + view_key("gen")]
    shown = client.search_runs(exps, read_view_state(tag)["searchFilter"])
    assert {r.info.run_id for r in shown} == {second_parent} | {
        r.info.run_id for r in child_runs(uri, second_parent)}



@pytest.mark.slow
def test_a_deleted_mlflow_store_gets_a_new_parent_run_and_the_summary_works(
        tmp_path: Path, data_cache: Path) -> None:
    """mlflow.db deleted, the journal kept: the trials already done stay done, the resumed
    sweep says it starts a new parent run, and the summary copes with trials whose runs
    are gone (the champion is the best trial whose run still exists)."""
    uri, journal, env = process_stores(tmp_path)
    cmd = _sweep_cmd(journal, "sweep.name=gone", "sweep.register_model=sweeplab-gone",
                     "sweep.pruner=none")
    first = subprocess.run([*cmd, "sweep.n_trials=2"], cwd=data_cache, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    old_parent = load(journal, "gone").user_attrs[TrialAttr.PARENT_RUN_ID]
    (tmp_path / "mlflow.db").unlink()
    again = subprocess.run([*cmd, "sweep.n_trials=3"], cwd=data_cache, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    said = [line for line in again.stdout.splitlines() + again.stderr.splitlines()
            if old_parent in line]
    assert len(said) == 1 and "new parent run" in said[0], again.stdout
    study = load(journal, "gone")
    parent = study.user_attrs[TrialAttr.PARENT_RUN_ID]
    assert parent != old_parent
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    assert client.get_run(parent).info.status == "FINISHED"
    assert [r.data.tags["sweeplab.trial_number"] for r in child_runs(uri, parent)] == ["2"]
    assert "3 trials done" in again.stdout
