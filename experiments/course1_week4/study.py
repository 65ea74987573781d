"""Course 1 week 4 on cat vs non-cat: reproduce the course's 2-layer and 4-layer models,
then search (conf/sweep/catvnoncat.yaml) and compare honestly; write the tables.

Usage (from the repository root):
    make experiment NAME=course1_week4 [ARGS="--jobs 2"]
    .venv/bin/python -m experiments.course1_week4.study [--data-dir DIR] [--tracking-uri URI]
        [--seeds 1 2 3 4 5] [--trials 30] [--jobs 2] [--sweep-jobs 2]
        [--confirm-top-k 5] [--confirm-seeds 5] [--rerun] [--table-only]
        [--results FILE] [--write-readme]

Everything goes to the MLflow experiment `course1_week4` (default store: the repository's
sqlite:///mlflow.db). Runs already finished there are reused (resume); --rerun runs them
again; --table-only only rereads MLflow and writes the tables. The tables go to
experiments/course1_week4/results.md (git-ignored); --write-readme also rewrites them in
the tracked README.md (for maintainers).

Steps, all through `python -m sweeplab.train` / `python -m sweeplab.sweep`:
1. course_2layer and course_4layer on all 209 training images, seeds 1..5 (seed 1 is the
   course's np.random.seed(1)): the reproduction, and the spread over initialisations;
2. the same two presets on the sweep's split (168 train / 41 validation, seed 1), so the
   course's choices are scored on the validation set the sweep chooses on;
3. the sweeps: depth x width x learning rate x iterations, TPE, median pruning, chosen on
   the validation split (never the test set); twice: with val_cost (the first design, kept
   because it fails instructively, no confirmation stage) and with val_accuracy
   (conf/sweep/catvnoncat.yaml), whose confirmation stage retrains its 5 best
   configurations with 5 more seeds each (repeated hold-out) and names a champion by the
   best mean;
4. each sweep's single best trial, and the val_accuracy sweep's confirmed champion,
   retrained on all 209 images, seeds 1..5, as the course's models are;
5. course_4layer on the confirmation's seeds and splits, so that the champion and the
   course's model are compared seed by seed (paired) on validation and on test.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run

from experiments import studylib as sl
from sweeplab.names import Role, Tag
from sweeplab.sweep.stats import describe as stats
from sweeplab.sweep.stats import paired

HERE = Path(__file__).resolve().parent
EXPERIMENT = "course1_week4"
PRESETS = ("course_2layer", "course_4layer")
SEARCHED = ("model.depth", "model.width", "optim.lr", "train.epochs")
# The sweeps: (objective, direction). The first is what the study first ran; see README.
OBJECTIVES = (("val_cost", "minimize"), ("val_accuracy", "maximize"))
# The sweep whose best configurations are confirmed across seeds (the other one's choice
# is degenerate, see README: confirming it would spend 25 runs to say so again).
CONFIRMED = "val_accuracy"
TEST_IMAGES, VAL_IMAGES = 50, 41  # the test file; the validation split (0.2 of 209)

# The course's published figures: "Deep Neural Network - Application" (v8), the cells'
# outputs and "Expected Output" tables, e.g. in amanchadha/coursera-deep-learning-
# specialization, "C1 - Neural Networks and Deep Learning/Week 4/Deep Neural Network
# Application_ Image Classification/Deep Neural Network - Application v8.ipynb".
# Costs are as printed: full repr for two_layer_model, "%f" (6 decimals) for L_layer_model.
COURSE = {
    "course_2layer": {"cost": {0: "0.6930497356599888", 100: "0.6464320953428849",
                               2400: "0.048554785628770226"},
                      "train_accuracy": "1.0", "test_accuracy": "0.72"},
    "course_4layer": {"cost": {0: "0.771749", 100: "0.672053", 2400: "0.092878"},
                      "train_accuracy": "0.985645933014", "test_accuracy": "0.8"},
}
LABEL = {"course_2layer": "2-layer [7]", "course_4layer": "4-layer [20, 7, 5]"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get(
        "SWEEPLAB_CATVNONCAT", str(sl.SHARED / "catvnoncat")),
        help="folder with train_catvnoncat.h5 and test_catvnoncat.h5 "
             "(default $SWEEPLAB_CATVNONCAT, else ../shared/datasets/catvnoncat)")
    p.add_argument("--tracking-uri", default=sl.default_uri(),
                   help="MLflow store (default: the repository's sqlite:///mlflow.db)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the CLIs run (Optuna journal, Hydra outputs/); "
                        "default: beside the SQLite store")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--trials", type=int, default=30, help="sweep trials (default 30)")
    p.add_argument("--sweep-name", default="course1_week4",
                   help="prefix of the Optuna study names (<prefix>-<objective>); the same "
                        "name resumes a study (default course1_week4)")
    p.add_argument("--jobs", type=int, default=sl.default_jobs(),
                   help="single runs at once, one core each (default 2, 1 on one core)")
    p.add_argument("--sweep-jobs", type=int, default=sl.default_jobs(),
                   help="sweep workers, one core each (default 2, 1 on one core; with 1 the "
                        "sampler's seed fixes the trials, with 2 they depend on which worker "
                        "asks first)")
    p.add_argument("--confirm-top-k", type=int, default=None,
                   help="configurations the val_accuracy sweep confirms "
                        "(default: conf/sweep/catvnoncat.yaml's sweep.confirm.top_k)")
    p.add_argument("--confirm-seeds", type=int, default=None,
                   help="seeds per confirmed configuration "
                        "(default: conf/sweep/catvnoncat.yaml's sweep.confirm.seeds)")
    p.add_argument("--rerun", action="store_true", help="run finished runs again")
    p.add_argument("--table-only", action="store_true",
                   help="run nothing: reread MLflow and write the tables")
    sl.add_output_args(p, HERE)
    return p.parse_args(argv)


def chosen_params(study: sl.Study, sweep_name: str) -> dict[str, str] | None:
    """The searched values of the sweep's single best trial."""
    parent = study.sweep_parent(sweep_name)
    if parent is None:
        return None
    tags = parent.data.tags
    params = {k: tags.get(f"{Tag.BEST}{k}") for k in SEARCHED}
    return None if None in params.values() else params  # type: ignore[return-value]


