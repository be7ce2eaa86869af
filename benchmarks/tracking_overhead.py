"""Overhead of energy tracking and MLflow logging on training.

The same training (a variant's models, epochs of steps and validation passes with early-stopping
bookkeeping, the same seed) runs in this process bare, with no energy meter and no MLflow run, and
as `sepcost train` wraps it: inside an MLflow run and a CodeCarbon + Green Algorithms meter, with
per-epoch energy tasks, batched per-epoch metrics and the run's final logging. Short epochs make
the fixed per-epoch cost of tracking weigh more, so the default schedule is on the strict side.
Imports are done before either is timed. Prints both times and the overhead ratio; target <= 3 %.

Uses data/prepared and data/sad of the study in the working directory (`dvc repro prepare sad`),
or builds them from params.yaml in a temporary folder when they are missing.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")
os.environ.setdefault("TQDM_DISABLE", "1")  # the figures are what this prints
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from pipeline import config, paths, tracking  # noqa: E402
from pipeline.cli import main as sepcost  # noqa: E402
from pipeline.data.manifest import load_manifest  # noqa: E402
from pipeline.data.sampler import training_store  # noqa: E402
from pipeline.energy.meter import EnergyMeter  # noqa: E402
from pipeline.runtime import pick_device  # noqa: E402
from pipeline.specs import separator_specs  # noqa: E402
from pipeline.training.loop import run_epoch  # noqa: E402
from pipeline.training.slot import make_slot  # noqa: E402
from pipeline.training.validation import load_validation_tracks  # noqa: E402

TARGET = 0.03


def build(cfg, manifest, device):
    store = training_store(cfg, manifest)
    return [make_slot(cfg, spec, manifest, store, device, i) for i, spec in enumerate(separator_specs(cfg))]


class NoMeter:
    """The baseline's stand-in for EnergyMeter: measures nothing, reports zero energy per epoch."""

    @contextmanager
    def task(self, name):
        yield SimpleNamespace(energy_kwh_codecarbon=0.0, energy_kwh_green_algorithms=0.0)


def bare(cfg, manifest, valid, device) -> float:
    slots = build(cfg, manifest, device)
    history: list[dict] = []
    started = time.perf_counter()
    for epoch in range(cfg.train.max_epochs):
        history.append(run_epoch(slots, cfg, epoch, device, valid, manifest.sample_rate, NoMeter(), history))
    return time.perf_counter() - started


def tracked(cfg, manifest, valid, device, out: Path) -> float:
    slots = build(cfg, manifest, device)
    history: list[dict] = []
    started = time.perf_counter()
    tracking.configure(cfg.tracking)
    with tracking.run(cfg, stage="benchmark@tracking_overhead") as mlrun:
        meter = EnergyMeter(cfg.energy, out_dir=out, project_name="tracking_overhead")
        mlrun.watch_energy(meter)
        with meter:
            for epoch in range(cfg.train.max_epochs):
                row = run_epoch(slots, cfg, epoch, device, valid, manifest.sample_rate, meter, history)
                history.append(row)
                mlrun.log_epoch(epoch, row)
        mlrun.log_metrics({"valid_usdr_avg": history[-1]["valid_usdr_avg"]})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    parser.add_argument("--variant", default="base")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--epoch-items", type=int, default=160, help="training items per epoch (all models)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating bare/tracked pairs")
    args = parser.parse_args()

    study = config.load(args.params)
    workdir = tempfile.mkdtemp(prefix="sepcost-bench-")
    if paths.MANIFEST.exists() and paths.SAD_SUMMARY.exists():
        os.symlink(paths.DATA.resolve(), Path(workdir) / paths.DATA)  # read only
    os.chdir(workdir)
    shutil.copy(args.params, "params.yaml")
    if not paths.MANIFEST.exists():
        print(f"no prepared data: building it in {workdir}")
        assert sepcost(["prepare"]) == 0 and sepcost(["sad"]) == 0
    try:
        cfg = config.resolve(study, args.variant)
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_epochs=args.epochs, patience=args.epochs,
                                                                 epoch_items=args.epoch_items))
        # The benchmark's own MLflow store and artifacts, in the temporary folder.
        cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, uri="sqlite:///bench.db",
                                                                    artifacts="bench-artifacts"))
        device = pick_device(cfg.runtime.device)
        manifest = load_manifest()
        valid = load_validation_tracks(cfg, manifest)
        torch.manual_seed(0)
        # Warm-up, untimed: first imports and allocations, the CodeCarbon hardware probe, the store.
        warmup = dataclasses.replace(cfg.train, max_epochs=1, epoch_items=2 * cfg.train.batch_size)
        tracked(dataclasses.replace(cfg, train=warmup), manifest, valid, device, Path("warmup"))
        times = {"bare": [], "tracked": []}
        for i in range(args.repeats):
            times["bare"].append(bare(cfg, manifest, valid, device))
            times["tracked"].append(tracked(cfg, manifest, valid, device, Path(f"energy-{i}")))
    finally:
        os.chdir(REPO)
        shutil.rmtree(workdir, ignore_errors=True)

    b, t = min(times["bare"]), min(times["tracked"])
    overhead = t / b - 1.0
    steps = cfg.train.steps_per_epoch()
    print(f"variant {args.variant}: {cfg.train.max_epochs} epochs x {steps} steps of {len(separator_specs(cfg))} models "
          f"+ validation, best of {args.repeats}")
    print(f"  bare:    {b:7.1f} s   (runs: {', '.join(f'{x:.1f}' for x in times['bare'])})")
    print(f"  tracked: {t:7.1f} s   (runs: {', '.join(f'{x:.1f}' for x in times['tracked'])})")
    verdict = "ok" if overhead <= TARGET else "ABOVE TARGET"
    print(f"  overhead of energy tracking + MLflow: {overhead:+.1%}   target <= {TARGET:.0%}: {verdict}")


if __name__ == "__main__":
    main()
