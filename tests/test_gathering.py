"""The controller's journal (sweep/gathering.py): a trial's start and end in one append
each, and a file that stock Optuna reads back the same."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from sweeplab.names import RunStatus, TrialAttr
from sweeplab.sweep import study as st
from sweeplab.sweep.gathering import LINGER, GatheringJournal

SPACE = {"depth": IntDistribution(1, 5), "lr": FloatDistribution(1e-4, 1.0, log=True)}


@pytest.fixture
def appends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of records in each append to a journal file, as they happen."""
    calls: list[int] = []
    real = JournalFileBackend.append_logs

    def counted(self: JournalFileBackend, logs: list) -> None:
        calls.append(len(logs))
        real(self, logs)

    monkeypatch.setattr(JournalFileBackend, "append_logs", counted)
    return calls


def stock(path: Path, name: str = "s") -> optuna.Study:
    """The study as Optuna's own journal storage reads the file."""
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))))


def test_a_trials_start_and_end_are_one_append_each(tmp_path: Path, appends: list[int]) -> None:
    path = tmp_path / "j.journal"
    study = optuna.create_study(study_name="s", storage=st.open_storage(f"journal:{path}"))
    assert isinstance(study._storage, GatheringJournal)
    appends.clear()
    with st.gathered(study):
        trial = study.ask(SPACE)
        trial.set_user_attr("controller", "here:1")
    assert appends == [1, 3]  # its creation; then both params and its controller together
    appends.clear()
    st.tell_outcome(study, trial, RunStatus.FINISHED, values=[0.5],
                    attrs={"host": "h", "worker": "w", "run_id": "r"})
    # its attributes and status (study.tell reads the trial back first: nothing of it may
    # wait then), and its state
    assert appends == [4, 1]
    back = stock(path).trials[0]
    assert back.state == TrialState.COMPLETE and back.value == 0.5
    assert back.params == trial.params
    assert back.user_attrs == {"controller": "here:1", "host": "h", "worker": "w",
                               "run_id": "r", TrialAttr.STATUS: RunStatus.FINISHED}


def test_reports_wait_for_the_next_record_or_a_second(tmp_path: Path,
                                                       appends: list[int]) -> None:
    path = tmp_path / "j.journal"
    study = optuna.create_study(study_name="s", storage=st.open_storage(f"journal:{path}"))
    trial = study.ask(SPACE)
    appends.clear()
    # "not written yet" is checked only while less than LINGER has passed: a busy machine
    # may hold this thread longer, and then the timer rightly wrote them
    # (what was written is read first, the clock after it)
    t0 = time.monotonic()
    trial.report(0.3, 1)
    trial.report(0.2, 2)
    seen, stored = list(appends), stock(path).trials[0].intermediate_values
    if time.monotonic() - t0 < LINGER:
        assert seen == [] and stored == {}
    trial.set_user_attr("a", 1)  # outside a block: at once, after the reports
    seen = list(appends)
    if time.monotonic() - t0 < LINGER:
        assert seen == [3]  # one append: the reports, then the attribute
    assert stock(path).trials[0].intermediate_values == {1: 0.3, 2: 0.2}
    appends.clear()
    t1 = time.monotonic()
    trial.report(0.1, 3)
    time.sleep(LINGER / 2)
    seen = list(appends)
    if time.monotonic() - t1 < LINGER:
        assert seen == []
    deadline = time.time() + 30  # a second, unless the machine is very busy
    while appends == [] and time.time() < deadline:
        time.sleep(0.05)
    assert appends == [1]
    assert time.monotonic() - t1 >= LINGER  # written by the timer, not at once
    assert stock(path).trials[0].intermediate_values == {1: 0.3, 2: 0.2, 3: 0.1}


def test_a_pruned_trials_value_is_its_last_report_even_while_reports_wait(
        tmp_path: Path) -> None:
    """study.tell takes a pruned trial's value from its reports as the storage has them."""
    path = tmp_path / "j.journal"
    study = optuna.create_study(study_name="s", storage=st.open_storage(f"journal:{path}"))
    trial = study.ask(SPACE)
    trial.report(0.9, 0)
    trial.set_user_attr("k", 1)  # writes the first report; the next one waits
    trial.report(0.3, 5)
    st.tell_outcome(study, trial, RunStatus.PRUNED)
    back = stock(path).trials[0]
    assert back.state == TrialState.PRUNED and back.value == 0.3
    assert back.intermediate_values == {0: 0.9, 5: 0.3}


