"""Vocals: a glottal-pulse source (Rosenberg pulse derivative) with glides, vibrato and drift,
aspiration noise, a cascade of formant resonators whose vowel changes with the syllables, a presence
shelf, sibilant/plosive consonants and breaths, sung in phrases with rests on a melody in the key
that lands on chord tones.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import signal

from pipeline.synth import dsp
from pipeline.synth.arrangement import Plan

# Formants (Hz) and bandwidths of an alto voice; scaled per singer.
_VOWELS = {
    "a": ((800, 1150, 2800, 3500, 4950), (80, 90, 120, 130, 140)),
    "e": ((400, 1600, 2700, 3300, 4950), (60, 80, 120, 150, 200)),
    "i": ((350, 1700, 2700, 3700, 4950), (50, 100, 120, 150, 200)),
    "o": ((450, 800, 2830, 3500, 4950), (70, 80, 100, 130, 135)),
    "u": ((325, 700, 2530, 3500, 4950), (50, 60, 170, 180, 200)),
}


def _formant_sos(formants, bandwidths, scale: float, sr: int) -> np.ndarray:
    """Cascade of two-pole resonators (unit gain at DC), normalised to unit gain on a 1/f source."""
    sections = []
    for fc, bw in zip(formants, bandwidths):
        fc *= scale
        if fc >= 0.45 * sr:
            continue
        r = math.exp(-math.pi * bw / sr)
        c = 2 * r * math.cos(2 * math.pi * fc / sr)
        sections.append([1 - c + r * r, 0.0, 0.0, 1.0, -c, r * r])
    sos = np.array(sections)
    freqs, h = signal.sosfreqz(sos, worN=2048, fs=sr)
    weight = 1.0 / np.maximum(freqs, 100.0) ** 2
    sos[0, :3] /= math.sqrt(np.sum(np.abs(h) ** 2 * weight) / np.sum(weight))
    return sos


_CONSONANTS = (  # noise band (Hz), length (s), level: s, sh, f, t, k
    ((4500.0, 11000.0), 0.09, 0.5), ((2000.0, 6000.0), 0.1, 0.45), ((1500.0, 9000.0), 0.08, 0.3),
    ((2500.0, 10000.0), 0.02, 0.7), ((1200.0, 5000.0), 0.025, 0.6),
)


def vocals(plan: Plan, rng: np.random.Generator) -> np.ndarray:
    sr, n = plan.sr, plan.n
    high = rng.random() < 0.5
    lo = int(rng.integers(57, 65)) if high else int(rng.integers(50, 58))
    home = lo + (plan.root - lo) % 12  # the key's root in the singer's register
    formant_scale = rng.uniform(1.0, 1.15) if high else rng.uniform(0.85, 1.0)
    vib_rate, vib_depth = rng.uniform(4.8, 6.5), rng.uniform(0.25, 0.6)
    oq = rng.uniform(0.5, 0.7)  # open quotient of the glottal pulse
    breathy = rng.uniform(0.05, 0.2)
    presence = rng.uniform(1.5, 3.0)  # gain of a shelf above 2 kHz: the singer's formant region
    phrase = 8.0 if plan.bar_s < 2.4 else 4.0
    durations = np.array([0.5, 0.5, 1.0, 1.0, 1.0, 1.5, 2.0])

    def pitch(d):
        return home + plan.scale[d % 7] + 12 * (d // 7)

    # Score: phrases with rests, one syllable (vowel, maybe a consonant) per note.
    notes = []  # (start_beat, end_beat, midi, vowel, second vowel, consonant or -1)
    breaths = []
    total = plan.n / plan.sr / plan.beat
    d = int(rng.choice([0, 2, 4]))  # melody position in scale steps above home
    t = 0.0
    while t < total:
        off = [b for a, b in plan.vocal_off if a <= t < b]
        if off:  # an intro or instrumental: the next phrase starts where it ends
            t = off[0]
            continue
        rest = float(rng.choice([1.5, 2.0, 2.5, 3.0] if phrase == 8.0 else [1.0, 1.5, 1.5]))
        pos = t + float(rng.choice([0.0, 0.0, 0.5, 1.0] if phrase == 8.0 else [0.0, 0.5]))
        end = t + phrase - rest
        breaths.append(pos)
        while pos < end - 0.25:
            dur = min(float(rng.choice(durations)), end - pos)
            if pos % 2 == 0:  # strong beats land on a chord tone
                chord = plan.chord(int(pos // 4))
                tones = [int(np.searchsorted(plan.scale, c % 12)) + 7 * (c // 12) for c in chord]
                d = min((c + 7 * k for c in tones for k in (-1, 0, 1)), key=lambda c: (abs(c - d), c))
            d = int(np.clip(d, -2, 9))
            vowel = int(rng.integers(5))
            vowel2 = int(rng.integers(5)) if dur >= 1.0 and rng.random() < 0.3 else vowel
            cons = int(rng.integers(len(_CONSONANTS))) if rng.random() < 0.6 else -1
            notes.append((pos, pos + dur, pitch(d), vowel, vowel2, cons))
            pos += dur
            d += int(rng.choice([-2, -1, -1, 0, 1, 1, 2]))
        t += phrase
    if not notes:
        return np.zeros((2, n), dtype=np.float32)
    starts = [int(plan.smp(x[0])) for x in notes]
    ends = [int(plan.smp(x[1])) for x in notes]

    # Pitch: glides between notes; vibrato fading in after each onset; a slow drift of a few cents.
    midi = dsp.smooth(dsp.line(starts, [x[2] for x in notes], n), rng.uniform(0.02, 0.05), sr)
    hop = 64  # control rate: one value per hop samples
    nc = n // hop + 2
    ctrl_t = np.arange(nc) * hop / sr
    vib_env = np.zeros(nc)
    delay = rng.uniform(0.12, 0.3)
    for s, e in zip(starts, ends):
        a, b = min((s + int(delay * sr)) // hop, nc), min(e // hop, nc)
        if b > a:
            vib_env[a:b] = np.minimum(np.arange(1, b - a + 1) * hop / (0.25 * sr), 1.0)
    vib_env = dsp.smooth(vib_env, 0.05, sr / hop)
    knots = rng.normal(0.0, 0.06, int(ctrl_t[-1] / 0.1) + 2)  # semitones, every 100 ms
    drift = dsp.smooth(np.interp(ctrl_t, np.arange(len(knots)) * 0.1, knots), 0.1, sr / hop)
    bend = vib_depth * vib_env * np.sin(2 * np.pi * vib_rate * ctrl_t + 0.6 * np.sin(2 * np.pi * 0.3 * ctrl_t))
    bend += drift
    ctrl_x = np.arange(nc) * hop
    for sl in dsp.blocks(n):
        midi[sl] += np.interp(np.arange(sl.start, sl.stop), ctrl_x, bend)
    f0 = dsp.hz(midi).astype(np.float32)
    del midi

    # Loudness: legato within a phrase, a dip between syllables, a release at rests.
    amp = np.zeros(n, dtype=np.float32)
    rel = int(0.08 * sr)
    for s, e in zip(starts, ends):
        dsp.add(amp, s, rng.uniform(0.75, 1.0) * dsp.env(max(e - s, 1), rel, sr, 0.04, 0.3, 0.85), "max")

    # Glottal source: the derivative of a Rosenberg pulse, looked up by phase in a one-cycle table,
    # plus aspiration noise in the open phase.
    table = 4096
    tp, tn = 0.65 * oq, 0.35 * oq
    grid = np.arange(table) / table
    flow = np.where(grid < tp, 0.5 * (1 - np.cos(np.pi * grid / tp)),
                    np.where(grid < tp + tn, np.cos(np.pi * (grid - tp) / (2 * tn)), 0.0))
    dflow = np.diff(flow, append=flow[:1]) * table / (np.pi / (2 * tn))  # slope per cycle, peak ~1
    hp = dsp.butter(sr, "highpass", 1500.0)
    zi = np.zeros((hp.shape[0], 2))
    src = np.empty(n, dtype=np.float32)
    for sl, ph, dt in dsp.phases(f0, sr):
        idx = ((ph - np.floor(ph)) * table).astype(np.int32)
        np.minimum(idx, table - 1, out=idx)
        aspiration, zi = signal.sosfilt(hp, rng.standard_normal(len(ph)), zi=zi)
        x = dflow[idx] * np.sqrt(dt * (sr / 220.0))
        x += breathy * (idx < int(oq * table)) * aspiration
        src[sl] = x * amp[sl]
    del f0

    # Formants: one filter per vowel, cross-faded at the control rate as the syllables change.
    weights = np.zeros((5, nc))
    for (_, _, _, v1, v2, _), s, e in zip(notes, starts, ends):
        mid = s + int(0.6 * (e - s)) if v2 != v1 else e
        weights[v1, s // hop : mid // hop + 1] = 1.0
        weights[v2, mid // hop : (e + int(0.1 * sr)) // hop] = 1.0
    weights = dsp.smooth(weights, 0.035, sr / hop)
    weights /= np.maximum(weights.sum(axis=0), 1e-6)
    filters = [_formant_sos(fs, bws, formant_scale, sr) for fs, bws in _VOWELS.values()]
    states = [np.zeros((len(sos), 2)) for sos in filters]
    voice = np.empty(n, dtype=np.float32)
    for sl in dsp.blocks(n):
        acc = np.zeros(sl.stop - sl.start)
        c0, c1 = sl.start // hop, (sl.stop - 1) // hop + 1
        for k, sos in enumerate(filters):
            w = np.repeat(weights[k, c0:c1], hop)[sl.start - c0 * hop : sl.stop - c0 * hop]
            if not np.any(w > 1e-4):
                states[k] = np.zeros_like(states[k])  # silent vowel: let its filter rest
                continue
            y, states[k] = signal.sosfilt(sos, src[sl], zi=states[k])
            acc += w * y
        voice[sl] = acc
    del src
    voice += presence * dsp.filt(dsp.butter(sr, "highpass", 2000.0), voice)
    active = amp > 0.3
    level = math.sqrt(float(np.mean(voice[active].astype(float) ** 2))) if np.any(active) else 1.0
    del amp, active

    # Consonants before some syllables (s, sh, f, t, k) and breaths before phrases.
    for k, (band, length, lev) in enumerate(_CONSONANTS):
        m = int(length * sr)
        shape = np.sin(np.pi * np.arange(m) / m) ** 2 if length > 0.05 else np.exp(-np.arange(m) / (0.006 * sr))
        at = [s - int(0.7 * m) for note, s in zip(notes, starts) if note[5] == k]
        voice += dsp.bursts(n, at, [2.0 * level * lev] * len(at), shape, dsp.butter(sr, "bandpass", band), rng)
    m = int(0.25 * sr)
    shape = np.sin(np.pi * np.arange(m) / m) ** 2
    at = [int(plan.smp(b)) - m - int(0.03 * sr) for b in breaths]
    voice += dsp.bursts(n, at, [0.3 * level] * len(at), shape, dsp.butter(sr, "bandpass", (800.0, 6000.0)), rng)

    # The (slightly off-centre) dry voice and a ping-pong echo.
    out = (dsp.pan(rng.uniform(-0.15, 0.15))[:, None] * voice).astype(np.float32)
    delay = int(plan.beat * float(rng.choice([0.75, 0.5, 1.0])) * sr)
    fb = rng.uniform(0.08, 0.18)
    for i in range(1, 3):
        if delay * i < n:
            out[i % 2, delay * i :] += fb**i * voice[: n - delay * i]
    return out
