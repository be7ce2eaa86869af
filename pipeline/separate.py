"""Whole-track inference shared by validation, evaluation and `sepcost separate`.

A track is cut into chunks, the chunks go through the models in batches, and the estimates are
overlap-added back. Two ways, from `eval.mode`:
- `crossfade` (the replication's): segments of `segment_s` with `overlap` of their length shared
  with the next one, joined by a linear cross-fade;
- `ola`: zero-padded overlap-add with a Hann window, segments of `segment_s` every `hop_s`; the
  track is padded so that every sample is covered by full windows.
Both normalise by the summed weights, so a model that returns its input returns the track exactly.
The last chunk ends with the track: no model time is spent on padding.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from pipeline.config import EvalConfig


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


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def separate(models, mixture: torch.Tensor, cfg: EvalConfig, sample_rate: int, device=None) -> torch.Tensor:
    """Estimates of every target of `models`, in their order, for one whole track.

    models: separators, each returning (wave (batch, targets, channels, samples), spec);
    mixture: (channels, samples). Returns float32 (targets, channels, samples) on the CPU.
    """
    device = torch.device(device or "cpu")
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

    outputs = []
    for model in models:
        model.eval()
        out = torch.zeros(len(model.spec["targets"]), channels, total)
        for batch in batches:
            size = sizes[batch[0]]
            chunks = torch.stack([padded[:, starts[i] : starts[i] + size] for i in batch]).to(device)
            with _autocast(device):
                wave, _ = model(chunks)
            wave = wave.float().cpu() * weights[:size]
            for i, chunk in zip(batch, wave):
                out[:, :, starts[i] : starts[i] + size] += chunk
        outputs.append(out)
    norm = torch.zeros(total)
    for start, size in zip(starts, sizes):
        norm[start : start + size] += weights[:size]
    estimates = torch.cat(outputs) / norm
    return estimates[:, :, pad : pad + length].contiguous()


def _resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling of (channels, samples) audio."""
    if rate_in == rate_out:
        return audio
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate_in, rate_out)
    return resample_poly(audio, rate_out // g, rate_in // g, axis=-1).astype(np.float32)


def separate_files(files: list[str], checkpoint, out_dir, cfg: EvalConfig, device=None) -> list:
    """`sepcost separate`: each wav or flac file into <out_dir>/<file name>/<target>.wav.

    Any sample rate and mono or stereo: the audio is resampled to the model's rate and made stereo
    on the way in, and brought back to the file's rate and channel count on the way out.
    """
    from pathlib import Path

    import soundfile as sf

    from pipeline.audio import write_wav
    from pipeline.errors import UserError
    from pipeline.train import load_models

    models = load_models(checkpoint, device or "cpu")
    model_rate = models[0].spec["sample_rate"]
    targets = [t for m in models for t in m.spec["targets"]]
    written = []
    for name in files:
        path = Path(name)
        try:
            audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise UserError(f"{path}: unreadable audio (expected a wav or flac file: {err})") from None
        audio = audio.T
        channels = audio.shape[0]
        if channels not in (1, 2):
            raise UserError(f"{path}: {channels} channels, expected mono or stereo")
        if audio.shape[1] == 0:
            raise UserError(f"{path}: no audio samples")
        stereo = np.repeat(audio, 2, axis=0) if channels == 1 else audio
        estimates = separate(models, torch.from_numpy(_resample(stereo, rate, model_rate)), cfg, model_rate, device)
        for target, estimate in zip(targets, estimates.numpy()):
            back = _resample(estimate, model_rate, rate)[:, : audio.shape[1]]
            back = np.pad(back, ((0, 0), (0, audio.shape[1] - back.shape[1])))
            if channels == 1:
                back = back.mean(axis=0, keepdims=True)
            target_path = Path(out_dir) / path.stem / f"{target}.wav"
            write_wav(target_path, back, rate, subtype="FLOAT")
            written.append(target_path)
        print(f"separate: {path} -> {Path(out_dir) / path.stem}/{{{','.join(targets)}}}.wav")
    return written