def test_what_json_cannot_hold_fails_where_it_is_set_and_jams_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    study = optuna.create_study(study_name="s", storage=st.open_storage(f"journal:{path}"))
    trial = study.ask(SPACE)
    with st.gathered(study):
        with pytest.raises(TypeError, match="JSON serializable"):
            trial.set_user_attr("epochs", np.int64(3))
        trial.set_user_attr("epochs", 3)
    st.tell_outcome(study, trial, RunStatus.FINISHED, values=[0.5])
    assert stock(path).trials[0].user_attrs["epochs"] == 3


def test_a_record_optuna_refuses_fails_its_block_and_no_later_call(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    study = optuna.create_study(study_name="s", storage=st.open_storage(f"journal:{path}"))
    trial = study.ask(SPACE)
    study.tell(trial, 0.5)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError), st.gathered(study):
        trial.set_user_attr("late", 1)
        trial.set_user_attr("later", 2)
    study.ask(SPACE)  # the refused records are behind it
    assert len(study.trials) == 2 and "late" not in stock(path).trials[0].user_attrs


def test_the_pruner_judges_reports_that_still_wait(tmp_path: Path, appends: list[int]) -> None:
    """The pruner sees a trial's own reports from its Trial and other trials' from the file,
    where each finished trial's reports went before its end."""
    path = tmp_path / "j.journal"
    study = optuna.create_study(study_name="s", storage=st.open_storage(f"journal:{path}"),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3))
    for _ in range(3):
        done = study.ask(SPACE)
        for step in (1, 2):
            done.report(0.1, step)
        st.tell_outcome(study, done, RunStatus.FINISHED, values=[0.1])
    assert [t.intermediate_values for t in stock(path).trials] == [{1: 0.1, 2: 0.1}] * 3
    worse = study.ask(SPACE)
    appends.clear()
    worse.report(0.9, 1)
    assert worse.should_prune()
    assert appends == []  # judged before its report reached the file
    better = study.ask(SPACE)
    better.report(0.05, 1)
    assert not better.should_prune()
    study._storage.flush()  # nothing left to a later test's count


@pytest.mark.parametrize("thread", ["main", "daemon"])
def test_a_process_that_ends_writes_its_waiting_reports(tmp_path: Path, thread: str) -> None:
    """Also when they come from a daemon thread, as the Dask pool's verdict server is."""
    path = tmp_path / "j.journal"
    code = ("import threading, optuna; from sweeplab.sweep.study import open_storage\n"
            f"s = optuna.create_study(study_name='s', storage=open_storage('journal:{path}'))\n"
            "t = s.ask()\n"
            + ("t.report(0.5, 7)\n" if thread == "main" else
               "d = threading.Thread(target=t.report, args=(0.5, 7), daemon=True)\n"
               "d.start(); d.join()\n"))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert stock(path).trials[0].intermediate_values == {7: 0.5}


def test_what_a_block_holds_is_written_when_it_raises(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    study = optuna.create_study(study_name="s", storage=st.open_storage(f"journal:{path}"))
    with pytest.raises(RuntimeError, match="mid-block"), st.gathered(study):
        trial = study.ask(SPACE)
        trial.set_user_attr("controller", "here:1")
        raise RuntimeError("mid-block")
    back = stock(path).trials[0]
    assert back.state == TrialState.RUNNING
    assert back.params == trial.params and back.user_attrs == {"controller": "here:1"}


def test_another_threads_record_takes_a_blocks_waiting_records_along_in_order(
        tmp_path: Path, appends: list[int]) -> None:
    path = tmp_path / "j.journal"
    study = optuna.create_study(study_name="s", storage=st.open_storage(f"journal:{path}"))
    other = study.ask(SPACE)
    appends.clear()
    with st.gathered(study):
        mine = study.ask(SPACE)
        mine.set_user_attr("controller", "here:1")
        assert appends == [1]  # its creation; its params and controller wait
        # the pruner's thread, meanwhile: its report waits too, its user attribute does not
        t = threading.Thread(target=lambda: (other.report(0.7, 3), other.set_user_attr("x", 1)))
        t.start()
        t.join()
        assert appends == [1, 5]
        back = stock(path).trials
        assert back[1].params == mine.params and back[1].user_attrs == {"controller": "here:1"}
        assert back[0].intermediate_values == {3: 0.7} and back[0].user_attrs == {"x": 1}
    assert appends == [1, 5]  # nothing was left to write at the block's end


def test_the_controllers_storage_pickles_without_its_threads_records(tmp_path: Path) -> None:
    storage = st.open_storage(f"journal:{tmp_path / 'j.journal'}")
    optuna.create_study(study_name="s", storage=storage)
    copy = pickle.loads(pickle.dumps(storage))
    assert isinstance(copy, GatheringJournal)
    assert [s.study_name for s in optuna.study.get_all_study_summaries(copy)] == ["s"]
