"""The report's tables as data: the table model (`Col`, `Table`, how a column's numbers are shown)
and the tables themselves, study, test set, learning check, ledger and runs. How a table becomes
CSV, Markdown, LaTeX or HTML is `render`'s.
Imports `pipeline.names` and the report's inputs and ledger.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.names import (
    AVG,
    CO2,
    DURATION,
    EVAL,
    KWH_CODECARBON,
    KWH_GREEN_ALGORITHMS,
    LR_EFFECTIVE,
    PARAMS_M,
    REFERENCE_ROWS,
    score_key,
)
from pipeline.report.inputs import Study, finite, num
from pipeline.report.ledger import CATEGORIES, KG_CO2E, KWH_CC, KWH_GA, KWH_PER_HOUSEHOLD_YEAR

REFERENCE_LABELS = {"mixture": "mixture (lower bound)", "oracle_irm": "oracle IRM (upper bound)"}
# Our rows in the test-set comparison (those of them the study has); all variants if it has none.
TEST_COMPARISON = ("base", "large", "large_patience30", "optimized_no_tac", "optimized_tac", "umx")
NOT_RUN = "not run"
LEARNING_MARGIN_DB = 1.0  # what a variant must beat the trivial estimates by, on every target


# ----------------------------------------------------------------------------- the table model


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
        return lambda v: _duration(v) if finite(v) else "–"
    if col.kind == "int":
        return lambda v: f"{int(round(num(v)))}" if finite(v) else "–"
    if col.kind == "g3":
        return lambda v: sci(num(v)) if finite(v) else "–"
    if col.kind == "sdr":
        decimals = 2
    else:  # 3 significant digits for the column's largest magnitude, the same decimals for all
        biggest = max((abs(num(v)) for v in values if finite(v) and num(v) != 0), default=1.0)
        decimals = min(8, max(col.min_decimals, 2 - math.floor(math.log10(biggest))))
    return lambda v: f"{num(v):.{decimals}f}" if finite(v) else "–"


def _duration(seconds) -> str:
    s = int(round(num(seconds)))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def amount(value: float) -> str:
    """3 to 4 significant digits, thousands separated, never in scientific notation above 0.001."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value >= 1e-3 or value == 0 else sci(value)


def sci(value: float) -> str:
    """3 significant digits: 0.0123, 2.40, 15.0, 1,234; 1.23e-5 below 0.001."""
    if value == 0:
        return "0"
    if 100 <= abs(value) < 1e7:
        return f"{value:,.0f}"
    if 1e-3 <= abs(value) < 100:
        return f"{value:#.3g}".rstrip(".")  # 99.99 rounds to "100."
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def short_target(target: str) -> str:
    """A target's name as a narrow column shows it."""
    return "voc." if target == "vocals" else target


# ----------------------------------------------------------------------------- the tables


def _eval_cost(ev: dict) -> dict:
    """An evaluation's energy and time, and how many test tracks it scored."""
    return {"eval_kwh_codecarbon": num(ev.get(EVAL + KWH_CODECARBON)),
            "eval_kwh_green_algorithms": num(ev.get(EVAL + KWH_GREEN_ALGORITHMS)),
            "eval_kg_co2e": num(ev.get(EVAL + CO2)), "eval_duration_s": num(ev.get(EVAL + DURATION)),
            "test_tracks": num(ev.get("tracks")), "mlflow_run_id": ev.get("mlflow_run_id", "")}


def _test_scores(ev: dict, targets: tuple[str, ...]) -> dict:
    return {f"test_{score}_{t}": num(ev.get(score_key(score, t))) for score in ("usdr", "csdr")
            for t in (*targets, AVG)}


