"""The whole-study energy ledger, read from the MLflow store: every run, whatever its status.

`runs_table` lists every run of the study's experiment (deleted ones flagged) with the energy of
every execution logged into it (the `<prefix>ledger_*` metrics that `pipeline.tracking.run` logs,
for each prefix of the run's `energy.prefixes` tag); `energy_timeline` says when that energy was
spent. `load_runs` gives each run its category against the current metrics files (a run is current
when its id is the `mlflow_run_id` of one), and `summarize_ledger` totals them by method and
category (a RUNNING run without a recent heartbeat is lost) and by stage, household-years included;
the report's own run counts with the energy spent until it reads the ledger.
The write side is `pipeline.tracking.run`'s. Imports `pipeline.names`, `pipeline.errors`, the
tracking store, the report's inputs, pandas.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from pipeline.errors import UserError
from pipeline.names import (
    CO2,
    DURATION,
    ENERGY_PREFIXES_TAG,
    EVAL,
    HEARTBEAT_S,
    HEARTBEAT_TAG,
    KWH_CODECARBON,
    KWH_GREEN_ALGORITHMS,
    LEDGER,
    METHODS,
    REFERENCE_ROWS,
    RUN,
    kwh_key,
    stage_parts,
)
from pipeline.report.inputs import Study, fsum, num
from pipeline.tracking import store

# The replication's equivalence: its ~23,000 kWh are "about 15 household-years" of electricity.
PAPER_TOTAL_KWH = 23000.0
PAPER_HOUSEHOLD_YEARS = 15.0
KWH_PER_HOUSEHOLD_YEAR = PAPER_TOTAL_KWH / PAPER_HOUSEHOLD_YEARS


def kwh_column(method: str) -> str:
    """The ledger's (and the tables') energy column of a method, summed over executions."""
    return f"kwh_{method}"


KWH_CC, KWH_GA = (kwh_column(m) for m in METHODS)  # kwh_codecarbon, kwh_green_algorithms
KG_CO2E = "kg_co2e"

# MLflow metrics the runs table copies as they are: the last training execution's, the last
# evaluation's and the run's totals (earlier executions of a resumed training included).
_COPIED = [*(RUN + kwh_key(m) for m in METHODS), *(EVAL + RUN + kwh_key(m) for m in METHODS),
           *(kwh_key(m) for m in METHODS)]
RUNS_COLUMNS = [
    "run_id", "run_name", "variant", "stage", "status", "deleted", "start_time", "end_time",
    KWH_CC, KWH_GA, KG_CO2E, DURATION, *(f"{part}{kwh_column(m)}" for part in ("own_", "eval_") for m in METHODS),
    "heartbeat", "methods", *_COPIED, "git_commit", "git_dirty", "host",
]
TIMELINE_COLUMNS = ["time", "run_id", "status", KWH_CC, KWH_GA]
# A run logged before the tag existed was metered by training (no prefix) and evaluation.
_DEFAULT_PREFIXES = json.dumps(["", EVAL])

# Ledger categories, in the order the ledger lists them; every run falls in exactly one.
CATEGORIES = {
    "current": "current results",
    "superseded": "superseded (finished, result replaced)",
    "failed": "failed",
    "killed": "killed",
    "lost": "lost (left RUNNING, no heartbeat)",
    "unfinished": "still running",
    "other": "forecasts and other stages",
}
RESULT_STAGES = ("train", "evaluate")  # stages whose runs produce a metrics file
# Stages whose latest finished run made the current output (they write no run id anywhere).
SINGLE_STAGES = ("prepare", "sad", "report")
LOST_AFTER_S = 5 * HEARTBEAT_S  # a RUNNING run silent for longer was lost


@dataclass(frozen=True)
class OpenRun:
    """The report's own run while it reads the ledger: its id, its meter's energy so far (keys
    `ENERGY_KEYS`) and how the meter measures (`EnergyMeter.methods`)."""

    run_id: str
    energy: Mapping[str, float]
    methods: Mapping[str, str]


# ----------------------------------------------------------------------------- the store


def _energy_prefixes(run) -> list[str]:
    return json.loads(run.data.tags.get(ENERGY_PREFIXES_TAG, _DEFAULT_PREFIXES))


def energy_timeline(cfg):
    """When the study's energy was spent: one row per logged step of a run's `<prefix>ledger_*`
    energy (after every training epoch, at the end of every execution), with the energy spent since
    the previous step by both methods. Summed over a run, the rows give its runs_table energy; in
    time order they give the study's cumulative energy (in stores written before evaluations had
    runs of their own, a training run reopened for evaluation hours later included). `cfg` is the
    TrackingConfig."""
    import pandas as pd

    client = store.client(cfg)
    rows = []
    for r in store.every_run(cfg):
        steps: dict[int, dict[str, float]] = {}
        for prefix in _energy_prefixes(r):
            for method in METHODS:
                key = f"{prefix}{LEDGER}{kwh_key(method)}"
                if key not in r.data.metrics:
                    key = f"{prefix}{RUN}{kwh_key(method)}"
                if key not in r.data.metrics:
                    continue
                spent = 0.0
                history = client.get_metric_history(r.info.run_id, key)
                for point in sorted(history, key=lambda p: (p.timestamp, p.step)):
                    if math.isfinite(point.value) and point.value > spent:
                        step = steps.setdefault(point.timestamp, dict.fromkeys(METHODS, 0.0))
                        step[method] += point.value - spent
                        spent = point.value
        rows += [{"time": pd.to_datetime(ms, unit="ms", utc=True), "run_id": r.info.run_id,
                  "status": r.info.status, **{kwh_column(m): kwh[m] for m in METHODS}}
                 for ms, kwh in sorted(steps.items())]
    table = pd.DataFrame(rows, columns=TIMELINE_COLUMNS)
    return table.sort_values("time", kind="stable", ignore_index=True)


def _methods(tags: Mapping[str, str], prefixes: list[str]) -> str:
    """How CodeCarbon measured each meter of a run (`energy.method.*` tags), e.g.
    "cpu=cpu_load gpu=none ram=dimm_model_machine"; "codecarbon=failed: ..." when it did not."""
    out = []
    for p in prefixes:
        status = tags.get(f"{p}energy.method.codecarbon", "")
        parts = [f"{k}={tags[f'{p}energy.method.{k}']}" for k in ("cpu", "gpu", "ram", "gpu_ids", "gpu_missing", "node_shared")
                 if f"{p}energy.method.{k}" in tags]
        text = " ".join(parts) if status == "ok" else f"codecarbon={status or 'not recorded'}"
        out.append(f"{p or 'own '}: {text}" if len(prefixes) > 1 else text)
    return "; ".join(out)


def _sum_executions(metrics: Mapping[str, float], tags: Mapping[str, str], prefixes: list[str], key: str) -> float:
    """`key` summed over the executions logged into a run (under `prefixes`). NaN when one of them
    has a GPU whose energy could not be attributed (its `gpu_missing` tag; MLflow keeps no NaN
    metric): the run's energy is not known, and counting it as 0 kWh would hide that."""
    total = 0.0
    for p in prefixes:
        value = metrics.get(f"{p}{LEDGER}{key}", metrics.get(f"{p}{RUN}{key}", math.nan))
        if math.isfinite(value):
            total += value
        elif key != DURATION and f"{p}energy.method.gpu_missing" in tags:
            return math.nan
    return total


