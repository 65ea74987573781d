"""What a sweep's confirmation replicates say, and how it is told: per configuration the
statistics of its replicates, the champion (best mean) and its paired tests, then the
parent run's metrics and tags, the confirmed table, ``confirm.md``, the registered model's
description and the strip plot ``plots/confirm.png``."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from mlflow.entities import Metric as MetricPoint
from mlflow.entities import RunTag

from sweeplab.names import CONFIRM_STATS, Metric, Tag, confirm_metric
from sweeplab.sweep.stats import Paired, Stats, describe, paired
from sweeplab.sweep.worker import short

if TYPE_CHECKING:
    from sweeplab.sweep.confirm import Candidate

ALPHA = 0.05  # a paired p-value below this: the champion is significantly better


@dataclass
class Confirmed:
    """A configuration's replicates and their statistics."""

    trial: int
    params: dict[str, Any]
    hash: str
    objective: dict[int, float] = field(default_factory=dict)  # replicate -> value
    val_accuracy: dict[int, float] = field(default_factory=dict)
    test_accuracy: dict[int, float] = field(default_factory=dict)
    run_ids: dict[int, str] = field(default_factory=dict)
    stats: Stats | None = None
    val_stats: Stats | None = None
    vs_champion: Paired | None = None  # None for the champion itself

    @property
    def failed(self) -> int:
        """Replicates that ran and have no objective value: diverged or did not learn."""
        return len(self.run_ids) - len(self.objective)


@dataclass
class Confirmation:
    """The confirmation stage's outcome: configurations best mean first."""

    objective: str
    direction: str
    seeds: list[int]
    configs: list[Confirmed]
    test: Stats | None = None  # the champion's test accuracy over its replicates
    best_run_id: str | None = None  # the champion's replicate with the best objective

    @property
    def champion(self) -> Confirmed | None:
        return self.configs[0] if self.configs and self.configs[0].stats and \
            self.configs[0].stats.n else None

    def verdict(self) -> str:
        """One plain sentence: is the champion better than the runner-up?"""
        c = self.champion
        if c is None:
            return "no configuration completed a replicate"
        if len(self.configs) < 2 or self.configs[1].vs_champion is None:
            return f"trial {c.trial} is the only configuration confirmed"
        r, p = self.configs[1], self.configs[1].vs_champion
        if math.isnan(p.p_value):
            return (f"trial {c.trial} cannot be compared with trial {r.trial}: {p.n} shared "
                    f"seed(s) with a value for both")
        interval = "" if math.isnan(p.ci_low) else f" [{p.ci_low:+.4g}, {p.ci_high:+.4g}]"
        how = (f"{p.test} over {p.n} seeds: p={p.p_value:.3g}, mean difference in "
               f"{self.objective} {p.mean_diff:+.4g}{interval}")
        if p.p_value >= ALPHA:
            return f"trial {c.trial} is not significantly better than trial {r.trial} ({how})"
        if self.champion_ahead(p):
            return f"trial {c.trial} is significantly better than trial {r.trial} ({how})"
        # only a failed replicate can put a configuration that is worse seed for seed first
        return (f"trial {c.trial} ranks first only because {r.failed} of trial {r.trial}'s "
                f"replicates failed; on their shared seeds trial {r.trial} is significantly "
                f"better ({how})")

    def champion_ahead(self, p: Paired) -> bool:
        """Whether the champion's side of the paired difference `p` is the better one."""
        return p.mean_diff < 0 if self.direction == "minimize" else p.mean_diff > 0


def analyse(cands: Sequence[Candidate], runs: Mapping[tuple[str, int], Any], objective: str,
            direction: str, seeds: Sequence[int]) -> Confirmation:
    """The statistics of the replicates `runs` of `cands`: per configuration, champion by
    best mean, paired tests against it, and the champion's test accuracy."""
    configs = []
    for c in cands:
        conf = Confirmed(c.trial.number, dict(c.trial.params), c.hash)
        for i in range(1, len(seeds) + 1):
            r = runs.get((c.hash, i))
            if r is None:
                continue
            m = r.data.metrics
            conf.run_ids[i] = r.info.run_id
            # Metric.OBJECTIVE is logged for a replicate that completed (not diverged)
            if Metric.OBJECTIVE in m:
                conf.objective[i] = float(m[Metric.OBJECTIVE])
            for key, into in ((Metric.VAL_ACCURACY, conf.val_accuracy),
                              (Metric.TEST_ACCURACY, conf.test_accuracy)):
                if key in m:
                    into[i] = float(m[key])
        conf.stats = describe(list(conf.objective.values()))
        conf.val_stats = describe(list(conf.val_accuracy.values()))
        configs.append(conf)
    sign = -1.0 if direction == "maximize" else 1.0
    # best mean first, among the configurations none of whose replicates failed (diverged,
    # did not learn): a failure counts against a configuration rather than dropping out
    # of its mean; one with no completed replicate last
    configs.sort(key=lambda k: (k.stats is None or k.stats.n == 0, k.failed > 0,
                                sign * (k.stats.mean if k.stats and k.stats.n else 0.0)))
    out = Confirmation(objective, direction, list(seeds), configs)
    champ = out.champion
    if champ is None:
        return out
    for other in configs[1:]:
        # the champion minus the other: negative is better for a cost
        other.vs_champion = paired(champ.objective, other.objective)
    out.test = describe(list(champ.test_accuracy.values()))
    best = min(champ.objective, key=lambda i: sign * champ.objective[i])
    out.best_run_id = champ.run_ids[best]
    return out


