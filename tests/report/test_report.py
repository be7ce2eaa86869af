"""`sepcost report` on a small study: metrics of a few variants (one trained but not evaluated, the
others not run), their histories, the published figures, and a real MLflow SQLite store whose runs
were made through `pipeline.tracking` (finished, failed, killed, forecast; current and superseded)."""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline import config, paths, tracking
from pipeline.errors import UserError
from pipeline.names import METHODS, REFERENCE_ROWS, run_key
from pipeline.report import figures, ledger
from pipeline.report.figures import FIGURES
from pipeline.report.inputs import Variant, load_study
from pipeline.report.page import energy_methods_summary
from pipeline.report.plotting import COLUMN_WIDTH_IN, DPI, pareto_front
from pipeline.stages import report
from tests.conftest import BASE, REPO, error_line, write_params
from tests.report.helpers import (BASE_KWH_SCALES, BASE_SEEDS, BASE_SHIFTS, FIRST_SEED, TARGETS, copy_reference,
                                  eval_metrics, mlflow_run, published_rows, read_csv, rows_by, train_metrics,
                                  write_history, write_json)

EXPERIMENT = "report-test"
EVALUATED = ("base", "large", "optimized_tac", "umx")
TRAINED_ONLY = ("stft_4096",)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixture study, reported once: base with 3 seeds, the other variants with one; yields
    (folder, cfg, summary, expected ledger)."""
    folder = tmp_path_factory.mktemp("report")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        cfg = config.load(write_params(folder, {"tracking": {"experiment": EXPERIMENT}}))
        tracking.configure(cfg.tracking)  # this folder's store, whatever an earlier test resolved
        copy_reference(folder)
        runs: dict[str, dict] = {}  # run id -> kWh measured by both methods, category

        def track(variant, stage, category, seed=None, **kw):
            base = cfg if variant in REFERENCE_ROWS or variant is None else config.resolve(cfg, variant, seed)
            run_id, cc, ga = mlflow_run(base, stage, **kw)
            runs[run_id] = {"cc": cc, "ga": ga, "category": category}
            return run_id

        track("base", f"train@{BASE}", "superseded")  # superseded by the next one
        track("large", "train@large-seed42", "failed", outcome=RuntimeError("out of memory"))
        track("umx", "train@umx-seed42", "killed", outcome=KeyboardInterrupt())
        track("base", f"forecast@{BASE}", "other")
        for i, v in enumerate((*EVALUATED, *TRAINED_ONLY)):
            n = BASE_SEEDS if v == "base" else 1
            for k in range(n):
                seed, run = FIRST_SEED + k, run_key(v, FIRST_SEED + k)
                shift, scale = (BASE_SHIFTS[k], BASE_KWH_SCALES[k]) if n > 1 else (0.0, 1.0)
                kwh = (0.02 * (i + 1) * scale, 0.025 * (i + 1) * scale)
                run_id = track(v, f"train@{run}", "current", seed)
                lr = 0.003 * 2 ** -i if v in EVALUATED else None  # older metrics have no effective lr
                write_json(paths.train_metrics(run), train_metrics(v, i, run_id, kwh, lr, seed, shift))
                write_history(run, i, shift)
                if v in EVALUATED:
                    eval_id = track(v, f"evaluate@{run}", "current", seed, prefix="eval_", parent=run_id)
                    write_json(paths.eval_metrics(run), eval_metrics(run, 2.0 + i + shift, eval_id))
        for b, level in (("mixture", -3.0), ("oracle_irm", 12.0)):
            run_id = track(b, f"evaluate@{b}", "current", prefix="eval_", run_name=b)
            write_json(paths.eval_metrics(b), eval_metrics(b, level, run_id))

        summary = report.run(cfg)
        yield folder, cfg, summary, runs
    finally:
        os.chdir(cwd)


def test_every_variant_row_in_every_format(built):
    folder, cfg, summary, _ = built
    tables = folder / "reports" / "tables"
    rows = read_csv(tables / "study.csv")
    assert [r["variant"] for r in rows] == [*cfg.variants, *REFERENCE_ROWS]
    assert summary["rows"] == len(cfg.variants) + len(REFERENCE_ROWS)
    status = {r["variant"]: r["status"] for r in rows}
    assert all(status[v] == "ok" for v in EVALUATED)
    assert status["stft_4096"] == "not evaluated"
    assert status["accum_grad"] == "not run" and status["tac_prelu"] == "not run"
    assert status["mixture"] == status["oracle_irm"] == "reference"
    assert sorted(summary["not_run"]) == sorted(set(cfg.variants) - set(EVALUATED) - set(TRAINED_ONLY))
    md, tex = (tables / "study.md").read_text(), (tables / "study.tex").read_text()
    for v in [*cfg.variants, *REFERENCE_ROWS]:
        assert re.search(rf"^\| {re.escape(v)} \|", md, re.M), v
        assert re.search(rf"^{re.escape(v.replace('_', chr(92) + '_'))} &", tex, re.M), v
    md_rows = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert all(line.count("|") == md_rows[0].count("|") for line in md_rows)
    assert "not run" in md and "\\begin{tabular}" in tex and "\\bottomrule" in tex
    # every LaTeX row has as many cells as the table has columns
    n_cols = len(re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1))
    body = tex.split("\\midrule", 1)[1].split("\\bottomrule")[0]
    for line in body.splitlines():
        if line.strip().endswith("\\\\"):
            assert line.count(" & ") == n_cols - 1, line


def test_measured_values_and_published_columns(built):
    folder, *_ = built
    rows = rows_by(folder / "reports" / "tables" / "study.csv", "variant")
    published = rows_by(folder / paths.REFERENCE / "paper_validation.csv", "variant")
    base = rows["base"]
    assert float(base["valid_usdr_avg"]) == pytest.approx(1.45)
    assert float(base["test_usdr_avg"]) == pytest.approx(2.6)
    assert float(base["test_csdr_vocals"]) == pytest.approx(2.2)
    assert float(base["kwh_codecarbon"]) == pytest.approx(0.02)
    assert float(base["train_duration_s"]) == pytest.approx(600.0)
    assert int(base["seeds"]) == BASE_SEEDS and base["runs"] == " ".join(run_key("base", 42 + k) for k in range(3))
    assert float(base["valid_usdr_avg_std"]) == pytest.approx(0.25)  # seeds at -0.25, 0, +0.25
    assert base["valid_usdr_avg_std"] != "" and rows["large"]["valid_usdr_avg_std"] == ""  # one seed: no spread
    for v, row in rows.items():
        if v in published:  # the published figures, whether the variant ran or not
            assert float(row["paper_valid_usdr_avg"]) == pytest.approx(float(published[v]["avg_usdr"]))
            assert float(row["paper_kwh_codecarbon"]) == pytest.approx(float(published[v]["kwh_codecarbon"]))
            assert float(row["paper_kwh_green_algorithms"]) == pytest.approx(
                float(published[v]["kwh_green_algorithms"]))
            assert row["paper_params_m"] != ""  # a blank in the paper means "same as base"
    assert float(rows["accum_grad"]["paper_params_m"]) == pytest.approx(32.3)
    # not at the paper's scale (synthetic data, small models): no absolute difference to the paper
    assert not any(key.startswith("diff_") for key in base)
    assert rows["umx"]["paper_valid_usdr_avg"] == ""  # no published validation row
    assert "cpu=cpu_load" in base["energy_methods"]


def test_effective_learning_rate_column(built):
    tables = built[0] / "reports" / "tables"
    rows = rows_by(tables / "study.csv", "variant")
    assert float(rows["base"]["lr"]) == pytest.approx(0.003)
    assert float(rows["optimized_tac"]["lr"]) == pytest.approx(0.00075)
    assert rows["stft_4096"]["lr"] == ""  # metrics written before training recorded it
    assert rows["accum_grad"]["lr"] == "" and rows["mixture"]["lr"] == ""
    md = [line.split(" | ") for line in (tables / "study.md").read_text().splitlines() if line.startswith("| ")]
    column = md[0].index("effective learning rate")
    cells = {line[0].lstrip("| "): line[column] for line in md[1:]}
    assert cells["base"] == "0.00300" and cells["optimized_tac"] == "7.50e-4" and cells["stft_4096"] == "–"


def test_ledger_reads_every_run_and_when_its_energy_was_spent(built, monkeypatch):
    folder, cfg, _, runs = built
    monkeypatch.chdir(folder)
    table = ledger.runs_table(cfg.tracking)
    timeline = ledger.energy_timeline(cfg.tracking)
    assert list(table.columns) == ledger.RUNS_COLUMNS and list(timeline.columns) == ledger.TIMELINE_COLUMNS
    # runs_table lists the report's own run too (load_runs gives it its energy so far): left out here
    (report_run,) = table.loc[table["stage"] == "report", "run_id"]
    table = table[table["run_id"] != report_run]
    timeline = timeline[timeline["run_id"] != report_run]
    assert sorted(table["run_id"]) == sorted(runs) and table["start_time"].is_monotonic_increasing
    assert timeline["time"].is_monotonic_increasing
    for method, measured in zip(METHODS, ("cc", "ga")):
        column = ledger.kwh_column(method)
        assert (timeline[column] >= 0).all()
        spent = timeline.groupby("run_id")[column].sum()
        for row in table.to_dict("records"):  # training and a reopened evaluation, failed and killed ones
            assert row[column] == pytest.approx(runs[row["run_id"]][measured])
            assert spent.get(row["run_id"], 0.0) == pytest.approx(row[column])
    empty = ledger.runs_table(dataclasses.replace(cfg.tracking, experiment="never-used"))
    assert empty.empty and list(empty.columns) == ledger.RUNS_COLUMNS


def test_learning_check(built):
    folder, _, summary, _ = built
    rows = rows_by(folder / "reports" / "tables" / "learning_check.csv", "variant")
    assert list(rows) == [v for v in summary["learning_check"]]
    assert rows["base"]["n"] == str(BASE_SEEDS) and rows["large"]["n"] == "1"
    assert set(rows) == set(EVALUATED) | set(TRAINED_ONLY)
    first, second = (*EVALUATED, *TRAINED_ONLY)[:2]
    # first (base, the mean of its seeds): valid uSDR 1.0, 1.3, 1.6, 1.9 against max(0, mixture) 0, 0, 0.5, 0.4
    assert [float(rows[first][f"margin_{t}"]) for t in TARGETS] == pytest.approx([1.0, 1.3, 1.1, 1.5])
    assert rows[first]["learned"] == "yes" and summary["learning_check"][first] == pytest.approx(1.0)
    # second: 1.5, 1.8, 2.1, 2.4 against 0, 0, 0.5, 2.0
    assert float(rows[second]["margin_other"]) == pytest.approx(0.4)
    assert rows[second]["learned"] == "no"
    page = (folder / "reports" / "index.html").read_text()
    assert "Learning check" in page and (folder / "reports" / "tables" / "learning_check.tex").exists()


def test_test_set_comparison(built):
    folder, *_ = built
    tables = folder / "reports" / "tables"
    rows = rows_by(tables / "test.csv", "system")
    assert float(rows["bsrnn_original"]["csdr_avg"]) == pytest.approx(8.24)
    assert float(rows["bsrnn_original"]["usdr_avg"]) == pytest.approx(7.94)
    assert float(rows["umxhq"]["csdr_avg"]) == pytest.approx(5.41) and rows["umxhq"]["usdr_avg"] == ""
    assert "replication_large_patience30" in rows
    for v in ("large", "optimized_tac", "umx"):
        assert rows[v]["source"] == "this study" and rows[v]["csdr_avg"] != ""
    assert rows["base"]["source"] == "this study, mean of 3 seeds" and rows["base"]["seeds"] == "3"
    assert float(rows["base"]["usdr_avg"]) == pytest.approx(2.6)
    assert "not run" in rows["large_patience30"]["source"]
    for fmt in ("md", "tex"):
        assert "bsrnn" in (tables / f"test.{fmt}").read_text()


def test_ledger_totals_and_superseded_energy(built):
    folder, _, summary, runs = built
    ledger = json.loads((folder / "reports" / "tables" / "ledger.json").read_text())
    per_run = read_csv(folder / "reports" / "tables" / "runs.csv")
    # the report's own run is a row, current, with the energy it had spent when it read the ledger
    (own,) = [r for r in per_run if r["stage"] == "report"]
    assert own["status"] == "RUNNING" and own["category"] == "current" and own["methods"].startswith("cpu=")
    own_cc, own_ga = float(own["kwh_codecarbon"]), float(own["kwh_green_algorithms"])
    assert own_cc > 0 and own_ga > 0 and float(own["duration_s"]) > 0
    assert ledger["stages"]["report"] == {"runs": 1, "kwh_codecarbon": own_cc, "kwh_green_algorithms": own_ga}

    def kwh(method, category=None, exclude=None):
        return sum(r[method] for r in runs.values()
                   if (category is None or r["category"] == category) and r["category"] != exclude)

    assert ledger["runs"] == len(runs) + 1 == 20  # base's three seeds each a run, each evaluation a run
    assert ledger["failed_runs"] == 1 and ledger["killed_runs"] == 1
    assert kwh("cc") > 0 and kwh("ga") > 0
    assert ledger["kwh_codecarbon"] == pytest.approx(kwh("cc") + own_cc)
    assert ledger["kwh_green_algorithms"] == pytest.approx(kwh("ga") + own_ga)
    assert ledger["kwh_codecarbon"] == pytest.approx(sum(s["kwh_codecarbon"] for s in ledger["stages"].values()))
    assert ledger["not_current"]["runs"] == 4
    assert ledger["not_current"]["kwh_codecarbon"] == pytest.approx(kwh("cc", exclude="current"))
    assert ledger["not_current"]["kwh_green_algorithms"] == pytest.approx(kwh("ga", exclude="current"))
    assert ledger["current"]["kwh_codecarbon"] == pytest.approx(kwh("cc", "current") + own_cc)
    categories = ledger["categories"]
    assert categories["superseded"]["kwh_codecarbon"] == pytest.approx(kwh("cc", "superseded"))
    assert categories["failed"]["kwh_codecarbon"] == pytest.approx(kwh("cc", "failed"))
    assert categories["killed"]["kwh_green_algorithms"] == pytest.approx(kwh("ga", "killed"))
    assert categories["other"]["runs"] == 1  # the forecast
    assert sum(c["runs"] for c in categories.values()) == ledger["runs"]
    assert ledger["household_years_codecarbon"] == pytest.approx(ledger["kwh_codecarbon"] * 15 / 23000)
    assert summary["ledger"]["kwh_codecarbon"] == pytest.approx(ledger["kwh_codecarbon"])
    rows = rows_by(folder / "reports" / "tables" / "ledger.csv", "key")
    assert int(rows["all"]["runs"]) == 20 and int(rows["not_current"]["runs"]) == 4
    assert "not current" in (folder / "reports" / "tables" / "ledger.md").read_text()
    assert len(per_run) == 20 and sum(r["category"] == "current" for r in per_run) == 16
    names = {r["run_name"] for r in per_run if r["category"] == "current"}
    assert {run_key("base", 42 + k) for k in range(3)} | {"mixture", "oracle_irm"} <= names  # run keys


def test_the_next_report_counts_the_previous_one_in_full(built, monkeypatch):
    folder, cfg, _, _ = built
    monkeypatch.chdir(folder)
    first = {r["run_id"]: r for r in read_csv(folder / "reports" / "tables" / "runs.csv") if r["stage"] == "report"}
    report.run(cfg)
    again = {r["run_id"]: r for r in read_csv(folder / "reports" / "tables" / "runs.csv") if r["stage"] == "report"}
    ((earlier, was),) = first.items()
    assert again[earlier]["status"] == "FINISHED" and again[earlier]["category"] == "other"
    assert float(again[earlier]["kwh_codecarbon"]) >= float(was["kwh_codecarbon"])  # rendering included now
    (now,) = set(again) - {earlier}
    assert again[now]["status"] == "RUNNING" and again[now]["category"] == "current"
    ledger = json.loads((folder / "reports" / "tables" / "ledger.json").read_text())
    assert ledger["stages"]["report"]["runs"] == 2


def test_figures_are_valid_pngs_at_column_width(built):
    from matplotlib.image import imread

    folder, _, summary, _ = built
    figures = folder / "reports" / "figures"
    assert sorted(p.name for p in figures.iterdir()) == sorted(f"{n}.png" for n in FIGURES)
    for path in figures.iterdir():
        image = imread(path)
        height, width = image.shape[:2]
        assert width == round(COLUMN_WIDTH_IN * DPI), path.name  # 3.4 in at 300 dpi
        assert 0.3 * width < height < 2.5 * width, path.name
        assert image[..., :3].std() > 0.05, path.name  # not blank
    assert sorted(summary["figures"]) == sorted(str(Path("reports/figures") / f"{n}.png") for n in FIGURES)


def test_index_is_self_contained(built):
    folder, cfg, *_ = built
    page = (folder / "reports" / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", page)  # nothing fetched from elsewhere
    assert "<link" not in page and "@import" not in page
    for v in [*cfg.variants, *REFERENCE_ROWS]:
        assert f">{v}<" in page, v
    assert "cpu_load" in page and "CodeCarbon" in page  # how energy was measured
    assert "household-years" in page
    assert not any(p.name.startswith(".") for p in (folder / "reports").iterdir())  # no partial output
    assert f"memory × {cfg.energy.memory_w_per_gb:g} W/GB" in page  # the params' Green Algorithms input
    for section in ("Effects: each variant against base", "Recipes: what each variant changes", "Forecasts",
                    'id="table-effects"', 'id="table-recipes"', 'id="table-forecast"', 'id="fig-shape"'):
        assert section in page, section
    assert "relative effects" in page and "Not at the paper&#x27;s scale (data: synthetic" in page
    assert f"{len(config.runs(cfg))} (a variant and a seed each): 7 trained" in page  # runs and seeds
    assert "3 seeds: base" in page


def test_effects_on_the_fixture(built):
    from scipy import stats

    folder, _, summary, _ = built
    rows = rows_by(folder / "reports" / "tables" / "effects.csv", "variant")
    assert "base" not in rows and rows["accum_grad"]["verdict"] == "not run"
    # base: validation avg 1.2, 1.45, 1.7 over its 3 seeds (s = 0.25); each other variant one run
    half = stats.t.ppf(0.975, 2) * 0.25 * (4 / 3) ** 0.5
    large, umx, stft = rows["large"], rows["umx"], rows["stft_4096"]
    assert float(large["delta_avg"]) == pytest.approx(0.5) and large["method"] == "base's spread"
    assert float(large["low"]) == pytest.approx(0.5 - half) and float(large["high"]) == pytest.approx(0.5 + half)
    assert large["verdict"] == "within seed noise" and large["n"] == "1" and large["n_base"] == "3"
    assert float(large["paper_delta_avg"]) == pytest.approx(1.1) and large["sign_avg"] == "yes"
    assert float(large["ratio_cc"]) == pytest.approx(2.0) and float(large["paper_ratio_cc"]) == pytest.approx(230 / 127)
    assert float(umx["delta_avg"]) == pytest.approx(1.5) and umx["verdict"] == "better"  # 1.5 > 1.242
    assert umx["paper_delta_avg"] == "" and umx["sign_avg"] == "-"  # the paper's table has no Open-Unmix row
    assert float(stft["delta_avg"]) == pytest.approx(2.0) and stft["sign_avg"] == "no"  # the paper: 6.6 < 7.1
    assert stft["test_verdict"] == "not run" and float(rows["optimized_tac"]["test_delta"]) == pytest.approx(2.0)
    assert summary["effects"]["better"] == 2 and summary["effects"]["within seed noise"] == 2
    assert (summary["effects"]["sign_agrees"], summary["effects"]["sign_compared"]) == (2, 3)


def test_recipes_and_forecasts_on_the_fixture(built):
    folder, cfg, *_ = built
    tables = folder / "reports" / "tables"
    recipes = rows_by(tables / "recipes.csv", "variant")
    assert list(recipes) == list(cfg.variants)
    assert recipes["base"]["changes"] == "—"
    assert recipes["large"]["changes"] == "model.bsrnn.n 8 -> 16; model.bsrnn.r 2 -> 3"
    assert recipes["large"]["paper"] == "Large model: N=128, R=12"
    assert recipes["umx"]["paper"] == "Open-Unmix (its own recipe)"
    assert "model.arch bsrnn -> umx" in recipes["umx"]["changes"]
    forecast = rows_by(tables / "forecast.csv", "run")
    assert list(forecast)[:3] == [run_key("base", 42 + k) for k in range(3)] and len(forecast) == 7
    assert float(forecast[BASE]["time_error_pct"]) == pytest.approx(25.0) and forecast[BASE]["cc_within"] == "yes"
    assert forecast["stft_4096-seed42"]["time_min"] == "" and forecast["stft_4096-seed42"]["time_measured"] != ""
    assert "| base-seed42 | 4 | 3–8 |" in (tables / "forecast.md").read_text()


def test_printed_summary_names_effects_and_who_learned(built, capsys):
    folder, cfg, *_ = built
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        report.run(cfg)
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert "2 of 4 variants run differ beyond seed noise (2 better, 0 worse" in out
    assert "2 of 3 agree in sign with the paper" in out
    assert "4 of 5 variants pass: base, stft_4096, optimized_tac, umx" in out


def test_pareto_front():
    points = [(1.0, 2.0), (2.0, 1.0), (3.0, 4.0), (0.5, 0.0), (3.0, 3.0), (5.0, 4.0)]
    assert pareto_front(points) == [3, 0, 2]


@pytest.fixture
def metrics_only(tmp_path, monkeypatch):
    """A study folder with two variants' metrics and no MLflow store."""
    monkeypatch.chdir(tmp_path)
    cfg = config.load(write_params(tmp_path, {"tracking": {"experiment": "report-empty"}}))
    tracking.configure(cfg.tracking)
    copy_reference(tmp_path)
    write_json(paths.train_metrics(BASE), train_metrics("base", 0, "0" * 32, (0.02, 0.03)))
    write_json(paths.eval_metrics(BASE), eval_metrics(BASE, 2.0, "0" * 32))
    write_json(paths.eval_metrics("mixture"), eval_metrics("mixture", -3.0, "1" * 32))
    return tmp_path, cfg