@dataclass
class Confirmation:
    """What a sweep's confirmation stage recorded: its parent run, the champion's search
    trial and the replicates of each confirmed trial (replicate number -> run)."""

    parent: Run
    champion: int | None
    replicates: dict[int, dict[int, Run]]
    trial_runs: dict[int, Run]  # the search's run of each trial

    def search_value(self, trial: int) -> float | None:
        """The trial's validation accuracy in the search (one seed, one split)."""
        run = self.trial_runs.get(trial)
        return None if run is None else run.data.metrics.get("val_accuracy")

    def params(self, trial: int) -> dict[str, str]:
        run = next(iter(self.replicates[trial].values()))
        return {k: run.data.params[k] for k in SEARCHED}

    def seeds(self) -> dict[int, int]:
        """Replicate number -> run seed (the same for every configuration)."""
        return {i: int(r.data.params["seed"]) for runs in self.replicates.values()
                for i, r in runs.items()}

    def values(self, trial: int, metric: str) -> dict[int, float]:
        """Run seed -> the metric, over the trial's replicates."""
        return {int(r.data.params["seed"]): r.data.metrics[metric]
                for r in self.replicates[trial].values() if metric in r.data.metrics}


def confirmation(study: sl.Study, sweep_name: str) -> Confirmation | None:
    parent = study.sweep_parent(sweep_name)
    if parent is None:
        return None
    # only what the last confirmation covered: replicates of earlier ones (another top-k
    # or number of seeds) stay under the parent
    trials, seeds = ({int(v) for v in parent.data.tags.get(tag, "").split(",") if v.isdigit()}
                     for tag in (Tag.CONFIRM_TRIALS, Tag.CONFIRM_SEEDS))
    replicates: dict[int, dict[int, Run]] = {}
    for r in study.children(parent):
        tags = r.data.tags
        if (tags.get(Tag.ROLE) == Role.CONFIRM and r.info.status == "FINISHED"
                and tags.get(Tag.TRIAL_NUMBER, "").isdigit()
                and tags.get(Tag.REPLICATE, "").isdigit()
                and int(tags[Tag.TRIAL_NUMBER]) in trials
                and int(r.data.params.get("seed", -1)) in seeds):
            replicates.setdefault(int(tags[Tag.TRIAL_NUMBER]), {})[int(tags[Tag.REPLICATE])] = r
    champ = parent.data.tags.get(Tag.CONFIRM_CHAMPION)
    if not replicates:
        return None
    trial_runs = {int(r.data.tags[Tag.TRIAL_NUMBER]): r for r in study.children(parent)
                  if r.data.tags.get(Tag.ROLE) == Role.TRIAL
                  and r.data.tags.get(Tag.TRIAL_NUMBER, "").isdigit()}
    return Confirmation(parent, int(champ) if champ and champ.isdigit() else None, replicates,
                        trial_runs)


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    sl.check_seeds(a.seeds)
    # the sweep's own rules, checked before any run: it would refuse them only once the
    # presets and the first sweep had run
    if a.confirm_top_k is not None and a.confirm_top_k < 0:
        sl.usage_error(f"--confirm-top-k {a.confirm_top_k}: must be 0 (no confirmation) or more")
    if a.confirm_seeds is not None and a.confirm_seeds < 2:
        sl.usage_error(f"--confirm-seeds {a.confirm_seeds}: must be at least 2 (a mean and "
                       "an interval need two seeds)")
    data_dir = str(Path(a.data_dir).resolve())
    # Checked before the store is opened, so a wrong folder leaves nothing behind.
    if not a.table_only and not Path(data_dir, "train_catvnoncat.h5").is_file():
        sl.usage_error(f"{data_dir}/train_catvnoncat.h5 not found: pass --data-dir or set "
                       "$SWEEPLAB_CATVNONCAT")
    data = f"data.dir={data_dir}"
    presets = [sl.Job(f"{p}-seed{s}", "sweeplab.train", [f"experiment={p}", data, f"seed={s}"])
               for p in PRESETS for s in a.seeds] \
        + [sl.Job(f"{p}-valsplit", "sweeplab.train",
                  [f"experiment={p}", data, "seed=1", "data.val_fraction=0.2"])
           for p in PRESETS]
    sweeps = {objective: sweep_job(a, objective, direction, data)
              for objective, direction in OBJECTIVES}
    if not a.table_only:  # every option the runs take, before the first one
        sl.check_jobs([*presets, *sweeps.values()],
                      sl.common(a.tracking_uri, EXPERIMENT, "check"))
    sl.check_results(a.results)
    workdir = a.workdir or sl.default_workdir(a.tracking_uri)
    study = sl.Study(EXPERIMENT, a.tracking_uri, workdir, a.jobs, a.rerun, read_only=a.table_only)
    start = time.perf_counter()
    if not a.table_only:
        print(f"1-2. the course's presets (seeds {a.seeds}), and on the sweep's split")
        study.run(presets)
        for objective, direction in OBJECTIVES:
            name = f"{a.sweep_name}-{objective}"
            print(f"3. sweep {name!r}: {a.trials} trials, {direction} {objective}")
            study.run([sweeps[objective]])
            params = chosen_params(study, name)
            if params is None:
                raise SystemExit(f"error: sweep {name!r} recorded no best trial")
            print(f"4. its best trial {params} on all 209 images (seeds {a.seeds})")
            study.run(retrain(retrained("chosen", name, params), params, a.seeds, data))
            conf = confirmation(study, name) \
                if objective == CONFIRMED and a.confirm_top_k != 0 else None
            if conf is None or conf.champion is None:
                continue
            champ = conf.params(conf.champion)
            print(f"4. its confirmed champion {champ} on all 209 images (seeds {a.seeds})")
            study.run(retrain(retrained("champion", name, champ), champ, a.seeds, data))
            seeds = sorted(set(conf.seeds().values()))
            print(f"5. course_4layer on the confirmation's seeds and splits ({seeds})")
            study.run([sl.Job(f"course_4layer-confirm-seed{s}", "sweeplab.train",
                              ["experiment=course_4layer", data, f"seed={s}",
                               "data.val_fraction=0.2"]) for s in seeds])
        print(f"study done in {time.perf_counter() - start:.0f}s")
    sl.write_results(tables(study, a.seeds, a.sweep_name, a.confirm_top_k != 0), a.results,
                     HERE / "README.md", a.write_readme, a.tracking_uri)


