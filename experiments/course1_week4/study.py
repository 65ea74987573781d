"""Course 1 week 4 on cat vs non-cat: reproduce the course's 2-layer and 4-layer models,
then search (conf/sweep/catvnoncat.yaml) and compare honestly; write the tables.

Usage (from the repository root):
    make experiment NAME=course1_week4 [ARGS="--jobs 2"]
    .venv/bin/python -m experiments.course1_week4.study [--data-dir DIR] [--tracking-uri URI]
        [--seeds 1 2 3 4 5] [--trials 30] [--jobs 2] [--sweep-jobs 2] [--rerun] [--table-only]
        [--results FILE] [--write-readme]

Everything goes to the MLflow experiment `course1_week4` (default store: the repository's
sqlite:///mlflow.db). Runs already finished there are reused (resume); --rerun runs them
again; --table-only only rereads MLflow and writes the tables. The tables go to
experiments/course1_week4/results.md (git-ignored); --write-readme also rewrites them in
the tracked README.md (for maintainers).

Steps, all through `python -m sweeplab.train` / `python -m sweeplab.sweep`:
1. course_2layer and course_4layer on all 209 training images, seeds 1..5 (seed 1 is the
   course's np.random.seed(1)): the reproduction, and the spread over initialisations;
2. the same two presets on the sweep's split (167 train / 42 validation, seed 1), so the
   course's choices are scored on the validation set the sweep chooses on;
3. the sweeps: depth x width x learning rate x iterations, TPE, median pruning, chosen on
   the validation split (never the test set); twice: with val_cost (the first design, kept
   because it fails instructively) and with val_accuracy (conf/sweep/catvnoncat.yaml);
4. each sweep's chosen configuration retrained on all 209 images, seeds 1..5, as the
   course's models are.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from experiments import studylib as sl

HERE = Path(__file__).resolve().parent
EXPERIMENT = "course1_week4"
PRESETS = ("course_2layer", "course_4layer")
SEARCHED = ("model.depth", "model.width", "optim.lr", "train.epochs")
# The sweeps: (objective, direction). The first is what the study first ran; see README.
OBJECTIVES = (("val_cost", "minimize"), ("val_accuracy", "maximize"))

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
    p.add_argument("--jobs", type=int, default=2,
                   help="single runs at once, one core each (default 2)")
    p.add_argument("--sweep-jobs", type=int, default=2,
                   help="sweep workers, one core each (default 2; with 1 the sampler's seed "
                        "fixes the trials, with 2 they depend on which worker asks first)")
    p.add_argument("--rerun", action="store_true", help="run finished runs again")
    p.add_argument("--table-only", action="store_true",
                   help="run nothing: reread MLflow and write the tables")
    sl.add_output_args(p, HERE)
    return p.parse_args(argv)


def chosen_params(study: sl.Study, sweep_name: str) -> dict[str, str] | None:
    parent = study.sweep_parent(sweep_name)
    if parent is None:
        return None
    tags = parent.data.tags
    params = {k: tags.get(f"sweeplab.best.{k}") for k in SEARCHED}
    return None if None in params.values() else params  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    data_dir = str(Path(a.data_dir).resolve())
    # Checked before the store is opened, so a wrong folder leaves nothing behind.
    if not a.table_only and not Path(data_dir, "train_catvnoncat.h5").is_file():
        sl.usage_error(f"{data_dir}/train_catvnoncat.h5 not found: pass --data-dir or set "
                       "$SWEEPLAB_CATVNONCAT")
    workdir = a.workdir or sl.default_workdir(a.tracking_uri)
    study = sl.Study(EXPERIMENT, a.tracking_uri, workdir, a.jobs, a.rerun)
    start = time.perf_counter()
    if not a.table_only:
        data = f"data.dir={data_dir}"
        print(f"1-2. the course's presets (seeds {a.seeds}), and on the sweep's split")
        study.run([sl.Job(f"{p}-seed{s}", "sweeplab.train", [f"experiment={p}", data, f"seed={s}"])
                   for p in PRESETS for s in a.seeds]
                  + [sl.Job(f"{p}-valsplit", "sweeplab.train",
                            [f"experiment={p}", data, "seed=1", "data.val_fraction=0.2"])
                     for p in PRESETS])
        for objective, direction in OBJECTIVES:
            name = f"{a.sweep_name}-{objective}"
            print(f"3. sweep {name!r}: {a.trials} trials, {direction} {objective}")
            study.run([sl.Job(f"sweep-{name}", "sweeplab.sweep",
                              ["sweep=catvnoncat", data, f"sweep.name={name}",
                               f"sweep.objective={objective}", f"sweep.direction={direction}",
                               f"sweep.n_trials={a.trials}", f"sweep.n_jobs={a.sweep_jobs}"])])
            params = chosen_params(study, name)
            if params is None:
                raise SystemExit(f"error: sweep {name!r} recorded no best trial")
            print(f"4. its choice {params} on all 209 images (seeds {a.seeds})")
            study.run([sl.Job(f"chosen-{name}-seed{s}", "sweeplab.train",
                              ["experiment=course_4layer", data, "model.hidden=null",
                               f"seed={s}", *(f"{k}={v}" for k, v in params.items())])
                       for s in a.seeds])
        print(f"study done in {time.perf_counter() - start:.0f}s")
    sl.write_results(tables(study, a.seeds, a.sweep_name), a.results, HERE / "README.md",
                     a.write_readme, a.tracking_uri)


def tables(study: sl.Study, seeds: list[int], prefix: str) -> str:
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
        kids = study.children(parent)
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
    groups += [(f"{objective} sweep's choice: {describe(params)}", f"chosen-{prefix}-{objective}")
               for objective, params in chosen.items()]
    means: dict[str, float] = {}
    for label, name in groups:
        test = accs(name)
        if test:
            means[name] = sl.mean_sd(test)[0]
        add(f"| {label} | {' '.join(f'{v:.2f}' for v in test) or '-'} | {sl.fmt_acc(test)} | "
            f"{sl.fmt_acc(accs(name, 'train_accuracy'))} |")
    add("")
    ref = means.get("course_4layer")
    for objective in chosen:
        ours = means.get(f"chosen-{prefix}-{objective}")
        if ref is not None and ours is not None:
            diff = ours - ref
            add(f"- {objective} sweep's choice minus the course's 4-layer model, mean test "
                f"accuracy over the same seeds: {diff:+.3f} ({diff * 50:+.1f} of 50 images).")
    return "\n".join(out)


def describe(params: dict[str, str]) -> str:
    """``2 x 4, lr 0.0427, 3000 it.``: depth x width, learning rate, iterations."""
    return (f"{params['model.depth']} x {params['model.width']}, lr "
            f"{float(params['optim.lr']):.3g}, {params['train.epochs']} it.")


if __name__ == "__main__":
    main()