def parent_metrics(c: Confirmation) -> tuple[list[MetricPoint], list[RunTag]]:
    """The parent run's confirmation metrics and tags (names: sweeplab.names)."""
    now = int(time.time() * 1000)
    points: dict[str, float] = {}
    for k in c.configs:
        for metric, s in ((c.objective, k.stats), (Metric.VAL_ACCURACY, k.val_stats)):
            if s is None or s.n == 0:
                continue
            for stat in CONFIRM_STATS:
                points[confirm_metric(k.trial, stat, metric)] = getattr(s, stat)
        points[confirm_metric(k.trial, "n")] = float(k.stats.n if k.stats else 0)
        if k.vs_champion is not None:
            points[confirm_metric(k.trial, "p_value")] = k.vs_champion.p_value
    tags = [RunTag(Tag.CONFIRM_VERDICT, c.verdict()[:5000]),
            RunTag(Tag.CONFIRM_TRIALS, ",".join(str(k.trial) for k in c.configs)),
            RunTag(Tag.CONFIRM_SEEDS, ",".join(map(str, c.seeds)))]
    champ = c.champion
    if champ is not None:
        tags.append(RunTag(Tag.CONFIRM_CHAMPION, str(champ.trial)))
        points[confirm_metric(None, "champion_trial")] = float(champ.trial)
        if len(c.configs) > 1 and c.configs[1].vs_champion is not None:
            p = c.configs[1].vs_champion
            points.update({confirm_metric(None, "p_value"): p.p_value,
                           confirm_metric(None, "mean_diff"): p.mean_diff,
                           confirm_metric(None, "mean_diff_ci_low"): p.ci_low,
                           confirm_metric(None, "mean_diff_ci_high"): p.ci_high})
        if c.test is not None and c.test.n:
            for stat in CONFIRM_STATS:
                points[confirm_metric(None, stat, Metric.TEST_ACCURACY)] = getattr(c.test, stat)
    # MLflow stores NaN; an interval that does not exist (one replicate) is left out instead
    metrics = [MetricPoint(k, float(v), now, 0) for k, v in points.items() if math.isfinite(v)]
    return metrics, tags


def table(c: Confirmation) -> list[str]:
    """The confirmed table, one line per configuration (the terminal's and confirm.md's)."""
    # val_accuracy beside the objective, unless it is the objective
    val = c.objective != Metric.VAL_ACCURACY
    head = (f"| trial | config | {c.objective} mean ± 95% CI | "
            + ("val_accuracy mean ± 95% CI | " if val else "") + "n | p vs best | config hash |")
    lines = [head, "|---|---|---|" + ("---|" if val else "") + "---|---|---|"]
    for k in c.configs:
        p = "best" if k.vs_champion is None else (
            "-" if math.isnan(k.vs_champion.p_value) else f"{k.vs_champion.p_value:.3g}")
        vals = f"{k.val_stats.text() if k.val_stats else '-'} | " if val else ""
        lines.append(f"| {k.trial} | {short(k.params)} | {k.stats.text() if k.stats else '-'} "
                     f"| {vals}{k.stats.n if k.stats else 0} | {p} | {k.hash} |")
    return lines


def report_md(c: Confirmation, test_line: str) -> str:
    """The parent run's ``confirm.md``."""
    return "\n".join([
        f"# Confirmation: the top {len(c.configs)} configurations, {len(c.seeds)} seeds each",
        "", f"Run seeds: {', '.join(map(str, c.seeds))} (each draws the initialisation, the "
        "validation split, the mini-batch order and dropout). Objective: "
        f"{c.objective} ({c.direction}). Best mean first.", "", *table(c), "",
        f"**Verdict**: {c.verdict()}.", "", test_line, ""])


def test_line(c: Confirmation) -> str:
    """The champion's test accuracy over its replicates, said once the champion is chosen."""
    champ = c.champion
    if champ is None or c.test is None or c.test.n == 0:
        return "No test accuracy: no champion."
    return (f"Test accuracy of the champion (trial {champ.trial}), looked at only after it was "
            f"chosen: {c.test.text()} over {c.test.n} replicates (mean ± 95% CI).")


def description(c: Confirmation, study: str, parent_link: str) -> str:
    """The registered model version's description, for the champion's best replicate;
    `parent_link` names the sweep's parent run (`tracking.links.run_link`)."""
    champ = c.champion
    assert champ is not None and champ.stats is not None
    return (f"The confirmed champion of Optuna study `{study}`: trial {champ.trial} "
            f"({short(champ.params)}, config {champ.hash}), {c.objective} "
            f"{champ.stats.text()} (mean ± 95% CI over {champ.stats.n} seeds); "
            f"{c.verdict()}. {test_line(c)} This version is its replicate run "
            f"{c.best_run_id} (the best of its seeds); the sweep's parent run: "
            f"{parent_link}. Registered by sweeplab.")


def log_plot(client: Any, parent_run_id: str, c: Confirmation) -> None:
    """A strip plot of the replicates' objective per configuration, with the mean and its
    95% interval, as the parent's ``plots/confirm.png``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.2 + 1.1 * max(2, len(c.configs)), 4), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # jitter only: the same picture every time
    for x, k in enumerate(c.configs):
        ys = list(k.objective.values())
        ax.scatter(x + rng.uniform(-0.12, 0.12, len(ys)), ys, s=18, alpha=0.7)
        if k.stats is not None and k.stats.n >= 2 and not math.isnan(k.stats.ci_low):
            ax.errorbar(x + 0.25, k.stats.mean, color="black", capsize=4, fmt="o",
                        yerr=[[k.stats.mean - k.stats.ci_low], [k.stats.ci_high - k.stats.mean]])
    ax.set_xticks(range(len(c.configs)), [f"trial {k.trial}" for k in c.configs])
    ax.set_ylabel(c.objective)
    ax.set_title(f"{len(c.seeds)} seeds per configuration; mean and 95% CI in black")
    client.log_figure(parent_run_id, fig, "plots/confirm.png")
