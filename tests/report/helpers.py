"""What the report's tests build studies from: one MLflow run through the real tracking module, the
metrics files and histories of a run (a variant and a seed), the published figures, CSV readers,
and a synthetic `Study` of any size made in memory (for the tables and the figures' layout)."""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

from pipeline import paths, tracking
from pipeline.energy.meter import EnergyMeter
from pipeline.names import KWH_CODECARBON, KWH_GREEN_ALGORITHMS, run_key
from pipeline.report.inputs import Study
from tests.conftest import REPO

TARGETS = ("vocals", "bass", "drums", "other")
FIRST_SEED = 42  # params.yaml's seed
BASE_SEEDS = 3  # params.yaml gives base 3 seeds and every other variant 1
BASE_SHIFTS = (-0.25, 0.0, 0.25)  # each base seed's validation and test scores, around the seed-free figure
BASE_KWH_SCALES = (0.9, 1.0, 1.1)


def mlflow_run(cfg, stage: str, prefix: str = "", outcome: BaseException | None = None,
               parent: str | None = None, run_name: str | None = None) -> tuple[str, float, float]:
    """One run through the real tracking module with a real energy meter around a little work;
    returns its id and the kWh this execution measured by both methods."""
    meter = EnergyMeter(cfg.energy, out_dir=Path("energy") / stage, project_name=stage)
    try:
        with tracking.run(cfg, stage, run_name=run_name, parent=parent) as tracked:
            tracked.watch_energy(meter, prefix=prefix)
            with meter:
                sum(i * i for i in range(200_000))
                if outcome is not None:
                    raise outcome
    except (RuntimeError, KeyboardInterrupt):
        pass
    spent = meter.run_totals()
    return tracked.run_id, spent[KWH_CODECARBON], spent[KWH_GREEN_ALGORITHMS]


def train_metrics(variant: str, i: int, run_id: str, kwh: tuple[float, float], lr: float | None = None,
                  seed: int = FIRST_SEED, shift: float = 0.0) -> dict:
    """A training's metrics: the i-th variant's figures, its validation scores moved by `shift`; with
    an effective lr (newer metrics) also the training's own forecast."""
    out = {"variant": variant, "seed": seed, "run": run_key(variant, seed), "epochs": 4 + i,
           "params": 20000 * (i + 1), "params_m": 0.02 * (i + 1), "best_epoch": 3 + i}
    for j, t in enumerate(TARGETS):
        out[f"best_epoch_{t}"] = 3 + i
        out[f"valid_usdr_{t}"] = 1.0 + 0.5 * i + 0.3 * j + shift
    out["valid_usdr_avg"] = sum(out[f"valid_usdr_{t}"] for t in TARGETS) / 4
    # the mixture as the estimate: below silence on vocals and bass, above it on drums and other,
    # and for the second variant too close to its score on other for the learning check
    for t, mixture in zip(TARGETS, (-3.0, -1.0, 0.5, 2.0 if i == 1 else 0.4)):
        out[f"mixture_valid_usdr_{t}"] = mixture
    cc, ga = kwh
    out.update({"energy_kwh_codecarbon": cc, "energy_kwh_green_algorithms": ga, "emissions_kg_co2e": cc * 0.05,
                "duration_s": 600.0 * (i + 1), "cpu_kwh": cc * 0.7, "gpu_kwh": 0.0, "ram_kwh": cc * 0.3,
                "ga_cpu_kwh": ga * 0.8, "ga_gpu_kwh": 0.0, "ga_ram_kwh": ga * 0.2,
                "energy_methods": {"codecarbon": "ok", "cpu": "cpu_load", "gpu": "none", "ram": "constant",
                                   "pue": 1.0, "carbon_intensity_g_per_kwh": 50.0,
                                   "carbon_intensity_source": "codecarbon: FRA", "ga_tdp_source": "tdp.csv"},
                "mlflow_run_id": run_id})
    if lr is not None:
        out.update({"lr_effective": lr, "global_batch": 4})
        out.update(forecast(out, per_epoch_scale=1.0 if i else 1.25))
    return out


def forecast(measured: dict, per_epoch_scale: float, shortest: int = 3, longest: int = 8) -> dict:
    """A training's forecast (training.forecast's keys): one epoch costing `per_epoch_scale` times
    the measured mean epoch, times the shortest and the longest schedule."""
    out = {"forecast_epochs": longest, "forecast_min_epochs": shortest}
    epochs = measured["epochs"]
    for key in ("duration_s", "energy_kwh_codecarbon", "energy_kwh_green_algorithms"):
        per_epoch = per_epoch_scale * measured[key] / epochs
        out[f"forecast_{key}"] = longest * per_epoch
        out[f"forecast_min_{key}"] = shortest * per_epoch
        out[f"forecast_error_{key}_pct"] = 100.0 * (epochs * per_epoch - measured[key]) / measured[key]
        out[f"forecast_within_range_{key}"] = float(shortest * per_epoch <= measured[key] <= longest * per_epoch)
    return out


