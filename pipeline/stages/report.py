"""Stage `report`: the study's tables, figures, energy ledger and reports/index.html.

Gathers from the config what the report needs (each variant's runs, model family and recipe
changes, the published figures of `pipeline.reference`, whether the study is at the paper's scale)
and reads the current metrics and the MLflow store (see `pipeline.report`); writes reports/tables/,
reports/figures/ and reports/index.html, each whole or not at all, the page last, so that a report
that fails leaves the previous one (or nothing) and the page never refers to half a folder; then
reports/summary.json (the study in a handful of numbers, DVC's metrics), all attached to the
report's MLflow run.
"""
from __future__ import annotations

from pipeline import paths, reference, tracking
from pipeline.atomic import replacing, write_json
from pipeline.config import Config, recipes, resolve, runs as study_runs
from pipeline.energy.meter import EnergyMeter
from pipeline.names import run_key
from pipeline.report.comparison import (
    effects_summary,
    effects_table,
    recipes_table,
    resolution,
    stopping_table,
    study_summary,
    variant_effects,
)
from pipeline.report.effects import BETTER, NO_ESTIMATE, NOISE, WORSE
from pipeline.report.figures import make_figures
from pipeline.report.inputs import Stopping, Variant, load_study
from pipeline.report.ledger import KG_CO2E, KWH_CC, KWH_GA, OpenRun, load_runs, load_timeline, summarize_ledger
from pipeline.report.page import render_html
from pipeline.report.plotting import energy_text
from pipeline.report.render import to_csv, write_table
from pipeline.report.results import (
    LEARNING_MARGIN_DB,
    forecast_table,
    inference_table,
    learning_table,
    study_table,
    testset_table,
    training_split_table,
)
from pipeline.report.tables import ledger_table, runs_table_view, stages_table
from pipeline.tracking import ui

TABLES = paths.REPORTS / "tables"
FIGURES = paths.REPORTS / "figures"
INDEX = paths.REPORTS / "index.html"
SUMMARY = paths.REPORTS / "summary.json"  # the study in a handful of numbers: DVC's metrics of the study
PAPER_DATA = ("musdb18hq", "musdb18")
LOCAL_SERVER = "http://127.0.0.1:5000"  # the README's `mlflow server` over the study's store
PARAMS_TOLERANCE_PCT = 1.0  # a variant is at the paper's size when its count is this close to the published one


def paper_scale(cfg: Config) -> tuple[bool, str]:
    """Whether the study is the paper's (MUSDB18(-HQ), every published parameter count matched within
    1 %), and why not."""
    if cfg.data.source not in PAPER_DATA:
        return False, f"data: {cfg.data.source}, not MUSDB18-HQ"
    from pipeline.stages.plan import rows  # counts every variant's models (on the meta device)

    counted = [r for r in rows(cfg) if r["diff_percent"] is not None]
    off = [r["variant"] for r in counted if abs(r["diff_percent"]) > PARAMS_TOLERANCE_PCT]
    if not counted:
        return False, "no published parameter count to compare the sizes with"
    if off:
        return False, (f"{len(off)} of {len(counted)} variants' parameter counts more than "
                       f"{PARAMS_TOLERANCE_PCT:g} % off the published ones")
    return True, ""


def variants(cfg: Config) -> dict[str, Variant]:
    """Each variant's run keys (`config.runs`), model family, recipe changes from base and, for base
    and the rows whose declared change is the stopping rule, that rule."""
    keys: dict[str, list[str]] = {v: [] for v in cfg.variants}
    for variant, seed in study_runs(cfg):
        keys[variant].append(run_key(variant, seed))
    base = recipes.BASE in cfg.variants
    out = {}
    for v in cfg.variants:
        resolved = resolve(cfg, v)
        t = resolved.train
        rule = v == recipes.BASE or recipes.changes_stopping_rule(cfg, v)
        out[v] = Variant(tuple(keys[v]), resolved.model.arch,
                         tuple(str(c) for c in recipes.changes(cfg, v)) if base else (),
                         Stopping(t.monitor, t.patience, t.max_epochs, t.can_stop_early()) if rule else None)
    return out


def run(cfg: Config) -> dict:
    """Build every table, figure, the ledger and reports/index.html; returns a summary."""
    with tracking.metered(cfg, "report", paths.energy_dir("report"), run_name="report") as (mlrun, meter):
        summary, ledger, learning = _report(cfg, mlrun.run_id, meter)
        # the study's page in MLflow, for whoever browses a shared server without the repository
        mlrun.log_metrics({k: v for k, v in summary["study"].items() if isinstance(v, (int, float))})
        mlrun.set_tags({"best_variant": summary["study"]["best_variant"]})
        mlrun.log_artifact(INDEX)
        mlrun.log_artifact(SUMMARY)
        mlrun.log_artifact(TABLES, "tables")
        mlrun.log_artifact(FIGURES, "figures")
        experiment = mlrun.client.get_run(mlrun.run_id).info.experiment_id
    _print(summary, ledger, learning)
    uri, _ = tracking.resolved(cfg.tracking)
    server = uri if uri.startswith(("http://", "https://")) else LOCAL_SERVER
    print(f"report: compare the runs in MLflow at {ui.experiment_url(server, experiment)}"
          + ("" if server == uri else " (start the server as the README says)"))
    return summary


