"""Checkpoints: self-describing models (best.pt) and the whole resume state of a training (last.pt).

A best.pt travels without the params file that made it: each model's spec (the plain dict
`model.build_separator` takes) is stored beside its weights, so `load_models` rebuilds it alone
(Demucs's checkpoints do the same). Both are written atomically. Imports `model`,
`pipeline.atomic` and `pipeline.errors`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from model import build_separator
from pipeline.atomic import replacing
from pipeline.errors import UserError

FORMAT = "sepcost-checkpoint/1"


def save(obj, path: Path) -> None:
    """torch.save, atomically."""
    with replacing(path) as tmp:
        torch.save(obj, tmp)


def load_state(path: Path) -> dict | None:
    """A resume state written by `save`, or None when there is none."""
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def save_models(path: Path, variant: str | None, config: dict, models: list[dict]) -> None:
    """A best.pt: `models` are {"spec", "state_dict", "best_epoch"}, one per model of the variant."""
    save({"format": FORMAT, "variant": variant, "config": config, "models": models}, path)


def load_models(path: Path, device="cpu") -> list[torch.nn.Module]:
    """The models of a best.pt checkpoint on `device`, ready for inference; no params file needed.
    Each is built and loaded on the CPU, then moved."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not a sepcost checkpoint (expected models/<variant>/best.pt)")
    models = []
    for entry in ckpt["models"]:
        model = build_separator(entry["spec"])
        model.load_state_dict(entry["state_dict"])
        models.append(model.to(device).eval())
    return models
