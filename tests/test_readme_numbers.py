"""README.md's sweep figures come from `make readme-numbers` (experiments/readme_numbers.py):
its block is exactly what the script renders from the figures stored with it, no sweep
number is quoted by hand outside it, and the script renders a real Optuna study as the
README says it. The script's run of a real sweep is in the slow suite."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from experiments import readme_numbers as rn
from helpers import REPO, compose_config
from sweeplab.names import Metric, RunStatus, TrialAttr

README = REPO / "README.md"


def allowed_numbers() -> set[str]:
    """The figures the headline sweep's section may state outside the block: its config's
    (trials, epochs, the validation and test fractions) and its dataset's, each computed
    here from the source, so a changed config fails the section too."""
    from sklearn.datasets import load_digits

    from sweeplab.data.builtin import GENERATORS

    cfg = compose_config(config_name="sweep_app")
    digits = load_digits()
    rows, cols = digits.images.shape[1:]
    return {str(cfg.sweep.n_trials), str(cfg.train.epochs),
            f"{cfg.data.val_fraction * 100:.0f}", f"{GENERATORS['digits'][1] * 100:.0f}",
            f"{len(digits.target):,}", str(len(set(digits.target))), f"{rows}x{cols}"}


def test_the_readmes_sweep_figures_are_generated_and_quoted_nowhere_else() -> None:
    assert rn.problems(README.read_text(), allowed_numbers()) == []


@pytest.mark.parametrize("edit", [
    # a number in the block changed by hand
    lambda t: t.replace("trials completed and", "trials completed (give or take) and", 1),
    # a figure added by hand next to the block, in its section
    lambda t: t.replace("Running `make sweep` again", "The best reached 0.08. Running `make "
                        "sweep` again", 1),
    # the block's sentence form quoted elsewhere in the README
    lambda t: t.replace("## Everyday use", "The sweep: 18 trials completed.\n\n## Everyday use"),
])
def test_a_hand_edited_sweep_figure_fails(edit: Callable[[str], str]) -> None:
    text = README.read_text()
    edited = edit(text)
    assert edited != text
    assert rn.problems(edited, allowed_numbers()) != []


def _study() -> optuna.Study:
    """A real in-memory Optuna study as a sweeplab sweep leaves it: 3 complete trials, 2
    pruned, one diverged (a failure that counts) and one interrupted (retried, not counted)."""
    study = optuna.create_study(direction="minimize")
    dists = {"model.depth": IntDistribution(1, 5), "model.width": IntDistribution(4, 128, log=True),
             "optim.lr": FloatDistribution(1e-4, 1.0, log=True)}

    def add(state: TrialState, params: tuple[int, int, float], value: float | None = None,
            status: str | None = None, val_acc: float | None = None,
            test_acc: float | None = None) -> None:
        attrs: dict[str, object] = {} if status is None else {TrialAttr.STATUS: status}
        if val_acc is not None:
            attrs |= {Metric.VAL_ACCURACY: val_acc, Metric.TEST_ACCURACY: test_acc}
        study.add_trial(create_trial(
            state=state, value=value, distributions=dists, user_attrs=attrs,
            params=dict(zip(dists, params, strict=True))))

    add(TrialState.COMPLETE, (2, 93, 0.0027512), 0.08437, RunStatus.FINISHED, 0.97909, 0.98611)
    add(TrialState.COMPLETE, (1, 4, 0.93), 2.30261, RunStatus.FINISHED, 0.1, 0.1)
    add(TrialState.COMPLETE, (3, 20, 0.01), 0.2, RunStatus.FINISHED, 0.95, 0.94)
    add(TrialState.PRUNED, (4, 8, 0.001), status=RunStatus.PRUNED)
    add(TrialState.PRUNED, (5, 8, 0.0001), status=RunStatus.PRUNED)
    add(TrialState.FAIL, (1, 128, 0.9), status=RunStatus.DIVERGED)
    add(TrialState.FAIL, (2, 16, 0.05))  # interrupted: no status
    return study


# What the study of _study() renders to, wrapped at 90 columns as the README is.
RENDERED = [
    "On this machine (2 cores, 2026-11-30) it took 61 s: 3 trials completed, 2 were pruned and",
    "1 failed. The best trial (2 hidden layers of 93 units, lr 0.00275) reached a validation",
    "cost of 0.0844 (validation accuracy 0.979, test accuracy 0.986, reported but never used to",
    "choose); the worst completed trial (1 hidden layer of 4 units, lr 0.93) ended at 2.3",
    "(validation accuracy 0.10).",
]


def test_a_study_renders_as_the_readme_states_it() -> None:
    figures = rn.summarize_study(_study(), "val_cost", 61.44, 2, [], "2026-11-30")
    assert (figures.complete, figures.pruned, figures.failed) == (3, 2, 1)
    assert rn.render(figures).splitlines() == RENDERED
    # The figures travel in the block's begin marker and come back unchanged.
    text = f"before\n\n{rn.block(rn._placeholder())}\n\nafter\n"
    found = rn.find_block(rn.replace_block(text, figures))
    assert found is not None and found[2] == figures


def test_overrides_name_themselves_in_the_block() -> None:
    study = optuna.create_study()
    figures = rn.summarize_study(study, "val_cost", 3.0, 1, ["sweep.n_trials=1"], None)
    assert rn.render(figures) == ("With `sweep.n_trials=1`, on this machine (1 core) it took "
                                  "3 s: 0 trials completed and 0\nwere pruned. No trial "
                                  "completed.")


@pytest.mark.parametrize("argv, message", [
    (["sweep.n_trials=4"], "error: overrides change the sweep README.md describes"),
    (["--readme", "/nonexistent/README.md"], "error: cannot read /nonexistent/README.md"),
    (["--readme", "{tmp}/README.md", "sweep.storage=sqlite:///x.db"],
     "error: sweep.storage=sqlite:///x.db: the sweep runs in a folder of its own"),
    (["--readme", "{tmp}/README.md"], "error: no sweep-result block in the README"),
])
def test_bad_input_is_one_line_before_any_sweep(argv: list[str], message: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "README.md").write_text("# a README without the block\n")
    assert rn.main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not list(tmp_path.glob("sweeplab-readme-*"))


@pytest.mark.slow
def test_the_script_runs_a_small_sweep_into_a_copy_of_the_readme(tmp_path: Path) -> None:
    copy = tmp_path / "README.md"
    copy.write_text(README.read_text())
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "src")])
    out = subprocess.run(
        [sys.executable, "-m", "experiments.readme_numbers", "--readme", str(copy),
         "sweep.n_trials=3", "train.epochs=5"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = copy.read_text()
    found = rn.find_block(text)
    assert found is not None
    start, end, figures = found
    assert figures.overrides == ["sweep.n_trials=3", "train.epochs=5"]
    assert figures.complete + figures.pruned + figures.failed == 3 and figures.date
    assert text[start:end] == rn.block(figures)
    before = rn.find_block(README.read_text())
    assert before is not None  # everything outside the block is as it was
    assert text[:start] + text[end:] == \
        README.read_text()[:before[0]] + README.read_text()[before[1]:]
    assert rn.problems(text, allowed_numbers()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]  # its folder is gone
