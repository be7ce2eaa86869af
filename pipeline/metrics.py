"""Separation metrics: uSDR (the replication's per-track SDR) and BSSEval v4 aggregates (cSDR).

uSDR of a track = 10 log10((sum s^2 + eps) / (sum (s - s_hat)^2 + eps)) over all its channels and
samples, eps = 1e-7; the data-set figure is the mean over tracks. cSDR is museval's: the median of
the 1 s framewise BSSEval v4 SDR over a track's frames, then the median over tracks.
"""
from __future__ import annotations

import numpy as np
import torch

EPS = 1e-7


def usdr(reference, estimate) -> np.ndarray:
    """uSDR in dB over the last two axes (channels, samples): (..., channels, samples) -> (...)."""
    reference = torch.as_tensor(reference, dtype=torch.float64)
    estimate = torch.as_tensor(estimate, dtype=torch.float64)
    signal = reference.square().sum(dim=(-2, -1))
    error = (reference - estimate).square().sum(dim=(-2, -1))
    return (10.0 * torch.log10((signal + EPS) / (error + EPS))).numpy()


def score_track(references, estimates, targets, sample_rate: int, backend: str = "torch", device="cpu") -> tuple[dict, dict]:
    """Every metric of one track, all targets evaluated together as museval requires.

    references, estimates: (targets, channels, samples). Returns the per-target summary
    {target: {"usdr", "csdr", "sir", "sar", "isr"}} (BSSEval figures are medians over 1 s frames)
    and the framewise BSSEval scores {"sdr", "sir", "sar", "isr"}: arrays (targets, frames).
    """
    from pipeline.bsseval import bss_eval_v4, median_over_frames

    frames = bss_eval_v4(references, estimates, sample_rate, backend=backend, device=device)
    medians = median_over_frames(frames)
    track_usdr = usdr(references, estimates)
    summary = {
        t: {
            "usdr": float(track_usdr[i]),
            "csdr": float(medians["sdr"][i]),
            "sir": float(medians["sir"][i]),
            "sar": float(medians["sar"][i]),
            "isr": float(medians["isr"][i]),
        }
        for i, t in enumerate(targets)
    }
    return summary, frames


def aggregate(tracks: dict[str, dict], targets) -> dict[str, float]:
    """Data-set figures: uSDR is the mean over tracks, BSSEval figures the median over tracks."""
    result = {}
    for t in targets:
        result[f"usdr_{t}"] = float(np.mean([s[t]["usdr"] for s in tracks.values()]))
        for metric in ("csdr", "sir", "sar", "isr"):
            result[f"{metric}_{t}"] = float(np.nanmedian([s[t][metric] for s in tracks.values()]))
    for metric in ("usdr", "csdr", "sir", "sar", "isr"):
        result[f"{metric}_avg"] = float(np.mean([result[f"{metric}_{t}"] for t in targets]))
    return result
