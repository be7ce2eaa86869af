"""The song synthesiser (pipeline.synth): interface, determinism, and the properties that make the
built-in data set learnable and measurable (silences, panning, broadband content, balanced levels,
well-conditioned BSSEval)."""
from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import synth
from pipeline.synth.arrangement import make_plan

SR = 44100
SONG_S = 12.0
SEEDS = (0, 1, 2, 3, 4, 5)


@functools.lru_cache(maxsize=None)
def song(seed: int, sr: int = SR, duration_s: float = SONG_S) -> dict[str, np.ndarray]:
    return synth.render_song(seed, sr, duration_s)


def frame_rms(x: np.ndarray, sr: int, frame_s: float = 0.1) -> np.ndarray:
    """RMS over both channels per frame."""
    m = int(frame_s * sr)
    usable = x.shape[-1] // m * m
    return np.sqrt(np.mean(x[:, :usable].astype(float).reshape(2, -1, m) ** 2, axis=(0, 2)))


def sad_kept(x: np.ndarray, sr: int) -> list[bool]:
    """The issue's source-activity detection, threshold per window: 6 s windows, 3 s hop, 10 chunks,
    RMS per chunk and channel, threshold = 15 % quantile floored at 1e-3, keep a window when more
    than half of its chunks exceed the threshold in every channel."""
    win, hop = 6 * sr, 3 * sr
    kept = []
    for start in range(0, x.shape[-1] - win + 1, hop):
        chunks = x[:, start : start + win].astype(float).reshape(2, 10, -1)
        rms = np.sqrt(np.mean(chunks**2, axis=-1))
        threshold = np.maximum(np.quantile(rms, 0.15, axis=-1, keepdims=True), 1e-3)
        kept.append(bool(np.all(np.sum(rms > threshold, axis=-1) > 5)))
    return kept


def band_energy(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    """Fraction of the signal's energy between lo and hi Hz."""
    spec = np.abs(np.fft.rfft(x.astype(float), axis=-1)) ** 2
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / sr)
    return float(spec[:, (freqs >= lo) & (freqs < hi)].sum() / spec.sum())


# ----------------------------------------------------------------------------- interface


def test_stems_shapes_and_dtype():
    stems = song(0)
    assert tuple(stems) == synth.STEMS == ("vocals", "bass", "drums", "other")
    for name, audio in stems.items():
        assert audio.dtype == np.float32, name
        assert audio.shape == (2, round(SONG_S * SR)), name
        assert np.all(np.isfinite(audio)), name
        assert np.any(audio != 0), name


@pytest.mark.parametrize(
    "sr, duration_s",
    [(22050, 12.0), (22050, 6.0), (48000, 6.5), (16000, 7.3), (8000, 6.0)],
)
def test_other_sample_rates_and_lengths(sr, duration_s):
    stems = synth.render_song(7, sr, duration_s)
    mixture = sum(stems.values())
    assert np.abs(mixture).max() <= 1.0
    for name, audio in stems.items():
        assert audio.dtype == np.float32
        assert audio.shape == (2, round(duration_s * sr)), (name, sr, duration_s)
        assert np.all(np.isfinite(audio))
        assert np.sqrt(np.mean(audio.astype(float) ** 2)) > 1e-3, (name, sr)


def test_long_song_keeps_its_structure():
    """A minute-long song (low rate to stay fast): silences recur, SAD keeps most windows."""
    sr = 16000
    stems = synth.render_song(11, sr, 61.0)
    assert np.abs(sum(stems.values())).max() <= 1.0
    for name, audio in stems.items():
        assert audio.shape == (2, 61 * sr)
        rms = frame_rms(audio, sr)
        assert np.mean(rms == 0) > 0.02, name
        assert np.mean(rms > 1e-3) > 0.6, name
        kept = sad_kept(audio, sr)
        assert np.mean(kept) >= 0.6, (name, kept)


def test_bad_arguments():
    with pytest.raises(ValueError):
        synth.render_song(-1, SR, 6.0)
    with pytest.raises(ValueError):
        synth.render_song(0, SR, 0.0)
    with pytest.raises(ValueError):
        synth.song_names("validation", 3, 0)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_song():
    again = synth.render_song(0, SR, SONG_S)
    for name in synth.STEMS:
        assert np.array_equal(song(0)[name], again[name]), name


def test_different_seeds_different_songs():
    mixes = [sum(song(seed).values()).astype(float) for seed in SEEDS[:4]]
    for i in range(len(mixes)):
        for j in range(i + 1, len(mixes)):
            corr = np.corrcoef(mixes[i].ravel(), mixes[j].ravel())[0, 1]
            assert abs(corr) < 0.5, (i, j, corr)


def test_variety_across_seeds():
    """Tempo, key and mode vary across songs."""
    plans = [make_plan(np.random.default_rng(seed), SR, round(SONG_S * SR)) for seed in range(20)]
    tempos = [p.bpm for p in plans]
    assert min(tempos) >= 80 and max(tempos) <= 160
    assert max(tempos) - min(tempos) > 30
    assert len({p.root for p in plans}) >= 5
    assert len({tuple(p.scale) for p in plans}) == 2


# ----------------------------------------------------------------------------- names


def real_musdb_validation_names() -> list[str]:
    # Read musdb's own configuration without importing musdb (its import needs ffmpeg).
    spec = importlib.util.find_spec("musdb")
    setup = yaml.safe_load((Path(spec.origin).parent / "configs" / "mus.yaml").read_text())
    return setup["validation_tracks"]


