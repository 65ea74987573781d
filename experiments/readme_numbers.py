"""README.md's sweep numbers, regenerated rather than copied by hand: `make readme-numbers`.

Runs the README's headline sweep as `make sweep` runs it (``python -m sweeplab.sweep
sweep.n_jobs=1``, the default config) in a temporary folder of its own (its own
``mlflow.db``, Optuna journal, ``data/builtin/`` and ``outputs/``), reads the study back
and rewrites the README's block between ``<!-- sweep-result:begin ... -->`` and
``<!-- sweep-result:end -->``. The begin marker keeps, as JSON, the figures the block was
rendered from, so tests/test_readme_numbers.py can check that the block is exactly what
`render` makes of them (a hand-edited number fails) and that the section quotes no sweep
number outside the block.

Usage (from the repository root):
    make readme-numbers                                   # the 40 trials, ~2 min on 2 cores
    python -m experiments.readme_numbers [--readme FILE] [--keep] [overrides ...]

Hydra overrides (``sweep.n_trials=4 train.epochs=5``, to check the mechanics quickly)
change the sweep the README describes, so they need ``--readme`` with a copy; the block
then names them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BLOCK = "sweep-result"
BEGIN = f"<!-- {BLOCK}:begin (make readme-numbers renders this block from: "
END = f"<!-- {BLOCK}:end -->"
# The section of README.md that describes the headline sweep and holds the block.
SECTION = "### What the default sweep searches, and what it found"
# The study's journal, relative to the folder the sweep runs in (sweeplab.sweep.study).
JOURNAL = Path(".sweeplab") / "optuna.journal"
# Overrides that would move the study or its runs out of the folder this script reads.
REFUSED = ("sweep.storage", "sweep.cluster", "tracking.uri")
WORDS = {"val_cost": "validation cost", "val_accuracy": "validation accuracy",
         "train_cost": "training cost", "train_accuracy": "training accuracy"}


class UsageError(Exception):
    """Bad input or environment: main prints it in one line and exits 2."""


@dataclass(frozen=True)
class TrialSummary:
    """What the README says about one trial: its params, objective value and accuracies."""

    number: int | None
    params: dict[str, Any]
    value: float
    val_accuracy: float | None = None
    test_accuracy: float | None = None


@dataclass(frozen=True)
class SweepResult:
    """The figures the README's block is rendered from (stored with it as JSON)."""

    objective: str
    seconds: float  # wall time of the whole command, start-up included, as `make sweep`
    cores: int
    complete: int
    pruned: int
    failed: int
    best: TrialSummary | None
    worst: TrialSummary | None  # the worst *completed* trial
    overrides: list[str] = field(default_factory=list)
    date: str | None = None  # None: figures copied from an earlier README, not regenerated

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SweepResult:
        d = json.loads(text)
        for key in ("best", "worst"):
            d[key] = TrialSummary(**d[key]) if d[key] is not None else None
        return cls(**d)


# --- from a study to the figures ----------------------------------------------------------

def summarize_study(study: Any, objective: str, seconds: float, cores: int,
                    overrides: list[str], date: str | None) -> SweepResult:
    """The figures of a finished single-objective sweeplab study (an ``optuna.Study``) whose
    objective is the metric `objective`: counts as the sweep's own summary counts them
    (`sweeplab.sweep.study.tally`), the best and the worst completed trial
    (`sweeplab.sweep.report.ranked`)."""
    from sweeplab.names import Metric
    from sweeplab.sweep.report import ranked
    from sweeplab.sweep.study import tally

    if len(study.directions) != 1:
        raise UsageError(f"study {study.study_name!r} has {len(study.directions)} objectives; "
                         "the README's sweep has one")
    t = tally(study)
    done = ranked(study)

    def summary(trial: Any) -> TrialSummary:
        attrs = trial.user_attrs
        return TrialSummary(trial.number, dict(trial.params), float(trial.values[0]),
                            _float(attrs.get(Metric.VAL_ACCURACY)),
                            _float(attrs.get(Metric.TEST_ACCURACY)))

    return SweepResult(objective, round(seconds, 1), cores, t.complete, t.pruned, t.failed,
                       summary(done[0]) if done else None,
                       summary(done[-1]) if len(done) > 1 else None, overrides, date)


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


# --- from the figures to the README's words -----------------------------------------------

def describe(params: dict[str, Any]) -> str:
    """``2 hidden layers of 93 units, lr 0.00275`` (other searched keys as ``key value``)."""
    p = dict(params)
    parts = []
    depth, width = p.pop("model.depth", None), p.pop("model.width", None)
    if depth == 0:
        parts.append("no hidden layer")
    elif depth is not None:
        layers = f"{depth} hidden layer{'s' if depth != 1 else ''}"
        parts.append(f"{layers} of {width} units" if width is not None else layers)
    elif width is not None:
        parts.append(f"{width} units per layer")
    if "optim.lr" in p:
        parts.append(f"lr {p.pop('optim.lr'):.3g}")
    parts += [f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in p.items()]
    return ", ".join(parts)


