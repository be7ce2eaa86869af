"""BSSEval v4 (pipeline.bsseval) against museval itself, frame by frame, and its error messages.

museval is the reference: every comparison calls museval.metrics.bss_eval in the framewise v4
mode museval.evaluate uses (whole-track 512-tap filters, no permutation, bss_eval_images). Signals
are generated broadband noise through random filters with amplitude envelopes, a few silent frames,
estimates made of filtered references, interference from the other targets and noise. museval's
cost is set by its 512-tap systems, not by the signal length, so one four-target stereo case (a
4096 x 4096 system) and smaller ones for the other behaviours.
"""
from __future__ import annotations

import museval
import museval.metrics
import numpy as np
import pytest
import scipy.signal
import torch

from pipeline.evaluation import bsseval, toeplitz
from pipeline.evaluation.bsseval import bss_eval_v4, median_over_frames
from pipeline.names import TARGETS
from pipeline.errors import UserError

TOLERANCE_DB = 0.01
METRICS = ("sdr", "isr", "sir", "sar")


# ----------------------------------------------------------------------------- signals
def references(rng, n_targets: int, n_channels: int, seconds: float, sample_rate: int,
               lowpass_hz: float | None = None) -> np.ndarray:
    """(targets, channels, samples) float32: noise through a random FIR per target and channel
    (optionally low-passed, bass-like), times a slow amplitude envelope per target."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    out = np.empty((n_targets, n_channels, n))
    for j in range(n_targets):
        envelope = 0.3 + np.abs(np.sin(2 * np.pi * rng.uniform(0.2, 0.7) * t + rng.uniform(0, np.pi)))
        for c in range(n_channels):
            taps = rng.standard_normal(48) * np.exp(-np.arange(48) / rng.uniform(3, 20))
            x = scipy.signal.lfilter(taps, [1.0], rng.standard_normal(n))
            if lowpass_hz is not None and j == 0:
                x = scipy.signal.sosfilt(scipy.signal.butter(6, lowpass_hz, fs=sample_rate, output="sos"), x)
            out[j, c] = x * envelope
    return out.astype(np.float32)


def estimates(rng, refs: np.ndarray) -> np.ndarray:
    """Each target's estimate: its reference through a short random filter, some of the other
    targets (interference) and white noise, at levels that differ per target."""
    mix = refs.sum(axis=0)
    out = np.empty_like(refs)
    for j in range(refs.shape[0]):
        leak, noise = rng.uniform(0.05, 0.4), rng.uniform(0.01, 0.2)
        for c in range(refs.shape[1]):
            taps = np.r_[1.0, 0.3 * rng.standard_normal(15)]
            out[j, c] = (scipy.signal.lfilter(taps, [1.0], refs[j, c]) + leak * (mix[c] - refs[j, c])
                         + noise * refs[j, c].std() * rng.standard_normal(refs.shape[2]))
    return out


def museval_framewise(refs: np.ndarray, ests: np.ndarray, window: int, hop: int) -> dict[str, np.ndarray]:
    """museval.metrics.bss_eval as museval.evaluate(mode="v4") calls it; (targets, channels, samples)
    arrays as this project stores them, museval's (targets, samples, channels) layout inside."""
    sdr, isr, sir, sar, _ = museval.metrics.bss_eval(
        refs.transpose(0, 2, 1), ests.transpose(0, 2, 1), window=window, hop=hop,
        compute_permutation=False, framewise_filters=False, bsseval_sources_version=False)
    return {"sdr": sdr, "isr": isr, "sir": sir, "sar": sar}


def assert_matches(got: dict, ref: dict, tolerance: float = TOLERANCE_DB) -> float:
    """Same NaN (and infinite) frames, every other frame within `tolerance` dB; returns the worst."""
    worst = 0.0
    for key in METRICS:
        assert got[key].dtype == np.float64 and got[key].shape == ref[key].shape, key
        np.testing.assert_array_equal(np.isnan(got[key]), np.isnan(ref[key]), err_msg=f"{key}: NaN frames")
        np.testing.assert_array_equal(np.isinf(got[key]), np.isinf(ref[key]), err_msg=f"{key}: inf frames")
        finite = np.isfinite(ref[key])
        np.testing.assert_array_equal(got[key][~finite], ref[key][~finite], err_msg=key)
        if finite.any():
            diff = float(np.abs(got[key][finite] - ref[key][finite]).max())
            assert diff <= tolerance, f"{key}: largest difference {diff:.3g} dB"
            worst = max(worst, diff)
    return worst