def sweep_job(a: argparse.Namespace, objective: str, direction: str, data: str) -> sl.Job:
    """The sweep of `objective` in the catvnoncat search space, with the study's options."""
    name = f"{a.sweep_name}-{objective}"
    confirm = (["sweep.confirm.top_k=0"] if objective != CONFIRMED else
               [f"sweep.confirm.{k}={v}" for k, v in
                (("top_k", a.confirm_top_k), ("seeds", a.confirm_seeds)) if v is not None])
    return sl.Job(f"sweep-{name}", "sweeplab.sweep",
                  ["sweep=catvnoncat", data, f"sweep.name={name}",
                   f"sweep.objective={objective}", f"sweep.direction={direction}",
                   f"sweep.n_trials={a.trials}", f"sweep.n_jobs={a.sweep_jobs}", *confirm])


def retrained(kind: str, sweep: str, params: dict[str, str]) -> str:
    """The run name prefix of configuration `params` retrained on all 209 images:
    ``champion-<sweep>-2x10-lr0.0023316-3000it``. The configuration is in the name, so a
    sweep resumed with another best trial or champion gets runs of its own, never the
    previous choice's."""
    return (f"{kind}-{sweep}-{params['model.depth']}x{params['model.width']}-lr"
            f"{params['optim.lr']}-{params['train.epochs']}it")


