"""`sepcost separate AUDIO... --variant NAME`: the user's wav or flac files through a trained variant.

The variant's best.pt describes its own models; the params give the inference settings (segment,
overlap, Open-Unmix's Wiener filter) and the device.
"""
from __future__ import annotations

from pipeline import paths
from pipeline.config import Config, resolve
from pipeline.errors import UserError
from pipeline.inference.files import separate_files
from pipeline.runtime import pick_device


def run(study: Config, variant: str, audio: list[str], out: str, seed: int | None = None) -> list:
    cfg = resolve(study, variant, seed)  # an unknown variant is a config error, named as such
    checkpoint = paths.model_dir(cfg.run) / "best.pt"
    if not checkpoint.exists():
        raise UserError(f"{checkpoint}: no trained model for variant '{variant}'; run `dvc repro train@{cfg.run}` first")
    return separate_files(audio, checkpoint, out, cfg.eval, pick_device(cfg.runtime.device))
