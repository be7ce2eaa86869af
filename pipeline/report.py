"""`sepcost report`: the study's tables, figures, energy ledger and one self-contained HTML page.

It joins the two records of the study (see DESIGN.md):

- DVC's current state, `metrics/train/<variant>.json`, `metrics/eval/<variant>.json` and
  `plots/train/<variant>.tsv`: one row per variant of the params file (a variant without metrics is
  shown as "not run"), then the reference rows (the mixture as the estimate, the oracle ideal ratio
  mask), next to the published figures of `reports/reference/`;
- the MLflow store, the log of every run that ever happened, failed and killed ones included: the
  whole-study energy ledger. A run is *current* when its id is the `mlflow_run_id` of a current
  metrics file; the energy of every other run (superseded results, failed and killed runs,
  forecasts) is the price of getting to the current results.

Outputs (dvc.yaml's stage `report`)::

    reports/tables/study.{md,csv,tex}        the paper's layout, ours vs published and the difference
    reports/tables/test.{md,csv,tex}         test set: published systems vs ours (cSDR and uSDR)
    reports/tables/ledger.{md,csv,json,tex}  the whole-study energy ledger
    reports/tables/learning_check.{md,csv,tex} each variant's margin over the trivial estimates
    reports/tables/runs.csv                  every MLflow run with its category in the ledger
    reports/figures/*.png                    see FIGURES
    reports/index.html                       everything above on one page, images embedded

Everything is built in a temporary folder under reports/ and moved into place at the end, so a
report that fails leaves the previous one (or nothing) rather than a half-made page.
"""
from __future__ import annotations

import base64
import bisect
import csv
import datetime as dt
import html
import itertools
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from pipeline import paths
from pipeline.errors import UserError

# The replication's equivalence: its ~23,000 kWh are "about 15 household-years" of electricity.
PAPER_TOTAL_KWH = 23000.0
PAPER_HOUSEHOLD_YEARS = 15.0
KWH_PER_HOUSEHOLD_YEAR = PAPER_TOTAL_KWH / PAPER_HOUSEHOLD_YEARS

BOUNDS = ("mixture", "oracle_irm")  # reference rows of metrics/eval, computed once per study
BOUND_LABELS = {"mixture": "mixture (lower bound)", "oracle_irm": "oracle IRM (upper bound)"}
# Our rows in the test-set comparison (those of them the study has); all variants if it has none.
TEST_COMPARISON = ("base", "large", "large_patience30", "optimized_no_tac", "optimized_tac", "umx")
NOT_RUN = "not run"

FIGURES = {
    "sdr_vs_energy": "Average test SDR against training energy, both methods, with the Pareto front",
    "energy_split": "Training energy per variant split into CPU, GPU and RAM, both methods",
    "training_curves": "Validation uSDR and validation loss per epoch",
    "sdr_per_target": "Test SDR per target and variant",
    "cumulative_energy": "Cumulative energy of every run in the MLflow store",
}

# Ledger categories, in the order the ledger lists them; every run falls in exactly one.
CATEGORIES = {
    "current": "current results",
    "superseded": "superseded (finished, result replaced)",
    "failed": "failed",
    "killed": "killed",
    "unfinished": "unfinished (still running or lost)",
    "other": "forecasts and other stages",
}
RESULT_STAGES = ("train", "evaluate")  # stages whose runs produce a metrics file

COLUMN_WIDTH_IN = 3.4
DPI = 300
# Okabe-Ito, a palette readable by colour-blind readers and in greyscale.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
ENERGY_PARTS = (("cpu", "CPU", "#0072B2"), ("gpu", "GPU", "#E69F00"), ("ram", "RAM", "#009E73"))
METHODS = (("codecarbon", "CodeCarbon (measured)"), ("green_algorithms", "Green Algorithms (estimated)"))

# How CodeCarbon measured each part, as `energy_methods` records it, and how far it can be trusted.
METHOD_NOTES = {
    "cpu": {
        "rapl": "RAPL energy counters, measured",
        "powermetrics": "powermetrics, measured",
        "power_gadget": "Intel Power Gadget, measured",
        "windows_emi": "Windows EMI counters, measured",
        "raspberry_pmic": "PMIC counters, measured",
        "cpu_load": "a CPU-load × TDP model, estimated rather than metered",
        "constant": "a constant share of the TDP, a rough estimate",
        "none": "not measured",
    },
    "gpu": {"nvml": "NVML energy counters, measured", "amdsmi": "AMD SMI, measured",
            "powermetrics": "powermetrics, measured", "none": "no GPU seen"},
    "ram": {"constant": "a fixed W-per-GB model, estimated", "raspberry_pmic": "PMIC counters, measured",
            "none": "not measured"},
}
METERED_CPU = ("rapl", "powermetrics", "power_gadget", "windows_emi", "raspberry_pmic")


# ----------------------------------------------------------------------------- inputs


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a readable metrics file ({err}); rebuild it with `dvc repro`") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object of metrics")
    return data


def _num(value) -> float:
    """A metric as a float; NaN for anything missing or not a number."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(value) -> bool:
    return math.isfinite(_num(value))


def _read_history(path: Path):
    import pandas as pd

    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, sep="\t")
    except Exception as err:  # pandas raises several kinds for a broken file
        raise UserError(f"{path}: not a readable training history ({type(err).__name__}: {err}); "
                        "rebuild it with `dvc repro`") from None
    if "epoch" not in table.columns:
        raise UserError(f"{path}: expected a tab-separated history with an 'epoch' column")
    return table


def _read_reference(name: str, required: tuple[str, ...]) -> tuple[list[dict], str | None]:
    """Rows of a published-figures CSV, or none and a note saying why."""
    path = paths.REFERENCE / name
    if not path.is_file():
        return [], f"{path} not found: published figures left out"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: expected the columns {', '.join(required)} (missing: {', '.join(missing)})")
        return list(reader), None


@dataclass
class Study:
    """What the current metrics say, per variant and reference row."""

    variants: list[str]
    targets: tuple[str, ...]
    train: dict[str, dict]
    eval: dict[str, dict]
    history: dict[str, Any]
    arch: dict[str, str]
    published: dict[str, dict]  # paper_validation rows by variant
    published_test: list[dict]
    current_ids: dict[str, str]  # MLflow run id -> the metrics file naming it
    notes: list[str] = field(default_factory=list)

    def ran(self, variant: str) -> bool:
        return variant in self.train or variant in self.eval


def load_study(cfg) -> Study:
    variants = list(cfg.variants)
    train = {v: d for v in variants if (d := _read_json(paths.train_metrics(v))) is not None}
    evals = {v: d for v in [*variants, *BOUNDS] if (d := _read_json(paths.eval_metrics(v))) is not None}
    if not train and not evals:
        raise UserError(
            f"{paths.METRICS}/: no metrics of this study's variants or reference rows "
            f"({paths.train_metrics('<variant>')}, {paths.eval_metrics('<variant>')}); "
            "run the pipeline first (`dvc repro`, or `sepcost train` and `sepcost evaluate`)"
        )
    history = {v: h for v in variants if (h := _read_history(paths.train_history(v))) is not None}
    arch = {}
    for v in variants:
        try:
            arch[v] = cfg.resolve(v).model.arch
        except Exception:  # a params file load() accepted resolves; keep the report going regardless
            arch[v] = "?"

    notes = []
    valid_rows, note = _read_reference("paper_validation.csv", ("variant", "avg_usdr", "params_m",
                                                                "kwh_codecarbon", "kwh_green_algorithms"))
    notes += [note] if note else []
    published = {r["variant"]: r for r in valid_rows}
    base_params = published.get("base", {}).get("params_m", "")
    for row in published.values():  # a blank parameter count means "same as base"
        if not str(row.get("params_m", "")).strip():
            row["params_m"] = base_params
    test_rows, note = _read_reference("paper_test.csv", ("model", "metric", *cfg.targets, "avg"))
    notes += [note] if note else []

    # Every metrics file present is the current state, variants removed from params included.
    current = {}
    for folder in (paths.METRICS / "train", paths.METRICS / "eval"):
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            data = _read_json(path)
            run_id = data.get("mlflow_run_id") if data else None
            if isinstance(run_id, str) and run_id:
                current.setdefault(run_id, str(path))
    return Study(variants, tuple(cfg.targets), train, evals, history, arch, published, test_rows, current, notes)


def load_runs(cfg, study: Study):
    """Every run of the study's MLflow experiment with its ledger category (an empty table when the
    store holds none, or does not exist yet: reading it would create it)."""
    import pandas as pd

    from pipeline import tracking

    tracking.configure(cfg.tracking)
    uri, _ = tracking.resolved(cfg.tracking)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        table = pd.DataFrame(columns=tracking.RUNS_COLUMNS)
        study.notes.append(f"no MLflow store at {uri[len('sqlite:///'):]}: the ledger has no runs")
    else:
        try:
            table = tracking.runs_table(cfg.tracking)
        except Exception as err:
            raise UserError(f"{cfg.params_file}: tracking.uri: cannot read the MLflow store {uri} "
                            f"({type(err).__name__}: {err})") from None
    table = table.copy()
    table["category"] = [_category(r, study.current_ids) for r in table.to_dict("records")]
    table["current"] = table["category"] == "current"
    return table


def load_timeline(cfg, runs):
    """When the runs' energy was spent (tracking.energy_timeline); empty when the store has no runs."""
    import pandas as pd

    from pipeline import tracking

    if runs.empty:
        return pd.DataFrame(columns=tracking.TIMELINE_COLUMNS)
    return tracking.energy_timeline(cfg.tracking)


