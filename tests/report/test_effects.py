"""A variant judged against seed noise (`pipeline.report.effects`), on hand-computed cases: the
summary over seeds, Welch's interval (against scipy's own), the one-run prediction intervals, the
verdicts, the paper's difference, the sign agreement and the ratios."""
from __future__ import annotations

import math

import pytest
from scipy import stats

from pipeline.report import effects


def test_summary_is_mean_sample_std_and_count():
    s = effects.summarize([1.0, 2.0, 4.0, math.nan, None])
    assert (s.mean, s.n) == (pytest.approx(7 / 3), 3)
    assert s.std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    one = effects.summarize([5.0])
    assert one.mean == 5.0 and math.isnan(one.std) and one.n == 1
    none = effects.summarize([])
    assert math.isnan(none.mean) and none.n == 0


def test_welch_interval_matches_scipy():
    variant, base = [7.9, 8.3, 8.1, 8.6], [7.0, 7.4, 7.1]
    d = effects.difference(variant, base)
    ci = stats.ttest_ind(variant, base, equal_var=False).confidence_interval(0.95)
    assert d.method == effects.WELCH and (d.n, d.n_base) == (4, 3)
    assert d.diff == pytest.approx(sum(variant) / 4 - sum(base) / 3)
    assert (d.low, d.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert d.verdict == effects.BETTER  # the whole interval above 0
    # by hand: the Welch-Satterthwaite degrees of freedom
    a, b = stats.tstd(variant) ** 2 / 4, stats.tstd(base) ** 2 / 3
    df = (a + b) ** 2 / (a ** 2 / 3 + b ** 2 / 2)
    assert d.high - d.diff == pytest.approx(stats.t.ppf(0.975, df) * math.sqrt(a + b))


def test_one_run_against_base_spread_is_a_prediction_interval():
    base = [1.0, 1.5, 2.0]  # mean 1.5, s = 0.5
    d = effects.difference([2.0], base)
    half = stats.t.ppf(0.975, 2) * 0.5 * math.sqrt(1 + 1 / 3)  # 4.303 * 0.5 * 1.155 = 2.484
    assert d.method == effects.BASE_SPREAD and d.diff == pytest.approx(0.5)
    assert (d.low, d.high) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert half == pytest.approx(2.4841, abs=1e-4)
    assert d.verdict == effects.NOISE
    worse = effects.difference([-2.0], base)
    assert worse.verdict == effects.WORSE and worse.high == pytest.approx(-3.5 + half)


def test_one_base_run_uses_the_variant_spread():
    d = effects.difference([3.0, 3.5, 4.0], [1.0])
    half = stats.t.ppf(0.975, 2) * 0.5 * math.sqrt(1 + 1 / 3)
    assert d.method == effects.VARIANT_SPREAD and d.diff == pytest.approx(2.5)
    assert d.low == pytest.approx(2.5 - half) and d.verdict == effects.BETTER


def test_one_run_each_has_no_noise_estimate():
    d = effects.difference([2.0], [1.0])
    assert d.diff == pytest.approx(1.0) and math.isnan(d.low) and math.isnan(d.high)
    assert d.method == effects.NO_METHOD and d.verdict == effects.NO_ESTIMATE
    missing = effects.difference([], [1.0, 2.0])
    assert math.isnan(missing.diff) and missing.verdict == effects.NO_DATA and missing.n == 0


def test_no_spread_at_all_gives_a_point_interval():
    d = effects.difference([2.0, 2.0], [1.0, 1.0])
    assert d.low == d.high == pytest.approx(1.0) and d.verdict == effects.BETTER


def test_verdicts():
    assert effects.verdict(0.1, 0.5) == effects.BETTER
    assert effects.verdict(-0.5, -0.1) == effects.WORSE
    assert effects.verdict(-0.1, 0.5) == effects.NOISE
    assert effects.verdict(math.nan, math.nan) == effects.NO_ESTIMATE


def test_paper_difference_sign_and_ratio():
    base = {"avg_usdr": 7.1, "vocals_usdr": 7.7, "kwh_codecarbon": 127.0}
    large = {"avg_usdr": 8.2, "vocals_usdr": 9.2, "kwh_codecarbon": 230.0}
    same = {"avg_usdr": 7.1}
    assert effects.paper_difference(large, base, "avg_usdr") == pytest.approx(1.1)
    assert effects.paper_difference(large, base, "vocals_usdr") == pytest.approx(1.5)
    assert math.isnan(effects.paper_difference(None, base, "avg_usdr"))
    assert math.isnan(effects.paper_difference(same, base, "vocals_usdr"))  # the paper has no figure
    assert effects.sign_agrees(0.4, 1.1) == "yes" and effects.sign_agrees(-0.4, 1.1) == "no"
    assert effects.sign_agrees(0.4, effects.paper_difference(same, base, "avg_usdr")) == "-"  # the paper's is 0
    assert effects.sign_agrees(math.nan, 1.1) == "-" and effects.sign_agrees(0.4, math.nan) == "-"
    assert effects.ratio(large["kwh_codecarbon"], base["kwh_codecarbon"]) == pytest.approx(230 / 127)
    assert math.isnan(effects.ratio(1.0, 0.0)) and math.isnan(effects.ratio(None, 1.0))


@pytest.mark.parametrize("runs", [1, 3])
def test_the_smallest_call_is_the_half_width_of_a_variant_spread_like_base(runs):
    base = [1.0, 1.5, 2.0]  # s = 0.5
    smallest = effects.smallest_call(effects.summarize(base), runs)
    if runs == 1:  # the prediction interval of one new run
        assert smallest == pytest.approx(stats.t.ppf(0.975, 2) * 0.5 * math.sqrt(1 + 1 / 3))
    else:  # Welch with both sides spread alike: df = 4
        assert smallest == pytest.approx(stats.t.ppf(0.975, 4) * 0.5 * math.sqrt(2 / 3))
    # a variant that far from base is just called: its interval touches 0
    d = effects.difference([x + smallest + 1e-9 for x in base][:runs] if runs > 1 else [1.5 + smallest + 1e-9], base)
    assert d.verdict == effects.BETTER and d.low == pytest.approx(0, abs=1e-6)
    assert math.isnan(effects.smallest_call(effects.summarize([1.0]), 1))  # one run each: no interval