def _count(n: int, what: str) -> str:
    return f"{n} trial{'s' if n != 1 else ''} {what}"


def render(r: SweepResult) -> str:
    """The block's text (wrapped at 90 columns as the README is): the sweep's time and
    counts, its best trial with the accuracies reported beside it, and its worst completed
    trial."""
    what = WORDS.get(r.objective, r.objective)
    head = f"With `{' '.join(r.overrides)}`, on" if r.overrides else "On"
    counts = [_count(r.complete, "completed"),
              f"{r.pruned} {'was' if r.pruned == 1 else 'were'} pruned"]
    if r.failed:
        counts.append(f"{r.failed} failed")
    when = f", {r.date}" if r.date else ""
    cores = f"{r.cores} core{'s' if r.cores != 1 else ''}"
    text = (f"{head} this machine ({cores}{when}) it took {r.seconds:.0f} s: "
            f"{', '.join(counts[:-1])} and {counts[-1]}.")
    if r.best is None:
        text += " No trial completed."
    else:
        b = r.best
        extra = [f"validation accuracy {b.val_accuracy:.3f}"] if b.val_accuracy is not None \
            and what != "validation accuracy" else []
        if b.test_accuracy is not None:
            extra.append(f"test accuracy {b.test_accuracy:.3f}, reported but never used to "
                         "choose")
        text += (f" The best trial ({describe(b.params)}) reached a {what} of {b.value:.3g}"
                 + (f" ({', '.join(extra)})" if extra else ""))
        w = r.worst
        if w is None:
            text += "."
        else:
            named = f" ({describe(w.params)})" if w.params else ""
            acc = f" (validation accuracy {w.val_accuracy:.2f})" \
                if w.val_accuracy is not None and what != "validation accuracy" else ""
            text += f"; the worst completed trial{named} ended at {w.value:.3g}{acc}."
    return textwrap.fill(text, width=90, break_long_words=False, break_on_hyphens=False)


def block(r: SweepResult) -> str:
    """The whole block, markers included, with its figures in the begin marker."""
    data = r.to_json()
    if "-->" in data:
        raise UsageError("the sweep's figures contain '-->', which would end the marker")
    return f"{BEGIN}{data} -->\n{render(r)}\n{END}"


def find_block(text: str) -> tuple[int, int, SweepResult] | None:
    """(start, end, figures) of the README's block, or None when it has none."""
    m = re.search(re.escape(BEGIN) + r"(\{.*?\}) -->\n.*?" + re.escape(END), text, re.S)
    if m is None:
        return None
    return m.start(), m.end(), SweepResult.from_json(m.group(1))


def replace_block(text: str, r: SweepResult) -> str:
    """`text` with its block rendered anew from `r`; a README without the block is refused
    (the block's place in the prose is the author's choice, not this script's)."""
    found = find_block(text)
    if found is None:
        raise UsageError(f"no {BLOCK} block in the README (a line starting with "
                         f"{BEGIN.split(' (')[0]!r} ... and {END!r})")
    start, end, _ = found
    return text[:start] + block(r) + text[end:]


def section(text: str, heading: str = SECTION) -> str:
    """The part of `text` from `heading` to the next heading."""
    if heading not in text:
        raise UsageError(f"the README has no section {heading!r}")
    rest = text.split(heading, 1)[1]
    m = re.search(r"^#", rest, re.M)
    return rest[:m.start()] if m else rest


NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?:x\d+)?")
# The sentence forms of the block: outside it, anywhere in the README, they would be a
# sweep result quoted by hand.
HEADLINE_FORMS = re.compile(r"\d+ trials? completed|\d+ (?:were|was) pruned|"
                            r"best trial \(\d|worst completed trial")


def stray_numbers(text: str, allowed: set[str]) -> list[str]:
    """Numbers the README quotes by hand where a sweep result belongs: in the headline
    sweep's section outside the block, tables and code (each number not in `allowed`: the
    config's and the dataset's own figures), and anywhere outside the block, the block's
    sentence forms."""
    found = find_block(text)
    outside = text if found is None else text[:found[0]] + text[found[1]:]
    prose = re.sub(r"```.*?```", "", section(outside), flags=re.S)
    prose = "\n".join(line for line in prose.splitlines() if not line.startswith("|"))
    prose = re.sub(r"`[^`]*`", "", prose)
    stray = [n for n in NUMBER.findall(prose) if n not in allowed]
    return stray + HEADLINE_FORMS.findall(outside)


