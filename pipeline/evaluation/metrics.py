"""Separation metrics: uSDR (the replication's per-track SDR) and BSSEval v4 aggregates (cSDR).

uSDR of a track = 10 log10((sum s^2 + eps) / (sum (s - s_hat)^2 + eps)) over all its channels and
samples, eps = 1e-7; the data-set figure is the mean over tracks. cSDR is museval's: the median of
the 1 s framewise BSSEval v4 SDR over a track's frames, then the median over tracks. Imports the
project's BSSEval and `pipeline.names`.
"""
from __future__ import annotations

import importlib.metadata

import numpy as np
import torch

from pipeline.evaluation.bsseval import FILTERS_LEN, bss_eval_v4, median_over_frames
from pipeline.names import AVG, SCORES, score_key

EPS = 1e-7
_USDR_CHUNK = 2**16  # samples of a uSDR sum at once (float64: 4 MB for four stereo targets)
MUSEVAL_ORDER = ("sdr", "sir", "sar", "isr")  # the metrics of a frame in museval's JSON, in its order


def usdr(reference, estimate) -> np.ndarray:
    """uSDR in dB over the last two axes (channels, samples): (..., channels, samples) -> (...).

    Summed in float64 over chunks of samples: float64 copies of a chunk, not of the whole track
    (four times the float32 track for each of the reference, the estimate and their difference)."""
    reference, estimate = torch.as_tensor(reference), torch.as_tensor(estimate)
    signal = torch.zeros(reference.shape[:-2], dtype=torch.float64)
    error = torch.zeros(torch.broadcast_shapes(reference.shape, estimate.shape)[:-2], dtype=torch.float64)
    for a in range(0, reference.shape[-1], _USDR_CHUNK):
        ref = reference[..., a:a + _USDR_CHUNK].to(torch.float64)
        signal += ref.square().sum(dim=(-2, -1))
        error += (ref - estimate[..., a:a + _USDR_CHUNK].to(torch.float64)).square().sum(dim=(-2, -1))
    return (10.0 * torch.log10((signal + EPS) / (error + EPS))).numpy()


def score_track(references, estimates, targets, sample_rate: int, backend: str = "torch",
                device="cpu") -> tuple[dict, dict]:
    """Every metric of one track, all targets evaluated together as museval requires.

    references, estimates: (targets, channels, samples). Returns the per-target summary
    {target: {"usdr", "csdr", "sir", "sar", "isr"}} (BSSEval figures are medians over 1 s frames)
    and the framewise BSSEval scores {"sdr", "sir", "sar", "isr"}: arrays (targets, frames).
    """
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
    """Data-set figures `usdr_vocals` ... `isr_avg`: uSDR is the mean over tracks, BSSEval figures
    the median over tracks; `_avg` is the mean over targets."""
    result = {}
    for t in targets:
        result[score_key("usdr", t)] = float(np.mean([s[t]["usdr"] for s in tracks.values()]))
        for metric in SCORES[1:]:
            result[score_key(metric, t)] = float(np.nanmedian([s[t][metric] for s in tracks.values()]))
    for metric in SCORES:
        result[score_key(metric, AVG)] = float(np.mean([result[score_key(metric, t)] for t in targets]))
    return result


def scorer(backend: str) -> str:
    """What computed the BSSEval figures: museval itself, or the project's exact torch path."""
    version = importlib.metadata.version("museval")
    return f"museval {version}" if backend == "museval" else f"sepcost torch BSSEval v4 (museval {version}'s maths)"


def protocol(eval_cfg, backend: str, data_source: str, data_digest: str, tracks: int) -> dict:
    """How a score was computed, so that no two scores computed differently share a column unflagged:
    the metrics' definitions, BSSEval's window, hop and filter length and who computed it, the
    inference (segment, overlap, mode, Wiener filter, precision) and the data set (source, content
    digest)."""
    return {
        "usdr": "mean over tracks of the whole-track SDR (eps 1e-7)",
        "csdr": "BSSEval v4 SDR, median over 1 s frames, then over tracks",
        "bsseval": {"window_s": 1.0, "hop_s": 1.0, "filters_len": FILTERS_LEN, "by": scorer(backend)},
        "inference": {"mode": eval_cfg.mode, "segment_s": eval_cfg.segment_s,
                      **({"overlap": eval_cfg.overlap} if eval_cfg.mode == "crossfade" else {"hop_s": eval_cfg.hop_s}),
                      "wiener_iterations": eval_cfg.wiener_iterations, "precision": eval_cfg.precision},
        "data": {"source": data_source, "digest": data_digest[:16], "test_tracks": tracks},
    }


def museval_json(frames: dict, targets, backend: str) -> dict:
    """Framewise scores in museval's per-track JSON schema (1 s frames; NaN where museval has NaN);
    `museval_version` is set only when museval computed them, `computed_by` says who did."""
    return {
        "museval_version": importlib.metadata.version("museval") if backend == "museval" else None,
        "computed_by": scorer(backend),
        "targets": [
            {
                "name": target,
                "frames": [
                    {"time": float(j), "duration": 1.0,
                     "metrics": {m.upper(): float(frames[m][i][j]) for m in MUSEVAL_ORDER}}
                    for j in range(len(frames["sdr"][i]))
                ],
            }
            for i, target in enumerate(targets)
        ],
    }
