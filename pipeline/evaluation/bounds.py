"""The reference rows' estimators: the mixture as every target's estimate (a lower bound) and the
oracle ideal ratio mask (an upper bound). Pure numpy and torch.
"""
from __future__ import annotations

import numpy as np
import torch


def mixture_estimates(mixture: np.ndarray, references: np.ndarray) -> np.ndarray:
    """The mixture (channels, samples) repeated for each of the references (targets, channels, samples)."""
    return np.repeat(mixture[None], len(references), axis=0)


def oracle_irm(mixture: np.ndarray, sources: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Ideal ratio mask estimates: each source's share of the summed power, applied to the mixture.

    mixture: (channels, samples); sources: (sources, channels, samples). Returns float32 (sources,
    channels, samples). Float64 spectra of one channel at a time: its summed power first, then
    each source's mask, masked mixture and inverse STFT in turn (each source's STFT is computed
    twice), so that a few spectra of one channel are held, not every source's at once
    (benchmarks/eval_memory.py).
    """
    window = torch.hann_window(n_fft, dtype=torch.float64)
    estimates = np.empty(sources.shape, dtype=np.float32)
    for c in range(mixture.shape[0]):  # a channel's spectra are freed before the next channel's
        _channel_irm(mixture[c], sources[:, c], n_fft, hop, window, estimates[:, c])
    return estimates


def _channel_irm(mixture: np.ndarray, sources: np.ndarray, n_fft: int, hop: int, window: torch.Tensor,
                 out: np.ndarray) -> None:
    """`oracle_irm` of one channel: mixture (samples,), sources (sources, samples) -> out (sources, samples)."""

    def stft(x):  # (samples,) -> (bins, frames) complex128
        return torch.stft(torch.as_tensor(x, dtype=torch.float64), n_fft, hop, window=window, return_complex=True)

    def power(x):
        return stft(x).abs().square_()

    total = power(sources[0])
    for source in sources[1:]:
        total += power(source)
    total.clamp_min_(1e-12)
    mix_spec = stft(mixture)
    for j, source in enumerate(sources):  # one statement: its temporaries go before the next source's
        out[j] = torch.istft(power(source).div_(total) * mix_spec, n_fft, hop, window=window,
                             length=mixture.shape[-1]).numpy()