def problems(text: str, allowed: set[str]) -> list[str]:
    """What is wrong with the README `text`'s sweep figures: no block, a block that is not
    what `render` makes of its figures (edited by hand), or sweep numbers quoted outside
    it (`stray_numbers`). Empty when all is well."""
    found = find_block(text)
    if found is None:
        return [f"no {BLOCK} block"]
    start, end, figures = found
    out = []
    if text[start:end] != block(figures):
        out.append(f"the {BLOCK} block is not what its figures render to (edited by hand?); "
                   "make readme-numbers rewrites it")
    out += [f"{n!r} outside the {BLOCK} block" for n in stray_numbers(text, allowed)]
    return out


# --- running the sweep --------------------------------------------------------------------

def run_sweep(folder: Path, overrides: list[str]) -> float:
    """Run the sweep as `make sweep` does, in `folder`; its wall time in seconds."""
    cmd = [sys.executable, "-m", "sweeplab.sweep", "sweep.n_jobs=1", *overrides]
    # The default store is then folder/mlflow.db, as `make sweep` uses ./mlflow.db: a
    # $MLFLOW_TRACKING_URI of the user's must not receive these runs.
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    print(f"running {' '.join(cmd[2:])} in {folder}", flush=True)
    start = time.perf_counter()
    code = subprocess.run(cmd, cwd=folder, env=env).returncode
    seconds = time.perf_counter() - start
    if code == 2:  # the sweep refused its input and said why in one line already
        raise SystemExit(2)
    if code != 0:
        raise SystemExit(f"error: the sweep exited with {code}; the README is unchanged "
                         "(--keep keeps the sweep's folder to look into)")
    return seconds


def cores() -> int:
    """The cores this process may use (a container's share, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_study(folder: Path) -> tuple[Any, str]:
    """The one study in `folder`'s journal, and its objective as its parent run recorded it
    (the param ``sweep.objective`` in `folder`'s MLflow store)."""
    import optuna
    from mlflow.tracking import MlflowClient

    from sweeplab.names import TrialAttr
    from sweeplab.sweep.study import open_storage

    storage = open_storage(f"journal:{folder / JOURNAL}")
    names = optuna.get_all_study_names(storage)
    if len(names) != 1:
        raise UsageError(f"expected one study in {folder / JOURNAL}, found {names}")
    study = optuna.load_study(study_name=names[0], storage=storage)
    parent = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").get_run(
        str(study.user_attrs[TrialAttr.PARENT_RUN_ID]))
    return study, parent.data.params["sweep.objective"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.readme_numbers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the sweep (need --readme)")
    p.add_argument("--readme", type=Path, default=README,
                   help="the README whose block to rewrite (default: the repository's)")
    p.add_argument("--keep", action="store_true",
                   help="keep the sweep's temporary folder (its store and journal)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        readme = a.readme.resolve()
        if a.overrides and readme == README.resolve():
            raise UsageError("overrides change the sweep README.md describes: pass --readme "
                             "with a copy to check the mechanics")
        for o in a.overrides:
            if o.lstrip("+~").startswith(REFUSED):
                raise UsageError(f"{o}: the sweep runs in a folder of its own, which this "
                                 f"script reads; {', '.join(REFUSED)} cannot be overridden")
        try:
            text = readme.read_text()
        except OSError as err:
            raise UsageError(f"cannot read {readme}: {err.strerror}") from None
        replace_block(text, _placeholder())  # refuse a README without the block, before running
        folder = Path(tempfile.mkdtemp(prefix="sweeplab-readme-"))
        try:
            seconds = run_sweep(folder, a.overrides)
            study, objective = load_study(folder)
            result = summarize_study(study, objective, seconds, cores(), a.overrides,
                                     time.strftime("%Y-%m-%d"))
        finally:
            if a.keep:
                print(f"kept: {folder}")
            else:
                shutil.rmtree(folder, ignore_errors=True)
        try:
            readme.write_text(replace_block(text, result))
        except OSError as err:
            raise UsageError(f"cannot write {readme}: {err.strerror}") from None
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the sweep got the Ctrl-C too, and stopped at a safe point
        print("interrupted: the README is unchanged", file=sys.stderr)
        return 130
    look = f"git diff {README.name}" if readme == README.resolve() else str(readme)
    print(f"\n{render(result)}\n\nwritten to the {BLOCK} block of {readme}; look: {look}"
          + ("" if a.keep else "\n(the sweep's store and journal went with its temporary "
             "folder; --keep keeps them)"))
    return 0


def _placeholder() -> SweepResult:
    return SweepResult("val_cost", 0.0, 1, 0, 0, 0, None, None)


if __name__ == "__main__":
    raise SystemExit(main())