def retrain(name: str, params: dict[str, str], seeds: list[int], data: str) -> list[sl.Job]:
    """The searched configuration `params` in the course's setting on all 209 images."""
    return [sl.Job(f"{name}-seed{s}", "sweeplab.train",
                   ["experiment=course_4layer", data, "model.hidden=null", f"seed={s}",
                    *(f"{k}={v}" for k, v in params.items())]) for s in seeds]


def tables(study: sl.Study, seeds: list[int], prefix: str, confirmed: bool = True) -> str:
    """The study's tables; `confirmed` False leaves out the confirmation's (the sweep ran
    with --confirm-top-k 0: a confirmation still in the store is an earlier one's)."""
    runs = study.finished()
    out: list[str] = []
    add = out.append

    add("#### Reproduction: seed 1, all 209 training images\n")
    add("| model | source | cost at 0 | cost at 100 | cost at 2400 | train acc. | test acc. |")
    add("| --- | --- | --- | --- | --- | --- | --- |")
    agreement: list[str] = []
    for p in PRESETS:
        c = COURSE[p]
        rows, h = sl.reproduction_rows(study, runs.get(f"{p}-seed1"), LABEL[p], c, c["cost"])
        out.extend(rows)
        if h is None:
            continue
        agreement.append(f"{LABEL[p]}: " + ", ".join(
            f"cost at {i}: {sl.digits_agreeing(h[i], v)}" for i, v in c["cost"].items() if i in h))
    add("")
    if agreement:
        add("Agreement with the printed figures: " + "; ".join(agreement) + ".\n")

    def accs(name: str, key: str = "test_accuracy") -> list[float]:
        return [runs[f"{name}-seed{s}"].data.metrics[key] for s in seeds
                if f"{name}-seed{s}" in runs]

    add("#### The sweeps (conf/sweep/catvnoncat.yaml): chosen on 41 validation images\n")
    add("Each row is one network trained on the sweep's split (seed 1: 168 training images, "
        "41 validation). The test accuracy of a sweep's choice is the only test figure read "
        "from its trials.\n")
    add("| model, run | val_cost | val acc. | train acc. | test acc. |")
    add("| --- | --- | --- | --- | --- |")
    rows = [(f"{LABEL[p]} (course)", runs.get(f"{p}-valsplit")) for p in PRESETS]
    chosen: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    for objective, direction in OBJECTIVES:
        name = f"{prefix}-{objective}"
        parent, params = study.sweep_parent(name), chosen_params(study, name)
        if parent is None or params is None:
            notes.append(f"Sweep `{name}` has not run.")
            continue
        chosen[objective] = params
        # the search's trials, not the confirmation's replicates
        kids = [k for k in study.children(parent) if k.data.tags.get(Tag.ROLE) == Role.TRIAL]
        states: dict[str, int] = {}
        for k in kids:
            state = k.data.tags.get("sweeplab.trial_state", "?").lower()
            states[state] = states.get(state, 0) + 1
        best = next((k for k in kids
                     if k.info.run_id == parent.data.tags.get("sweeplab.best_run_id")), None)
        rows.append((f"choice of the {direction[:3]} {objective} sweep: {describe(params)}", best))
        notes.append(f"Sweep `{name}` ({direction} {objective}), parent run "
                     f"{sl.run_link(parent)}: {len(kids)} trials ("
                     + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + ").")
    for label, r in rows:
        if r is None:
            add(f"| {label} | (not run) | | | |")
            continue
        m = r.data.metrics
        add(f"| {label}, {sl.run_link(r)} | {m['final_val_cost']:.4f} | "
            f"{m['val_accuracy']:.3f} | {m['train_accuracy']:.3f} | {m['test_accuracy']:.2f} |")
    add("")
    add(" ".join(notes) + "\n")

    add(f"#### Spread over initialisations: seeds {', '.join(map(str, seeds))}, "
        "all 209 training images\n")
    add("Test accuracy on the 50 test images (one image = 0.02): mean ± sample standard "
        "deviation (range).\n")
    add("| model | test acc. per seed | test acc. | train acc. |")
    add("| --- | --- | --- | --- |")
    groups = [(f"{LABEL[p]} (course)", p) for p in PRESETS]
    groups += [(f"{objective} sweep's best trial: {describe(params)}",
                retrained("chosen", f"{prefix}-{objective}", params))
               for objective, params in chosen.items()]
    conf = confirmation(study, f"{prefix}-{CONFIRMED}") if confirmed else None
    champ = conf.params(conf.champion) if conf is not None and conf.champion is not None \
        else None
    if champ is not None:
        groups.append((f"{CONFIRMED} sweep's confirmed champion: {describe(champ)}",
                       retrained("champion", f"{prefix}-{CONFIRMED}", champ)))
    means: dict[str, float] = {}
    for label, name in groups:
        test = accs(name)
        if test:
            means[name] = sl.mean_sd(test)[0]
        add(f"| {label} | {' '.join(f'{v:.2f}' for v in test) or '-'} | {sl.fmt_acc(test)} | "
            f"{sl.fmt_acc(accs(name, 'train_accuracy'))} |")
    add("")
    ref = means.get("course_4layer")
    for objective, params in chosen.items():
        ours = means.get(retrained("chosen", f"{prefix}-{objective}", params))
        if ref is not None and ours is not None:
            diff = ours - ref
            add(f"- {objective} sweep's best trial minus the course's 4-layer model, mean test "
                f"accuracy over the same seeds: {diff:+.3f} ({diff * 50:+.1f} of 50 images).")
    if conf is not None and champ is not None:
        out.extend(["", *confirmation_tables(conf, runs, seeds, champ, prefix)])
    return "\n".join(out)