def test_energy_methods_name_the_memory_power_given(metrics_only):
    _, cfg = metrics_only
    study = load_study(cfg.targets, {"base": Variant((BASE,), "bsrnn"), "large": Variant(("large-seed42",))})
    assert study.arch["base"] == "bsrnn" and study.arch["large"] == "?"
    assert study.ran("base") and not study.ran("large") and list(study.train) == [BASE]
    lines = energy_methods_summary(study, 0.5)
    assert any("memory × 0.5 W/GB" in line for line in lines)
    assert any(f"CodeCarbon measured run {BASE} with CPU: a CPU-load × TDP model" in line for line in lines)


def test_a_store_without_study_runs_gives_a_ledger_of_the_report_alone(metrics_only, capsys):
    folder, cfg = metrics_only
    summary = report.run(cfg)
    ledger = json.loads((folder / "reports" / "tables" / "ledger.json").read_text())
    assert ledger["runs"] == 1 == summary["ledger"]["runs"] and list(ledger["stages"]) == ["report"]
    assert ledger["kwh_codecarbon"] == ledger["stages"]["report"]["kwh_codecarbon"] > 0
    assert (folder / "reports" / "index.html").is_file()
    rows = {r["variant"]: r["status"] for r in read_csv(folder / "reports" / "tables" / "study.csv")}
    assert rows["base"] == "ok (1 of 3 seeds)" and rows["large"] == "not run" and rows["oracle_irm"] == "not run"
    assert "ledger: 1 runs" in capsys.readouterr().out