def study_table(study: Study) -> Table:
    """The paper's layout: per variant (params order) then the reference rows."""
    ts = study.targets
    cols = [Col("variant", "variant", long="variant"), Col("status", "status", long="status")]
    for key, group in (("valid_usdr", "Validation uSDR (dB)"), ("test_usdr", "Test uSDR (dB)"),
                       ("test_csdr", "Test cSDR (dB)")):
        label = group.split(" (")[0]
        cols += [Col(f"{key}_{t}", short_target(t), group, "sdr", f"{label} {t}") for t in (*ts, AVG)]
    cols += [
        Col(PARAMS_M, "params (M)", "Cost", "sig", "params (M)", 1),
        Col("epochs", "epochs", "Cost", "int", "epochs"),
        Col("lr", "lr", "Cost", "g3", "effective learning rate"),
        Col("train_duration_s", "time (h:m:s)", "Cost", "duration", "training time (h:m:s)"),
        Col(KWH_CC, "kWh CC", "Cost", "sig", "kWh CodeCarbon"),
        Col(KWH_GA, "kWh GA", "Cost", "sig", "kWh Green Algorithms"),
        Col(KG_CO2E, "kg CO2e", "Cost", "sig", "kg CO2e"),
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
        row.update({f"valid_usdr_{t}": num(tr.get(score_key("valid_usdr", t))) for t in (*ts, AVG)})
        row.update(_test_scores(ev, ts))
        row.update({
            PARAMS_M: num(tr.get(PARAMS_M)), "epochs": num(tr.get("epochs")), "lr": num(tr.get(LR_EFFECTIVE)),
            "train_duration_s": num(tr.get(DURATION)),
            KWH_CC: num(tr.get(KWH_CODECARBON)), KWH_GA: num(tr.get(KWH_GREEN_ALGORITHMS)),
            KG_CO2E: num(tr.get(CO2)),
            **_eval_cost(ev),
            "energy_methods": _methods_text(tr.get("energy_methods")),
            "mlflow_run_id": tr.get("mlflow_run_id") or ev.get("mlflow_run_id") or "",  # training's, else eval's
        })
        pub = study.published.get(v)
        if pub:
            row["description"] = pub.get("description", "")
            for ours, theirs in (("valid_usdr_avg", "avg_usdr"), (PARAMS_M, PARAMS_M), (KWH_CC, "kwh_codecarbon"),
                                 (KWH_GA, "kwh_green_algorithms")):
                row[f"paper_{ours}"] = num(pub.get(theirs))
                row[f"diff_{ours}"] = row[ours] - row[f"paper_{ours}"]  # NaN when either is missing
        rows.append(row)
    for b in REFERENCE_ROWS:
        ev = study.eval.get(b)
        row = {"variant": b, "status": "reference" if ev else NOT_RUN, "description": REFERENCE_LABELS[b],
               "_rule_before": b == REFERENCE_ROWS[0], **_test_scores(ev or {}, ts)}
        if ev:
            row.update(_eval_cost(ev))
        rows.append(row)
    caption = ("Variants of the study (params order) and the reference rows: validation and test uSDR, "
               "test cSDR (dB), parameters, training time and training energy by both methods, next to "
               "the replication's published figures and the difference (ours - published).")
    extra = ["description", "test_tracks", "eval_duration_s", "eval_kwh_codecarbon", "eval_kwh_green_algorithms",
             "eval_kg_co2e", "energy_methods", "mlflow_run_id"]
    return Table("study", caption, cols, rows, extra)


def learning_table(study: Study) -> Table:
    """The learning check: per trained variant and target, its best validation uSDR minus the better
    of the two trivial estimates, silence (0 dB) and the mixture itself (`mixture_valid_usdr_*`)."""
    ts = study.targets
    group = "Margin over max(silence, mixture) (dB)"
    cols = [Col("variant", "variant", long="variant")]
    cols += [Col(f"margin_{t}", short_target(t), group, "sdr", f"margin {t} (dB)") for t in ts]
    cols += [Col("min_margin", "min", group, "sdr", "smallest margin (dB)"),
             Col("learned", f">= {LEARNING_MARGIN_DB:g} dB", long=f"every target >= {LEARNING_MARGIN_DB:g} dB")]
    mixture = {t: "mixture_" + score_key("valid_usdr", t) for t in ts}
    rows = []
    for v in study.variants:
        tr = study.train.get(v, {})
        if not all(finite(tr.get(mixture[t])) for t in ts):
            continue  # not trained, or metrics written before the mixture's score was recorded
        row = {"variant": v}
        for t in ts:
            row[f"margin_{t}"] = num(tr.get(score_key("valid_usdr", t))) - max(0.0, num(tr[mixture[t]]))
            row[mixture[t]] = num(tr[mixture[t]])
        row["min_margin"] = min(row[f"margin_{t}"] for t in ts)
        row["learned"] = "yes" if row["min_margin"] >= LEARNING_MARGIN_DB else "no"
        rows.append(row)
    caption = ("Learning check on the validation tracks: each variant's best validation uSDR minus the better "
               "of two trivial estimates, silence (0 dB) and the mixture itself, per target. A variant that "
               f"learned to separate clears {LEARNING_MARGIN_DB:g} dB on every target.")
    return Table("learning_check", caption, cols, rows, list(mixture.values()), wide=False)


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
        cols += [Col(score_key(metric, t), short_target(t), group, "sdr", f"{metric[0]}SDR {t}") for t in (*ts, AVG)]
    rows: dict[str, dict] = {}
    for r in study.published_test:
        row = rows.setdefault(r["model"], {"system": r["model"], "source": r.get("source", "published")})
        metric = str(r.get("metric", "")).strip().lower()
        if metric in ("csdr", "usdr"):
            for t in (*ts, AVG):
                row[score_key(metric, t)] = num(r.get(t))
    ours = [v for v in TEST_COMPARISON if v in study.variants] or list(study.variants)
    for k, v in enumerate([*ours, *REFERENCE_ROWS]):
        ev = study.eval.get(v)
        label = "this study" if v not in REFERENCE_ROWS else f"this study, {REFERENCE_LABELS[v]}"
        row = {"system": v, "source": label if ev else f"{label}: {NOT_RUN}", "_rule_before": k == 0 and bool(rows)}
        for metric in ("csdr", "usdr"):
            for t in (*ts, AVG):
                row[score_key(metric, t)] = num((ev or {}).get(score_key(metric, t)))
        rows[f"ours:{v}"] = row
    caption = ("MUSDB18-HQ test set: published systems (original BSRNN, the replication, Open-Unmix) and this "
               "study's variants. cSDR: BSSEval v4 median over frames then tracks; uSDR: mean over tracks "
               "of whole-track SDR.")
    return Table("test", caption, cols, list(rows.values()))


def _energy_cols() -> list[Col]:
    """Both methods' kWh and CodeCarbon's kg CO2e, as the ledger and the runs tables show them."""
    return [Col(KWH_CC, "kWh CC", kind="sig", long="kWh CodeCarbon"),
            Col(KWH_GA, "kWh GA", kind="sig", long="kWh Green Algorithms"),
            Col(KG_CO2E, "kg CO2e", kind="sig", long="kg CO2e")]


def ledger_table(ledger: dict) -> Table:
    cols = [Col("category", "runs of the study", long="category"), Col("runs", "runs", kind="int", long="runs"),
            *_energy_cols(),
            Col("share_codecarbon", "% of kWh CC", kind="sig", long="share of kWh CodeCarbon (%)", min_decimals=1),
            Col("household_years_codecarbon", "household-years CC", kind="g3",
                long="household-years (CodeCarbon)"),
            Col("household_years_green_algorithms", "household-years GA", kind="g3",
                long="household-years (Green Algorithms)")]
    total = ledger[KWH_CC]

    def row(name: str, label: str, part: dict) -> dict:
        share = 100.0 * part[KWH_CC] / total if total > 0 else math.nan
        return {"key": name, "category": label, **part, "share_codecarbon": share}

    rows = [row("all", "all runs", ledger)]
    rows += [row(k, f"of which {label}", ledger["categories"][k]) for k, label in CATEGORIES.items()]
    rows.append(row("not_current", "not current (all but current results)", ledger["not_current"]))
    caption = (f"Whole-study energy ledger from the MLflow store ({ledger['experiment']}): every run, failed and "
               f"killed ones included. Household-years at the replication's {KWH_PER_HOUSEHOLD_YEAR:,.0f} kWh "
               "per household-year (23,000 kWh = about 15 household-years).")
    rows[1]["_rule_before"] = rows[-1]["_rule_before"] = True
    return Table("ledger", caption, cols, rows, ["key", DURATION], wide=False)


def runs_table_view(runs) -> Table:
    """Every run of the ledger (`ledger.load_runs`), one row each, with its category."""
    import pandas as pd

    cols = [Col("run_name", "run", long="run"), Col("stage", "stage", long="stage"),
            Col("status", "status", long="status"), Col("category", "ledger", long="ledger category"),
            Col("start", "start (UTC)", long="start (UTC)"),
            Col(DURATION, "duration", kind="duration", long="duration (h:m:s)"),
            *_energy_cols(), Col("run_id", "run id", long="run id")]
    rows = []
    for r in runs.to_dict("records"):
        start = r.get("start_time")
        rows.append({**r, "start": start.strftime("%Y-%m-%d %H:%M:%S") if pd.notna(start) else "",
                     "category": r.get("category", "")})
    extra = ["variant", "stages", "deleted", "start_time", "end_time", "git_commit", "git_dirty", "host"]
    return Table("runs", "Every run of the study's MLflow experiment and its category in the ledger.", cols, rows,
                 extra)
