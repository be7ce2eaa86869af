"""A variant judged against seed noise: pure numbers, no I/O.

Each variant trains with one or more seeds; its figure is the mean over its runs, and its effect
the difference of that mean from base's, with a 95 % interval from the spread between seeds:

- both with >= 2 runs: Welch's t interval (Welch-Satterthwaite degrees of freedom);
- one side with one run, the other with >= 2: that other side's spread, diff ± t(0.975, n - 1) ·
  s · sqrt(1 + 1/n), the prediction interval of one new run;
- one run each: no interval.

The verdict says where the interval lies: above 0 ("better"), below ("worse"), across 0 ("within
seed noise"), or that there is none ("no noise estimate"). Beside it, the paper's own difference
from its base, whether the signs agree, and ratios (the kWh ratio to base).
Imports numpy and scipy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

CONFIDENCE = 0.95
WELCH, BASE_SPREAD, VARIANT_SPREAD, NO_METHOD = "Welch", "base's spread", "variant's spread", "none"
BETTER, WORSE, NOISE, NO_ESTIMATE, NO_DATA = "better", "worse", "within seed noise", "no noise estimate", "no data"
VERDICTS = (BETTER, WORSE, NOISE, NO_ESTIMATE)
INTERVALS_TEXT = (f"{CONFIDENCE:.0%} intervals: Welch's t interval where the variant and base both have two runs or "
                  "more; where one side has a single run, the prediction interval of one new run from the other "
                  "side's spread, diff ± t(0.975, n - 1) · s · sqrt(1 + 1/n); none where both have one run")


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (ddof=1; NaN for one value) and count of the finite values."""

    mean: float
    std: float
    n: int


def summarize(values: Iterable[float]) -> Summary:
    import numpy as np

    kept = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if kept.size == 0:
        return Summary(math.nan, math.nan, 0)
    std = float(kept.std(ddof=1)) if kept.size > 1 else math.nan
    return Summary(float(kept.mean()), std, int(kept.size))


@dataclass(frozen=True)
class Difference:
    """mean(variant) - mean(base), its interval, how the interval was computed, and the verdict."""

    diff: float
    low: float
    high: float
    method: str
    verdict: str
    n: int  # the variant's runs
    n_base: int


def _t(df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))


def difference(variant: Iterable[float], base: Iterable[float]) -> Difference:
    """The difference of the variant's mean from base's over their runs (finite values only)."""
    v, b = summarize(variant), summarize(base)
    diff = v.mean - b.mean
    if v.n == 0 or b.n == 0:
        return Difference(math.nan, math.nan, math.nan, NO_METHOD, NO_DATA, v.n, b.n)
    half, method = half_width(v, b)
    if method == NO_METHOD:
        return Difference(diff, math.nan, math.nan, NO_METHOD, NO_ESTIMATE, v.n, b.n)
    low, high = diff - half, diff + half
    return Difference(diff, low, high, method, verdict(low, high), v.n, b.n)


def half_width(v: Summary, b: Summary) -> tuple[float, str]:
    """The half-width of the interval of mean(v) - mean(b), and its method (NaN, "none" without one)."""
    if v.n >= 2 and b.n >= 2:
        a, c = v.std ** 2 / v.n, b.std ** 2 / b.n
        se = math.sqrt(a + c)
        if se == 0:  # no spread at all: the interval is the point
            return 0.0, WELCH
        df = (a + c) ** 2 / (a ** 2 / (v.n - 1) + c ** 2 / (b.n - 1))
        return _t(df) * se, WELCH
    if b.n >= 2 or v.n >= 2:
        spread, method = (b, BASE_SPREAD) if b.n >= 2 else (v, VARIANT_SPREAD)
        return _t(spread.n - 1) * spread.std * math.sqrt(1 + 1 / spread.n), method
    return math.nan, NO_METHOD


def smallest_call(base: Summary, runs: int) -> float:
    """The smallest difference from base that a variant of `runs` runs, spread like base's, can be
    called better or worse by: its interval's half-width (NaN where there is no interval)."""
    return half_width(Summary(math.nan, base.std if runs >= 2 else math.nan, runs), base)[0]


def verdict(low: float, high: float) -> str:
    """Where an interval lies against 0."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return NO_ESTIMATE
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return NOISE


def paper_difference(variant_row: dict | None, base_row: dict | None, column: str) -> float:
    """The paper's difference from its base on one published column; NaN where either is missing."""
    if not variant_row or not base_row:
        return math.nan
    return _float(variant_row.get(column)) - _float(base_row.get(column))


def sign_agrees(ours: float, paper: float, tolerance: float = 1e-9) -> str:
    """"yes" when our difference has the paper's sign, "no" when not, "-" where the paper's is 0 or
    missing (or ours is missing)."""
    if not (math.isfinite(ours) and math.isfinite(paper)) or abs(paper) <= tolerance:
        return "-"
    return "yes" if ours * paper > 0 else "no"


def ratio(value: float, reference: float) -> float:
    """value / reference; NaN where either is missing or the reference is not positive."""
    value, reference = _float(value), _float(reference)
    if not (math.isfinite(value) and math.isfinite(reference)) or reference <= 0:
        return math.nan
    return value / reference


def _float(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out