def test_no_metrics_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config.load(write_params(tmp_path))
    with pytest.raises(UserError, match=r"metrics/.*run the pipeline first"):
        report.run(cfg)
    assert not (tmp_path / "reports" / "index.html").exists()


def test_cli_reports_no_metrics_in_one_line(tmp_path, monkeypatch, capsys):
    from pipeline.cli import main

    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    assert main(["report"]) != 0
    assert "run the pipeline first" in error_line(capsys)


def test_a_failed_report_leaves_the_previous_one(metrics_only, monkeypatch):
    folder, cfg = metrics_only
    report.run(cfg)
    index = folder / "reports" / "index.html"
    before = index.read_bytes()
    tables = sorted(p.name for p in (folder / "reports" / "tables").iterdir())

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(figures, "fig_training_curves", broken)
    with pytest.raises(RuntimeError):
        report.run(cfg)
    assert index.read_bytes() == before
    assert sorted(p.name for p in (folder / "reports" / "tables").iterdir()) == tables
    assert not any(p.name.startswith(".") for p in (folder / "reports").iterdir())


def test_malformed_metrics_name_the_file(metrics_only):
    folder, cfg = metrics_only
    paths.train_metrics("large-seed42").write_text("{not json")
    with pytest.raises(UserError, match=re.escape(str(paths.train_metrics("large-seed42")))):
        report.run(cfg)


