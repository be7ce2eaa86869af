"""The report's tables as data: the table model (`Col`, `Table`, how a column's numbers are shown),
the number formats, and the tables of the MLflow store, the ledger and every run. The study's own
tables are `results`' and `comparison`'s; how a table becomes CSV, Markdown, LaTeX or HTML is
`render`'s. Imports `pipeline.names` and the report's inputs and ledger.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.names import DURATION
from pipeline.report.inputs import finite, num
from pipeline.report.ledger import CATEGORIES, KG_CO2E, KWH_CC, KWH_GA, KWH_PER_HOUSEHOLD_YEAR

REFERENCE_LABELS = {"mixture": "mixture (lower bound)", "oracle_irm": "oracle IRM (upper bound)"}
NOT_RUN = "not run"


# ----------------------------------------------------------------------------- the table model


@dataclass(frozen=True)
class Col:
    key: str
    header: str  # under its group (LaTeX, HTML)
    group: str = ""
    kind: str = "text"  # text | sdr | delta (sdr, signed) | pct (signed, 1 decimal) | mean (1 decimal) | sig
    #                     (3 significant digits of the column's largest) | g3 (each value's own 3 significant
    #                     digits) | int | duration
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


FIXED = {"sdr": (2, ""), "delta": (2, "+"), "pct": (1, "+"), "mean": (1, "")}  # decimals, sign


def _formatter(col: Col, values: list) -> Callable[[Any], str]:
    if col.kind == "text":
        return lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
    if col.kind == "duration":
        return lambda v: _duration(v) if finite(v) else "–"
    if col.kind == "int":
        return lambda v: f"{int(round(num(v)))}" if finite(v) else "–"
    if col.kind == "g3":
        return lambda v: sci(num(v)) if finite(v) else "–"
    if col.kind in FIXED:
        decimals, sign = FIXED[col.kind]
        return lambda v: f"{num(v):{sign}.{decimals}f}" if finite(v) else "–"
    # sig: 3 significant digits for the column's largest magnitude, the same decimals for all
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


# ----------------------------------------------------------------------------- the store's tables


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
               "per household-year (23,000 kWh = about 15 household-years)."
               + (f" Lower bounds: {ledger['runs_energy_unknown']} runs whose GPU energy could not be attributed "
                  "are not counted." if ledger["runs_energy_unknown"] else ""))
    rows[1]["_rule_before"] = rows[-1]["_rule_before"] = True
    return Table("ledger", caption, cols, rows, ["key", DURATION], wide=False)


def stages_table(ledger: dict) -> Table:
    """The ledger by stage: every run's energy under the stage that spent it (an evaluation logged
    into its training's run under `evaluate`)."""
    cols = [Col("stage", "stage", long="stage"), Col("runs", "runs", kind="int", long="runs"),
            Col(KWH_CC, "kWh CC", kind="sig", long="kWh CodeCarbon"),
            Col(KWH_GA, "kWh GA", kind="sig", long="kWh Green Algorithms"),
            Col("share_codecarbon", "% of kWh CC", kind="sig", long="share of kWh CodeCarbon (%)", min_decimals=1)]
    total = sum(part[KWH_CC] for part in ledger["stages"].values())
    rows = [{"stage": stage, **part, "share_codecarbon": 100.0 * part[KWH_CC] / total if total > 0 else math.nan}
            for stage, part in sorted(ledger["stages"].items(), key=lambda item: -item[1][KWH_CC])]
    rows.append({"stage": "all stages", "runs": sum(r["runs"] for r in rows), KWH_CC: total,
                 KWH_GA: sum(part[KWH_GA] for part in ledger["stages"].values()), "share_codecarbon": 100.0,
                 "_rule_before": True})
    caption = ("The whole-study ledger by stage: every run's energy, failed, killed and superseded ones included, "
               "under the stage that spent it (an evaluation counts once per execution).")
    return Table("stages", caption, cols, rows, wide=False)


def runs_table_view(runs) -> Table:
    """Every run of the ledger (`ledger.load_runs`), one row each, with its category."""
    import pandas as pd

    cols = [Col("run_name", "run", long="run"), Col("stage", "stage", long="stage"),
            Col("status", "status", long="status"), Col("category", "ledger", long="ledger category"),
            Col("start", "start (UTC)", long="start (UTC)"),
            Col(DURATION, "duration", kind="duration", long="duration (h:m:s)"),
            *_energy_cols(), Col("methods", "how CodeCarbon measured", long="how CodeCarbon measured"),
            Col("run_id", "run id", long="run id")]
    rows = []
    for r in runs.to_dict("records"):
        start = r.get("start_time")
        rows.append({**r, "start": start.strftime("%Y-%m-%d %H:%M:%S") if pd.notna(start) else "",
                     "category": r.get("category", "")})
    extra = ["variant", "deleted", "start_time", "end_time", "git_commit", "git_dirty", "host"]
    return Table("runs", "Every run of the study's MLflow experiment and its category in the ledger.", cols, rows,
                 extra)
