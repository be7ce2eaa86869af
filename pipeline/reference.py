"""The published figures the study compares with (reports/reference/), read in one place for the
report and for `sepcost plan`.

Each row's values are its own: the replication's validation table leaves the parameter count
blank where a row has the same models as another (large_patience30 is the large model), so a
blank count takes the count of the published row whose models are the same in this study, else
base's. Imports the config loader, `pipeline.specs`, `pipeline.paths` and `pipeline.errors`.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from pipeline import paths
from pipeline.config import Config, resolve
from pipeline.errors import UserError
from pipeline.names import AVG, PARAMS_M, TARGETS
from pipeline.specs import separator_specs

VALIDATION = paths.REFERENCE / "paper_validation.csv"
VALIDATION_COLUMNS = ("variant", "avg_usdr", PARAMS_M, "kwh_codecarbon", "kwh_green_algorithms")
TEST = paths.REFERENCE / "paper_test.csv"
TEST_COLUMNS = ("model", "metric", AVG)


def _read(path: Path, required: tuple[str, ...]) -> tuple[list[dict], str | None]:
    """Rows of a published-figures CSV, or none and a note saying why."""
    if not path.is_file():
        return [], f"{path} not found: published figures left out"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: expected the columns {', '.join(required)} (missing: {', '.join(missing)})")
        return list(reader), None


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _models(cfg: Config, variant: str) -> str:
    return json.dumps(separator_specs(resolve(cfg, variant)), sort_keys=True)


def validation(cfg: Config) -> tuple[dict[str, dict], str | None]:
    """The replication's validation rows by variant (those of `cfg`'s variants it has), numbers as
    floats, each row's parameter count its own, and `avg_usdr` the average over the study's
    targets, as the study's own avg is (the published one where the study has every target); and a
    note when the file is missing."""
    rows, note = _read(VALIDATION, VALIDATION_COLUMNS)
    published = {r["variant"]: {k: (v if k in ("variant", "description") else _number(v)) for k, v in r.items()}
                 for r in rows if r["variant"] in cfg.variants}
    if set(cfg.targets) != set(TARGETS):
        for row in published.values():
            row["avg_usdr"] = float(sum(row.get(f"{t}_usdr", math.nan) for t in cfg.targets) / len(cfg.targets))
    counted = {_models(cfg, v): r[PARAMS_M] for v, r in published.items() if math.isfinite(r[PARAMS_M])}
    base = published.get("base", {}).get(PARAMS_M, math.nan)
    for variant, row in published.items():
        if not math.isfinite(row[PARAMS_M]):
            row[PARAMS_M] = counted.get(_models(cfg, variant), base)
    return published, note


def test(targets) -> tuple[list[dict], str | None]:
    """The published test-set rows (original BSRNN, the replication, Open-Unmix), numbers as floats."""
    rows, note = _read(TEST, (*TEST_COLUMNS, *targets))
    return [{k: (v if k in ("model", "metric", "source") else _number(v)) for k, v in r.items()} for r in rows], note