def _category(run: dict, current_ids: dict) -> str:
    if run["run_id"] in current_ids:
        return "current"
    status = str(run.get("status", ""))
    if status == "FAILED":
        return "failed"
    if status == "KILLED":
        return "killed"
    if status != "FINISHED":
        return "unfinished"
    kind = str(run.get("stage", "")).split("@", 1)[0]
    return "superseded" if kind in RESULT_STAGES else "other"


def _fsum(values: Iterable) -> float:
    return float(sum(v for v in (_num(x) for x in values) if math.isfinite(v)))


def summarize_ledger(runs, cfg) -> dict:
    """Totals by method and by category; every value is a plain number for JSON."""
    from pipeline import tracking

    uri, _ = tracking.resolved(cfg.tracking)

    def totals(part) -> dict:
        kwh_cc, kwh_ga = _fsum(part["kwh_codecarbon"]), _fsum(part["kwh_green_algorithms"])
        return {"runs": int(len(part)), "kwh_codecarbon": kwh_cc, "kwh_green_algorithms": kwh_ga,
                "kg_co2e": _fsum(part["kg_co2e"]), "duration_s": _fsum(part["duration_s"]),
                "household_years_codecarbon": kwh_cc / KWH_PER_HOUSEHOLD_YEAR,
                "household_years_green_algorithms": kwh_ga / KWH_PER_HOUSEHOLD_YEAR}

    everything = totals(runs)
    statuses = runs["status"].astype(str).value_counts().to_dict() if len(runs) else {}
    return {
        **everything,
        "runs_by_status": {str(k): int(v) for k, v in sorted(statuses.items())},
        "failed_runs": int(statuses.get("FAILED", 0)),
        "killed_runs": int(statuses.get("KILLED", 0)),
        "deleted_runs": int(runs["deleted"].astype(bool).sum()) if len(runs) else 0,
        "current": totals(runs[runs["current"]]),
        "not_current": totals(runs[~runs["current"].astype(bool)]),
        "categories": {name: totals(runs[runs["category"] == name]) for name in CATEGORIES},
        "kwh_per_household_year": KWH_PER_HOUSEHOLD_YEAR,
        "tracking_uri": uri,
        "experiment": cfg.tracking.experiment,
        "definition": ("a run is current when its id is the mlflow_run_id of a current metrics/train or "
                       "metrics/eval file; 'not current' adds up every other run (superseded results, failed "
                       "and killed runs, forecasts), whose energy was spent all the same"),
    }


# ----------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Col:
    key: str
    header: str  # under its group (LaTeX, HTML)
    group: str = ""
    kind: str = "text"  # text | sdr | sig (3 significant digits of the column's largest) | g3 (each value's
    #                     own 3 significant digits) | int | duration
    long: str = ""  # the header where there is one row of headers (Markdown); header if blank
    min_decimals: int = 0  # for sig: at least this many decimals

    @property
    def flat(self) -> str:
        return self.long or self.header


@dataclass
class Table:
    name: str
    caption: str
    columns: list[Col]
    rows: list[dict]
    csv_extra: list[str] = field(default_factory=list)  # CSV-only keys (descriptions, methods)
    wide: bool = True  # LaTeX: table* across both columns, else table

    def formatters(self) -> dict[str, Callable[[Any], str]]:
        return {c.key: _formatter(c, [r.get(c.key) for r in self.rows]) for c in self.columns}

    def cells(self) -> list[list[str]]:
        fmt = self.formatters()
        return [[fmt[c.key](r.get(c.key)) for c in self.columns] for r in self.rows]


def _formatter(col: Col, values: list) -> Callable[[Any], str]:
    if col.kind == "text":
        return lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
    if col.kind == "duration":
        return lambda v: _duration(v) if _finite(v) else "–"
    if col.kind == "int":
        return lambda v: f"{int(round(_num(v)))}" if _finite(v) else "–"
    if col.kind == "g3":
        return lambda v: _sci(_num(v)) if _finite(v) else "–"
    if col.kind == "sdr":
        decimals = 2
    else:  # 3 significant digits for the column's largest magnitude, the same decimals for all
        biggest = max((abs(_num(v)) for v in values if _finite(v) and _num(v) != 0), default=1.0)
        decimals = min(8, max(col.min_decimals, 2 - math.floor(math.log10(biggest))))
    return lambda v: f"{_num(v):.{decimals}f}" if _finite(v) else "–"


