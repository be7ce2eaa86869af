"""The reference rows' estimators against their definitions."""
import numpy as np
import pytest
import torch

from pipeline.evaluation import bounds
from pipeline.evaluation.bounds import oracle_irm


def whole_track_irm(mixture, sources, n_fft, hop):
    """The ideal ratio mask written out on the whole track, every source's and channel's spectra at once, float64."""
    window = torch.hann_window(n_fft, dtype=torch.float64)
    spec = torch.stft(torch.as_tensor(np.concatenate([mixture[None], sources]), dtype=torch.float64)
                      .reshape(-1, mixture.shape[-1]), n_fft, hop, window=window, return_complex=True)
    spec = spec.reshape(1 + len(sources), *mixture.shape[:-1], *spec.shape[-2:])
    power = spec[1:].abs() ** 2
    masked = power / power.sum(dim=0).clamp_min(1e-12) * spec[0]
    return torch.istft(masked.reshape(-1, *spec.shape[-2:]), n_fft, hop, window=window,
                       length=mixture.shape[-1]).reshape(sources.shape).float().numpy()


@pytest.mark.parametrize("n_fft, hop", [(512, 128), (512, 300)])
def test_oracle_irm_in_blocks_is_the_whole_track_computation(monkeypatch, n_fft, hop):
    monkeypatch.setattr(bounds, "_IRM_BLOCK", 1000)  # many blocks, the last one partial
    rng = np.random.default_rng(0)
    sources = rng.standard_normal((4, 2, 20011)).astype(np.float32) * np.float32([[[1.0]], [[0.1]], [[3.0]], [[0.5]]])
    sources[:, :, 5000:9000] = 0  # a rest of every source: frames of zero power, the clamped denominator
    sources[3, 1] = 0  # a source silent in one channel
    mixture = sources.sum(axis=0)
    estimates = oracle_irm(mixture, sources, n_fft, hop)
    assert estimates.dtype == np.float32 and estimates.shape == sources.shape
    np.testing.assert_allclose(estimates, whole_track_irm(mixture, sources, n_fft, hop), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(estimates.sum(axis=0), mixture, atol=1e-4)  # the masks sum to one
