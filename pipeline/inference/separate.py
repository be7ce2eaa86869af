"""Whole-track inference shared by validation, evaluation and `sepcost separate`.

A track is cut into chunks, the chunks go through the models in batches, and the estimates are
overlap-added back. Two ways, from `eval.mode`:
- `crossfade` (the replication's): segments of `segment_s` with `overlap` of their length shared
  with the next one, joined by a linear cross-fade;
- `ola`: zero-padded overlap-add with a Hann window, segments of `segment_s` every `hop_s`; the
  track is padded so that every sample is covered by full windows.
Both normalise by the summed weights, so a model that returns its input returns the track exactly.
The last chunk ends with the track: no model time is spent on padding. `estimate` adds
Open-Unmix's Wiener post-filter where `eval` asks for it (evaluation and `sepcost separate`;
validation scores the models' own output). The models run where they are, at `eval.precision`:
each batch of chunks and the Wiener filter cross the device boundary (`pipeline.boundary`); the
overlap-add is on the CPU.
"""
from __future__ import annotations

import torch

from pipeline import precision
from pipeline.boundary import apply, device_of
from pipeline.config.schema import EvalConfig
from pipeline.names import TARGETS


def chunk_weights(cfg: EvalConfig, sample_rate: int) -> tuple[torch.Tensor, int, int]:
    """The weight of each sample of a chunk, the hop between chunks and the padding at both ends."""
    segment = max(int(round(cfg.segment_s * sample_rate)), 1)
    if cfg.mode == "crossfade":
        fade = int(round(cfg.overlap * segment))
        weights = torch.ones(segment)
        if fade:
            ramp = torch.arange(1, fade + 1, dtype=torch.float32) / (fade + 1)
            weights[:fade] = ramp
            weights[-fade:] = ramp.flip(0)
        return weights, segment - fade, fade
    hop = min(max(int(round(cfg.hop_s * sample_rate)), 1), segment)
    weights = torch.hann_window(segment, periodic=False).clamp_min(1e-3)
    return weights, hop, segment - hop


@torch.no_grad()
def separate(models, mixture: torch.Tensor, cfg: EvalConfig, sample_rate: int) -> torch.Tensor:
    """Estimates of every target of `models`, in their order, for one whole track.

    models: separators, each returning (wave (batch, targets, channels, samples), spec), on any
    device; mixture: (channels, samples) on the CPU. Returns float32 (targets, channels, samples)
    on the CPU.
    """
    weights, hop, pad = chunk_weights(cfg, sample_rate)
    segment = weights.numel()
    channels, length = mixture.shape
    # Pad so that the first and last samples get the full weight of an overlap. Chunks start every
    # hop; the last one stops at the end of the padded track instead of running into more padding.
    total = length + 2 * pad
    starts = [0]
    while starts[-1] + segment < total:
        starts.append(starts[-1] + hop)
    sizes = [min(segment, total - start) for start in starts]
    padded = torch.zeros(channels, total)
    padded[:, pad : pad + length] = mixture
    # Batches of equal-sized chunks: the full ones, then the shorter last one on its own.
    batches = [list(range(first, min(first + cfg.batch_chunks, len(starts)))) for first in range(0, len(starts), cfg.batch_chunks)]
    batches = [[i for i in b if sizes[i] == size] for b in batches for size in dict.fromkeys(sizes[i] for i in b)]

    # Each chunk adds its part inside the track into one tensor of every model's estimates: one
    # copy of the track's estimates, not one per model plus their concatenation and its division.
    estimates = torch.zeros(sum(len(model.spec["targets"]) for model in models), channels, length)
    row = 0
    for model in models:
        model.eval()
        out = estimates[row : row + len(model.spec["targets"])]
        row += out.shape[0]
        for batch in batches:
            size = sizes[batch[0]]
            chunks = torch.stack([padded[:, starts[i] : starts[i] + size] for i in batch])
            wave = apply(model, lambda x: _waves(model, x, cfg.precision), chunks) * weights[:size]
            for i, chunk in zip(batch, wave):
                a, b = max(starts[i], pad), min(starts[i] + size, pad + length)  # inside the track
                out[:, :, a - pad : b - pad] += chunk[:, :, a - starts[i] : b - starts[i]]
    norm = torch.zeros(total)
    for start, size in zip(starts, sizes):
        norm[start : start + size] += weights[:size]
    return estimates.div_(norm[pad : pad + length])


def _waves(model, chunks: torch.Tensor, precision_name: str) -> torch.Tensor:
    """The model's float32 waveforms of a batch of chunks, computed at `precision_name`."""
    with precision.autocast(device_of(model), precision_name):
        return model(chunks)[0].float()


def _wiener(model, mixture: torch.Tensor, estimates: torch.Tensor, cfg: EvalConfig) -> torch.Tensor:
    """Open-Unmix's multichannel Wiener post-filter on whole-track estimates (targets, channels,
    samples), the magnitudes taken from their STFT; on the model's device. Targets that leave a
    source out (the vocals-only pilot) get the residual source, as Open-Unmix filters one target:
    without it a lone target's mask is 1 and its estimate the mixture."""
    from model.wiener import wiener

    residual = cfg.wiener_residual or estimates.shape[0] < len(TARGETS)

    def post_filter(mixture: torch.Tensor, estimates: torch.Tensor) -> torch.Tensor:
        mix_spec = model.stft(mixture)  # (channels, bins, frames)
        magnitudes = model.stft(estimates).abs()  # (targets, channels, bins, frames)
        filtered = wiener(magnitudes, mix_spec, iterations=cfg.wiener_iterations,
                          softmask=cfg.wiener_softmask, residual=residual)
        return model.istft(filtered, length=mixture.shape[-1])[: estimates.shape[0]]

    return apply(model, post_filter, mixture, estimates)


@torch.no_grad()
def estimate(models, mixture: torch.Tensor, cfg: EvalConfig, sample_rate: int) -> torch.Tensor:
    """`separate`, then the Wiener post-filter when `cfg.wiener_iterations` > 0 and the models are
    Open-Unmix. mixture: (channels, samples) on the CPU; returns float32 (targets, channels,
    samples) on the CPU."""
    estimates = separate(models, mixture, cfg, sample_rate)
    if cfg.wiener_iterations > 0 and models[0].spec["arch"] == "umx":
        estimates = _wiener(models[0], mixture, estimates, cfg)
    return estimates