def runs_table(cfg):
    """Every run of the study's experiment, whatever its status (deleted ones flagged), one row each:
    times, status, variant, stage, and the energy each execution spent by both methods.

    `kwh_codecarbon` / `kwh_green_algorithms` / `kg_co2e` / `duration_s` add up every execution
    logged into the run (training and evaluation: `<prefix>ledger_*` for each prefix in the run's
    `energy.prefixes` tag), so summing a column over the table gives the whole study without
    counting resumed work twice nor forgetting a repeated evaluation. `cfg` is the TrackingConfig."""
    import pandas as pd

    rows = []
    for r in store.every_run(cfg):
        m, t = r.data.metrics, r.data.tags
        prefixes = _energy_prefixes(r)
        rows.append({
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "variant": t.get("variant", ""),
            "stage": t.get("dvc.stage", ""),
            "status": r.info.status,
            "deleted": r.info.lifecycle_stage == "deleted",
            "start_time": pd.to_datetime(r.info.start_time, unit="ms", utc=True),
            "end_time": (pd.to_datetime(r.info.end_time, unit="ms", utc=True)
                         if r.info.end_time else pd.NaT),
            KWH_CC: _sum_executions(m, t, prefixes, KWH_CODECARBON),
            KWH_GA: _sum_executions(m, t, prefixes, KWH_GREEN_ALGORITHMS),
            # the run's own stage's part, and the evaluations logged into it (stage `evaluate`)
            **{f"own_{kwh_column(k)}": _sum_executions(m, t, [p for p in prefixes if p != EVAL], kwh_key(k))
               for k in METHODS},
            **{f"eval_{kwh_column(k)}": _sum_executions(m, t, [p for p in prefixes if p == EVAL], kwh_key(k))
               for k in METHODS},
            "heartbeat": float(t.get(HEARTBEAT_TAG, r.info.start_time / 1000)),
            "methods": _methods(t, prefixes),
            KG_CO2E: _sum_executions(m, t, prefixes, CO2),
            DURATION: _sum_executions(m, t, prefixes, DURATION),
            **{key: m.get(key, math.nan) for key in _COPIED},
            "git_commit": t.get("git.commit", ""),
            "git_dirty": t.get("git.dirty", ""),
            "host": t.get("host", ""),
        })
    return pd.DataFrame(rows, columns=RUNS_COLUMNS)


