"""What the report reads from DVC's side of the study: the current metrics and the published figures.

`metrics/train/<variant>.json`, `metrics/eval/<variant>.json` (the variants of the params file and
the reference rows), `plots/train/<variant>.tsv` and `reports/reference/*.csv`, gathered into one
`Study`; plus the number helpers every part of the report reads metrics with (`num`, `finite`,
`fsum`). A file that is missing is left out; one that is broken is a `UserError` naming it.
Imports `pipeline.names`, `pipeline.paths`, `pipeline.errors` and pandas.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from pipeline import paths
from pipeline.errors import UserError
from pipeline.names import AVG, PARAMS_M, REFERENCE_ROWS

# The published figures of reports/reference/ and the columns each must have.
PAPER_VALIDATION = "paper_validation.csv"
PAPER_VALIDATION_COLUMNS = ("variant", "avg_usdr", PARAMS_M, "kwh_codecarbon", "kwh_green_algorithms")
PAPER_TEST = "paper_test.csv"


def num(value) -> float:
    """A metric as a float; NaN for anything missing or not a number."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def finite(value) -> bool:
    return math.isfinite(num(value))


def fsum(values: Iterable) -> float:
    """The sum of the finite values, missing ones left out."""
    return float(sum(v for v in (num(x) for x in values) if math.isfinite(v)))


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


def load_study(cfg, archs: Mapping[str, str]) -> Study:
    """The current metrics of `cfg`'s variants (params order) and of the reference rows, with each
    variant's model family from `archs` ("?" where it has none)."""
    variants = list(cfg.variants)
    train = {v: d for v in variants if (d := _read_json(paths.train_metrics(v))) is not None}
    evals = {v: d for v in [*variants, *REFERENCE_ROWS] if (d := _read_json(paths.eval_metrics(v))) is not None}
    if not train and not evals:
        raise UserError(
            f"{paths.METRICS}/: no metrics of this study's variants or reference rows "
            f"({paths.train_metrics('<variant>')}, {paths.eval_metrics('<variant>')}); "
            "run the pipeline first (`dvc repro`, or `sepcost train` and `sepcost evaluate`)"
        )
    history = {v: h for v in variants if (h := _read_history(paths.train_history(v))) is not None}
    arch = {v: archs.get(v, "?") for v in variants}

    notes = []
    valid_rows, note = _read_reference(PAPER_VALIDATION, PAPER_VALIDATION_COLUMNS)
    notes += [note] if note else []
    published = {r["variant"]: r for r in valid_rows}
    base_params = published.get("base", {}).get(PARAMS_M, "")
    for row in published.values():  # a blank parameter count means "same as base"
        if not str(row.get(PARAMS_M, "")).strip():
            row[PARAMS_M] = base_params
    test_rows, note = _read_reference(PAPER_TEST, ("model", "metric", *cfg.targets, AVG))
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
