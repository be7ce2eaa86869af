"""`sepcost separate AUDIO... --variant NAME`: the user's wav or flac files through a trained variant.

The variant's best.pt describes its own models; the params give the inference settings (segment,
overlap, Open-Unmix's Wiener filter) and the device. Metered like every stage: the run
`separate@<run>` in the study's MLflow experiment, which the ledger counts among "other stages".
"""
from __future__ import annotations

from pipeline import paths, tracking
from pipeline.config import Config, resolve
from pipeline.energy.meter import energy_line
from pipeline.errors import UserError
from pipeline.inference.files import separate_files
from pipeline.names import stage_name
from pipeline.precision import require
from pipeline.runtime import gpu_ordinals, pick_device


def run(study: Config, variant: str, audio: list[str], out: str, seed: int | None = None) -> list:
    cfg = resolve(study, variant, seed)  # an unknown variant is a config error, named as such
    device = pick_device(cfg.runtime.device)
    require(cfg.params_file, "eval.precision", cfg.eval.precision, device)
    checkpoint = paths.model_dir(cfg.run) / "best.pt"
    if not checkpoint.exists():
        raise UserError(f"{checkpoint}: no trained model for variant '{variant}'; "
                        f"run `dvc repro {stage_name('train', cfg.run)}` first")
    stage = stage_name("separate", cfg.run)
    with tracking.metered(cfg, stage, paths.energy_dir("separate"), run_name=f"separate-{cfg.run}",
                          gpus=gpu_ordinals(device)) as (mlrun, meter):
        written = separate_files(audio, checkpoint, out, cfg.eval, device)
        mlrun.log_metrics({"files": len(audio)})
    print(f"separate: {len(audio)} files, {energy_line(meter.totals())}")
    return written