def test_song_names():
    splits = {split: synth.song_names(split, 60, 42) for split in ("train", "valid", "test")}
    everything = [name for names in splits.values() for name in names]
    assert len(everything) == len(set(everything)) == 180
    assert len({n.lower() for n in everything}) == 180  # also on case-insensitive file systems
    real = {n.lower() for n in real_musdb_validation_names()}
    assert len(real) == 14
    for name in everything:
        assert name.lower() not in real
        assert re.fullmatch(r"[A-Za-z]+( [A-Za-z]+)* - [A-Za-z]+( [A-Za-z]+)*", name), name
    # Deterministic, and a longer list extends a shorter one.
    assert synth.song_names("valid", 60, 42) == splits["valid"]
    assert synth.song_names("valid", 8, 42) == splits["valid"][:8]
    assert synth.song_names("train", 0, 42) == []
    assert synth.song_names("train", 10, 43) != splits["train"][:10]


def test_song_names_disjoint_whatever_the_counts():
    train = set(synth.song_names("train", 24, 7))
    valid = set(synth.song_names("valid", 8, 7))
    test = set(synth.song_names("test", 100, 7))
    assert len(train) == 24 and len(valid) == 8 and len(test) == 100
    assert not (train & valid) and not (train & test) and not (valid & test)


# ----------------------------------------------------------------------------- audio properties


@pytest.mark.parametrize("seed", SEEDS)
def test_mixture_within_full_scale(seed):
    stems = song(seed)
    assert np.abs(sum(stems.values())).max() <= 1.0
    # Also after the 16-bit rounding that `prepare` applies to each stem before summing.
    ints = sum(np.round(a * 32768.0).astype(np.int64) for a in stems.values())
    assert np.abs(ints).max() <= 32767


@pytest.mark.parametrize("seed", SEEDS)
def test_every_stem_has_silent_and_active_stretches(seed):
    for name, audio in song(seed).items():
        rms = frame_rms(audio, SR)
        silent = rms == 0.0
        # a silent stretch of at least half a second: five consecutive 100 ms frames
        runs = np.convolve(silent.astype(int), np.ones(5, dtype=int), "valid")
        assert runs.max() == 5, f"{name}: no silent stretch"
        assert np.mean(rms > 1e-3) >= 0.55, f"{name}: active only {np.mean(rms > 1e-3):.0%}"


@pytest.mark.parametrize("seed", SEEDS)
def test_source_activity_detection_keeps_windows(seed):
    for name, audio in song(seed).items():
        kept = sad_kept(audio, SR)
        assert len(kept) == 3
        assert sum(kept) >= 2, (name, kept)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_channels_differ(seed):
    for name, audio in song(seed).items():
        left, right = audio.astype(float)
        side = np.sum((left - right) ** 2) / np.sum(left**2 + right**2)
        assert side > 5e-3, f"{name}: channels nearly identical ({side:.2e})"
        assert np.corrcoef(left, right)[0, 1] < 0.999, name


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_broadband_content_with_character(seed):
    stems = song(seed)
    for name, audio in stems.items():
        assert band_energy(audio, SR, 4000, SR / 2) > 1e-4, f"{name}: nothing above 4 kHz"
    # Drums, other and vocals spread over several octaves (each within 30 dB of the strongest).
    edges = 62.5 * 2.0 ** np.arange(9)  # 62.5 Hz .. 16 kHz
    for name in ("drums", "other", "vocals"):
        bands = np.array([band_energy(stems[name], SR, lo, 2 * lo) for lo in edges[:-1]])
        assert np.sum(bands > 1e-3 * bands.max()) >= 5, (name, np.round(10 * np.log10(bands + 1e-12)))
    # ... while the bass stays mostly low and the drums have high hats and cymbals.
    assert band_energy(stems["bass"], SR, 0, 500) > 0.7
    assert band_energy(stems["drums"], SR, 5000, SR / 2) > 3e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_levels_balanced(seed):
    stems = {k: v.astype(float) for k, v in song(seed).items()}
    level = {k: 10 * np.log10(np.mean(v**2)) for k, v in stems.items()}
    assert max(level.values()) - min(level.values()) <= 6.0, level
    mixture = sum(stems.values())
    for name, target in stems.items():
        # neither the mixture nor silence is a good estimate of any target
        sdr_mixture = 10 * np.log10(np.sum(target**2) / np.sum((mixture - target) ** 2))
        assert -12.0 < sdr_mixture < -0.5, (name, sdr_mixture)


def test_bss_eval_well_conditioned():
    """museval's BSSEval v4 (1 s windows) on a short song, the mixture / 4 as every estimate: finite
    scores on every frame where all sources are active (NaN frames are museval's silent ones)."""
    from museval import metrics

    sr = 22050
    stems = synth.render_song(5, sr, 6.0)
    references = np.stack([stems[name].T for name in synth.STEMS]).astype(float)
    estimates = np.repeat(references.sum(axis=0, keepdims=True) / 4.0, 4, axis=0)
    sdr, isr, sir, sar, _ = metrics.bss_eval(
        references, estimates, window=sr, hop=sr, compute_permutation=False, filters_len=512,
        framewise_filters=False, bsseval_sources_version=False,
    )
    frames = references.reshape(4, -1, sr, 2)[:, : sdr.shape[1]]
    active = np.all(np.any(frames.sum(axis=-1) != 0, axis=2), axis=0)
    assert active.sum() >= 2, active
    for name, values in (("sdr", sdr), ("isr", isr), ("sir", sir), ("sar", sar)):
        assert np.all(np.isfinite(values[:, active])), (name, values)
    assert np.all(sdr[:, active] > -40) and np.all(sdr[:, active] < 20), sdr
