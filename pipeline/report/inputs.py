"""What the report reads from DVC's side of the study: the current metrics of every run.

`metrics/train/<run>.json`, `metrics/eval/<run>.json` and `plots/train/<run>.tsv` of every run of
the study (a run is one variant trained with one seed, named by its run key) and of the reference
rows, gathered into one `Study` with what the stage passes in: each variant's run keys, model
family and recipe changes (`Variant`), the published figures and whether the study is at the
paper's scale. Plus the number helpers every part of the report reads metrics with (`num`,
`finite`, `fsum`, `mean`). A file that is missing is left out; one that is broken is a `UserError`
naming it. Imports `pipeline.names`, `pipeline.paths`, `pipeline.errors` and pandas.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from pipeline import paths
from pipeline.errors import UserError
from pipeline.names import REFERENCE_ROWS

TRAINING, EVALUATION = "train", "eval"  # the two metrics files of a run (`Study.metrics`)


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


def mean(values: Iterable) -> float:
    """The mean of the finite values; NaN when there is none."""
    kept = [v for v in (num(x) for x in values) if math.isfinite(v)]
    return float(sum(kept) / len(kept)) if kept else math.nan


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


@dataclass(frozen=True)
class Stopping:
    """A variant's stopping rule: the validation figure it monitors, its patience and the epochs of
    its schedule, and whether the rule can end a training before its last epoch."""

    monitor: str
    patience: int
    max_epochs: int
    can_act: bool


@dataclass(frozen=True)
class Variant:
    """What the stage knows of a variant from the params: its runs' keys (seeds in order), its model
    family, where its resolved recipe differs from base's (`config.recipes.changes`, as text) and,
    for base and the rows whose declared change is the stopping rule, that rule."""

    runs: tuple[str, ...]
    arch: str = "?"
    changes: tuple[str, ...] = ()
    stopping: Stopping | None = None


@dataclass
class Study:
    """What the current metrics say, per run and reference row, and what each variant is."""

    variants: list[str]
    targets: tuple[str, ...]
    runs: dict[str, tuple[str, ...]]  # variant -> its run keys, first seed first
    arch: dict[str, str]
    changes: dict[str, tuple[str, ...]]
    train: dict[str, dict]  # by run key
    eval: dict[str, dict]  # by run key, and the reference rows by name
    history: dict[str, Any]  # by run key
    published: dict[str, dict]  # the paper's validation rows by variant (`pipeline.reference`)
    published_test: list[dict]
    current_ids: dict[str, str]  # MLflow run id -> the metrics file naming it
    paper_scale: bool = False  # the paper's data and model sizes: absolute figures compare
    scale_reason: str = ""  # why not, when not
    base: str = "base"  # the variant every other one is compared with (`config.recipes.BASE`)
    notes: list[str] = field(default_factory=list)
    stopping: dict[str, Stopping] = field(default_factory=dict)  # base's and the stopping-rule rows'

    def metrics(self, variant: str, kind: str = TRAINING) -> list[dict]:
        """The train (or eval) metrics of a variant's runs that have them, seeds in order."""
        table = self.train if kind == TRAINING else self.eval
        return [table[r] for r in self.runs.get(variant, ()) if r in table]

    def values(self, variant: str, key: str, kind: str = TRAINING) -> list[float]:
        """A metric over a variant's runs, the finite values only."""
        return [v for v in (num(m.get(key)) for m in self.metrics(variant, kind)) if math.isfinite(v)]

    def mean(self, variant: str, key: str, kind: str = TRAINING) -> float:
        return mean(self.values(variant, key, kind))

    def trained(self, variant: str) -> list[str]:
        return [r for r in self.runs.get(variant, ()) if r in self.train]

    def ran(self, variant: str) -> bool:
        """A variant with no run trained is "not run"."""
        return bool(self.trained(variant))

    def all_runs(self) -> list[str]:
        return [r for v in self.variants for r in self.runs.get(v, ())]


def load_study(targets: Iterable[str], variants: Mapping[str, Variant],
               published: tuple[dict[str, dict], str | None] = ({}, None),
               published_test: tuple[list[dict], str | None] = ([], None),
               paper_scale: bool = False, scale_reason: str = "", base: str = "base") -> Study:
    """The current metrics of every run of `variants` (params order) and of the reference rows, with
    the published validation rows by variant and test rows (`pipeline.reference`'s, each with its
    note when its file is missing)."""
    names = list(variants)
    runs = {v: tuple(variants[v].runs) for v in names}
    every = [r for v in names for r in runs[v]]
    train = {r: d for r in every if (d := _read_json(paths.train_metrics(r))) is not None}
    evals = {r: d for r in [*every, *REFERENCE_ROWS] if (d := _read_json(paths.eval_metrics(r))) is not None}
    if not train and not evals:
        raise UserError(
            f"{paths.METRICS}/: no metrics of this study's runs or reference rows "
            f"({paths.train_metrics('<run>')}, {paths.eval_metrics('<run>')}); "
            "run the pipeline first (`dvc repro`, or `sepcost train` and `sepcost evaluate`)"
        )
    history = {r: h for r in every if (h := _read_history(paths.train_history(r))) is not None}
    notes = [note for _, note in (published, published_test) if note]

    # Every metrics file present is the current state, runs removed from params included.
    current = {}
    for folder in (paths.METRICS / "train", paths.METRICS / "eval"):
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            data = _read_json(path)
            run_id = data.get("mlflow_run_id") if data else None
            if isinstance(run_id, str) and run_id:
                current.setdefault(run_id, str(path))
    return Study(names, tuple(targets), runs, {v: variants[v].arch for v in names},
                 {v: tuple(variants[v].changes) for v in names}, train, evals, history, dict(published[0]),
                 list(published_test[0]), current, paper_scale, scale_reason, base, notes,
                 {v: variants[v].stopping for v in names if variants[v].stopping})
