"""Statistics over a configuration's replicates (scipy.stats): mean, standard deviation and
a Student t interval; a paired t-test of two configurations over their shared seeds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95  # of every confidence interval


@dataclass(frozen=True)
class Stats:
    """Mean, standard deviation (n - 1) and 95% t interval of n values."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    def text(self) -> str:
        """``0.0841 ± 0.0123`` (the half-width of the interval)."""
        if self.n == 0:
            return "-"
        if math.isnan(self.ci_low):
            return f"{self.mean:.4g}"
        return f"{self.mean:.4g} ± {(self.ci_high - self.ci_low) / 2:.2g}"


def describe(values: Sequence[float]) -> Stats:
    """Stats of `values` (non-finite ones left out): the interval is Student's t, from
    scipy.stats; with fewer than two values there is none (nan)."""
    from scipy import stats

    a = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    n = len(a)
    if n == 0:
        return Stats(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(a.mean())
    if n == 1:
        return Stats(1, mean, math.nan, math.nan, math.nan)
    std = float(a.std(ddof=1))
    if std == 0:  # t.interval's scale would be 0: the interval is the point
        return Stats(n, mean, 0.0, mean, mean)
    lo, hi = stats.t.interval(LEVEL, n - 1, loc=mean, scale=stats.sem(a))
    return Stats(n, mean, std, float(lo), float(hi))


@dataclass(frozen=True)
class Paired:
    """A paired test of a configuration against another over their shared seeds."""

    n: int  # shared seeds with a value for both
    p_value: float
    mean_diff: float  # this one's objective minus the other's
    ci_low: float  # the mean difference's 95% t interval (nan where there is none)
    ci_high: float
    test: str = "paired t-test"  # the test that gave p_value, named in every report


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Paired:
    """scipy.stats.ttest_rel of `a` against `b` (replicate -> objective) over the seeds
    both have a finite value for; p is nan below two shared seeds. Differences without
    spread (every seed the same, as accuracies on a small validation set often are) leave
    the t statistic undefined: the sign test (scipy.stats.binomtest) judges them instead,
    so that two seeds both one image apart do not read as p = 0."""
    from scipy import stats

    shared = sorted(k for k in a.keys() & b.keys()
                    if math.isfinite(a[k]) and math.isfinite(b[k]))
    x = np.array([a[k] for k in shared])
    y = np.array([b[k] for k in shared])
    d = x - y
    n = len(shared)
    if n < 2:
        diff = float(d.mean()) if n else math.nan
        return Paired(n, math.nan, diff, math.nan, math.nan)
    # equal to rounding: 0.7 - 0.6 and 0.8 - 0.7 differ in their last bits
    if np.allclose(d, d[0], rtol=1e-9, atol=1e-12):
        diff = float(d.mean())
        if abs(diff) <= 1e-12:
            return Paired(n, 1.0, 0.0, 0.0, 0.0, "identical on every seed")
        sign = stats.binomtest(n, n, 0.5)  # every difference has the same sign
        return Paired(n, float(sign.pvalue), diff, math.nan, math.nan, "sign test")
    res = stats.ttest_rel(x, y)
    ci = res.confidence_interval(LEVEL)
    return Paired(n, float(res.pvalue), float(d.mean()), float(ci.low), float(ci.high))
