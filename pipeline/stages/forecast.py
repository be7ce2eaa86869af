"""`sepcost forecast`: what a variant's training will cost, from a few measured steps.

It builds the variant's models as training does, times K training steps (after one warm-up step;
at most one epoch's steps) and one validation pass with both energy methods, and scales one
epoch's cost to the schedule's range (`pipeline.training.forecast`, which states the assumptions):
max_epochs epochs, or patience + 1 if early stopping ends the training at the soonest.
"""
from __future__ import annotations

from pipeline import paths, tracking
from pipeline.atomic import write_json
from pipeline.config import Config, resolve
from pipeline.data.manifest import load_manifest
from pipeline.data.sampler import training_store
from pipeline.energy.codecarbon_adapter import carbon_intensity
from pipeline.names import CO2, DURATION, KWH_CODECARBON, KWH_GREEN_ALGORITHMS, PEAK_MEMORY, stage_name
from pipeline.runtime import gpu_ordinals, pick_device
from pipeline.specs import separator_specs
from pipeline.training import forecast, recipe
from pipeline.training.loop import train_steps
from pipeline.training.slot import make_slot
from pipeline.training.validation import load_validation_tracks, validate


def run(study: Config, variant: str, steps: int, seed: int | None = None) -> dict:
    cfg = resolve(study, variant, seed)
    device = pick_device(cfg.runtime.device)
    recipe.require_precisions(cfg, device)
    manifest = load_manifest()
    out = paths.forecast_dir(cfg.run)
    out.mkdir(parents=True, exist_ok=True)

    steps_per_epoch = cfg.train.steps_per_epoch()
    measured = min(steps, steps_per_epoch)
    if measured < steps:
        print(f"forecast: {cfg.run}: an epoch has {steps_per_epoch} steps; measuring {measured}")

    # what the forecast cost
    with tracking.metered(cfg, stage_name("forecast", cfg.run), out, gpus=gpu_ordinals(device)) as (mlrun, meter), \
            training_store(cfg, manifest) as store:
        slots = [make_slot(cfg, spec, manifest, store, device, i) for i, spec in enumerate(separator_specs(cfg))]
        valid = load_validation_tracks(cfg, manifest)
        # The models are trained side by side as in training; the first step of each (memory
        # allocation, kernel selection) is left out of the measurement.
        train_steps(slots, cfg, 0, device, 1, desc="warm-up")
        with meter.task("steps") as measured_steps:
            train_steps(slots, cfg, 1, device, measured, desc=f"{measured} measured steps")
        with meter.task("validation") as measured_validation:
            validate([s.model for s in slots], valid, cfg, manifest.sample_rate)

        peak_gb = meter.ga_inputs()["memory_gb"]  # the recipe's memory: the cache, the models, a validation
        per_epoch = {key: steps_per_epoch * measured_steps[key] / measured + measured_validation[key]
                     for key in forecast.FIGURES}
        result = {"variant": variant, "seed": cfg.seed, "run": cfg.run, "measured_steps": measured,
                  "step_s": measured_steps[DURATION] / measured, "validation_s": measured_validation[DURATION],
                  "steps_per_epoch": steps_per_epoch, PEAK_MEMORY: peak_gb, **forecast.forecast(per_epoch, cfg.train),
                  "assumptions": forecast.ASSUMPTIONS}
        intensity = carbon_intensity(cfg.energy)
        for label in ("", "min_"):
            result[f"{forecast.FORECAST}{label}{CO2}"] = result[f"{forecast.FORECAST}{label}{KWH_CODECARBON}"] * intensity / 1000
        mlrun.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float))})
        write_json(out / "forecast.json", result)
    _print(result, cfg, device)
    return result


def _print(result: dict, cfg: Config, device) -> None:
    f = forecast.FORECAST
    print(f"forecast: {cfg.run} on {device}: {result['step_s']:.3f} s per step of all models, "
          f"{result['validation_s']:.1f} s per validation pass, {result[PEAK_MEMORY]:.1f} GiB peak memory")
    print(f"  full schedule ({result[f'{f}epochs']} epochs x {result['steps_per_epoch']} steps): "
          f"{result[f'{f}{DURATION}'] / 3600:.2f} h, {result[f'{f}{KWH_CODECARBON}']:.4f} kWh (CodeCarbon), "
          f"{result[f'{f}{KWH_GREEN_ALGORITHMS}']:.4f} kWh (Green Algorithms), {result[f'{f}{CO2}']:.4f} kg CO2e")
    if result[f"{f}min_epochs"] < result[f"{f}epochs"]:
        print(f"  if early stopping ends it after {result[f'{f}min_epochs']} epochs: "
              f"{result[f'{f}min_{DURATION}'] / 3600:.2f} h, {result[f'{f}min_{KWH_CODECARBON}']:.4f} kWh (CodeCarbon)")
    print(f"  assuming {forecast.ASSUMPTIONS}")
