"""`sepcost forecast`: what a variant's training will cost, from a few measured steps.

It builds the variant's models as training does, times K training steps (after one warm-up step)
and one validation pass with both energy methods, and scales them to the schedule in params:
max_epochs epochs of epoch_items / batch_size steps per model, one validation pass per epoch. Early
stopping can end a training sooner: the shortest schedule (patience + 1 epochs) is printed too.
"""
from __future__ import annotations

import time

from pipeline import energy, paths, plan, tracking
from pipeline.audio import load_manifest, write_json
from pipeline.config import Config
from pipeline.sampler import TrackStore
from pipeline.train import load_validation_tracks, make_slot, pick_device, train_steps, validate


def run(study: Config, variant: str, steps: int) -> dict:
    cfg = study.resolve(variant)
    device = pick_device(cfg.train.device)
    manifest = load_manifest()
    store = TrackStore(manifest, manifest.split("train"), cfg.data.cache_gb)
    slots = [make_slot(cfg, spec, manifest, store, device, i) for i, spec in enumerate(plan.separator_specs(cfg))]
    valid = load_validation_tracks(cfg, manifest)
    out = paths.forecast_dir(variant)
    out.mkdir(parents=True, exist_ok=True)

    tracking.configure(cfg.tracking)
    with tracking.run(cfg, stage=f"forecast@{variant}") as mlrun:
        meter = energy.EnergyMeter(cfg.energy, out_dir=out, project_name=f"forecast@{variant}")
        mlrun.watch_energy(meter)  # what the forecast itself cost
        with meter:
            # The models are trained side by side as in training; the first step of each (memory
            # allocation, kernel selection) is left out of the measurement.
            train_steps(slots, cfg, 0, device, 1, desc="warm-up")
            with meter.task("steps") as measured_steps:
                train_steps(slots, cfg, 1, device, steps, desc=f"{steps} measured steps")
            with meter.task("validation") as measured_validation:
                validate([s.model for s in slots], valid, cfg, manifest.sample_rate, device)

        steps_per_epoch = cfg.train.epoch_items // cfg.train.batch_size
        per_epoch = {
            key: steps_per_epoch * getattr(measured_steps, key) / steps + getattr(measured_validation, key)
            for key in ("duration_s", "energy_kwh_codecarbon", "energy_kwh_green_algorithms")
        }
        intensity = energy.carbon_intensity(cfg.energy)
        result = {"variant": variant, "measured_steps": steps, "step_s": measured_steps.duration_s / steps,
                  "validation_s": measured_validation.duration_s, "epochs": cfg.train.max_epochs}
        for label, epochs in (("", cfg.train.max_epochs), ("min_", min(cfg.train.patience + 1, cfg.train.max_epochs))):
            for key, value in per_epoch.items():
                result[f"forecast_{label}{key}"] = epochs * value
            result[f"forecast_{label}emissions_kg_co2e"] = epochs * per_epoch["energy_kwh_codecarbon"] * intensity / 1000
        mlrun.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float))})
        write_json(out / "forecast.json", result)

    hours = result["forecast_duration_s"] / 3600
    print(f"forecast: {variant} on {device}: {result['step_s']:.3f} s per step of all models, "
          f"{result['validation_s']:.1f} s per validation pass")
    print(f"  full schedule ({cfg.train.max_epochs} epochs x {steps_per_epoch} steps): {hours:.2f} h, "
          f"{result['forecast_energy_kwh_codecarbon']:.4f} kWh (CodeCarbon), "
          f"{result['forecast_energy_kwh_green_algorithms']:.4f} kWh (Green Algorithms), "
          f"{result['forecast_emissions_kg_co2e']:.4f} kg CO2e")
    print(f"  if early stopping ends it after {min(cfg.train.patience + 1, cfg.train.max_epochs)} epochs: "
          f"{result['forecast_min_duration_s'] / 3600:.2f} h, {result['forecast_min_energy_kwh_codecarbon']:.4f} kWh (CodeCarbon)")
    return result
