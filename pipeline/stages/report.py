"""Stage `report`: the study's tables, figures, energy ledger and reports/index.html.

Reads the current metrics and the MLflow store (see `pipeline.report`); writes reports/tables/,
reports/figures/ and reports/index.html, each whole or not at all, the page last, so that a report
that fails leaves the previous one (or nothing) and the page never refers to half a folder.
"""
from __future__ import annotations

from pipeline import paths
from pipeline.atomic import replacing, write_json
from pipeline.config import Config, resolve
from pipeline.report.figures import energy_text, make_figures
from pipeline.report.inputs import load_study
from pipeline.report.ledger import KG_CO2E, KWH_CC, KWH_GA, load_runs, load_timeline, summarize_ledger
from pipeline.report.page import render_html
from pipeline.report.render import to_csv, write_table
from pipeline.report.tables import LEARNING_MARGIN_DB, ledger_table, learning_table, runs_table_view, study_table, \
    testset_table

TABLES = paths.REPORTS / "tables"
FIGURES = paths.REPORTS / "figures"
INDEX = paths.REPORTS / "index.html"


def run(cfg: Config) -> dict:
    """Build every table, figure, the ledger and reports/index.html; returns a summary."""
    study = load_study(cfg, {v: resolve(cfg, v).model.arch for v in cfg.variants})
    runs = load_runs(cfg, study)
    ledger = summarize_ledger(runs, cfg)
    tables = {"study": study_table(study), "test": testset_table(study), "ledger": ledger_table(ledger),
              "learning_check": learning_table(study)}

    # A `with` leaves its contexts innermost first: the page, entered first, is replaced last.
    with replacing(INDEX) as index, replacing(TABLES) as tables_dir, replacing(FIGURES) as figures_dir:
        tables_dir.mkdir()
        figures_dir.mkdir()
        written = [path for table in tables.values() for path in write_table(table, tables_dir)]
        write_json(tables_dir / "ledger.json", ledger)
        to_csv(runs_table_view(runs), tables_dir / "runs.csv")
        written += [tables_dir / "ledger.json", tables_dir / "runs.csv"]
        figures = make_figures(study, runs, load_timeline(cfg, runs), figures_dir)
        index.write_text(render_html(cfg, study, tables, figures, ledger, runs))

    not_run = [v for v in study.variants if not study.ran(v)]
    learning = tables["learning_check"].rows
    summary = {
        "index": str(INDEX),
        "tables": [str(TABLES / p.name) for p in written],
        "figures": [str(FIGURES / p.name) for p in figures.values()],
        "rows": len(tables["study"].rows),
        "variants": len(study.variants),
        "variants_run": len(study.variants) - len(not_run),
        "not_run": not_run,
        "ledger": {k: ledger[k] for k in ("runs", "failed_runs", "killed_runs", KWH_CC, KWH_GA, KG_CO2E,
                                          "household_years_codecarbon")}
                  | {"not_current_kwh_codecarbon": ledger["not_current"][KWH_CC],
                     "not_current_kwh_green_algorithms": ledger["not_current"][KWH_GA]},
        "learning_check": {r["variant"]: r["min_margin"] for r in learning},
        "notes": list(study.notes),
    }
    _print(summary, ledger, learning)
    return summary


def _print(summary: dict, ledger: dict, learning: list[dict]) -> None:
    print(f"report: {summary['rows']} rows ({summary['variants_run']} of {summary['variants']} variants run), "
          f"{len(summary['tables'])} table files, {len(summary['figures'])} figures -> {summary['index']}")
    print(f"report: ledger: {ledger['runs']} runs ({ledger['failed_runs']} failed, {ledger['killed_runs']} killed), "
          f"{energy_text(ledger[KWH_CC])} CodeCarbon, {energy_text(ledger[KWH_GA])} Green Algorithms; "
          f"{energy_text(ledger['not_current'][KWH_CC])} (CodeCarbon) on runs not current")
    if learning:
        learned = [r["variant"] for r in learning if r["learned"] == "yes"]
        print(f"report: learning check (>= {LEARNING_MARGIN_DB:g} dB over silence and the mixture on every validation "
              f"target): {len(learned)} of {len(learning)} variants pass" + (f": {', '.join(learned)}" if learned else ""))
    for note in summary["notes"]:
        print(f"report: note: {note}")