def eval_metrics(run: str, level: float, run_id: str) -> dict:
    variant, _, seed = run.rpartition("-seed")
    out = {"variant": variant or run, "seed": int(seed) if seed.isdigit() else None, "run": run, "tracks": 2}
    for j, t in enumerate(TARGETS):
        for k, key in enumerate(("usdr", "csdr", "sir", "sar", "isr")):
            out[f"{key}_{t}"] = level + 0.4 * j + 0.2 * k
    for key in ("usdr", "csdr", "sir", "sar", "isr"):
        out[f"{key}_avg"] = sum(out[f"{key}_{t}"] for t in TARGETS) / 4
    out.update({"eval_energy_kwh_codecarbon": 0.001, "eval_energy_kwh_green_algorithms": 0.0012,
                "eval_emissions_kg_co2e": 0.00005, "eval_duration_s": 30.0, "mlflow_run_id": run_id})
    return out


def history_table(i: int, shift: float = 0.0) -> list[list]:
    """A training history's header and rows (the i-th variant's curve, moved by `shift`)."""
    columns = ["epoch", "train_loss", "valid_loss", "valid_usdr_avg", *[f"valid_usdr_{t}" for t in TARGETS], "lr",
               "epoch_s", "epoch_energy_kwh_codecarbon", "epoch_energy_kwh_green_algorithms"]
    rows = [columns]
    for epoch in range(1, 5 + i):
        usdr = 1.0 + 0.5 * i + math.log(epoch) + shift
        rows.append([epoch, 1.0 / epoch + 0.1 * i, 1.1 / epoch + 0.1 * i, usdr, *[usdr + 0.1 * j for j in range(4)],
                     0.003, 10.0, 0.001, 0.0012])
    return rows


def write_history(run: str, i: int, shift: float = 0.0) -> None:
    path = paths.train_history(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(str(v) for v in row) for row in history_table(i, shift)) + "\n")


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def copy_reference(folder: Path) -> None:
    target = folder / paths.REFERENCE
    target.mkdir(parents=True, exist_ok=True)
    for name in ("paper_validation.csv", "paper_test.csv"):
        shutil.copy(REPO / "reports" / "reference" / name, target / name)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def rows_by(path: Path, key: str) -> dict[str, dict]:
    """A CSV's rows by the value of one column."""
    return {r[key]: r for r in read_csv(path)}


def published_rows() -> dict[str, dict]:
    """The replication's validation rows, numbers as floats (as `pipeline.reference` gives them)."""
    out = {}
    for r in read_csv(REPO / "reports" / "reference" / "paper_validation.csv"):
        out[r["variant"]] = {k: (v if k in ("variant", "description") else float(v) if v else math.nan)
                             for k, v in r.items()}
    return out


def synthetic_study(names: list[str], seeds: dict[str, int] | None = None, published: dict | None = None,
                    paper_scale: bool = False, arch: dict[str, str] | None = None) -> Study:
    """A study made in memory: the i-th variant's effect on the scores and its cost spread over both
    sides of base's (deterministically), base's seeds around its figure, every run trained and
    evaluated, with a history."""
    import pandas as pd

    seeds = seeds or {"base": BASE_SEEDS}
    runs = {v: tuple(run_key(v, FIRST_SEED + k) for k in range(seeds.get(v, 1))) for v in names}
    train, evals, history = {}, {}, {}
    for i, v in enumerate(names):
        effect = 0.0 if v == "base" else 1.6 * math.sin(2.3 * i)
        cost = 1.0 if v == "base" else math.exp(0.9 * math.cos(1.7 * i))
        for k, run in enumerate(runs[v]):
            shift = BASE_SHIFTS[k % 3] * (1 + k // 3) if len(runs[v]) > 1 else 0.0
            scale = cost * (BASE_KWH_SCALES[k % 3] if len(runs[v]) > 1 else 1.0)
            train[run] = train_metrics(v, 0, run, (0.02 * scale, 0.025 * scale * (1 + 0.1 * math.sin(i))), 0.003,
                                       FIRST_SEED + k, effect + shift)
            evals[run] = eval_metrics(run, 2.0 + 0.8 * effect + shift, run)
            table = history_table(i % 5, shift)
            history[run] = pd.DataFrame(table[1:], columns=table[0])
    evals["mixture"] = eval_metrics("mixture", -3.0, "m")
    evals["oracle_irm"] = eval_metrics("oracle_irm", 12.0, "o")
    arch = arch or {}
    return Study(names, TARGETS, runs, {v: arch.get(v, "bsrnn") for v in names},
                 {v: () if v == "base" else (f"model.bsrnn.n 8 -> {8 + i}",) for i, v in enumerate(names)},
                 train, evals, history, published if published is not None else published_rows(), [], {},
                 paper_scale, "" if paper_scale else "data: synthetic, not MUSDB18-HQ")
