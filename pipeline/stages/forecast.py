"""`sepcost forecast`: what a variant's training will cost, from a few measured steps.

It builds the variant's models as training does, times K training steps (after one warm-up step)
and one validation pass with both energy methods, and scales them to the schedule in params:
max_epochs epochs of epoch_items / batch_size steps per model, one validation pass per epoch. Early
stopping can end a training sooner: the shortest schedule (patience + 1 epochs) is printed too.
"""
from __future__ import annotations

from pipeline import paths, tracking
from pipeline.atomic import write_json
from pipeline.config import Config, resolve
from pipeline.data.manifest import load_manifest
from pipeline.data.sampler import TrackStore
from pipeline.energy.codecarbon_adapter import carbon_intensity
from pipeline.energy.meter import EnergyMeter
from pipeline.names import CO2, DURATION, KWH_CODECARBON, KWH_GREEN_ALGORITHMS
from pipeline.runtime import pick_device
from pipeline.specs import separator_specs
from pipeline.training.loop import train_steps
from pipeline.training.slot import make_slot
from pipeline.training.validation import load_validation_tracks, validate


def run(study: Config, variant: str, steps: int) -> dict:
    cfg = resolve(study, variant)
    device = pick_device(cfg.runtime.device)
    manifest = load_manifest()
    store = TrackStore(manifest, manifest.split("train"), cfg.runtime.cache_gb)
    slots = [make_slot(cfg, spec, manifest, store, device, i) for i, spec in enumerate(separator_specs(cfg))]
    valid = load_validation_tracks(cfg, manifest)
    out = paths.forecast_dir(variant)
    out.mkdir(parents=True, exist_ok=True)

    tracking.configure(cfg.tracking)
    with tracking.run(cfg, stage=f"forecast@{variant}") as mlrun:
        meter = EnergyMeter(cfg.energy, out_dir=out, project_name=f"forecast@{variant}")
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
            key: steps_per_epoch * measured_steps[key] / steps + measured_validation[key]
            for key in (DURATION, KWH_CODECARBON, KWH_GREEN_ALGORITHMS)
        }
        intensity = carbon_intensity(cfg.energy)
        result = {"variant": variant, "measured_steps": steps, "step_s": measured_steps[DURATION] / steps,
                  "validation_s": measured_validation[DURATION], "epochs": cfg.train.max_epochs}
        for label, epochs in (("", cfg.train.max_epochs), ("min_", min(cfg.train.patience + 1, cfg.train.max_epochs))):
            for key, value in per_epoch.items():
                result[f"forecast_{label}{key}"] = epochs * value
            result[f"forecast_{label}{CO2}"] = epochs * per_epoch[KWH_CODECARBON] * intensity / 1000
        mlrun.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float))})
        write_json(out / "forecast.json", result)

    hours = result[f"forecast_{DURATION}"] / 3600
    print(f"forecast: {variant} on {device}: {result['step_s']:.3f} s per step of all models, "
          f"{result['validation_s']:.1f} s per validation pass")
    print(f"  full schedule ({cfg.train.max_epochs} epochs x {steps_per_epoch} steps): {hours:.2f} h, "
          f"{result[f'forecast_{KWH_CODECARBON}']:.4f} kWh (CodeCarbon), "
          f"{result[f'forecast_{KWH_GREEN_ALGORITHMS}']:.4f} kWh (Green Algorithms), "
          f"{result[f'forecast_{CO2}']:.4f} kg CO2e")
    print(f"  if early stopping ends it after {min(cfg.train.patience + 1, cfg.train.max_epochs)} epochs: "
          f"{result[f'forecast_min_{DURATION}'] / 3600:.2f} h, {result[f'forecast_min_{KWH_CODECARBON}']:.4f} kWh (CodeCarbon)")
    return result
