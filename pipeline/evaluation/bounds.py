"""The reference rows' estimators: the mixture as every target's estimate (a lower bound) and the
oracle ideal ratio mask (an upper bound). Pure numpy and torch.
"""
from __future__ import annotations

import numpy as np
import torch

_IRM_BLOCK = 2**18  # samples of an oracle-IRM block (about 6 s at 44.1 kHz): float64 spectra of it


def mixture_estimates(mixture: np.ndarray, references: np.ndarray) -> np.ndarray:
    """The mixture (channels, samples) repeated for each of the references (targets, channels, samples)."""
    return np.repeat(mixture[None], len(references), axis=0)


def oracle_irm(mixture: np.ndarray, sources: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Ideal ratio mask estimates: each source's share of the summed power, applied to the mixture.

    mixture: (channels, samples); sources: (sources, channels, samples). Returns float32 (sources,
    channels, samples). Computed in float64 on blocks of samples, each with margins of whole hops
    on either side: the STFT frames that make a block's samples are the whole track's, on the
    whole track's frame grid, so the estimates are the whole track's while the spectra held are a
    block's, whatever the track's length (benchmarks/eval_memory.py).
    """
    n = mixture.shape[-1]
    block = hop * max(1, _IRM_BLOCK // hop)
    margin = hop * (-(-n_fft // hop) + 1)  # past every frame that covers a kept sample
    estimates = np.empty(sources.shape, dtype=np.float32)
    for start in range(0, n, block):
        stop = min(n, start + block)
        first, last = max(0, start - margin), min(n, stop + margin)
        irm = _irm(mixture[..., first:last], sources[..., first:last], n_fft, hop)
        estimates[..., start:stop] = irm[..., start - first:stop - first]
    return estimates


def _irm(mixture: np.ndarray, sources: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """`oracle_irm` on whole signals: every source's float64 spectra at once."""
    window = torch.hann_window(n_fft, dtype=torch.float64)

    def stft(x):
        return torch.stft(torch.as_tensor(x, dtype=torch.float64).reshape(-1, x.shape[-1]), n_fft, hop,
                          window=window, return_complex=True)

    mix_spec = stft(mixture)  # (channels, bins, frames)
    power = stft(sources).abs().square().reshape(sources.shape[0], *mix_spec.shape)
    masks = power / power.sum(dim=0).clamp_min(1e-12)
    est = torch.istft((masks * mix_spec).reshape(-1, *mix_spec.shape[-2:]), n_fft, hop, window=window,
                      length=mixture.shape[-1])
    return est.reshape(sources.shape).float().numpy()
