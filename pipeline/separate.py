"""Whole-track inference shared by validation, evaluation and `sepcost separate`.

A track is cut into chunks, the chunks go through the models in batches, and the estimates are
overlap-added back. Two ways, from `eval.mode`:
- `crossfade` (the replication's): segments of `segment_s` with `overlap` of their length shared
  with the next one, joined by a linear cross-fade;
- `ola`: zero-padded overlap-add with a Hann window, segments of `segment_s` every `hop_s`; the
  track is padded so that every sample is covered by full windows.
Both normalise by the summed weights, so a model that returns its input returns the track exactly.
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
    # Pad so that the first and last samples get the full weight of an overlap, then to whole chunks.
    n_chunks = max(int(np.ceil((length + 2 * pad - segment) / hop)) + 1, 1)
    padded_length = (n_chunks - 1) * hop + segment
    padded = torch.zeros(channels, padded_length)
    padded[:, pad : pad + length] = mixture
    starts = [i * hop for i in range(n_chunks)]

    outputs = []
    for model in models:
        model.eval()
        n_targets = len(model.spec["targets"])
        out = torch.zeros(n_targets, channels, padded_length)
        for first in range(0, n_chunks, cfg.batch_chunks):
            batch_starts = starts[first : first + cfg.batch_chunks]
            batch = torch.stack([padded[:, s : s + segment] for s in batch_starts]).to(device)
            with _autocast(device):
                wave, _ = model(batch)
            wave = wave.float().cpu() * weights
            for s, chunk in zip(batch_starts, wave):
                out[:, :, s : s + segment] += chunk
        outputs.append(out)
    norm = torch.zeros(padded_length)
    for s in starts:
        norm[s : s + segment] += weights
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