def by_seed(runs: dict[str, Run], name: str, seeds: list[int],
            metric: str = "test_accuracy") -> dict[int, float]:
    return {s: runs[f"{name}-seed{s}"].data.metrics[metric] for s in seeds
            if f"{name}-seed{s}" in runs and metric in runs[f"{name}-seed{s}"].data.metrics}


def versus(ours: dict[int, float], theirs: dict[int, float], what: str, images: int) -> str:
    """One line: the paired t-test of `ours` against `theirs` (accuracies on `images`
    images) over their shared seeds."""
    p = paired(ours, theirs)
    if p.n < 2:
        return f"- {what}: fewer than two shared seeds, no test."
    ci = "" if p.ci_low != p.ci_low else f", 95% CI [{p.ci_low:+.3f}, {p.ci_high:+.3f}]"
    return (f"- {what}: mean difference {p.mean_diff:+.3f} ({p.mean_diff * images:+.1f} of "
            f"{images} images){ci}, {p.test} over {p.n} seeds p = {p.p_value:.3g}.")


def confirmation_tables(conf: Confirmation, runs: dict[str, Run], seeds: list[int],
                        champ: dict[str, str], prefix: str) -> list[str]:
    """The confirmation stage's table (validation accuracy per configuration over the
    replicate seeds, the course's 4-layer model on the same splits), then the champion
    against the course's 4-layer model on the test set, paired by seed."""
    assert conf.champion is not None
    rseeds = sorted(set(conf.seeds().values()))
    course_val = by_seed(runs, "course_4layer-confirm", rseeds, "val_accuracy")
    champ_val = conf.values(conf.champion, "val_accuracy")
    k = len(conf.replicates)
    out = [f"#### Confirmation of the {CONFIRMED} sweep: its {k} best "
           f"configuration{'s' if k > 1 else ''}, seeds {', '.join(map(str, rseeds))}\n",
           "Each configuration trained again with each run seed, which draws the "
           "initialisation and a new stratified validation split of the 209 training images "
           "(168 / 41): repeated hold-out. The course's 4-layer model on the same seeds and "
           "splits is the last row. Validation accuracy: mean ± 95% t interval; p: paired "
           f"t-test against the champion over the shared seeds (scipy.stats). Parent run "
           f"{sl.run_link(conf.parent)}.\n",
           "| trial | config | val acc. in the search (seed 1) | val acc. per seed | "
           "val acc. | p vs champion |",
           "| --- | --- | --- | --- | --- | --- |"]
    # the champion first, then by mean validation accuracy, as the sweep ranked them
    rest = sorted((t for t in conf.replicates if t != conf.champion),
                  key=lambda t: -stats(list(conf.values(t, "val_accuracy").values())).mean)
    order = [conf.champion, *rest]

    def row(label: str, config: str, search: float | None, vals: dict[int, float],
            champion: bool) -> str:
        per = " ".join(f"{vals[s]:.3f}" if s in vals else "-" for s in rseeds)
        p = "champion" if champion else f"{paired(vals, champ_val).p_value:.3g}"
        first = "-" if search is None else f"{search:.3f}"
        return f"| {label} | {config} | {first} | {per} | {describe_ci(vals)} | {p} |"

    for t in order:
        out.append(row(str(t), describe(conf.params(t)), conf.search_value(t),
                       conf.values(t, "val_accuracy"), t == conf.champion))
    valsplit = runs.get("course_4layer-valsplit")
    out.append(row("course", "4-layer [20, 7, 5], lr 0.0075, 2500 it.",
                   None if valsplit is None else valsplit.data.metrics.get("val_accuracy"),
                   course_val, False))
    verdict = conf.parent.data.tags.get(Tag.CONFIRM_VERDICT)
    out += ["", f"The sweep's verdict (tag `{Tag.CONFIRM_VERDICT}`): {verdict}.\n" if verdict
            else ""]

    champ_test = conf.values(conf.champion, "test_accuracy")
    course_test = by_seed(runs, "course_4layer-confirm", rseeds)
    champ_all = by_seed(runs, retrained("champion", f"{prefix}-{CONFIRMED}", champ), seeds)
    course_all = by_seed(runs, "course_4layer", seeds)
    out += ["#### The confirmed champion against the course's 4-layer model on the test set\n",
            f"The champion ({describe(champ)}, trial {conf.champion}) was chosen on "
            "validation alone; the test set is read only now. Test accuracy on the 50 test "
            "images: mean ± 95% t interval.\n",
            "| model | trained on | seeds | test acc. per seed | test acc. |",
            "| --- | --- | --- | --- | --- |"]
    for label, on, vals, ss in (
            ("champion", "168 images (each seed's split)", champ_test, rseeds),
            ("course 4-layer", "168 images (each seed's split)", course_test, rseeds),
            ("champion", "all 209 images", champ_all, seeds),
            ("course 4-layer", "all 209 images", course_all, seeds)):
        per = " ".join(f"{vals[s]:.2f}" if s in vals else "-" for s in ss)
        out.append(f"| {label} | {on} | {', '.join(map(str, ss))} | {per} | "
                   f"{describe_ci(vals)} |")
    out += ["",
            versus(champ_test, course_test, "champion minus course 4-layer, test accuracy, "
                   "168 images, the same seeds and splits", TEST_IMAGES),
            versus(champ_all, course_all, "champion minus course 4-layer, test accuracy, "
                   "all 209 images, the same seeds", TEST_IMAGES),
            versus(champ_val, course_val, "champion minus course 4-layer, validation "
                   "accuracy, the same seeds and splits", VAL_IMAGES)]
    return out


def describe_ci(values: dict[int, float]) -> str:
    """``0.712 ± 0.034 [0.678, 0.746]``: mean ± half the 95% t interval, the interval."""
    s = stats(list(values.values()))
    if s.n == 0:
        return "-"
    if s.ci_low != s.ci_low:
        return f"{s.mean:.3f} (n = {s.n})"
    return f"{s.mean:.3f} ± {(s.ci_high - s.ci_low) / 2:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}]"


def describe(params: dict[str, str]) -> str:
    """``2 x 4, lr 0.0427, 3000 it.``: depth x width, learning rate, iterations."""
    return (f"{params['model.depth']} x {params['model.width']}, lr "
            f"{float(params['optim.lr']):.3g}, {params['train.epochs']} it.")


if __name__ == "__main__":
    main()
