"""Validation on whole tracks after each epoch: every model's uSDR and loss per target, and the
trivial estimates' scores for the learning check. The separation and the loss run on the models'
device (`pipeline.boundary`), the uSDR on the CPU. Imports the inference core, the metrics, the
recipe's loss, the data package, `pipeline.boundary` and `pipeline.runtime`.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from pipeline import paths
from pipeline.boundary import apply, device_of
from pipeline.config.schema import Config
from pipeline.data.audio import load_stems
from pipeline.data.manifest import Manifest
from pipeline.errors import UserError
from pipeline.evaluation.metrics import usdr
from pipeline.inference.separate import separate
from pipeline.runtime import side_by_side
from pipeline.training.recipe import loss_fn

VALID = "valid_"  # the prefix of validation scores: valid_usdr_vocals, valid_loss


@torch.no_grad()
def validate(models: list, tracks: list[dict], cfg: Config, sample_rate: int, desc="validation",
             should_stop=lambda: False) -> dict | None:
    """Whole-track separation of validation tracks: uSDR and loss per target, means over tracks.

    The loss is the training loss on whole tracks, with the STFT of the estimate standing for the
    masked STFT; `valid_loss` is its mean over targets. None when `should_stop()` turned true
    before the last track (a stop signal: validation is redone when the training resumes).
    """
    targets = [t for m in models for t in m.spec["targets"]]
    owner = [m for m in models for _ in m.spec["targets"]]

    def loss(model, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        spec = model.stft(est) if cfg.train.loss != "t" else None
        return loss_fn(cfg.train.loss, model, est, spec, ref)

    def score(track: dict) -> dict | None:
        if should_stop():
            return None
        estimates = separate(models, torch.from_numpy(track["mixture"]), cfg.eval, sample_rate)
        reference = torch.from_numpy(np.stack([track[t] for t in targets]))
        out = {}
        for i, (t, value) in enumerate(zip(targets, usdr(reference, estimates))):
            est, ref = estimates[None, i : i + 1], reference[None, i : i + 1]
            out[f"{VALID}usdr_{t}"] = float(value)
            out[f"{VALID}loss_{t}"] = float(apply(owner[i], lambda e, r: loss(owner[i], e, r), est, ref))
        return out

    with side_by_side(len(tracks), device_of(models[0]), cfg.runtime.threads) as (pool, _):
        per_track = list(tqdm(pool.map(score, tracks), total=len(tracks), desc=desc, unit="track", leave=False))
    if any(row is None for row in per_track):
        return None
    scores = {k: [row[k] for row in per_track] for k in per_track[0]}
    result = {k: float(np.mean(v)) for k, v in scores.items()}
    result[f"{VALID}loss"] = float(np.mean([result[f"{VALID}loss_{t}"] for t in targets]))
    return result


def load_validation_tracks(cfg: Config, manifest: Manifest) -> list[dict]:
    tracks = manifest.split("valid")
    if cfg.train.valid_tracks:
        tracks = tracks[: cfg.train.valid_tracks]
    if not tracks:
        raise UserError(f"{paths.MANIFEST}: no validation tracks to validate on")
    return [load_stems(manifest, t, ("mixture", *cfg.targets)) for t in tqdm(tracks, desc="loading validation tracks", leave=False)]


def mixture_usdr(tracks: list[dict], targets) -> dict[str, float]:
    """Validation uSDR of the mixture itself as every target's estimate, mean over tracks.

    With silence (0 dB by definition) it is one of the trivial estimates that a model which learned
    must beat: the report's learning check compares every variant against the better of the two.
    """
    return {f"mixture_{VALID}usdr_{t}": float(np.mean([usdr(track[t], track["mixture"]) for track in tracks]))
            for t in targets}