# ----------------------------------------------------------------------------- against museval
@pytest.fixture(scope="module")
def four_targets():
    """4 stereo targets, 4 s at 44.1 kHz; vocals silent in frame 0, drums' estimate silent in frame 2
    (museval: NaN for every target there), one frame with a silent reference channel only."""
    rng = np.random.default_rng(5)
    sr = 44100
    refs = references(rng, 4, 2, 4.0, sr)
    refs[0, :, :sr] = 0.0
    refs[3, 1, 3 * sr:] = 0.0  # one channel silent: still scored
    ests = estimates(rng, refs)
    ests[2, :, 2 * sr:3 * sr] = 0.0
    return refs, ests, sr, museval_framewise(refs, ests, sr, sr)


def test_four_stereo_targets_match_museval_on_every_frame(four_targets):
    refs, ests, sr, ref = four_targets
    got = bss_eval_v4(refs, ests, sr)
    assert got["sdr"].shape == (4, 4)
    assert np.isnan(ref["sdr"][:, [0, 2]]).all() and np.isfinite(ref["sdr"][:, [1, 3]]).all()
    assert_matches(got, ref)
    # torch tensors in, float64 in: the same figures
    again = bss_eval_v4(torch.from_numpy(refs).double(), torch.from_numpy(ests), sr)
    assert_matches(again, ref)


def test_median_over_frames_is_museval_aggregate(four_targets):
    refs, ests, sr, ref = four_targets
    medians = median_over_frames(ref)
    for key in METRICS:
        np.testing.assert_array_equal(medians[key], np.nanmedian(ref[key], axis=1))
    # museval's track aggregate (TrackStore, frames_agg="median") over the same frames
    store = museval.TrackStore(win=1.0, hop=1.0, track_name="t")
    for i, name in enumerate(TARGETS):
        store.add_target(name, {k.upper(): ref[k][i].tolist() for k in METRICS})
    frames = store.df
    for i, name in enumerate(TARGETS):
        for key in METRICS:
            rows = frames[(frames.target == name) & (frames.metric == key.upper())]
            assert medians[key][i] == pytest.approx(rows.score.median(), abs=1e-4)  # museval rounds to 1e-5


