"""Course 2 week 1, "Regularization", on the football data: the course's three models
(no regularisation, L2 λ=0.7, dropout keep_prob=0.86) run by sweeplab, beside the course's
published figures; write the tables.

Usage (from the repository root):
    make experiment NAME=course2_regularization [ARGS="--jobs 2"]
    .venv/bin/python -m experiments.course2_regularization.study [--data-dir DIR]
        [--tracking-uri URI] [--seeds 3 4 5 6 7] [--jobs 2] [--rerun] [--table-only]
        [--results FILE] [--write-readme]

Runs go to the MLflow experiment `course2_regularization` (default store: the repository's
sqlite:///mlflow.db); runs already finished there are reused unless --rerun. The tables go
to experiments/course2_regularization/results.md (git-ignored); --write-readme also
rewrites them in the tracked README.md (for maintainers).
1. the presets course2_baseline, course2_l2 and course2_dropout with seed 3 (the course's
   np.random.seed(3) initialisation) and seeds 4..7 (other initial weights and masks);
2. course_reference.py: the notebook's own loop, re-typed, which explains why the dropout
   run can only match statistically (not tracked in MLflow: it is not a sweeplab run).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from experiments import studylib as sl
from experiments.course2_regularization import course_reference as ref

HERE = Path(__file__).resolve().parent

EXPERIMENT = "course2_regularization"
PRESETS = ("course2_baseline", "course2_l2", "course2_dropout")
LABEL = {"course2_baseline": "no regularisation", "course2_l2": "L2, λ = 0.7",
         "course2_dropout": "dropout, keep_prob = 0.86"}
STEPS = (0, 10000, 20000)

# The course's published figures: the outputs of "Regularization" (v2a), e.g. in
# amanchadha/coursera-deep-learning-specialization, "C2 - Improving Deep Neural Networks
# Hyperparameter tuning, Regularization and Optimization/Week 1/Regularization/
# Regularization_v2a.ipynb" (costs printed with str(), accuracies as predict() prints them).
COURSE = {
    "course2_baseline": {"cost": ("0.6557412523481002", "0.16329987525724213",
                                  "0.13851642423245572"),
                         "train_accuracy": "0.9478672985781991", "test_accuracy": "0.915"},
    "course2_l2": {"cost": ("0.6974484493131264", "0.26849188732822393", "0.2680916337127301"),
                   "train_accuracy": "0.9383886255924171", "test_accuracy": "0.93"},
    "course2_dropout": {"cost": ("0.6543912405149825", "0.0610169865749056",
                                 "0.060582435798513114"),
                        "train_accuracy": "0.9289099526066351", "test_accuracy": "0.95"},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get(
        "SWEEPLAB_FOOTBALL", str(sl.SHARED / "football")),
        help="folder with train_football.h5 and test_football.h5 "
             "(default $SWEEPLAB_FOOTBALL, else ../shared/datasets/football)")
    p.add_argument("--tracking-uri", default=sl.default_uri(),
                   help="MLflow store (default: the repository's sqlite:///mlflow.db)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the CLIs run (Hydra outputs/); default: beside the SQLite store")
    p.add_argument("--seeds", type=int, nargs="+", default=[3, 4, 5, 6, 7],
                   help="seeds; 3 is the course's (default 3 4 5 6 7)")
    p.add_argument("--jobs", type=int, default=sl.default_jobs(),
                   help="runs at once (default 2, 1 on one core)")
    p.add_argument("--rerun", action="store_true", help="run finished runs again")
    p.add_argument("--table-only", action="store_true",
                   help="run no sweeplab run: reread MLflow and write the tables (the "
                        "reference loop still runs, ~15 s)")
    sl.add_output_args(p, HERE)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    sl.check_seeds(a.seeds)
    data_dir = Path(a.data_dir).resolve()
    if not (data_dir / "train_football.h5").is_file():
        sl.usage_error(f"{data_dir}/train_football.h5 not found: pass --data-dir or set "
                       "$SWEEPLAB_FOOTBALL")
    jobs = [sl.Job(f"{p}-seed{s}", "sweeplab.train",
                   [f"experiment={p}", f"data.dir={data_dir}", f"seed={s}"])
            for s in a.seeds for p in PRESETS]
    if not a.table_only:  # every option the runs take, before the first one
        sl.check_jobs(jobs, sl.common(a.tracking_uri, EXPERIMENT, "check"))
    sl.check_results(a.results)
    study = sl.Study(EXPERIMENT, a.tracking_uri, a.workdir or sl.default_workdir(a.tracking_uri),
                     a.jobs, a.rerun, read_only=a.table_only)
    start = time.perf_counter()
    if not a.table_only:
        print(f"1. the presets, seeds {a.seeds}")
        study.run(jobs)
    print("2. the notebook's own loop (course_reference.py)")
    reference = {"fixed": ref.run(data_dir, 0.86, fixed_masks=True),
                 "fresh": ref.run(data_dir, 0.86, fixed_masks=False)}
    print(f"done in {time.perf_counter() - start:.0f}s")
    sl.write_results(tables(study, a.seeds, reference), a.results, HERE / "README.md",
                     a.write_readme, a.tracking_uri)


def tables(study: sl.Study, seeds: list[int], reference: dict[str, ref.Result]) -> str:
    runs = study.finished()
    out: list[str] = []
    add = out.append
    add("#### The course's three models, seed 3 (the course's initialisation)\n")
    add("| model | source | cost at 0 | cost at 10,000 | cost at 20,000 | train acc. | test acc. |")
    add("| --- | --- | --- | --- | --- | --- | --- |")
    agreement: list[str] = []
    for p in PRESETS:
        c = COURSE[p]
        rows, h = sl.reproduction_rows(study, runs.get(f"{p}-seed3"), LABEL[p], c,
                                       dict(zip(STEPS, c["cost"], strict=True)))
        out.extend(rows)
        if h is None:
            continue
        if p != "course2_dropout":
            agreement.append(f"{LABEL[p]}: " + ", ".join(
                f"{sl.rel_diff(h[i], float(v)):.0e}" for i, v in zip(STEPS, c["cost"], strict=True)
                if i in h))
    for key, label in (("fixed", "the notebook's loop, re-run here (masks fixed by its "
                                 "np.random.seed(1))"),
                       ("fresh", "the notebook's loop with fresh masks each iteration")):
        r = reference[key]
        add(f"| {LABEL['course2_dropout']} | {label} | "
            + " | ".join(repr(r.costs[i]) for i in STEPS)
            + f" | {r.train_accuracy!r} | {r.test_accuracy!r} |")
    add("")
    add("Relative difference of sweeplab's costs from the published ones at 0, 10,000 and "
        "20,000 iterations: " + "; ".join(agreement) + ".\n")

    add(f"#### Spread over initialisations (and dropout masks): seeds "
        f"{', '.join(map(str, seeds))}\n")
    add("Test accuracy on the 200 test positions (one position = 0.005): mean ± sample "
        "standard deviation (range). The last column is the cross-entropy on the training "
        "set after training, without the L2 term and without dropout.\n")
    add("| model | test acc. per seed | test acc. | train acc. | final train cross-entropy |")
    add("| --- | --- | --- | --- | --- |")
    for p in PRESETS:
        got = [runs[f"{p}-seed{s}"] for s in seeds if f"{p}-seed{s}" in runs]
        test = [r.data.metrics["test_accuracy"] for r in got]
        train = [r.data.metrics["train_accuracy"] for r in got]
        cost = [r.data.metrics["final_train_cost"] for r in got]
        add(f"| {LABEL[p]} | {' '.join(f'{v:.3f}' for v in test) or '-'} | "
            f"{sl.fmt_acc(test)} | {sl.fmt_acc(train)} | "
            + (sl.fmt_mean_sd(cost) if cost else "-") + " |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
