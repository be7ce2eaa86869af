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
    """Ideal ratio mask estimates: each source's share of the summed power, applied to the mixture."""
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