# ----------------------------------------------------------------------------- the ledger


def stage_split(runs) -> dict[str, dict]:
    """Both methods' kWh and the runs of each stage kind. A run counts for its stage; an evaluation
    logged into a training's run (stores written before evaluations had runs of their own) counts
    for `evaluate` too."""
    out: dict[str, dict] = {}
    for r in runs.to_dict("records"):
        kind = ledger_kind(str(r["stage"]))
        parts: dict[str, dict[str, float]] = {}
        for part_kind, part in ((kind, "own_"), (kind if kind in ("evaluate", "bounds") else "evaluate", "eval_")):
            spent = {k: num(r.get(f"{part}{kwh_column(k)}")) for k in METHODS}
            into = parts.setdefault(part_kind, dict.fromkeys(METHODS, 0.0))
            for k, v in spent.items():
                into[k] += v if math.isfinite(v) else 0.0
        for part_kind, spent in parts.items():
            if part_kind != kind and not any(v > 0 for v in spent.values()):
                continue
            row = out.setdefault(part_kind, {"runs": 0, **{kwh_column(k): 0.0 for k in METHODS}})
            row["runs"] += 1
            for k, v in spent.items():
                row[kwh_column(k)] += v
    return out


def load_runs(cfg, study: Study, open_run: OpenRun | None = None):
    """Every run of the study's MLflow experiment with its ledger category (an empty table when the
    store holds none, or does not exist yet: reading it would create it). `open_run` is the
    report's own run, still open: its row gets the energy its meter has counted so far, and it is
    the current report (the one before it is then an `other` row, in full)."""
    import pandas as pd

    store.configure(cfg.tracking)
    uri, _ = store.resolved(cfg.tracking)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        table = pd.DataFrame(columns=RUNS_COLUMNS)
        study.notes.append(f"no MLflow store at {uri[len('sqlite:///'):]}: the ledger has no runs")
    else:
        try:
            table = runs_table(cfg.tracking)
        except Exception as err:
            raise UserError(f"{cfg.params_file}: tracking.uri: cannot read the MLflow store {uri} "
                            f"({type(err).__name__}: {err})") from None
    table = table.copy()
    if open_run is not None:
        _count_open_run(table, open_run)
    latest = _latest_finished(table, open_run.run_id if open_run else None)
    table["category"] = [_category(r, study.current_ids, latest) for r in table.to_dict("records")]
    table["current"] = table["category"] == "current"
    return table