def _duration(seconds) -> str:
    s = int(round(_num(seconds)))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def study_table(study: Study) -> Table:
    """The paper's layout: per variant (params order) then the reference rows."""
    ts = study.targets
    short = {"vocals": "voc.", "bass": "bass", "drums": "drums", "other": "other", "avg": "avg"}
    cols = [Col("variant", "variant", long="variant"), Col("status", "status", long="status")]
    for key, group in (("valid_usdr", "Validation uSDR (dB)"), ("test_usdr", "Test uSDR (dB)"),
                       ("test_csdr", "Test cSDR (dB)")):
        label = group.split(" (")[0]
        cols += [Col(f"{key}_{t}", short[t], group, "sdr", f"{label} {t}") for t in (*ts, "avg")]
    cols += [
        Col("params_m", "params (M)", "Cost", "sig", "params (M)", 1),
        Col("epochs", "epochs", "Cost", "int", "epochs"),
        Col("train_duration_s", "time (h:m:s)", "Cost", "duration", "training time (h:m:s)"),
        Col("kwh_codecarbon", "kWh CC", "Cost", "sig", "kWh CodeCarbon"),
        Col("kwh_green_algorithms", "kWh GA", "Cost", "sig", "kWh Green Algorithms"),
        Col("kg_co2e", "kg CO2e", "Cost", "sig", "kg CO2e"),
        Col("paper_valid_usdr_avg", "val. uSDR", "Published", "sdr", "published valid uSDR avg"),
        Col("paper_params_m", "params (M)", "Published", "sig", "published params (M)", 1),
        Col("paper_kwh_codecarbon", "kWh CC", "Published", "sig", "published kWh CodeCarbon"),
        Col("paper_kwh_green_algorithms", "kWh GA", "Published", "sig", "published kWh Green Algorithms"),
        Col("diff_valid_usdr_avg", "val. uSDR", "Ours - published", "sdr", "diff valid uSDR avg"),
        Col("diff_params_m", "params (M)", "Ours - published", "sig", "diff params (M)", 1),
        Col("diff_kwh_codecarbon", "kWh CC", "Ours - published", "sig", "diff kWh CodeCarbon"),
        Col("diff_kwh_green_algorithms", "kWh GA", "Ours - published", "sig", "diff kWh Green Algorithms"),
    ]
    rows = []
    for v in study.variants:
        tr, ev = study.train.get(v, {}), study.eval.get(v, {})
        row = {"variant": v, "status": _status(v in study.train, v in study.eval)}
        for t in (*ts, "avg"):
            row[f"valid_usdr_{t}"] = _num(tr.get(f"valid_usdr_{t}"))
            row[f"test_usdr_{t}"] = _num(ev.get(f"usdr_{t}"))
            row[f"test_csdr_{t}"] = _num(ev.get(f"csdr_{t}"))
        row.update({
            "params_m": _num(tr.get("params_m")), "epochs": _num(tr.get("epochs")),
            "train_duration_s": _num(tr.get("duration_s")),
            "kwh_codecarbon": _num(tr.get("energy_kwh_codecarbon")),
            "kwh_green_algorithms": _num(tr.get("energy_kwh_green_algorithms")),
            "kg_co2e": _num(tr.get("emissions_kg_co2e")),
            "eval_kwh_codecarbon": _num(ev.get("eval_energy_kwh_codecarbon")),
            "eval_kwh_green_algorithms": _num(ev.get("eval_energy_kwh_green_algorithms")),
            "eval_kg_co2e": _num(ev.get("eval_emissions_kg_co2e")),
            "eval_duration_s": _num(ev.get("eval_duration_s")),
            "test_tracks": _num(ev.get("tracks")),
            "energy_methods": _methods_text(tr.get("energy_methods")),
            "mlflow_run_id": tr.get("mlflow_run_id") or ev.get("mlflow_run_id") or "",
        })
        pub = study.published.get(v)
        if pub:
            row["description"] = pub.get("description", "")
            for ours, theirs in (("valid_usdr_avg", "avg_usdr"), ("params_m", "params_m"),
                                 ("kwh_codecarbon", "kwh_codecarbon"),
                                 ("kwh_green_algorithms", "kwh_green_algorithms")):
                row[f"paper_{ours}"] = _num(pub.get(theirs))
                row[f"diff_{ours}"] = row[ours] - row[f"paper_{ours}"]  # NaN when either is missing
        rows.append(row)
    for b in BOUNDS:
        ev = study.eval.get(b)
        row = {"variant": b, "status": "reference" if ev else NOT_RUN, "description": BOUND_LABELS[b],
               "_rule_before": b == BOUNDS[0]}
        for t in (*ts, "avg"):
            row[f"test_usdr_{t}"] = _num((ev or {}).get(f"usdr_{t}"))
            row[f"test_csdr_{t}"] = _num((ev or {}).get(f"csdr_{t}"))
        if ev:
            row.update({"eval_kwh_codecarbon": _num(ev.get("eval_energy_kwh_codecarbon")),
                        "eval_kwh_green_algorithms": _num(ev.get("eval_energy_kwh_green_algorithms")),
                        "eval_kg_co2e": _num(ev.get("eval_emissions_kg_co2e")),
                        "eval_duration_s": _num(ev.get("eval_duration_s")),
                        "test_tracks": _num(ev.get("tracks")), "mlflow_run_id": ev.get("mlflow_run_id", "")})
        rows.append(row)
    caption = ("Variants of the study (params order) and the reference rows: validation and test uSDR, "
               "test cSDR (dB), parameters, training time and training energy by both methods, next to "
               "the replication's published figures and the difference (ours - published).")
    extra = ["description", "test_tracks", "eval_duration_s", "eval_kwh_codecarbon", "eval_kwh_green_algorithms",
             "eval_kg_co2e", "energy_methods", "mlflow_run_id"]
    return Table("study", caption, cols, rows, extra)


LEARNING_MARGIN_DB = 1.0  # what a variant must beat the trivial estimates by, on every target


def learning_table(study: Study) -> Table:
    """The learning check: per trained variant and target, its best validation uSDR minus the better
    of the two trivial estimates, silence (0 dB) and the mixture itself (`mixture_valid_usdr_*`)."""
    ts = study.targets
    cols = [Col("variant", "variant", long="variant")]
    cols += [Col(f"margin_{t}", t if t != "vocals" else "voc.", "Margin over max(silence, mixture) (dB)", "sdr",
                 f"margin {t} (dB)") for t in ts]
    cols += [Col("min_margin", "min", "Margin over max(silence, mixture) (dB)", "sdr", "smallest margin (dB)"),
             Col("learned", f">= {LEARNING_MARGIN_DB:g} dB", long=f"every target >= {LEARNING_MARGIN_DB:g} dB")]
    rows = []
    for v in study.variants:
        tr = study.train.get(v, {})
        if not all(_finite(tr.get(f"mixture_valid_usdr_{t}")) for t in ts):
            continue  # not trained, or metrics written before the mixture's score was recorded
        row = {"variant": v}
        for t in ts:
            row[f"margin_{t}"] = _num(tr.get(f"valid_usdr_{t}")) - max(0.0, _num(tr[f"mixture_valid_usdr_{t}"]))
            row[f"mixture_valid_usdr_{t}"] = _num(tr[f"mixture_valid_usdr_{t}"])
        row["min_margin"] = min(row[f"margin_{t}"] for t in ts)
        row["learned"] = "yes" if row["min_margin"] >= LEARNING_MARGIN_DB else "no"
        rows.append(row)
    caption = ("Learning check on the validation tracks: each variant's best validation uSDR minus the better "
               "of two trivial estimates, silence (0 dB) and the mixture itself, per target. A variant that "
               f"learned to separate clears {LEARNING_MARGIN_DB:g} dB on every target.")
    return Table("learning_check", caption, cols, rows, [f"mixture_valid_usdr_{t}" for t in ts], wide=False)


def _status(trained: bool, evaluated: bool) -> str:
    if trained and evaluated:
        return "ok"
    if trained:
        return "not evaluated"
    if evaluated:
        return "evaluated only"
    return NOT_RUN


def _methods_text(methods) -> str:
    if not isinstance(methods, dict):
        return ""
    parts = [f"{k}={methods[k]}" for k in ("codecarbon", "cpu", "gpu", "ram", "tracking_mode") if k in methods]
    return " ".join(parts)


def testset_table(study: Study) -> Table:
    """The test set: published systems (cSDR and uSDR where given) vs ours."""
    ts = study.targets
    cols = [Col("system", "system", long="system"), Col("source", "source", long="source")]
    for metric, group in (("csdr", "cSDR (dB)"), ("usdr", "uSDR (dB)")):
        cols += [Col(f"{metric}_{t}", t if t != "vocals" else "voc.", group, "sdr", f"{metric[0]}SDR {t}")
                 for t in (*ts, "avg")]
    rows: dict[str, dict] = {}
    for r in study.published_test:
        row = rows.setdefault(r["model"], {"system": r["model"], "source": r.get("source", "published")})
        metric = str(r.get("metric", "")).strip().lower()
        if metric in ("csdr", "usdr"):
            for t in (*ts, "avg"):
                row[f"{metric}_{t}"] = _num(r.get(t))
    ours = [v for v in TEST_COMPARISON if v in study.variants] or list(study.variants)
    for k, v in enumerate([*ours, *BOUNDS]):
        ev = study.eval.get(v)
        label = "this study" if v not in BOUNDS else f"this study, {BOUND_LABELS[v]}"
        row = {"system": v, "source": label if ev else f"{label}: {NOT_RUN}", "_rule_before": k == 0 and bool(rows)}
        for metric in ("csdr", "usdr"):
            for t in (*ts, "avg"):
                row[f"{metric}_{t}"] = _num((ev or {}).get(f"{metric}_{t}"))
        rows[f"ours:{v}"] = row
    caption = ("MUSDB18-HQ test set: published systems (original BSRNN, the replication, Open-Unmix) and this "
               "study's variants. cSDR: BSSEval v4 median over frames then tracks; uSDR: mean over tracks "
               "of whole-track SDR.")
    return Table("test", caption, cols, list(rows.values()))


def ledger_table(ledger: dict) -> Table:
    cols = [Col("category", "runs of the study", long="category"), Col("runs", "runs", kind="int", long="runs"),
            Col("kwh_codecarbon", "kWh CC", kind="sig", long="kWh CodeCarbon"),
            Col("kwh_green_algorithms", "kWh GA", kind="sig", long="kWh Green Algorithms"),
            Col("kg_co2e", "kg CO2e", kind="sig", long="kg CO2e"),
            Col("share_codecarbon", "% of kWh CC", kind="sig", long="share of kWh CodeCarbon (%)", min_decimals=1),
            Col("household_years_codecarbon", "household-years CC", kind="g3",
                long="household-years (CodeCarbon)"),
            Col("household_years_green_algorithms", "household-years GA", kind="g3",
                long="household-years (Green Algorithms)")]
    total = ledger["kwh_codecarbon"]

    def row(name: str, label: str, part: dict) -> dict:
        share = 100.0 * part["kwh_codecarbon"] / total if total > 0 else math.nan
        return {"key": name, "category": label, **part, "share_codecarbon": share}

    rows = [row("all", "all runs", ledger)]
    rows += [row(k, f"of which {label}", ledger["categories"][k]) for k, label in CATEGORIES.items()]
    rows.append(row("not_current", "not current (all but current results)", ledger["not_current"]))
    caption = (f"Whole-study energy ledger from the MLflow store ({ledger['experiment']}): every run, failed and "
               f"killed ones included. Household-years at the replication's {KWH_PER_HOUSEHOLD_YEAR:,.0f} kWh "
               "per household-year (23,000 kWh = about 15 household-years).")
    rows[1]["_rule_before"] = rows[-1]["_rule_before"] = True
    return Table("ledger", caption, cols, rows, ["key", "duration_s"], wide=False)