def test_paper_scale_needs_the_paper_data_and_sizes(tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    copy_reference(tmp_path)
    for split in ("train", "test"):
        (tmp_path / "musdb" / split).mkdir(parents=True)
    musdb = {"source": "musdb18hq", "root": str(tmp_path / "musdb")}
    assert report.paper_scale(config.load(write_params(tmp_path))) == (False, "data: synthetic, not MUSDB18-HQ")
    at_scale, why = report.paper_scale(config.load(write_params(tmp_path, {"data": musdb})))
    assert not at_scale and "parameter counts more than 1 % off the published ones" in why  # CPU-sized models
    paper = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump({**paper, "data": musdb}))
    assert report.paper_scale(config.load(tmp_path / "paper.yaml")) == (True, "")


def test_the_study_in_a_handful_of_numbers_and_in_its_mlflow_run(built):
    folder, cfg, summary, _ = built
    numbers = json.loads((folder / "reports" / "summary.json").read_text())
    assert set(numbers) == set(summary["study"]) and len(numbers) <= 20
    assert numbers["base_seeds"] == BASE_SEEDS and numbers["base_valid_usdr_avg"] == pytest.approx(1.45)
    effects = rows_by(folder / "reports" / "tables" / "effects.csv", "variant")
    deltas = {v: float(r["delta_avg"]) for v, r in effects.items() if r["delta_avg"] not in ("", "nan")}
    assert numbers["best_variant"] == max(deltas, key=deltas.get)
    assert numbers["best_delta_valid_usdr_avg"] == pytest.approx(max(deltas.values()))
    ledger = json.loads((folder / "reports" / "tables" / "ledger.json").read_text())
    assert numbers["energy_kwh_codecarbon"] == pytest.approx(ledger["kwh_codecarbon"])
    client = MlflowClient(tracking.resolved(cfg.tracking)[0])
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    run = client.search_runs([experiment.experiment_id], "tags.`dvc.stage` = 'report'",
                             order_by=["attributes.start_time DESC"], max_results=1)[0]  # the one that wrote it
    assert run.data.metrics["better"] == numbers["better"] and run.data.tags["best_variant"] == numbers["best_variant"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"index.html", "summary.json", "tables", "figures"} <= artifacts
    assert "figures/sdr_vs_energy.png" in {a.path for a in client.list_artifacts(run.info.run_id, "figures")}


