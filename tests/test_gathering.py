"""The controller's journal (sweep/gathering.py): a trial's start and end in one append
each, and a file that stock Optuna reads back the same."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from sweeplab.names import RunStatus, TrialAttr
from sweeplab.sweep import study as st
from sweeplab.sweep.gathering import GatheringJournal

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
    assert appends == [5]  # three attributes, its status and its state
    back = stock(path).trials[0]
    assert back.state == TrialState.COMPLETE and back.value == 0.5
    assert back.params == trial.params
    assert back.user_attrs == {"controller": "here:1", "host": "h", "worker": "w",
                               "run_id": "r", TrialAttr.STATUS: RunStatus.FINISHED}


def test_outside_a_block_each_record_is_written_as_it_comes(tmp_path: Path,
                                                            appends: list[int]) -> None:
    study = optuna.create_study(study_name="s",
                                storage=st.open_storage(f"journal:{tmp_path / 'j.journal'}"))
    trial = study.ask(SPACE)
    appends.clear()
    trial.set_user_attr("a", 1)
    trial.report(0.3, 1)
    assert appends == [1, 1]
    assert stock(tmp_path / "j.journal").trials[0].user_attrs == {"a": 1}


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


def test_another_threads_writes_neither_flush_nor_wait_on_a_block(tmp_path: Path,
                                                                  appends: list[int]) -> None:
    path = tmp_path / "j.journal"
    study = optuna.create_study(study_name="s", storage=st.open_storage(f"journal:{path}"))
    other = study.ask(SPACE)
    appends.clear()
    with st.gathered(study):
        study.ask(SPACE).set_user_attr("controller", "here:1")
        held = appends.copy()
        # the pruner's thread reports meanwhile: its record goes alone, at once
        t = threading.Thread(target=lambda: other.report(0.7, 3))
        t.start()
        t.join()
        assert appends == [*held, 1]
        assert stock(path).trials[0].intermediate_values == {3: 0.7}
        assert stock(path).trials[1].user_attrs == {}  # still held by this thread
    assert stock(path).trials[1].user_attrs == {"controller": "here:1"}


def test_the_controllers_storage_pickles_without_its_threads_records(tmp_path: Path) -> None:
    storage = st.open_storage(f"journal:{tmp_path / 'j.journal'}")
    optuna.create_study(study_name="s", storage=storage)
    copy = pickle.loads(pickle.dumps(storage))
    assert isinstance(copy, GatheringJournal)
    assert [s.study_name for s in optuna.study.get_all_study_summaries(copy)] == ["s"]