# ----------------------------------------------------------------------------- table renderers


def to_csv(table: Table, path: Path) -> None:
    keys = [c.key for c in table.columns] + [k for k in table.csv_extra if k not in {c.key for c in table.columns}]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(keys)
        for r in table.rows:
            writer.writerow([_csv_value(r.get(k)) for k in keys])


def _csv_value(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: Table) -> str:
    header = [_md_escape(c.flat) for c in table.columns]
    align = [":--" if c.kind == "text" else "--:" for c in table.columns]
    lines = [f"<!-- {table.caption} -->", "", "| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for cells in table.cells():
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(text: str) -> str:
    out = "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)
    return out.replace("–", "--").replace("CO2e", r"CO$_2$e").replace(" - ", " $-$ ")


def _groups(columns: list[Col]) -> list[tuple[str, int]]:
    spans: list[tuple[str, int]] = []
    for c in columns:
        if spans and spans[-1][0] == c.group:
            spans[-1] = (c.group, spans[-1][1] + 1)
        else:
            spans.append((c.group, 1))
    return spans


def to_latex(table: Table) -> str:
    """A booktabs table, shrunk to the text width when wider (needs \\usepackage{booktabs,graphicx})."""
    cols = table.columns
    spec = "".join("l" if c.kind == "text" else "r" for c in cols)
    env, width = ("table*", "\\textwidth") if table.wide else ("table", "\\linewidth")
    lines = ["% generated by `sepcost report`; needs \\usepackage{booktabs,graphicx}",
             f"\\begin{{{env}}}[t]", "\\centering", f"\\caption{{{_tex(table.caption)}}}",
             f"\\label{{tab:sepcost-{table.name}}}",
             f"\\resizebox{{\\ifdim\\width>{width}{width}\\else\\width\\fi}}{{!}}{{%",
             f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
    spans = _groups(cols)
    if any(g for g, _ in spans):
        parts, rules, start = [], [], 1
        for group, n in spans:
            if group:
                parts.append(f"\\multicolumn{{{n}}}{{c}}{{{_tex(group)}}}")
                rules.append(f"\\cmidrule(lr){{{start}-{start + n - 1}}}")
            else:
                parts += [""] * n
            start += n
        lines.append(" & ".join(parts) + " \\\\")
        lines.append(" ".join(rules))
    lines.append(" & ".join(_tex(c.header) for c in cols) + " \\\\")
    lines.append("\\midrule")
    for row, cells in zip(table.rows, table.cells()):
        if row.get("_rule_before"):
            lines.append("\\midrule")
        lines.append(" & ".join(_tex(c) for c in cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}}", f"\\end{{{env}}}"]
    return "\n".join(lines) + "\n"


def to_html(table: Table, highlight: Callable[[dict], str] | None = None) -> str:
    cols = table.columns
    out = [f'<div class="scroll"><table class="data" id="table-{table.name}">',
           f"<caption>{html.escape(table.caption)}</caption>", "<thead>"]
    spans = _groups(cols)
    if any(g for g, _ in spans):
        out.append("<tr>" + "".join(f'<th colspan="{n}" class="group">{html.escape(g)}</th>' for g, n in spans) + "</tr>")
    out.append("<tr>" + "".join(f"<th>{html.escape(c.header)}</th>" for c in cols) + "</tr></thead><tbody>")
    for row, cells in zip(table.rows, table.cells()):
        cls = " ".join(c for c in (highlight(row) if highlight else "", "rule" if row.get("_rule_before") else "") if c)
        title = row.get("description") or ""
        attrs = (f' class="{cls}"' if cls else "") + (f' title="{html.escape(str(title))}"' if title else "")
        tds = "".join(f'<td class="{"t" if c.kind == "text" else "n"}">{html.escape(v)}</td>' for c, v in zip(cols, cells))
        out.append(f"<tr{attrs}>{tds}</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def write_table(table: Table, folder: Path, formats=("md", "csv", "tex")) -> list[Path]:
    written = []
    for fmt in formats:
        path = folder / f"{table.name}.{fmt}"
        if fmt == "csv":
            to_csv(table, path)
        elif fmt == "md":
            path.write_text(to_markdown(table))
        elif fmt == "tex":
            path.write_text(to_latex(table))
        written.append(path)
    return written


# ----------------------------------------------------------------------------- figures


def _style() -> dict:
    return {
        "font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "xtick.labelsize": 6, "ytick.labelsize": 6,
        "legend.fontsize": 6, "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False,
        "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "lines.linewidth": 1.0,
        "lines.markersize": 4, "axes.grid": True, "grid.linewidth": 0.4, "grid.alpha": 0.35,
        "font.family": "DejaVu Sans", "savefig.dpi": DPI, "figure.dpi": DPI, "axes.titleweight": "bold",
        "pdf.fonttype": 42,
    }


def _new_figure(height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(COLUMN_WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.03, hspace=0.04, wspace=0.03)
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": "sepcost report"})
    return path


def _energy_unit(values: Iterable[float]) -> tuple[str, float]:
    """kWh, or Wh when every value is below 1 kWh (a CPU-sized study), and the factor from kWh."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    return ("Wh", 1000.0) if finite and max(finite) < 1.0 else ("kWh", 1.0)


def _sdr_choice(study: Study, names: list[str]) -> tuple[str, str]:
    """The SDR a figure shows: test cSDR where every evaluated variant has it, else test uSDR, else the
    validation uSDR when nothing is evaluated. Returns (key prefix, axis label)."""
    evaluated = [study.eval[v] for v in names if v in study.eval]
    if evaluated and all(_finite(e.get("csdr_avg")) for e in evaluated):
        return "csdr", "test cSDR"
    if evaluated:
        return "usdr", "test uSDR"
    return "valid_usdr", "validation uSDR"


def _sdr_of(study: Study, v: str, key: str, target: str = "avg") -> float:
    if key == "valid_usdr":
        return _num(study.train.get(v, {}).get(f"valid_usdr_{target}"))
    return _num(study.eval.get(v, {}).get(f"{key}_{target}"))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (less or equal energy and higher or equal SDR, one
    strictly), ordered by energy."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def place_labels(ax, xy: list[tuple[float, float]], labels: list[str], fontsize: float = 5.0,
                 priority: list[int] | None = None, avoid: list[tuple[float, float]] = ()) -> list:
    """Label every point at the candidate position around it that overlaps the least with the other
    labels, the points, the `avoid` points (e.g. samples along a line) and the axes' edges; labels
    are placed greedily in `priority` order, then each is moved again given all the others. A label
    pushed away from its point gets a leader line. The axes' limits must be final."""
    fig = ax.figure
    fig.draw_without_rendering()  # the layout engine places the axes first
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / 72.0
    pts = [tuple(ax.transData.transform(p)) for p in xy]
    r_mark = 4.0 * scale  # a marker and a little room around it, so no label sits by another's point
    marks = [(x - r_mark, y - r_mark, x + r_mark, y + r_mark) for x, y in pts]
    r_avoid = 0.8 * scale
    avoid_boxes = [(x - r_avoid, y - r_avoid, x + r_avoid, y + r_avoid)
                   for x, y in (ax.transData.transform(p) for p in avoid)]
    frame = ax.get_window_extent(renderer)
    angles = [math.radians(a) for a in (10, 45, 80, 100, 135, 170, 190, 225, 260, 280, 315, 350, 0, 180, 90, 270)]
    radii = (3.5, 7.0, 11.0, 16.0, 22.0, 29.0)
    probe = ax.text(0, 0, "", fontsize=fontsize, transform=None)
    sizes = []
    for text in labels:
        probe.set_text(text)
        ext = probe.get_window_extent(renderer)
        sizes.append((ext.width + 2.0 * scale, ext.height + 0.8 * scale))  # a little air around each
    probe.remove()

    def area(a, b) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    def candidates(i: int):
        w, h = sizes[i]
        px, py = pts[i]
        for r_i, r in enumerate(radii):
            for a in angles:
                cx, cy = math.cos(a), math.sin(a)
                ox, oy = cx * r * scale, cy * r * scale * 0.75
                # the label's nearest corner or edge midpoint touches the candidate position
                x0 = px + ox - w * (0.5 - 0.5 * _sign(cx, 0.3))
                y0 = py + oy - h * (0.5 - 0.5 * _sign(cy, 0.3))
                yield r_i, ox, oy, cx, cy, (x0, y0, x0 + w, y0 + h)

    def crossing(a, b, box) -> bool:  # does the segment a-b pass through box?
        for k in range(1, 12):
            x, y = a[0] + (b[0] - a[0]) * k / 12, a[1] + (b[1] - a[1]) * k / 12
            if box[0] <= x <= box[2] and box[1] <= y <= box[3]:
                return True
        return False

    def cost(i: int, r_i: int, box, others: dict[int, tuple]) -> float:
        w, h = sizes[i]
        c = sum(area(box, o) for j, o in others.items() if j != i) * 4
        c += sum(area(box, m) for j, m in enumerate(marks) if j != i) * 3
        c += sum(area(box, b) for b in avoid_boxes) * 1.5
        c += ((max(0, frame.x0 - box[0]) + max(0, box[2] - frame.x1)) * h
              + (max(0, frame.y0 - box[1]) + max(0, box[3] - frame.y1)) * w) * 6
        c += r_i * r_i * 0.03 * w * h  # near the point is easier to read
        if r_i >= 2:  # a leader line: it should cross no other label and pass by no other point
            anchor = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            c += sum(0.3 * w * h for j, o in others.items() if j != i and crossing(pts[i], anchor, o))
            c += sum(0.1 * w * h for j, m in enumerate(marks) if j != i and crossing(pts[i], anchor, m))
        return c

    order = (priority or []) + [i for i in range(len(xy)) if i not in (priority or [])]
    chosen: dict[int, tuple] = {}
    boxes: dict[int, tuple] = {}
    for sweep in range(3):
        for i in order:
            best = min(candidates(i), key=lambda cand: cost(i, cand[0], cand[5], boxes))
            chosen[i], boxes[i] = best, best[5]
    texts = []
    for i in range(len(xy)):
        r_i, ox, oy, cx, cy, box = chosen[i]
        ha = "left" if _sign(cx, 0.3) > 0 else ("right" if _sign(cx, 0.3) < 0 else "center")
        va = "bottom" if _sign(cy, 0.3) > 0 else ("top" if _sign(cy, 0.3) < 0 else "center")
        arrow = ({"arrowstyle": "-", "lw": 0.35, "color": "0.5", "shrinkA": 0.5, "shrinkB": 2.2}
                 if r_i >= 2 else None)
        texts.append(ax.annotate(labels[i], xy=xy[i], xytext=(ox / scale, oy / scale), textcoords="offset points",
                                 ha=ha, va=va, fontsize=fontsize, arrowprops=arrow, annotation_clip=False,
                                 zorder=5))
    return texts


def _sign(value: float, dead: float) -> int:
    return 0 if abs(value) < dead else (1 if value > 0 else -1)


def fig_sdr_vs_energy(study: Study, path: Path) -> Path:
    names = [v for v in study.variants if v in study.train]
    key, label = _sdr_choice(study, names)
    names = [v for v in names if _finite(_sdr_of(study, v, key))]
    fig = _new_figure(5.4)
    axes = fig.subplots(2, 1)
    if not names:
        for ax in axes:
            _empty(ax, "no variant has both a training and an SDR")
        return _save(fig, path)
    cc = [_num(study.train[v].get("energy_kwh_codecarbon")) for v in names]
    ga = [_num(study.train[v].get("energy_kwh_green_algorithms")) for v in names]
    unit, factor = _energy_unit(cc + ga)
    sdr = [_sdr_of(study, v, key) for v in names]
    archs = sorted({study.arch.get(v, "?") for v in names})
    colour = {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(archs)}
    arch_label = {"bsrnn": "BSRNN family", "umx": "Open-Unmix family"}
    positive = [e for e in cc + ga if math.isfinite(e) and e > 0]
    log = bool(positive) and max(positive) / min(positive) > 6  # one scale for both panels
    for ax, energy, (_, method_label) in zip(axes, (cc, ga), METHODS):
        idx = [i for i, e in enumerate(energy) if math.isfinite(e) and e > 0]
        ax.set_title(method_label, loc="left")
        if not idx:
            _empty(ax, f"no {method_label.split(' (')[0]} energy recorded")
            continue
        xs = [energy[i] * factor for i in idx]
        ys = [sdr[i] for i in idx]
        front = [idx[j] for j in pareto_front(list(zip(xs, ys)))]
        if log:
            ax.set_xscale("log")
            _log_axis(ax.xaxis)
        for a in archs:
            members = [i for i in idx if study.arch.get(names[i], "?") == a]
            on = [i for i in members if i in front]
            off = [i for i in members if i not in front]
            ax.scatter([energy[i] * factor for i in off], [sdr[i] for i in off], s=13, facecolors="white",
                       edgecolors=colour[a], linewidths=0.8, zorder=3)
            ax.scatter([energy[i] * factor for i in on], [sdr[i] for i in on], s=15, color=colour[a],
                       edgecolors="black", linewidths=0.5, zorder=4, label=arch_label.get(a, a))
        fx = [energy[i] * factor for i in front]
        fy = [sdr[i] for i in front]
        ax.step(fx, fy, where="post", color="0.3", lw=0.7, ls=(0, (3, 1.5)), zorder=2,
                label="Pareto front (filled)")
        _pad_limits(ax, xs, ys, log)
        ax.set_xlabel(f"training energy ({unit}{', log scale' if log else ''})")
        ax.set_ylabel(f"average {label} (dB)")
        place_labels(ax, [(energy[i] * factor, sdr[i]) for i in idx], [names[i] for i in idx],
                     priority=[idx.index(i) for i in front], avoid=_step_samples(fx, fy, log))
    handles, labels_ = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(handles, labels_, loc="lower right", handletextpad=0.3, borderaxespad=0.2,
                       markerscale=0.9, fontsize=5.5)
    return _save(fig, path)


def _log_axis(axis) -> None:
    """A log axis labelled with plain numbers at 1, 2 and 5 of each decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _step_samples(xs: list[float], ys: list[float], log: bool, n: int = 24) -> list[tuple[float, float]]:
    """Points along a where="post" step line, for label placement to keep clear of it."""
    out = []
    for (x1, y1), (x2, y2) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        for k in range(n + 1):
            f = k / n
            x = x1 * (x2 / x1) ** f if log and x1 > 0 else x1 + (x2 - x1) * f
            out.append((x, y1))
        out += [(x2, y1 + (y2 - y1) * k / 8) for k in range(1, 8)]
    return out


def _pad_limits(ax, xs: list[float], ys: list[float], log: bool) -> None:
    lo, hi = min(ys), max(ys)
    if hi - lo < 1.0:  # at least 1 dB, so that a few close points do not look far apart
        lo, hi = (lo + hi) / 2 - 0.5, (lo + hi) / 2 + 0.5
    span = hi - lo
    ax.set_ylim(lo - 0.12 * span, hi + 0.18 * span)
    if log:
        ax.set_xlim(min(xs) / 1.3, max(xs) * 1.3)
    else:
        lo_x, hi_x = min(xs), max(xs)
        span_x = max(hi_x - lo_x, 0.4 * hi_x, 1e-9)
        ax.set_xlim(max(0.0, lo_x - 0.15 * span_x), hi_x + 0.25 * span_x)


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=6, color="0.35")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def fig_energy_split(study: Study, path: Path) -> Path:
    names = [v for v in study.variants if v in study.train]
    height = 0.9 + 0.115 * max(len(names), 3)
    fig = _new_figure(height)
    axes = fig.subplots(1, 2, sharey=True, sharex=True)  # one scale: the methods compare at a glance
    if not names:
        for ax in axes:
            _empty(ax, "no training metrics")
        return _save(fig, path)
    keys = {"codecarbon": "{}_kwh", "green_algorithms": "ga_{}_kwh"}
    every = [_num(study.train[v].get(keys[m].format(p))) for v in names for m, _ in METHODS for p, _, _ in ENERGY_PARTS]
    unit, factor = _energy_unit([_num(study.train[v].get(f"energy_kwh_{m}")) for v in names for m, _ in METHODS] + every)
    ypos = list(range(len(names)))
    widest = 0.0
    for ax, (method, method_label) in zip(axes, METHODS):
        left = [0.0] * len(names)
        for part, part_label, colour in ENERGY_PARTS:
            vals = [_num(study.train[v].get(keys[method].format(part))) * factor for v in names]
            vals = [x if math.isfinite(x) else 0.0 for x in vals]
            ax.barh(ypos, vals, left=left, height=0.72, color=colour, label=part_label, linewidth=0)
            left = [a + b for a, b in zip(left, vals)]
        totals = [_num(study.train[v].get(f"energy_kwh_{method}")) * factor for v in names]
        rest = [t - l if math.isfinite(t) and t - l > 0.01 * t else 0.0 for t, l in zip(totals, left)]
        if any(rest):  # a total the parts do not add up to (no split recorded, or overheads)
            ax.barh(ypos, rest, left=left, height=0.72, color="0.7", label="not split", linewidth=0)
            left = [a + b for a, b in zip(left, rest)]
        ax.set_title(method_label.split(" (")[0], fontsize=6.5)
        ax.grid(axis="y", visible=False)
        widest = max(widest, max(left))
    axes[0].set_xlim(0, widest * 1.05 if widest > 0 else 1)
    axes[0].set_ylim(len(names) - 0.5, -0.5)  # first variant on top, no empty margin
    fig.supxlabel(f"training energy ({unit})", fontsize=7)
    axes[0].set_yticks(ypos, names, fontsize=5.5)
    axes[1].tick_params(axis="y", left=False)
    legend = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="outside upper center", ncol=len(legend), handlelength=1.0,
               columnspacing=1.0)
    return _save(fig, path)


def _line_styles(n: int) -> list[tuple[str, Any]]:
    styles = ["-", (0, (4, 1.5)), (0, (1, 1)), (0, (5, 1, 1, 1))]
    return [(PALETTE[i % 7], styles[(i // 7) % len(styles)]) for i in range(n)]


def fig_training_curves(study: Study, path: Path) -> Path:
    names = [v for v in study.variants if v in study.history]
    legend_rows = math.ceil(max(len(names), 1) / 3)
    fig = _new_figure(3.3 + 0.1 * legend_rows)
    axes = fig.subplots(2, 1, sharex=True)
    if not names:
        for ax in axes:
            _empty(ax, "no training history (plots/train/*.tsv)")
        return _save(fig, path)
    styles = _line_styles(len(names))
    any_loss = False
    for v, (colour, ls) in zip(names, styles):
        h = study.history[v]
        epochs = h["epoch"]
        if "valid_usdr_avg" in h:
            axes[0].plot(epochs, h["valid_usdr_avg"], color=colour, ls=ls, lw=0.9, label=v,
                         marker="o" if len(h) == 1 else None, ms=2)
        loss_key = "valid_loss" if "valid_loss" in h else ("train_loss" if "train_loss" in h else None)
        if loss_key:
            any_loss = True
            axes[1].plot(epochs, h[loss_key], color=colour, ls=ls, lw=0.9,
                         marker="o" if len(h) == 1 else None, ms=2)
    axes[0].set_ylabel("validation uSDR,\naverage (dB)")
    axes[1].set_ylabel("validation loss\n(variant's own loss)")
    if any_loss:
        values = [x for v in names for x in study.history[v].get("valid_loss", study.history[v].get("train_loss", []))
                  if _finite(x)]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            axes[1].set_yscale("log")
    else:
        _empty(axes[1], "no loss in the histories")
    axes[1].set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=5, handlelength=2.2,
               columnspacing=0.8, handletextpad=0.4, labelspacing=0.25)
    return _save(fig, path)


def fig_sdr_per_target(study: Study, path: Path) -> Path:
    import numpy as np

    names = [v for v in study.variants if v in study.eval] + [b for b in BOUNDS if b in study.eval]
    metrics = [(k, l) for k, l in (("csdr", "test cSDR (dB)"), ("usdr", "test uSDR (dB)"))
               if any(_finite(study.eval[v].get(f"{k}_avg")) for v in names)]
    if not names or not metrics:
        names = [v for v in study.variants if v in study.train]
        metrics = [("valid_usdr", "validation uSDR (dB)")]
    cols = [*study.targets, "avg"]
    fig = _new_figure(0.85 + 0.125 * max(len(names), 3))
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    if not names:
        _empty(axes[0], "no metrics")
        return _save(fig, path)
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="0.9")
    for ax, (key, label) in zip(axes, metrics):
        grid = np.array([[_sdr_of(study, v, key, t) for t in cols] for v in names], dtype=float)
        # the colours span the variants; the bounds, far below and above, take the end colours
        rows_for_scale = [i for i, v in enumerate(names) if v not in BOUNDS] or list(range(len(names)))
        finite = grid[rows_for_scale][np.isfinite(grid[rows_for_scale])]
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if vmax - vmin < 1e-9:
            vmin, vmax = vmin - 1, vmax + 1
        image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                          interpolation="nearest")
        for (r, c), value in np.ndenumerate(grid):
            if math.isfinite(value):
                shade = cmap(min(1.0, max(0.0, (value - vmin) / (vmax - vmin))))
                light = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2]
                text = f"{value:.1f}"
                ax.text(c, r, "0.0" if text == "-0.0" else text, ha="center", va="center", fontsize=4.6,
                        color="black" if light > 0.5 else "white")
            else:
                ax.text(c, r, "–", ha="center", va="center", fontsize=4.6, color="0.4")
        ax.set_xticks(range(len(cols)), [c if c != "vocals" else "voc." for c in cols], fontsize=5)
        ax.xaxis.tick_top()
        ax.tick_params(axis="both", length=0)
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.axvline(len(cols) - 1.5, color="white", lw=1.2)
        if any(b in names for b in BOUNDS):
            ax.axhline(len([n for n in names if n not in BOUNDS]) - 0.5, color="white", lw=1.2)
        clipped = finite.size and (np.nanmin(grid) < vmin, np.nanmax(grid) > vmax)
        extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
            tuple(bool(x) for x in clipped) if clipped else (False, False), "neither")
        bar = fig.colorbar(image, ax=ax, location="bottom", fraction=0.04, pad=0.01, aspect=18, extend=extend)
        bar.set_label(label, fontsize=6)
        bar.ax.tick_params(labelsize=5, length=2)
        bar.outline.set_linewidth(0.4)
    axes[0].set_yticks(range(len(names)), [BOUND_LABELS.get(v, v) for v in names], fontsize=5.5)
    return _save(fig, path)


def fig_cumulative_energy(runs, timeline, path: Path) -> Path:
    """The study's energy over time: every run's `timeline` steps (each training epoch, the end of
    every execution) added up in time order; failed and killed runs marked where they ended."""
    import pandas as pd
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    fig = _new_figure(2.7)
    ax = fig.subplots()
    if timeline.empty:
        _empty(ax, "no runs in the MLflow store" if runs.empty else "no energy logged in the MLflow store")
        ax.set_xlabel("time")
        return _save(fig, path)

    def naive(times) -> list:
        return [t.tz_convert(None).to_pydatetime() for t in pd.to_datetime(pd.Series(times), utc=True)]

    unit, factor = _energy_unit([_fsum(timeline["kwh_codecarbon"]), _fsum(timeline["kwh_green_algorithms"])])
    when = naive(timeline["time"])
    t0 = min(naive(runs["start_time"].dropna()) or when)
    ended = runs[runs["status"].isin(["FAILED", "KILLED"])]
    markers = {"FAILED": ("x", "#D55E00", "failed run"), "KILLED": ("v", "#CC79A7", "killed run")}
    totals = {}
    for (method, method_label), colour, ls in zip(METHODS, ("#0072B2", "#009E73"), ("-", "--")):
        steps = [v if math.isfinite(v) else 0.0 for v in timeline[f"kwh_{method}"].astype(float)]
        cumulative = [x * factor for x in itertools.accumulate(steps)]
        totals[method] = cumulative[-1] / factor
        ax.step([t0, *when], [0.0, *cumulative], where="post", color=colour, ls=ls, lw=1.0,
                label=method_label.split(" (")[0])
        for status, (marker, mcolour, mlabel) in markers.items():
            hits = ended[ended["status"] == status]
            if hits.empty:
                continue
            at = naive(hits["end_time"].where(hits["end_time"].notna(), hits["start_time"]))
            # the study's cumulative energy when the run ended
            level = [cumulative[i - 1] if (i := bisect.bisect_right(when, t)) else 0.0 for t in at]
            ax.scatter(at, level, marker=marker, s=14, color=mcolour, linewidths=0.9, zorder=4,
                       label=f"{mlabel} ({len(hits)})" if method == "codecarbon" else None)
    locator = AutoDateLocator(minticks=3, maxticks=6)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel(f"cumulative energy ({unit})")
    per_unit = KWH_PER_HOUSEHOLD_YEAR * factor
    second = ax.secondary_yaxis("right", functions=(lambda e: e / per_unit, lambda y: y * per_unit))
    second.set_ylabel("household-years", fontsize=6)
    second.tick_params(labelsize=5.5)
    ax.spines["right"].set_visible(True)
    note = (f"{len(runs)} runs\n"
            f"CodeCarbon: {_amount(totals['codecarbon'] * factor)} {unit} = "
            f"{_sci(totals['codecarbon'] / KWH_PER_HOUSEHOLD_YEAR)} household-years\n"
            f"Green Algorithms: {_amount(totals['green_algorithms'] * factor)} {unit} = "
            f"{_sci(totals['green_algorithms'] / KWH_PER_HOUSEHOLD_YEAR)} household-years\n"
            f"(1 household-year = {KWH_PER_HOUSEHOLD_YEAR:,.0f} kWh)")
    ax.text(0.02, 0.98, note, transform=ax.transAxes, ha="left", va="top", fontsize=5, color="0.2",
            linespacing=1.3)
    top = max(totals.values()) * factor
    ax.set_ylim(0, top * 1.45 if top > 0 else 1)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: ("run (" in labels[i], i))  # lines, then markers
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside lower center", ncol=2,
               fontsize=5.5, handlelength=1.8, columnspacing=1.5)
    ax.margins(x=0.03)
    return _save(fig, path)


def _amount(value: float) -> str:
    """3 to 4 significant digits, thousands separated, never in scientific notation above 0.001."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value >= 1e-3 or value == 0 else _sci(value)


def _sci(value: float) -> str:
    """3 significant digits: 0.0123, 2.40, 15.0, 1,234; 1.23e-5 below 0.001."""
    if value == 0:
        return "0"
    if 100 <= abs(value) < 1e7:
        return f"{value:,.0f}"
    if 1e-3 <= abs(value) < 100:
        return f"{value:#.3g}".rstrip(".")  # 99.99 rounds to "100."
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def make_figures(study: Study, runs, timeline, folder: Path) -> dict[str, Path]:
    import matplotlib

    makers = {
        "sdr_vs_energy": lambda p: fig_sdr_vs_energy(study, p),
        "energy_split": lambda p: fig_energy_split(study, p),
        "training_curves": lambda p: fig_training_curves(study, p),
        "sdr_per_target": lambda p: fig_sdr_per_target(study, p),
        "cumulative_energy": lambda p: fig_cumulative_energy(runs, timeline, p),
    }
    out = {}
    with matplotlib.rc_context(_style()):
        for name, make in makers.items():
            out[name] = make(folder / f"{name}.png")
    return out


# ----------------------------------------------------------------------------- how energy was measured


def energy_methods_summary(study: Study, memory_w_per_gb: float = 0.3725) -> list[str]:
    """One sentence per way CodeCarbon measured (as recorded with each training result), the Green
    Algorithms inputs, and the shared PUE and carbon intensity."""
    groups: dict[tuple, list[str]] = {}
    shared: dict[str, set] = {"pue": set(), "carbon_intensity_g_per_kwh": set(), "carbon_intensity_source": set(),
                              "ga_tdp_source": set(), "ga_gpu_tdp_source": set()}
    unknown = []
    for v in study.variants:
        methods = study.train.get(v, {}).get("energy_methods") if v in study.train else None
        if v not in study.train:
            continue
        if not isinstance(methods, dict):
            unknown.append(v)
            continue
        key = tuple(str(methods.get(k, "none")) for k in ("codecarbon", "cpu", "gpu", "ram"))
        groups.setdefault(key, []).append(v)
        for k in shared:
            if k in methods:
                shared[k].add(str(methods[k]))
    lines = []
    for (status, cpu, gpu, ram), members in groups.items():
        who = _list_names(members, len([v for v in study.variants if v in study.train]))
        if status != "ok":
            lines.append(f"CodeCarbon did not measure {who} ({status}): only the Green Algorithms figure "
                         "of those runs can be used.")
            continue
        lines.append(
            f"CodeCarbon measured {who} with CPU: {_method_note('cpu', cpu)}; GPU: {_method_note('gpu', gpu)}; "
            f"RAM: {_method_note('ram', ram)}."
        )
    if unknown:
        lines.append(f"No energy method recorded for {_list_names(unknown, 0)}.")
    ga = "Green Algorithms estimated runtime × (cores × TDP per core × CPU usage + GPUs × GPU TDP × GPU usage " \
         f"+ memory × {memory_w_per_gb:g} W/GB) × PUE"
    if shared["ga_tdp_source"]:
        ga += f", CPU TDP from {', '.join(sorted(shared['ga_tdp_source']))}"
    if shared["ga_gpu_tdp_source"]:
        ga += f", GPU TDP from {', '.join(sorted(shared['ga_gpu_tdp_source']))}"
    lines.append(ga + ".")
    if shared["pue"] or shared["carbon_intensity_g_per_kwh"]:
        lines.append(f"Both methods use PUE {', '.join(sorted(shared['pue'])) or '?'} and "
                     f"{', '.join(sorted(shared['carbon_intensity_g_per_kwh'])) or '?'} g CO2e/kWh "
                     f"({'; '.join(sorted(shared['carbon_intensity_source'])) or 'source not recorded'}).")
    if any(cpu not in METERED_CPU for (_, cpu, _, _) in groups):
        lines.append("Where the CPU figure is modelled rather than metered, CodeCarbon's kWh are an estimate as "
                     "well, and the two methods are not independent checks of each other.")
    return lines


def _method_note(part: str, value: str) -> str:
    if value.startswith("dimm_model"):
        return f"a per-DIMM model, estimated ({value})"
    note = METHOD_NOTES.get(part, {}).get(value)
    return f"{note} ({value})" if note else value


def _list_names(names: list[str], of: int) -> str:
    if of and len(names) == of and of > 1:
        return f"all {of} trained variants"
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return f"{'variant' if len(names) == 1 else 'variants'} {shown}"


# ----------------------------------------------------------------------------- the page


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;
 padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.85rem} .note{background:#fff8e1;border-left:3px solid #f0b400;padding:.4rem .8rem}
.scroll{overflow-x:auto;margin:.6rem 0}
table.data{border-collapse:collapse;font-size:.78rem;white-space:nowrap}
table.data caption{caption-side:top;text-align:left;color:#555;padding:.3rem 0;white-space:normal}
table.data th,table.data td{padding:.15rem .45rem;border-bottom:1px solid #eee}
table.data th{background:#f5f5f5;position:sticky;top:0} th.group{text-align:center;border-bottom:1px solid #ccc}
td.n{text-align:right;font-variant-numeric:tabular-nums} td.t{text-align:left}
tr.notrun td{color:#999} tr.short td:last-child{color:#b00020} tr.reference td{font-style:italic;background:#fafafa}
tr.current td:first-child{font-weight:600} tr.rule td{border-top:1.5px solid #999}
figure{margin:1rem 0;display:inline-block;vertical-align:top;max-width:520px;margin-right:1.5rem}
figure img{width:100%;height:auto;border:1px solid #eee} figcaption{font-size:.82rem;color:#444}
dl.totals{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem;font-size:.9rem}
dl.totals dt{color:#555} dl.totals dd{margin:0;font-variant-numeric:tabular-nums}
"""


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _energy_text(kwh: float) -> str:
    unit, factor = _energy_unit([kwh])
    return f"{_amount(kwh * factor)} {unit}"


def render_html(cfg, study: Study, tables: dict[str, Table], figures: dict[str, Path], ledger: dict,
                runs) -> str:
    e = html.escape
    trained = [v for v in study.variants if v in study.train]
    evaluated = [v for v in study.variants if v in study.eval]
    missing = [v for v in study.variants if not study.ran(v)]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>sepcost report: {e(cfg.tracking.experiment)}</h1>",
            f'<p class="meta">Generated {now} from {e(cfg.params_file)}, {e(str(paths.METRICS))}/ and the MLflow '
            f"store {e(ledger['tracking_uri'])}.</p>",
            "<h2>Summary</h2><dl class=\"totals\">",
            f"<dt>variants</dt><dd>{len(study.variants)} in params: {len(trained)} trained, {len(evaluated)} "
            f"evaluated, {len(missing)} not run</dd>",
            f"<dt>runs in MLflow</dt><dd>{ledger['runs']} ({ledger['failed_runs']} failed, "
            f"{ledger['killed_runs']} killed)</dd>",
            f"<dt>whole-study energy</dt><dd>{_energy_text(ledger['kwh_codecarbon'])} CodeCarbon, "
            f"{_energy_text(ledger['kwh_green_algorithms'])} Green Algorithms, {ledger['kg_co2e']:.3g} kg CO2e "
            f"(by CodeCarbon {_sci(ledger['household_years_codecarbon'])} household-years at "
            f"{KWH_PER_HOUSEHOLD_YEAR:,.0f} kWh each)</dd>",
            f"<dt>spent on runs not current</dt><dd>{_energy_text(ledger['not_current']['kwh_codecarbon'])} "
            f"CodeCarbon, {_energy_text(ledger['not_current']['kwh_green_algorithms'])} Green Algorithms "
            f"over {ledger['not_current']['runs']} runs</dd></dl>"]
    if missing:
        body.append(f'<p class="note">Not run yet: {e(", ".join(missing))}.</p>')
    for note in study.notes:
        body.append(f'<p class="note">{e(note)}</p>')
    body.append("<h2>How energy was measured</h2>")
    body += [f"<p>{e(line)}</p>" for line in energy_methods_summary(study, cfg.energy.memory_w_per_gb)]

    def row_class(row: dict) -> str:
        if row.get("variant") in BOUNDS or row.get("status") == "reference":
            return "reference"
        return "notrun" if row.get("status") == NOT_RUN or NOT_RUN in str(row.get("source", "")) else ""

    body.append("<h2>Variants</h2>")
    body.append(to_html(tables["study"], row_class))
    if tables["learning_check"].rows:
        body.append("<h2>Learning check</h2>")
        body.append(to_html(tables["learning_check"], lambda r: "" if r["learned"] == "yes" else "short"))
    body.append("<h2>Figures</h2>")
    for name, path in figures.items():
        body.append(f'<figure id="fig-{name}"><img alt="{e(FIGURES[name])}" src="{_img(path)}">'
                    f"<figcaption>{e(FIGURES[name])} ({e(path.name)}).</figcaption></figure>")
    body.append("<h2>Test set: published vs this study</h2>")
    body.append(to_html(tables["test"], row_class))
    body.append("<h2>Energy ledger</h2>")
    body.append(f"<p>{e(ledger['definition'][0].upper() + ledger['definition'][1:])}.</p>")
    body.append(to_html(tables["ledger"]))
    if len(runs):
        body.append(f"<details><summary>All {len(runs)} runs</summary>")
        body.append(to_html(runs_table_view(runs), lambda r: "current" if r.get("category") == "current" else ""))
        body.append("</details>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>sepcost report: {e(cfg.tracking.experiment)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def runs_table_view(runs) -> Table:
    cols = [Col("run_name", "run", long="run"), Col("stage", "stage", long="stage"),
            Col("status", "status", long="status"), Col("category", "ledger", long="ledger category"),
            Col("start", "start (UTC)", long="start (UTC)"), Col("duration_s", "duration", kind="duration",
                                                                 long="duration (h:m:s)"),
            Col("kwh_codecarbon", "kWh CC", kind="sig", long="kWh CodeCarbon"),
            Col("kwh_green_algorithms", "kWh GA", kind="sig", long="kWh Green Algorithms"),
            Col("kg_co2e", "kg CO2e", kind="sig", long="kg CO2e"), Col("run_id", "run id", long="run id")]
    import pandas as pd

    rows = []
    for r in runs.to_dict("records"):
        start = r.get("start_time")
        rows.append({**r, "start": start.strftime("%Y-%m-%d %H:%M:%S") if pd.notna(start) else "",
                     "category": r.get("category", "")})
    extra = ["variant", "stages", "deleted", "start_time", "end_time", "git_commit", "git_dirty", "host"]
    return Table("runs", "Every run of the study's MLflow experiment and its category in the ledger.", cols, rows,
                 extra)


# ----------------------------------------------------------------------------- the stage


def _publish(build: Path) -> None:
    """Move the built tables/, figures/ and index.html into reports/: each folder swapped whole, the
    page last, so the page never refers to a half-written folder."""
    for name in ("tables", "figures"):
        target = paths.REPORTS / name
        old = build / f".old-{name}"
        if target.exists():
            os.replace(target, old)
        os.replace(build / name, target)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(build / "index.html", paths.REPORTS / "index.html")


def run(cfg) -> dict:
    """Build every table, figure, the ledger and reports/index.html; returns a summary."""
    study = load_study(cfg)
    runs = load_runs(cfg, study)
    ledger = summarize_ledger(runs, cfg)
    tables = {"study": study_table(study), "test": testset_table(study), "ledger": ledger_table(ledger),
              "learning_check": learning_table(study)}

    paths.REPORTS.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".report-", dir=paths.REPORTS))
    try:
        (build / "tables").mkdir()
        (build / "figures").mkdir()
        written: list[Path] = []
        for table in tables.values():
            written += write_table(table, build / "tables")
        ledger_json = build / "tables" / "ledger.json"
        ledger_json.write_text(json.dumps(ledger, indent=2, sort_keys=False) + "\n")
        written.append(ledger_json)
        to_csv(runs_table_view(runs), build / "tables" / "runs.csv")
        written.append(build / "tables" / "runs.csv")
        figures = make_figures(study, runs, load_timeline(cfg, runs), build / "figures")
        (build / "index.html").write_text(render_html(cfg, study, tables, figures, ledger, runs))
        _publish(build)
    finally:
        shutil.rmtree(build, ignore_errors=True)

    def final(p: Path) -> str:
        return str(paths.REPORTS / p.relative_to(build))

    not_run = [v for v in study.variants if not study.ran(v)]
    summary = {
        "index": str(paths.REPORTS / "index.html"),
        "tables": [final(p) for p in written],
        "figures": [final(p) for p in figures.values()],
        "rows": len(tables["study"].rows),
        "variants": len(study.variants),
        "variants_run": len(study.variants) - len(not_run),
        "not_run": not_run,
        "ledger": {k: ledger[k] for k in ("runs", "failed_runs", "killed_runs", "kwh_codecarbon",
                                          "kwh_green_algorithms", "kg_co2e", "household_years_codecarbon")}
                  | {"not_current_kwh_codecarbon": ledger["not_current"]["kwh_codecarbon"],
                     "not_current_kwh_green_algorithms": ledger["not_current"]["kwh_green_algorithms"]},
        "learning_check": {r["variant"]: r["min_margin"] for r in tables["learning_check"].rows},
        "notes": list(study.notes),
    }
    print(f"report: {summary['rows']} rows ({summary['variants_run']} of {len(study.variants)} variants run), "
          f"{len(summary['tables'])} table files, {len(summary['figures'])} figures -> {summary['index']}")
    print(f"report: ledger: {ledger['runs']} runs ({ledger['failed_runs']} failed, {ledger['killed_runs']} killed), "
          f"{_energy_text(ledger['kwh_codecarbon'])} CodeCarbon, {_energy_text(ledger['kwh_green_algorithms'])} "
          f"Green Algorithms; {_energy_text(ledger['not_current']['kwh_codecarbon'])} (CodeCarbon) on runs not current")
    learning = tables["learning_check"].rows
    if learning:
        learned = [r["variant"] for r in learning if r["learned"] == "yes"]
        print(f"report: learning check (>= {LEARNING_MARGIN_DB:g} dB over silence and the mixture on every validation "
              f"target): {len(learned)} of {len(learning)} variants pass" + (f": {', '.join(learned)}" if learned else ""))
    for note in study.notes:
        print(f"report: note: {note}")
    return summary