def test_captions_flag_test_scores_computed_with_different_protocols():
    from types import SimpleNamespace

    from pipeline.report.results import protocol_id, protocol_note

    same = {"usdr": "whole track", "bsseval": {"window_s": 1.0, "hop_s": 1.0}}
    other = {**same, "inference": {"overlap": 0.5}}
    assert protocol_id(same) == protocol_id(dict(reversed(list(same.items())))) != protocol_id(other)
    assert "same evaluation protocol" in protocol_note(SimpleNamespace(eval={"a": {"protocol": same},
                                                                            "b": {"protocol": same}}))
    note = protocol_note(SimpleNamespace(eval={"a": {"protocol": same}, "b": {"protocol": other}}))
    assert "2 different evaluation protocols" in note and protocol_id(other) in note


def test_published_averages_are_over_the_study_s_targets(tmp_path, monkeypatch):
    from pipeline import reference

    monkeypatch.chdir(tmp_path)
    copy_reference(tmp_path)
    every, _ = reference.validation(config.load(write_params(tmp_path)))
    vocals, _ = reference.validation(config.load(write_params(tmp_path, {"targets": ["vocals"]})))
    published = published_rows()
    assert every["large"]["avg_usdr"] == published["large"]["avg_usdr"]  # the paper's own column
    assert vocals["large"]["avg_usdr"] == published["large"]["vocals_usdr"]
