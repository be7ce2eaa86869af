"""Streaming separation with causal models: unidirectional Open-Unmix fed a track chunk by chunk.

The Open-Unmix training study asks whether its unidirectional model can separate in real time.
Every layer of Open-Unmix works frame by frame except its LSTM, which, unidirectional, only looks
back: fed `frames` STFT frames at a time with its state carried over (`UmxCore.step`), it gives
the masks of the whole track. A variant is streamed as it is trained: one model per target (the
replication's recipe) or one joint model, every model fed each chunk in turn. A centred STFT frame t spans samples t·hop ± n_fft / 2, so it can be
computed once n_fft / 2 samples past its centre have arrived, and an output sample is final once
every frame overlapping it is: with chunks of `frames` frames, every output sample is known at
most `latency_samples` after its input (the window's look-ahead and one chunk). The frames are
computed here from the whole file, which gives the same numbers as computing each when its last
sample arrives; the time each chunk takes (every model's masks for it, the device's queue waited
for) is measured against the audio it holds. Open-Unmix's Wiener post-filter needs the whole
track, so the streaming mode does without it. The models run where they are, the track and the
estimates cross the device boundary once each. Imports `model`, `pipeline.boundary` and torch.
"""
from __future__ import annotations

import time

import torch

from model.umx import OpenUnmix
from pipeline.boundary import device_of, to_device, to_host
from pipeline.runtime import synchronize


def is_causal(models: list) -> bool:
    """Whether the separator can stream: Open-Unmix models whose LSTMs only look back."""
    return bool(models) and all(isinstance(m, OpenUnmix) and not any(core.lstm.bidirectional for core in m.cores)
                                for m in models)


def latency_samples(model: OpenUnmix, frames: int) -> int:
    """The most samples between an input sample and its separated output: the centred window's
    look-ahead (n_fft / 2) and one chunk."""
    return model.stft_module.n_fft // 2 + frames * model.stft_module.hop


@torch.no_grad()
def separate_streaming(models: list[OpenUnmix], mixture: torch.Tensor, frames: int) -> tuple[torch.Tensor, list[float]]:
    """Estimates of every target of `models`, in their order, the track fed `frames` STFT frames
    at a time.

    models: causal Open-Unmix models of one STFT, on one device; mixture: (channels, samples) on
    the CPU. Returns float32 (targets, channels, samples) on the CPU and the seconds each chunk's
    masks took (one entry a chunk of `frames` frames)."""
    if not is_causal(models):
        raise ValueError("streaming separation needs unidirectional models (their LSTMs must only look back)")
    first_model, device = models[0], device_of(models[0])
    cores = [core for model in models for core in model.cores]
    for model in models:
        model.eval()
    started = time.perf_counter()
    (track,) = to_device(first_model, mixture[None])
    spec = first_model.stft(track)  # (1, channels, bins, frames)
    mag = spec.abs()
    synchronize(device)
    transforms_s = time.perf_counter() - started
    states = [None] * len(cores)
    masks, seconds = [], []
    for first in range(0, spec.shape[-1], frames):
        started = time.perf_counter()
        chunk = []
        for i, core in enumerate(cores):
            mask, states[i] = core.step(mag[..., first:first + frames], states[i])
            chunk.append(mask)
        masks.append(torch.stack(chunk, 1))
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    started = time.perf_counter()
    spec_est = torch.cat(masks, -1) * spec.unsqueeze(1)
    estimates = to_host(first_model.istft(spec_est, mixture.shape[-1])[0].float())
    transforms_s += time.perf_counter() - started
    # each chunk's share of the transforms (its frames' STFT and overlap-add), done here at once
    return estimates, [s + transforms_s / len(seconds) for s in seconds]
