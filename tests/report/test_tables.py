"""The study's tables on studies made in memory: the effects against seed noise (hand-computed
numbers), the absolute comparison only at the paper's scale, the recipes, the forecasts, and every
figure of a study of 26 variants at one column's width."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from pipeline.names import run_key
from pipeline.report import comparison, effects, results
from pipeline.report.comparison import OWN_RECIPE, effects_summary, effects_table, recipes_table, variant_effects
from pipeline.report.figures import FIGURES, make_figures
from pipeline.report.inputs import Stopping, Study
from pipeline.report.ledger import TIMELINE_COLUMNS
from pipeline.report.plotting import COLUMN_WIDTH_IN, DPI
from pipeline.report.render import to_csv, to_latex, to_markdown
from pipeline.report.results import forecast_table, learning_table, study_table
from tests.report.helpers import (BASE_SHIFTS, TARGETS, eval_metrics, published_rows, read_csv, synthetic_study,
                                  train_metrics)

# each variant's runs: validation shift over base's figure and kWh CodeCarbon, per seed
RUNS = {"base": [(s, 0.02 * k) for s, k in zip(BASE_SHIFTS, (0.9, 1.0, 1.1))],  # avg 1.2, 1.45, 1.7
        "large": [(1.0, 0.04)], "tac_prelu": [(2.0, 0.03), (2.5, 0.03)], "umx": []}


def hand_study(paper_scale: bool = False) -> Study:
    runs = {v: tuple(run_key(v, 42 + k) for k in range(max(len(r), 1))) for v, r in RUNS.items()}
    train, evals = {}, {}
    for v, figures in RUNS.items():
        for k, (shift, kwh) in enumerate(figures):
            run = run_key(v, 42 + k)
            train[run] = train_metrics(v, 0, run, (kwh, 1.25 * kwh), 0.003, 42 + k, shift)
            evals[run] = eval_metrics(run, 2.0 + shift, run)
    published = {v: r for v, r in published_rows().items() if v in RUNS}
    changes = {"base": (), "large": ("model.bsrnn.n 8 -> 16", "model.bsrnn.r 2 -> 3"),
               "tac_prelu": ("model.bsrnn.stereo mono -> tac",), "umx": ("model.arch bsrnn -> umx",)}
    arch = {"base": "bsrnn", "large": "bsrnn", "tac_prelu": "bsrnn", "umx": "umx"}
    return Study(list(RUNS), TARGETS, runs, arch, changes, train, evals, {}, published, [], {}, paper_scale,
                 "" if paper_scale else "data: synthetic, not MUSDB18-HQ")


def test_effects_against_seed_noise():
    study = hand_study()
    rows = {r["variant"]: r for r in variant_effects(study)}
    assert list(rows) == ["large", "tac_prelu", "umx"]  # every variant but base, params order
    half = stats.t.ppf(0.975, 2) * 0.25 * math.sqrt(1 + 1 / 3)  # base: 3 runs, s = 0.25
    large = rows["large"]
    assert large["n"] == 1 and large["n_base"] == 3 and large["method"] == effects.BASE_SPREAD
    assert large["delta_avg"] == pytest.approx(1.0) and large["delta_vocals"] == pytest.approx(1.0)
    assert (large["low"], large["high"]) == (pytest.approx(1.0 - half), pytest.approx(1.0 + half))
    assert large["verdict"] == effects.NOISE  # 1 dB from one run is within base's seed noise
    assert large["paper_delta_avg"] == pytest.approx(8.2 - 7.1) and large["sign_avg"] == "yes"
    assert large["paper_delta_vocals"] == pytest.approx(9.2 - 7.7)
    assert large["ratio_cc"] == pytest.approx(2.0) and large["ratio_ga"] == pytest.approx(2.0)
    assert large["paper_ratio_cc"] == pytest.approx(230 / 127)
    tac = rows["tac_prelu"]
    ci = stats.ttest_ind([1.45 + 2.0, 1.45 + 2.5], [1.2, 1.45, 1.7], equal_var=False).confidence_interval()
    assert tac["method"] == effects.WELCH and tac["delta_avg"] == pytest.approx(2.25)
    assert (tac["low"], tac["high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert tac["verdict"] == effects.BETTER and tac["sign_avg"] == "yes"  # the paper: 7.3 vs 7.1
    assert tac["test_delta"] == pytest.approx(2.25) and tac["test_method"] == effects.WELCH
    umx = rows["umx"]
    assert umx["verdict"] == "not run" and math.isnan(umx["delta_avg"]) and umx["sign_avg"] == "-"
    assert effects_summary(list(rows.values())) == {
        effects.BETTER: 1, effects.WORSE: 0, effects.NOISE: 1, effects.NO_ESTIMATE: 0, "variants": 3, "run": 2,
        "sign_agrees": 2, "sign_compared": 2}


def test_effects_table_in_every_format(tmp_path):
    table = effects_table(hand_study())
    keys = [c.key for c in table.columns]
    assert keys[:2] == ["variant", "n"] and {"low", "high", "method", "verdict", "sign_avg", "ratio_cc",
                                             "ratio_ga", "paper_ratio_cc", "test_delta", "test_verdict"} <= set(keys)
    assert "Welch" in table.caption and "prediction interval" in table.caption
    assert "Not at the paper's scale" in table.caption  # the study is compared by its relative effects
    md = to_markdown(table)
    assert "| large | 1 | +1.00 |" in md and "within seed noise" in md and "base's spread" in md
    to_csv(table, tmp_path / "effects.csv")
    rows = {r["variant"]: r for r in read_csv(tmp_path / "effects.csv")}
    assert rows["tac_prelu"]["test_low"] != "" and rows["large"]["verdict_vocals"] == effects.NOISE
    assert "\\begin{tabular}" in to_latex(table)


def test_absolute_comparison_only_at_the_paper_scale():
    off, on = study_table(hand_study()), study_table(hand_study(paper_scale=True))
    assert not [c.key for c in off.columns if c.key.startswith("diff_")]
    assert "relative effects" in off.caption and "data: synthetic" in off.caption
    assert {"diff_valid_usdr_avg", "diff_params_m", "diff_kwh_codecarbon", "diff_kwh_green_algorithms"} <= {
        c.key for c in on.columns}
    assert "ours - published" in on.caption and "relative effects" not in on.caption
    base = next(r for r in on.rows if r["variant"] == "base")
    assert base["diff_valid_usdr_avg"] == pytest.approx(1.45 - 7.1)
    assert base["seeds"] == 3 and base["valid_usdr_avg_std"] == pytest.approx(0.25)
    assert base["kwh_codecarbon"] == pytest.approx(0.02)
    assert "relative effects" not in effects_table(hand_study(paper_scale=True)).caption


def test_recipes_in_plain_words():
    rows = {r["variant"]: r for r in recipes_table(hand_study()).rows}
    assert rows["base"]["changes"] == "—" and rows["base"]["paper"] == "Base model: N=64, R=8"
    assert rows["large"]["changes"] == "model.bsrnn.n 8 -> 16; model.bsrnn.r 2 -> 3"
    assert rows["large"]["paper"] == "Large model: N=128, R=12" and rows["large"]["family"] == "BSRNN"
    assert rows["umx"]["paper"] == OWN_RECIPE["umx"] and rows["umx"]["family"] == "Open-Unmix"


def test_forecast_table():
    table = forecast_table(hand_study())
    rows = {r["run"]: r for r in table.rows}
    assert list(rows) == [run_key("base", 42 + k) for k in range(3)] + ["large-seed42", "tac_prelu-seed42",
                                                                          "tac_prelu-seed43"]
    base = rows["base-seed42"]  # 4 epochs of 600 s; one forecast epoch at 1.25 x the mean: 187.5 s
    assert base["forecast_epochs_range"] == "3–8" and base["time_measured"] == pytest.approx(600.0)
    assert (base["time_min"], base["time_max"]) == (pytest.approx(562.5), pytest.approx(1500.0))
    assert base["time_error_pct"] == pytest.approx(25.0) and base["time_within"] == "yes"
    assert base["cc_max"] == pytest.approx(8 * 1.25 * 0.018 / 4) and base["cc_within"] == "yes"
    md = to_markdown(table)
    assert "| base-seed42 | 4 | 3–8 | 0:09:22 | 0:25:00 | 0:10:00 | +25.0 | yes |" in md


def test_learning_check_on_the_means_over_seeds():
    rows = {r["variant"]: r for r in learning_table(hand_study()).rows}
    assert rows["base"]["n"] == 3 and rows["base"]["margin_vocals"] == pytest.approx(1.0)  # 1.0 - max(0, -3)
    assert rows["tac_prelu"]["margin_other"] == pytest.approx(1.9 + 2.25 - 0.4)
    assert "umx" not in rows  # not run


def test_every_figure_of_a_large_study(tmp_path):
    from matplotlib.image import imread

    names = ["base", *(f"variant_{i:02d}" for i in range(22)), "umx", "umx_hidden", "umx_batch"]
    published = published_rows()
    published = {name: row for name, row in zip(names, published.values())}  # 21 published rows
    study = synthetic_study(names, {"base": 3, "variant_03": 3, "variant_07": 2}, published,
                            arch={"umx": "umx", "umx_hidden": "umx", "umx_batch": "umx"})
    out = make_figures(study, pd.DataFrame(columns=["status", "start_time", "end_time"]),
                       pd.DataFrame(columns=TIMELINE_COLUMNS), tmp_path)
    assert sorted(out) == sorted(FIGURES) and len(names) == 26
    for name, path in out.items():
        image = imread(path)
        assert image.shape[1] == round(COLUMN_WIDTH_IN * DPI), name
        assert name == "cumulative_energy" or image[..., :3].std() > 0.05, name  # no store: "no runs"


def test_the_test_table_names_the_data_its_rows_come_from():
    study = hand_study()
    assert "not evaluated yet" in results.testset_table(study).caption  # no protocol recorded
    for e in study.eval.values():
        e["protocol"] = {"data": {"source": "synthetic"}}
    caption = results.testset_table(study).caption
    assert "MUSDB18-HQ's 50 test tracks" in caption  # the published rows
    assert "this study's variants (means over their seeds): the built-in synthetic songs, not MUSDB18-HQ" in caption


def test_resolution_states_base_spread_the_smallest_call_and_the_oracle_share():
    study = synthetic_study(["base", "large", "umx"])
    res = comparison.resolution(study)
    base = [study.train[r]["valid_usdr_vocals"] for r in study.runs["base"]]
    assert res["base_valid_usdr_std_vocals"] == pytest.approx(stats.tstd(base))
    assert res["smallest_call_db"] == pytest.approx(
        effects.smallest_call(effects.summarize(study.values("base", "valid_usdr_avg")), 1))
    mix, oracle = study.eval["mixture"]["usdr_avg"], study.eval["oracle_irm"]["usdr_avg"]
    ours = sum(study.eval[r]["usdr_avg"] for r in study.runs["base"]) / len(study.runs["base"])
    assert res["oracle_share_base_avg_pct"] == pytest.approx(100 * (ours - mix) / (oracle - mix))
    best = max(study.variants, key=lambda v: study.mean(v, "usdr_avg", "eval"))
    assert res["best_tested"] == best
    text = comparison.resolution_text(study, res)
    assert f"{res['smallest_call_db']:.2f} dB" in text and "not predictions" in text


def test_the_stopping_table_says_whether_each_rule_can_act():
    study = synthetic_study(["base", "monitor_loss", "large_patience30"])
    study.stopping = {"base": Stopping("usdr", 4, 4, False), "monitor_loss": Stopping("loss", 4, 4, False),
                      "large_patience30": Stopping("usdr", 1, 4, True)}
    study.train[study.runs["large_patience30"][0]]["epochs"] = 2
    table = comparison.stopping_table(study)
    rows = {r["variant"]: r for r in table.rows}
    assert [rows[v]["can_act"] for v in study.stopping] == ["no", "no", "yes"]
    assert rows["large_patience30"]["stopped"] == "1 of 1" and rows["base"]["stopped"] == "0 of 3"
    assert "trains all 4 epochs" in table.caption
