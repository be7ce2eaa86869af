import numpy as np
import pytest

from pipeline.evaluation import metrics
from pipeline.evaluation.metrics import usdr


def test_usdr_hand_computed_cases():
    s = np.array([[1.0, -1.0], [1.0, 1.0]])  # sum s^2 = 4
    assert usdr(s, s) == pytest.approx(10 * np.log10((4 + 1e-7) / 1e-7))
    assert usdr(s, np.zeros_like(s)) == pytest.approx(10 * np.log10((4 + 1e-7) / (4 + 1e-7)))  # silence: 0 dB
    assert usdr(s, 0.5 * s) == pytest.approx(10 * np.log10((4 + 1e-7) / (1 + 1e-7)))  # error 0.25 * 4
    assert usdr(s, 2 * s) == pytest.approx(0.0, abs=1e-6)


def test_usdr_reduces_channels_and_samples_only():
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((3, 4, 2, 100))
    est = refs + 0.1 * rng.standard_normal(refs.shape)
    scores = usdr(refs, est)
    assert scores.shape == (3, 4)
    assert scores[1, 2] == pytest.approx(usdr(refs[1, 2], est[1, 2]))
    assert 15 < scores.mean() < 25  # noise 20 dB below the signal


def test_usdr_of_silent_reference_and_silent_estimate_is_zero():
    z = np.zeros((2, 10))
    assert usdr(z, z) == pytest.approx(0.0)


def test_usdr_summed_in_chunks_is_the_whole_track_sum():
    """Tracks longer than a chunk (float32, as stems load), and an estimate broadcast to every target."""
    rng = np.random.default_rng(1)
    n = int(2.5 * metrics._USDR_CHUNK)
    refs = rng.standard_normal((4, 2, n)).astype(np.float32)
    est = (refs + 0.3 * rng.standard_normal(refs.shape)).astype(np.float32)
    for estimate in (est, refs.sum(axis=0)):
        r, e = refs.astype(np.float64), np.broadcast_to(estimate, refs.shape).astype(np.float64)
        whole = 10 * np.log10(((r**2).sum(axis=(1, 2)) + metrics.EPS) / (((r - e) ** 2).sum(axis=(1, 2)) + metrics.EPS))
        np.testing.assert_allclose(usdr(refs, estimate), whole, rtol=0, atol=1e-10)
