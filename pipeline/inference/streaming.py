"""Streaming separation with a causal model: a unidirectional Open-Unmix fed a track chunk by chunk.

The Open-Unmix training study asks whether its unidirectional model can separate in real time.
Every layer of Open-Unmix works frame by frame except its LSTM, which, unidirectional, only looks
back: fed `frames` STFT frames at a time with its state carried over (`UmxCore.step`), it gives
the masks of the whole track. A centred STFT frame t spans samples t·hop ± n_fft / 2, so it can be
computed once n_fft / 2 samples past its centre have arrived, and an output sample is final once
every frame overlapping it is: with chunks of `frames` frames, every output sample is known at
most `latency_samples` after its input (the window's look-ahead and one chunk). The frames are
computed here from the whole file, which gives the same numbers as computing each when its last
sample arrives; the time each chunk takes is measured against the audio it holds. Open-Unmix's
Wiener post-filter needs the whole track, so the streaming mode does without it.
Imports `model` and torch.
"""
from __future__ import annotations

import time

import torch

from model.umx import OpenUnmix


def is_causal(models: list) -> bool:
    """Whether the separator can stream: one Open-Unmix whose LSTMs only look back."""
    return (len(models) == 1 and isinstance(models[0], OpenUnmix)
            and not any(core.lstm.bidirectional for core in models[0].cores))


def latency_samples(model: OpenUnmix, frames: int) -> int:
    """The most samples between an input sample and its separated output: the centred window's
    look-ahead (n_fft / 2) and one chunk."""
    return model.stft_module.n_fft // 2 + frames * model.stft_module.hop


@torch.no_grad()
def separate_streaming(model: OpenUnmix, mixture: torch.Tensor, frames: int) -> tuple[torch.Tensor, list[float]]:
    """Estimates of every target, the track fed `frames` STFT frames at a time.

    mixture: (channels, samples). Returns float32 (targets, channels, samples) and the seconds each
    chunk's masks took (one entry a chunk of `frames` frames)."""
    if not is_causal([model]):
        raise ValueError("streaming separation needs a unidirectional model (its LSTM must only look back)")
    model.eval()
    started = time.perf_counter()
    spec = model.stft(mixture[None])  # (1, channels, bins, frames)
    mag = spec.abs()
    transforms_s = time.perf_counter() - started
    states = [None] * len(model.cores)
    masks, seconds = [], []
    for first in range(0, spec.shape[-1], frames):
        started = time.perf_counter()
        chunk = []
        for i, core in enumerate(model.cores):
            mask, states[i] = core.step(mag[..., first:first + frames], states[i])
            chunk.append(mask)
        masks.append(torch.stack(chunk, 1))
        seconds.append(time.perf_counter() - started)
    started = time.perf_counter()
    spec_est = torch.cat(masks, -1) * spec.unsqueeze(1)
    estimates = model.istft(spec_est, mixture.shape[-1])[0].float()
    transforms_s += time.perf_counter() - started
    # each chunk's share of the transforms (its frames' STFT and overlap-add), done here at once
    return estimates, [s + transforms_s / len(seconds) for s in seconds]