def _count_open_run(table, run: OpenRun) -> None:
    """Give the open run's row (if the store lists it) the energy and methods its meter has so far."""
    at = table.index[table["run_id"] == run.run_id]
    for method in METHODS:
        spent = run.energy[kwh_key(method)]
        table.loc[at, [kwh_column(method), f"own_{kwh_column(method)}"]] = spent
        table.loc[at, f"eval_{kwh_column(method)}"] = 0.0
    table.loc[at, KG_CO2E] = run.energy[CO2]
    table.loc[at, DURATION] = run.energy[DURATION]
    table.loc[at, "methods"] = _methods({f"energy.method.{k}": v for k, v in run.methods.items()}, [""])


def ledger_kind(stage: str) -> str:
    """A stage's row of the ledger: its kind (train, evaluate, prepare, sad, forecast, report, ...),
    or bounds for the reference rows' evaluate."""
    kind, key = stage_parts(stage)
    return "bounds" if kind == "evaluate" and key in REFERENCE_ROWS else kind


def _latest_finished(table, open_run: str | None) -> set[str]:
    """The run ids of the latest finished run of each single stage (prepare, sad, report), the open
    report's own run counting as finished."""
    finished = (table["status"] == "FINISHED") | (table["run_id"] == open_run)
    done = table[finished & table["stage"].isin(SINGLE_STAGES)]
    return set(done.sort_values("start_time").groupby("stage")["run_id"].last())


def load_timeline(cfg, runs):
    """When the runs' energy was spent (`energy_timeline`); empty when the store has no runs."""
    import pandas as pd

    if runs.empty:
        return pd.DataFrame(columns=TIMELINE_COLUMNS)
    return energy_timeline(cfg.tracking)


def _category(run: dict, current_ids: dict, latest: set[str]) -> str:
    if run["run_id"] in current_ids or run["run_id"] in latest:
        return "current"
    status = str(run.get("status", ""))
    if status == "FAILED":
        return "failed"
    if status == "KILLED":
        return "killed"
    if status != "FINISHED":
        return "lost" if time.time() - float(run.get("heartbeat", 0)) > LOST_AFTER_S else "unfinished"
    kind = stage_parts(str(run.get("stage", "")))[0]
    return "superseded" if kind in RESULT_STAGES else "other"


def summarize_ledger(runs, cfg) -> dict:
    """Totals by method and by category; every value is a plain number for JSON."""
    uri, _ = store.resolved(cfg.tracking)

    def totals(part) -> dict:
        kwh_cc, kwh_ga = fsum(part[KWH_CC]), fsum(part[KWH_GA])
        return {"runs": int(len(part)), KWH_CC: kwh_cc, KWH_GA: kwh_ga,
                # runs whose GPU energy could not be attributed: left out of the sums, counted here
                "runs_energy_unknown": int(part[KWH_CC].isna().sum()),
                KG_CO2E: fsum(part[KG_CO2E]), DURATION: fsum(part[DURATION]),
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
        "stages": stage_split(runs),
        "kwh_per_household_year": KWH_PER_HOUSEHOLD_YEAR,
        "tracking_uri": uri,
        "experiment": cfg.tracking.experiment,
        "definition": ("a run is current when its id is the mlflow_run_id of a current metrics/train or "
                       "metrics/eval file, or it is the latest finished prepare, sad or report; 'not current' "
                       "adds up every other run (superseded results, failed, killed and lost runs, forecasts), "
                       "whose energy was spent all the same"),
    }