def _report(cfg: Config, run_id: str, meter: EnergyMeter) -> tuple[dict, dict, list[dict]]:
    """Every table, figure and the page; the summary, the ledger and the learning check's rows.
    The report's own run (`run_id`, measured by `meter`) is a row of the ledger, with the energy
    spent until the ledger is read."""
    at_scale, why = paper_scale(cfg)
    study = load_study(cfg.targets, variants(cfg), reference.validation(cfg), reference.test(cfg.targets),
                       at_scale, why, recipes.BASE)
    # the rendering that follows is in the next report's ledger
    runs = load_runs(cfg, study, OpenRun(run_id, meter.run_totals(), meter.methods))
    ledger = summarize_ledger(runs, cfg)
    effects = variant_effects(study)
    res = resolution(study)
    tables = {"study": study_table(study), "effects": effects_table(study, effects), "recipes": recipes_table(study),
              "stopping": stopping_table(study),
              "forecast": forecast_table(study), "test": testset_table(study), "ledger": ledger_table(ledger),
              "stages": stages_table(ledger), "training_split": training_split_table(study),
              "inference": inference_table(study),
              "learning_check": learning_table(study)}

    # A `with` leaves its contexts innermost first: the page, entered first, is replaced last.
    with replacing(INDEX) as index, replacing(TABLES) as tables_dir, replacing(FIGURES) as figures_dir:
        tables_dir.mkdir()
        figures_dir.mkdir()
        written = [path for table in tables.values() for path in write_table(table, tables_dir)]
        write_json(tables_dir / "ledger.json", ledger)
        to_csv(runs_table_view(runs), tables_dir / "runs.csv")
        written += [tables_dir / "ledger.json", tables_dir / "runs.csv"]
        figures = make_figures(study, runs, load_timeline(cfg, runs), figures_dir, effects)
        index.write_text(render_html(cfg, study, tables, figures, ledger, runs, effects, res))
    learning = tables["learning_check"].rows
    numbers = study_summary(study, effects, ledger, sum(r["learned"] == "yes" for r in learning), res)
    write_json(SUMMARY, numbers)

    not_run = [v for v in study.variants if not study.ran(v)]
    summary = {
        "index": str(INDEX),
        "tables": [str(TABLES / p.name) for p in written],
        "figures": [str(FIGURES / p.name) for p in figures.values()],
        "rows": len(tables["study"].rows),
        "variants": len(study.variants),
        "variants_run": len(study.variants) - len(not_run),
        "runs": len(study.all_runs()),
        "runs_trained": sum(r in study.train for r in study.all_runs()),
        "not_run": not_run,
        "paper_scale": at_scale,
        "effects": effects_summary(effects),
        "ledger": {k: ledger[k] for k in ("runs", "failed_runs", "killed_runs", KWH_CC, KWH_GA, KG_CO2E,
                                          "household_years_codecarbon")}
                  | {"not_current_kwh_codecarbon": ledger["not_current"][KWH_CC],
                     "not_current_kwh_green_algorithms": ledger["not_current"][KWH_GA]},
        "learning_check": {r["variant"]: r["min_margin"] for r in learning},
        "study": numbers,
        "resolution": res,
        "notes": list(study.notes),
    }
    return summary, ledger, learning


def _print(summary: dict, ledger: dict, learning: list[dict]) -> None:
    print(f"report: {summary['rows']} rows ({summary['variants_run']} of {summary['variants']} variants run, "
          f"{summary['runs_trained']} of {summary['runs']} runs trained), {len(summary['tables'])} table files, "
          f"{len(summary['figures'])} figures -> {summary['index']}")
    print(f"report: ledger: {ledger['runs']} runs ({ledger['failed_runs']} failed, {ledger['killed_runs']} killed), "
          f"{energy_text(ledger[KWH_CC])} CodeCarbon, {energy_text(ledger[KWH_GA])} Green Algorithms; "
          f"{energy_text(ledger['not_current'][KWH_CC])} (CodeCarbon) on runs not current")
    e = summary["effects"]
    print(f"report: effects vs {recipes.BASE} (validation uSDR avg, 95 %): {e[BETTER] + e[WORSE]} of {e['run']} "
          f"variants run differ beyond seed noise ({e[BETTER]} better, {e[WORSE]} worse; {e[NOISE]} within it, "
          f"{e[NO_ESTIMATE]} no noise estimate); {e['sign_agrees']} of {e['sign_compared']} agree in sign with "
          "the paper")
    r = summary["resolution"]
    print(f"report: resolution: base's seed spread {r['base_valid_usdr_std_avg']:.2f} dB (validation uSDR avg), "
          f"the smallest difference a variant of {r['variant_seeds']} seed(s) can be called by "
          f"{r['smallest_call_db']:.2f} dB; base reached {r['oracle_share_base_avg_pct']:.0f} % of the oracle IRM's "
          "headroom over the mixture (test uSDR)")
    if learning:
        learned = [r["variant"] for r in learning if r["learned"] == "yes"]
        print(f"report: learning check (>= {LEARNING_MARGIN_DB:g} dB over silence and the mixture on every validation "
              f"target, means over seeds): {len(learned)} of {len(learning)} variants pass"
              + (f": {', '.join(learned)}" if learned else ""))
    for note in summary["notes"]:
        print(f"report: note: {note}")