@pytest.fixture(scope="module")
def two_targets():
    """2 stereo targets, 3.3 s at 22.05 kHz scored with 1 s windows every 0.5 s (overlapping);
    target 1's reference phase-inverted (left = -right) in 2.0-3.3 s: museval's silence test sums
    the channels, so frames inside that span are NaN; estimates end with 500 zero samples."""
    rng = np.random.default_rng(11)
    sr = 22050
    refs = references(rng, 2, 2, 3.3, sr)
    refs[1, 1, 2 * sr:] = -refs[1, 0, 2 * sr:]
    ests = estimates(rng, refs)
    ests[..., -500:] = 0.0
    return refs, ests, sr, museval_framewise(refs, ests, sr, sr // 2)


def test_overlapping_frames_padding_truncation_and_phase_inverted_silence(two_targets):
    refs, ests, sr, ref = two_targets
    assert ref["sdr"].shape == (2, 5) and np.isnan(ref["sdr"][:, 4]).all()
    assert_matches(bss_eval_v4(refs, ests, sr, window_s=1.0, hop_s=0.5), ref)
    # museval pads short estimates with zeros and truncates long ones (pad_or_truncate)
    short = ests[..., :-500]
    assert_matches(bss_eval_v4(refs, short, sr, window_s=1.0, hop_s=0.5), ref)
    long = np.concatenate([ests, np.ones((2, 2, 700), dtype=np.float32)], axis=2)
    assert_matches(bss_eval_v4(refs, long, sr, window_s=1.0, hop_s=0.5), ref)


def test_museval_backend_is_museval(two_targets):
    refs, ests, sr, ref = two_targets
    got = bss_eval_v4(refs, ests, sr, window_s=1.0, hop_s=0.5, backend="museval")
    for key in METRICS:
        np.testing.assert_array_equal(got[key], ref[key])
    # and museval.evaluate, the entry point of museval.eval_mus_track, on a short estimate
    expected = museval.evaluate(refs.transpose(0, 2, 1), ests[..., :-500].transpose(0, 2, 1),
                                win=sr, hop=sr // 2)
    got = bss_eval_v4(refs, ests[..., :-500], sr, window_s=1.0, hop_s=0.5, backend="museval")
    for key, value in zip(("sdr", "isr", "sir", "sar"), expected):
        np.testing.assert_array_equal(got[key], value)


def test_mono_lowpassed_reference_and_gaps_between_frames():
    """A steeply low-passed (bass-like, ill-conditioned) reference, mono, 16 kHz, hops longer than
    the windows: exercises the solver's refinement and frames that skip samples."""
    rng = np.random.default_rng(3)
    sr = 16000
    refs = references(rng, 3, 1, 4.5, sr, lowpass_hz=200.0)
    ests = estimates(rng, refs)
    ref = museval_framewise(refs, ests, sr, int(1.25 * sr))
    assert_matches(bss_eval_v4(refs, ests, sr, window_s=1.0, hop_s=1.25), ref)


def test_mixture_as_every_estimate_with_16_bit_references():
    """The evaluation's lower-bound row: the mixture is every target's estimate. It lies in the span
    of the references, so e_artif is the float32 rounding of the mixture and SAR is about 150 dB:
    a rounding-limited figure (museval's own SAR moves by about 1e-3 dB here when the targets are
    listed in another order). 16-bit references (as MUSDB18-HQ), one of them low-passed."""
    rng = np.random.default_rng(0)
    sr = 16000
    refs = references(rng, 2, 2, 3.0, sr)
    refs[0] = scipy.signal.sosfilt(scipy.signal.butter(4, 1000, fs=sr, output="sos"), refs[0], axis=1)
    refs = (np.round(refs / np.abs(refs).max() * 0.5 * 32767) / 32767).astype(np.float32)
    ests = np.repeat(refs.sum(axis=0, keepdims=True), 2, axis=0)
    ref = museval_framewise(refs, ests, sr, sr)
    assert np.nanmin(ref["sar"]) > 140
    assert_matches(bss_eval_v4(refs, ests, sr), ref)


def test_single_target_scores_infinite_sir_as_museval():
    rng = np.random.default_rng(8)
    sr = 8000
    refs = references(rng, 1, 2, 2.5, sr)
    ests = estimates(rng, refs) + 0.3 * references(rng, 1, 2, 2.5, sr)
    ref = museval_framewise(refs, ests, sr, sr)
    assert np.isposinf(ref["sir"]).all()
    assert_matches(bss_eval_v4(refs, ests, sr), ref)


# ----------------------------------------------------------------------------- building blocks
def test_correlations_are_the_direct_sums():
    rng = np.random.default_rng(0)
    taps, n = 16, 3001
    x, y = rng.standard_normal((2, n)), rng.standard_normal((3, n))
    bsseval_block = bsseval._CORR_FFT
    try:
        bsseval._CORR_FFT = 128  # several overlap-save blocks and chunks on a short signal
        corr = bsseval._correlations(torch.from_numpy(x), torch.from_numpy(y[:2]), taps, torch.device("cpu"))
    finally:
        bsseval._CORR_FFT = bsseval_block
    rows = np.concatenate([x, y[:2]])
    for k in range(-taps + 1, taps):
        for p in range(2):
            for q in range(4):
                a, b = (x[p, k:], rows[q, :n - k]) if k >= 0 else (x[p, :n + k], rows[q, -k:])
                assert corr[k + taps - 1, p, q].item() == pytest.approx(np.dot(a, b), rel=1e-10, abs=1e-9)


def block_toeplitz(rng, taps: int, m: int, decay: float) -> tuple[torch.Tensor, np.ndarray]:
    """Lags (2L-1, m, m) of the Gram matrix of delayed filtered noise, and the dense matrix."""
    x = scipy.signal.lfilter([1.0], [1.0, -decay], rng.standard_normal((m, 4000)), axis=1)
    corr = bsseval._correlations(torch.from_numpy(x), torch.from_numpy(x), taps, torch.device("cpu"))
    pos = corr[taps - 1:, :, :m]
    lags = torch.cat([pos[1:].flip(0).transpose(1, 2), (0.5 * (pos[0] + pos[0].T))[None], pos[1:]])
    idx = np.arange(taps)
    dense = lags.numpy()[idx[None, :] - idx[:, None] + taps - 1].transpose(0, 2, 1, 3).reshape(taps * m, taps * m)
    return lags, dense


def test_block_levinson_solves_the_dense_systems():
    rng = np.random.default_rng(1)
    systems, dense = [], []
    for m, r, decay in ((3, 2, 0.5), (2, 3, 0.99)):  # the second one ill-conditioned
        lags, matrix = block_toeplitz(rng, 24, m, decay)
        rhs = rng.standard_normal((1, 24, m, r))
        systems.append((lags[None], torch.from_numpy(rhs)))
        dense.append(np.linalg.solve(matrix, rhs[0].reshape(24 * m, r)))
    solved = toeplitz.solve_block_toeplitz(systems)
    for (lags, rhs), x, expected in zip(systems, solved, dense):
        np.testing.assert_allclose(x[0].reshape(expected.shape).numpy(), expected, rtol=1e-7, atol=1e-10)
        error, gain = toeplitz._solution_quality(lags, x, rhs)
        assert float(error[0]) <= toeplitz._BACKWARD_ERROR_MAX and float(gain[0]) < toeplitz._GAIN_MAX


def test_nearly_singular_system_falls_back_to_the_dense_solve():
    """Noise low-passed far below its rounding floor: the recursion amplifies rounding without bound
    (huge gain), so the dense LU solve museval uses takes over, with a warning."""
    rng = np.random.default_rng(2)
    taps, m = 64, 2
    x = scipy.signal.sosfilt(scipy.signal.butter(8, 0.02, output="sos"), rng.standard_normal((m, 6000)), axis=1)
    corr = bsseval._correlations(torch.from_numpy(x), torch.from_numpy(x), taps, torch.device("cpu"))
    pos = corr[taps - 1:, :, :m]
    lags = torch.cat([pos[1:].flip(0).transpose(1, 2), (0.5 * (pos[0] + pos[0].T))[None], pos[1:]])[None]
    rhs = torch.from_numpy(rng.standard_normal((1, taps, m, 1)))
    (recursion,) = toeplitz._block_levinson([(lags, rhs)])
    assert float(toeplitz._solution_quality(lags, recursion, rhs)[1][0]) > toeplitz._GAIN_MAX
    with pytest.warns(RuntimeWarning, match="nearly singular"):
        (solved,) = toeplitz.solve_block_toeplitz([(lags, rhs)])
    assert float(toeplitz._solution_quality(lags, solved, rhs)[0][0]) < 1e-15


# ----------------------------------------------------------------------------- bad input
def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(4)
    refs = references(rng, 4, 2, 1.5, 8000)
    return refs, estimates(rng, refs)


@pytest.mark.parametrize("backend", ["torch", "museval"])
def test_silent_reference_target_is_named(small, backend):
    refs, ests = small
    refs = refs.copy()
    refs[1] = 0.0
    with pytest.raises(ValueError):  # what museval does with it
        museval.metrics.validate(refs.transpose(0, 2, 1), ests.transpose(0, 2, 1))
    with pytest.raises(UserError) as excinfo:
        bss_eval_v4(refs, ests, 8000, backend=backend)
    assert "reference target 1 (bass) is silent" in one_line(excinfo)


def test_silent_estimate_target_is_named(small):
    refs, ests = small
    ests = ests.copy()
    ests[2] = 0.0
    with pytest.raises(ValueError):
        museval.metrics.validate(refs.transpose(0, 2, 1), ests.transpose(0, 2, 1))
    with pytest.raises(UserError) as excinfo:
        bss_eval_v4(refs, ests, 8000)
    assert "estimate target 2 (drums) is silent" in one_line(excinfo)


@pytest.mark.parametrize("change, expected", [
    (lambda r, e: (r, e[:3]), "differ in shape"),
    (lambda r, e: (r, e[:, :1]), "differ in shape"),
    (lambda r, e: (r[0], e[0]), "3 dimensions"),
    (lambda r, e: (r[..., :7999], e[..., :7999]), "fewer than one BSSEval window"),
    (lambda r, e: (r, np.where(np.arange(r.shape[-1]) == 100, np.nan, e)), "estimates contain NaN or inf"),
    (lambda r, e: (np.where(np.arange(r.shape[-1]) == 9, np.inf, r), e), "references contain NaN or inf"),
])
def test_bad_input_gets_one_clear_line(small, change, expected):
    refs, ests = change(*small)
    with pytest.raises(UserError) as excinfo:
        bss_eval_v4(refs, ests, 8000)
    assert expected in one_line(excinfo)


def test_unknown_backend(small):
    with pytest.raises(UserError) as excinfo:
        bss_eval_v4(*small, 8000, backend="mir_eval")
    assert "backend" in one_line(excinfo)
