"""Compare two logged runs metric by metric, point by point: is the rerun the same run?

Each metric's history is read back from MLflow (`get_metric_history`) and compared step by
step. "Identical" means bit-identical: every value equal as a float64 (NaN equal to NaN),
the same steps and the same number of points; no tolerance, because on the same machine
with the same BLAS threads a run is a pure function of its config.

A step may hold more than one point (runs logged before the final metrics moved to step
``epochs_run`` have the final ``val_accuracy`` at the last log step, beside the history's).
MLflow orders such points by timestamp, which differs between runs, so the values at one
step are compared as sorted lists, not in logged order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from sweeplab.names import FINAL_METRICS, HISTORY_METRICS

COMPARED = (*HISTORY_METRICS, *FINAL_METRICS)


@dataclass
class MetricDiff:
    """How one metric of the rerun compares with the original."""

    name: str
    points: int  # points compared (steps in both runs, every value at each)
    max_abs: float  # largest |original - rerun| over those points (inf: NaN on one side)
    identical: bool
    step: int | None = None  # where the largest difference is
    original: float | None = None  # the two values there
    rerun: float | None = None
    note: str = ""  # why not identical beyond the values (missing steps or points)

    @property
    def max_rel(self) -> float:
        """|diff| relative to the original value at the largest difference (0 if equal)."""
        if self.max_abs == 0 or self.original is None:
            return 0.0
        return self.max_abs / abs(self.original) if self.original else math.inf


def _by_step(points: Iterable[Metric]) -> dict[int, list[float]]:
    out: dict[int, list[float]] = defaultdict(list)
    for p in points:
        out[p.step].append(float(p.value))
    # NaNs sort last, so that two lists with the same values pair up whatever the order.
    return {s: sorted(v, key=lambda x: (math.isnan(x), x)) for s, v in out.items()}


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def compare_points(name: str, original: Sequence[Metric], rerun: Sequence[Metric]) -> MetricDiff:
    """Compare two histories of metric `name` step by step (see the module docstring)."""
    a, b = _by_step(original), _by_step(rerun)
    diff = MetricDiff(name, 0, 0.0, True)
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    notes = []
    if only_a:
        notes.append(f"{len(only_a)} step(s) only in the original (first {only_a[0]})")
    if only_b:
        notes.append(f"{len(only_b)} step(s) only in the rerun (first {only_b[0]})")
    for step in sorted(a.keys() & b.keys()):
        va, vb = a[step], b[step]
        if len(va) != len(vb):
            notes.append(f"step {step}: {len(va)} point(s) vs {len(vb)}")
        for x, y in zip(va, vb, strict=False):
            diff.points += 1
            if _same(x, y):
                continue
            d = abs(x - y) if math.isfinite(x) and math.isfinite(y) else math.inf
            diff.identical = False
            if d > diff.max_abs or diff.step is None:
                diff.max_abs, diff.step, diff.original, diff.rerun = d, step, x, y
    if notes:
        diff.identical = False
        diff.note = "; ".join(notes)
    return diff


def compare_runs(client: MlflowClient, original_id: str, rerun_id: str,
                 names: Sequence[str] = COMPARED) -> list[MetricDiff]:
    """Compare metrics `names` of two runs; a metric neither run logged is left out
    (no val_* without a validation split, none at all after a divergence)."""
    out = []
    for name in names:
        a = client.get_metric_history(original_id, name)
        b = client.get_metric_history(rerun_id, name)
        if a or b:
            out.append(compare_points(name, a, b))
    return out


def largest(diffs: Sequence[MetricDiff]) -> MetricDiff | None:
    """The metric with the largest difference, or None when all are identical."""
    differing = [d for d in diffs if not d.identical]
    return max(differing, key=lambda d: (d.max_abs, d.name)) if differing else None


def format_table(diffs: Sequence[MetricDiff]) -> str:
    """A small table: metric, points compared, largest |difference|, identical."""
    rows = [f"  {'metric':<18} {'points':>6}  {'max |diff|':>10}  identical"]
    for d in diffs:
        rows.append(f"  {d.name:<18} {d.points:>6}  {d.max_abs:>10.3g}  "
                    f"{'yes' if d.identical else 'no'}" + (f"  ({d.note})" if d.note else ""))
    return "\n".join(rows)


def describe_largest(d: MetricDiff) -> str:
    """One line on where the largest difference is, with both values in full precision."""
    if d.step is None:
        return f"{d.name}: {d.note}"
    return (f"{d.name} at step {d.step}: {d.original!r} vs {d.rerun!r} "
            f"(|diff| {d.max_abs:.3g}, relative {d.max_rel:.3g})"
            + (f"; {d.note}" if d.note else ""))


# -- side by side: what a rerun with overrides changed -------------------------------------

# Shared steps shown at most; more are thinned out evenly, the first and last kept.
MAX_STEPS_SHOWN = 12


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def _change(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return ""
    if _same(a, b):
        return "same"
    return f"{b - a:+.3g}" if math.isfinite(a) and math.isfinite(b) else "differs"


def final_table(client: MlflowClient, original_id: str, rerun_id: str,
                names: Sequence[str] = FINAL_METRICS) -> str:
    """The final metrics of both runs side by side, with the rerun's change; a metric
    neither run has is left out. Each is the latest value MLflow keeps (the point logged
    after the last update); val_accuracy's final value is shown too."""
    a = client.get_run(original_id).data.metrics
    b = client.get_run(rerun_id).data.metrics
    keys = [k for k in (*names, "val_accuracy") if k in a or k in b]
    rows = [f"  {'final metric':<18} {'original':>12} {'rerun':>12}  change"]
    rows += [f"  {k:<18} {_num(a.get(k)):>12} {_num(b.get(k)):>12}  {_change(a.get(k), b.get(k))}"
             for k in dict.fromkeys(keys)]
    return "\n".join(rows)


