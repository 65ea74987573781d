"""The experiment presets and studies: the presets compose to the course's settings, and
sweeplab reproduces the courses' published figures on the real data (skipped without it).

Published figures (the notebooks' outputs; sources in experiments/*/README.md):
- course 1 week 4, L_layer_model: "Cost after iteration 0: 0.771749", "... 100: 0.672053"
  (printed with %f), train accuracy 0.985645933014, test 0.8; two_layer_model: cost at 0
  0.6930497356599888, at 2400 0.048554785628770226, accuracies 1.0 and 0.72;
- course 2 week 1, model(): cost at 0 0.6557412523481002 (no regularisation) and
  0.6974484493131264 (lambd=0.7), at 10,000 0.16329987525724213 / 0.26849188732822393,
  at 20,000 0.13851642423245572 / 0.2680916337127301; accuracies 0.9478672985781991 /
  0.915 and 0.9383886255924171 / 0.93.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from experiments import studylib as sl
from experiments.course1_week4 import study as course1
from experiments.course2_regularization import course_reference as ref
from experiments.course2_regularization import study as course2
from helpers import REPO, compose_config
from sweeplab.config import Config, to_config
from sweeplab.sweep.space import parse_space
from sweeplab.train import run

OFFLINE = ["tracking.enabled=false", "train.progress=false"]


def preset(name: str, *overrides: str) -> Config:
    return to_config(compose_config(f"experiment={name}", *overrides))


@pytest.mark.parametrize("name, hidden, init, seed, lr, epochs, log_every", [
    ("course_2layer", [7], "course_small", 1, 0.0075, 2500, 100),
    ("course_4layer", [20, 7, 5], "course_deep", 1, 0.0075, 2500, 100),
    ("course2_baseline", [20, 3], "course_deep", 3, 0.3, 30000, 1000),
    ("course2_l2", [20, 3], "course_deep", 3, 0.3, 30000, 1000),
    ("course2_dropout", [20, 3], "course_deep", 3, 0.3, 30000, 1000),
])
def test_presets_compose_to_the_course_settings(name: str, hidden: list[int], init: str,
                                                seed: int, lr: float, epochs: int,
                                                log_every: int) -> None:
    cfg = preset(name)
    m, o, t, d = cfg.model, cfg.optim, cfg.train, cfg.data
    assert (m.hidden, m.init, m.activation, m.output, m.dtype) == (
        hidden, init, "relu", "sigmoid", "float64")
    assert (cfg.seed, o.name, o.lr, t.epochs, t.log_every, t.batch_size) == (
        seed, "gd", lr, epochs, log_every, None)
    assert d.val_fraction == 0.0  # the courses train on the whole training file
    assert (o.l2, m.keep_prob) == {"course2_l2": (0.7, 1.0),
                                   "course2_dropout": (0.0, 0.86)}.get(name, (0.0, 1.0))
    if name.startswith("course2"):
        assert (d.name, d.train_file, d.test_file, d.scale) == (
            "h5", "train_football.h5", "test_football.h5", 1.0)
    else:
        assert (d.name, d.scale) == ("catvnoncat", None)  # None: uint8 images / 255


def test_a_preset_sets_the_seed_and_the_command_line_still_wins() -> None:
    # The primary config's own `seed: 1` must not override the preset's (it did when
    # conf/config.yaml listed _self_ after experiment).
    assert preset("course2_baseline").seed == 3
    assert preset("course2_baseline", "seed=5").seed == 5


def test_the_catvnoncat_sweep_composes_and_its_space_parses() -> None:
    cfg = compose_config("sweep=catvnoncat", "data.dir=/nowhere", config_name="sweep_app")
    typed = to_config(cfg)
    assert typed.sweep is not None
    assert (typed.data.name, typed.data.val_fraction, typed.model.hidden) == (
        "catvnoncat", 0.2, None)
    assert typed.sweep.objective == "val_accuracy" and typed.sweep.direction == "maximize"
    space = parse_space(typed.sweep.params, cfg)
    assert set(space) == {"model.depth", "model.width", "optim.lr", "train.epochs"}


# --- the published figures, on the course's data ----------------------------------------

def test_course_4layer_first_costs_match_the_course(shared_datasets: Path) -> None:
    cfg = preset("course_4layer", f"data.dir={shared_datasets / 'catvnoncat'}",
                 "train.epochs=101", *OFFLINE)
    costs = run(cfg).costs
    assert f"{costs[0]:f}" == "0.771749"
    assert f"{costs[100]:f}" == "0.672053"


@pytest.mark.parametrize("name, first", [("course2_baseline", 0.6557412523481002),
                                         ("course2_l2", 0.6974484493131264)])
def test_course2_first_cost_matches_the_course(shared_datasets: Path, name: str,
                                               first: float) -> None:
    cfg = preset(name, f"data.dir={shared_datasets / 'football'}", "train.epochs=1",
                 *OFFLINE)
    assert run(cfg).costs[0] == pytest.approx(first, rel=1e-15, abs=0)


@pytest.mark.parametrize("name, at_10000, at_20000, train_acc, test_acc", [
    ("course2_baseline", 0.16329987525724213, 0.13851642423245572, 0.9478672985781991, 0.915),
    ("course2_l2", 0.26849188732822393, 0.2680916337127301, 0.9383886255924171, 0.93),
])
def test_course2_deterministic_runs_match_the_course(shared_datasets: Path, name: str,
                                                     at_10000: float, at_20000: float,
                                                     train_acc: float, test_acc: float) -> None:
    # 30,000 iterations of a 2-20-3-1 network: about 2 s. The course's own copies differ
    # from each other after ~12 significant digits here (summation order), hence 1e-10.
    result = run(preset(name, f"data.dir={shared_datasets / 'football'}", *OFFLINE))
    assert result.costs[10000] == pytest.approx(at_10000, rel=1e-10)
    assert result.costs[20000] == pytest.approx(at_20000, rel=1e-10)
    assert result.metrics["train_accuracy"] == pytest.approx(train_acc, abs=1e-12)
    assert result.metrics["test_accuracy"] == pytest.approx(test_acc, abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name, at_2400, train_acc, test_acc", [
    ("course_2layer", 0.048554785628770226, 1.0, 0.72),
    ("course_4layer", 0.092878, 0.985645933014, 0.8),
])
def test_course1_full_runs_match_the_course(shared_datasets: Path, name: str, at_2400: float,
                                            train_acc: float, test_acc: float) -> None:
    result = run(preset(name, f"data.dir={shared_datasets / 'catvnoncat'}", *OFFLINE))
    assert result.costs[2400] == pytest.approx(at_2400, abs=5e-7)  # 6 printed decimals
    assert result.metrics["train_accuracy"] == pytest.approx(train_acc, abs=1e-12)
    assert result.metrics["test_accuracy"] == pytest.approx(test_acc, abs=1e-12)


# --- the study scripts' helpers -----------------------------------------------------------

def test_the_generated_section_is_replaced_between_its_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{sl.BEGIN}\nold table\n{sl.END}\n\nafter\n")
    sl.replace_section(readme, "new table")
    assert readme.read_text() == f"# title\n\nbefore\n\n{sl.BEGIN}\nnew table\n{sl.END}\n\nafter\n"
    assert sl.digits_agreeing(0.7717493284237686, "0.771749") == "all 6 printed decimals"
    assert sl.digits_agreeing(0.5, "0.5") == "all 1 printed decimals"


STUDIES = ("course1_week4", "course2_regularization")


def test_a_study_writes_its_tables_where_git_does_not_look(tmp_path: Path,
                                                         empty_mlflow_db: Path) -> None:
    # A study that rewrote its tracked README left the checkout dirty: every later run was
    # logged with sweeplab.git_dirty=true and a git_diff.patch, and its reruns warned.
    readme = REPO / "experiments" / "course1_week4" / "README.md"
    before = readme.read_bytes()
    shutil.copyfile(empty_mlflow_db, tmp_path / "mlflow.db")
    results = tmp_path / "results.md"
    try:
        course1.main(["--table-only", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                      "--workdir", str(tmp_path), "--results", str(results)])
        assert readme.read_bytes() == before
    finally:
        readme.write_bytes(before)  # never leave the tracked file changed, even on failure
    text = results.read_text()
    assert "#### Reproduction: seed 1, all 209 training images" in text
    assert "| 2-layer [7] | sweeplab | (not run) |" in text  # an empty store: nothing run
    # Each study's tables go by default beside its README, to a file git ignores.
    for module in (course1, course2):
        path = module.parse_args([]).results
        assert path == module.HERE / sl.RESULTS
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO)
        assert ignored.returncode == 0, f"{path} is not git-ignored"


def test_write_readme_rewrites_only_the_generated_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"prose\n\n{sl.BEGIN}\nold\n{sl.END}\n\nmore prose\n")
    results = tmp_path / "out" / "results.md"
    sl.write_results("new tables", results, readme, False, "sqlite:///x.db")
    assert "old" in readme.read_text() and results.read_text().endswith("\n\nnew tables\n")
    sl.write_results("new tables", results, readme, True, "sqlite:///x.db")
    assert readme.read_text() == f"prose\n\n{sl.BEGIN}\nnew tables\n{sl.END}\n\nmore prose\n"


@pytest.mark.parametrize("name", STUDIES)
def test_a_study_readmes_prose_quotes_its_tables(name: str) -> None:
    # The prose discusses the tables; every "mean ± sd" it quotes must be one the tables
    # show, so that tables rewritten with --write-readme and prose left behind (or a
    # hand-edited figure, or one of another run) fail here.
    text = (REPO / "experiments" / name / "README.md").read_text()
    before, rest = text.split(sl.BEGIN, 1)
    tables, after = rest.split(sl.END, 1)
    quoted = re.findall(r"\d+\.\d+ ± \d+\.\d+", before + after)
    assert quoted, "the prose quotes no mean ± sd: this check has nothing to check"
    assert [q for q in quoted if q not in tables] == []


@pytest.mark.slow
def test_the_notebooks_fixed_dropout_masks_explain_the_published_dropout_figures(
        shared_datasets: Path) -> None:
    fixed = ref.run(shared_datasets / "football", 0.86, fixed_masks=True)
    assert fixed.costs[10000] == pytest.approx(0.0610169865749056, rel=1e-9)
    assert fixed.costs[20000] == pytest.approx(0.060582435798513114, rel=1e-9)
    assert (fixed.train_accuracy, fixed.test_accuracy) == pytest.approx((0.9289099526066351, 0.95))


@pytest.mark.slow
def test_course1_study_confirms_its_champion_and_compares_it_seed_for_seed(
        shared_datasets: Path, tmp_path: Path) -> None:
    """The whole course 1 study, small (3 trials, 2 confirmed configurations x 2 seeds):
    the confirmed champion is the one the sweep's parent run names, it is retrained on all
    209 images, the course's 4-layer model runs on the confirmation's seeds and splits, and
    the tables' paired tests are scipy's over what MLflow holds."""
    from mlflow.tracking import MlflowClient
    from scipy import stats

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results = tmp_path / "results.md"
    course1.main(["--data-dir", str(shared_datasets / "catvnoncat"), "--tracking-uri", uri,
                  "--workdir", str(tmp_path), "--results", str(results), "--trials", "3",
                  "--seeds", "1", "2", "--confirm-top-k", "2", "--confirm-seeds", "2",
                  "--sweep-jobs", "1", "--jobs", "2", "--sweep-name", "c1test"])
    text = results.read_text()
    client = MlflowClient(uri)
    eid = client.get_experiment_by_name(course1.EXPERIMENT).experiment_id
    runs = {r.info.run_name: r for r in client.search_runs(
        [eid], "attributes.status = 'FINISHED'", max_results=500)}
    parent = next(r for r in client.search_runs(
        [eid], "tags.`sweeplab.role` = 'sweep' and tags.`sweeplab.study` = "
        "'c1test-val_accuracy'"))
    champion = int(parent.data.tags["sweeplab.confirm.champion_trial"])
    replicates = [r for r in runs.values()
                  if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
                  and r.data.tags.get("sweeplab.role") == "confirm"]
    assert len(replicates) == 4  # 2 configurations x 2 seeds
    # the val_cost sweep is not confirmed
    assert not [r for r in runs.values() if r.data.tags.get("sweeplab.role") == "confirm"
                and r not in replicates]
    champ = next(r for r in replicates
                 if r.data.tags["sweeplab.trial_number"] == str(champion))
    rseeds = sorted({int(r.data.params["seed"]) for r in replicates})
    assert rseeds == [2, 3]  # the sweep's seed 1, + 1 and + 2
    champ_params = {k: champ.data.params[k] for k in course1.SEARCHED}
    name = course1.retrained("champion", "c1test-val_accuracy", champ_params)
    for s in (1, 2):  # the champion on all 209 images, in the course's setting
        again = runs[f"{name}-seed{s}"]
        assert {k: again.data.params[k] for k in course1.SEARCHED} \
            == {k: champ.data.params[k] for k in course1.SEARCHED}
        assert again.data.params["data.val_fraction"] == "0.0"
    for s in rseeds:  # the course's model on the replicates' splits
        assert runs[f"course_4layer-confirm-seed{s}"].data.params["data.val_fraction"] == "0.2"
    assert "#### Confirmation of the val_accuracy sweep: its 2 best configurations, " \
           "seeds 2, 3" in text
    assert re.search(rf"^\| {champion} \| .* \| champion \|$", text, re.M)

    def test_acc(name: str, seeds: list[int]) -> list[float]:
        return [runs[f"{name}-seed{s}"].data.metrics["test_accuracy"] for s in seeds]

    ours, theirs = test_acc(name, [1, 2]), test_acc("course_4layer", [1, 2])
    d = [a - b for a, b in zip(ours, theirs, strict=True)]
    line = next(x for x in text.splitlines() if "all 209 images, the same seeds" in x)
    assert f"mean difference {sum(d) / 2:+.3f}" in line
    if abs(d[0] - d[1]) > 1e-9:  # else no spread: no t statistic (the sign test's p)
        assert f"paired t-test over 2 seeds p = {stats.ttest_rel(ours, theirs).pvalue:.3g}." \
            in line
    # the confirmation table: the champion's row first, with its value in the search
    search = client.search_runs(  # trials' run names repeat across the two sweeps
        [eid], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and "
        f"tags.`sweeplab.role` = 'trial' and tags.`sweeplab.trial_number` = '{champion}'")[0]
    assert re.search(rf"^\| {champion} \| [^|]* \| {search.data.metrics['val_accuracy']:.3f} \|",
                     text, re.M)

    # resumed with a single confirmed configuration, the tables show only that one (the
    # earlier replicates stay under the parent), and the runs of a new champion
    course1.main(["--data-dir", str(shared_datasets / "catvnoncat"), "--tracking-uri", uri,
                  "--workdir", str(tmp_path), "--results", str(results), "--trials", "3",
                  "--seeds", "1", "2", "--confirm-top-k", "1", "--confirm-seeds", "2",
                  "--sweep-jobs", "1", "--jobs", "2", "--sweep-name", "c1test"])
    text = results.read_text()
    assert "#### Confirmation of the val_accuracy sweep: its 1 best configuration, " \
           "seeds 2, 3" in text
    parent = client.get_run(parent.info.run_id)
    assert parent.data.tags["sweeplab.confirm.trials"] == parent.data.tags[
        "sweeplab.confirm.champion_trial"]


def test_a_single_seed_is_shown_without_a_spread_it_does_not_have() -> None:
    """`--seeds 3` printed ``0.915 ± 0.000 (0.92-0.92)``: a standard deviation of one value
    is undefined, not zero."""
    assert sl.fmt_acc([0.915]) == "0.915, one seed"
    assert sl.fmt_mean_sd([0.1234]) == "0.123, one seed"
    assert sl.fmt_acc([0.9, 0.95]) == "0.925 ± 0.035 (0.90-0.95)"
    assert sl.fmt_mean_sd([0.1, 0.3]) == "0.200 ± 0.141"