def steps_table(client: MlflowClient, original_id: str, rerun_id: str,
                names: Sequence[str] = HISTORY_METRICS) -> str:
    """The histories both runs logged, at the steps both logged, original and rerun side by
    side (`MAX_STEPS_SHOWN` steps at most, evenly spread, the first and last kept); "" when
    they share no step."""
    histories = {}
    for name in names:
        a = _by_step(client.get_metric_history(original_id, name))
        b = _by_step(client.get_metric_history(rerun_id, name))
        if a and b:  # logged by both (no val_* when either had no validation split)
            histories[name] = (a, b)
    steps = sorted(set.intersection(*(set(a) & set(b) for a, b in histories.values()))) \
        if histories else []
    if not steps:
        return ""
    shown = steps
    if len(steps) > MAX_STEPS_SHOWN:
        picks = {round(i * (len(steps) - 1) / (MAX_STEPS_SHOWN - 1))
                 for i in range(MAX_STEPS_SHOWN)}
        shown = [steps[i] for i in sorted(picks)]
    head = "  " + f"{'step':>6}" + "".join(f"  {n + ' (orig | rerun)':>27}" for n in histories)
    rows = [head]
    for step in shown:
        # one point per step (runs logged before the final metrics moved to their own step
        # hold two val_accuracy points at the last one: the first in sorted order is shown)
        cells = [f"{_num(a[step][0]):>12} | {_num(b[step][0]):<12}"
                 for a, b in histories.values()]
        rows.append("  " + f"{step:>6}" + "".join(f"  {c:>27}" for c in cells))
    differ = [step for step in steps for a, b in histories.values()
              if not all(_same(x, y) for x, y in zip(a[step], b[step], strict=False))]
    rows.append(f"  {len(shown)} of the {len(steps)} steps both runs logged; "
                + (f"they differ from step {differ[0]} on" if differ
                   else "bit-identical at every one"))
    return "\n".join(rows)


def config_difference(client: MlflowClient, original_id: str, rerun_id: str) -> list[str]:
    """``key: original -> rerun`` for each logged param (the flattened config) that differs,
    sorted by key; a key one run lacks shows as "(none)"."""
    a = client.get_run(original_id).data.params
    b = client.get_run(rerun_id).data.params
    return [f"{k}: {a.get(k, '(none)')} -> {b.get(k, '(none)')}"
            for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
