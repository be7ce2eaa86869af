"""Bass: a saw/pulse/sine oscillator, driven and low-passed with a plucked filter envelope and pick
clicks, playing a rhythmic line on the chord roots (fifths, octaves, approach notes). It gets a few
early reflections of its own instead of the room reverb.
"""
from __future__ import annotations

import numpy as np

from pipeline.synth import dsp
from pipeline.synth.arrangement import Plan

_BASS_PATTERNS = (  # (sixteenth, role): R root, O octave, F fifth, A approach to the next chord
    ((0, "R"), (8, "R"), (14, "A")),
    ((0, "R"), (3, "R"), (6, "R"), (8, "R"), (11, "R"), (14, "A")),
    ((0, "R"), (2, "R"), (4, "O"), (6, "R"), (8, "R"), (10, "F"), (12, "R"), (14, "A")),
    ((0, "R"), (6, "R"), (8, "F"), (10, "O"), (14, "A")),
    ((0, "R"), (4, "R"), (7, "R"), (10, "F"), (12, "O")),
    ((0, "R"), (3, "F"), (6, "O"), (10, "R"), (12, "F"), (14, "A")),
)


def bass(plan: Plan, rng: np.random.Generator) -> np.ndarray:
    sr, n = plan.sr, plan.n
    pattern = _BASS_PATTERNS[int(rng.integers(len(_BASS_PATTERNS)))]
    low = int(rng.integers(28, 34))  # lowest root, E1..A#1
    gate = rng.uniform(0.55, 0.95)

    def root_midi(bar):
        pc = (plan.root + plan.chord(bar)[0]) % 12
        return low + (pc - low) % 12

    starts, ends, pitches, vels = [], [], [], []
    onsets = [s for s, _ in pattern] + [16]
    for bar in range(plan.bars):
        r, nxt = root_midi(bar), root_midi(bar + 1)
        for i, (step, role) in enumerate(pattern):
            pos = 4.0 * bar + step / 4.0
            if plan.silent("bass", pos):
                continue
            if role == "R":
                p = r
            elif role == "O":
                p = r + 12
            elif role == "F":
                p = r + 7
            else:
                p = nxt + (1 if rng.random() < 0.5 else -1) * (2 if rng.random() < 0.5 else 1)
            starts.append(int(plan.smp(pos)))
            ends.append(int(plan.smp(pos + (onsets[i + 1] - step) / 4.0 * gate)))
            pitches.append(p)
            vels.append((1.0 if step % 4 == 0 else 0.8) * rng.uniform(0.85, 1.0))

    # Oscillator: saw blended with a pulse and a sine, driven.
    f = dsp.smooth(dsp.line(starts, dsp.hz(pitches), n), 0.004, sr)
    pw, mix, drive = rng.uniform(0.3, 0.5), rng.uniform(0.0, 1.0), rng.uniform(1.0, 3.0)
    raw = np.empty(n, dtype=np.float32)
    for sl, ph, dt in dsp.phases(f, sr):
        saw = dsp.saw(ph, dt)
        x = saw * (1.0 - 0.3 * mix)
        x -= (0.7 * mix) * dsp.saw(ph + pw, dt)
        x += 0.5 * np.sin(2 * np.pi * ph)
        raw[sl] = np.tanh(drive * x)
    del f

    # Plucked: each note starts bright and darkens; picks click at the onsets.
    amp = np.zeros(n, dtype=np.float32)
    bright_env = np.zeros(n, dtype=np.float32)
    rel = int(0.03 * sr)
    tau_b = rng.uniform(0.04, 0.15)
    for s, e, v in zip(starts, ends, vels):
        on = max(e - s, 1)
        dsp.add(amp, s, v * dsp.env(on, rel, sr, 0.004, 0.4, 0.6), "max")
        dsp.add(bright_env, s, np.exp(-np.arange(on) / (tau_b * sr)), "max")
    cutoff = rng.uniform(300, 900)
    line = dsp.filt(dsp.butter(sr, "lowpass", cutoff), raw)
    bright = dsp.filt(dsp.butter(sr, "lowpass", cutoff * rng.uniform(3.0, 6.0)), raw)
    del raw
    bright -= line
    bright *= bright_env
    line += bright
    line *= amp
    del bright, bright_env, amp
    pick = np.exp(-np.arange(int(0.015 * sr)) / (0.003 * sr))
    clicks = dsp.bursts(
        n, starts, np.array(vels) * rng.uniform(0.08, 0.2), pick, dsp.butter(sr, "highpass", 1200.0), rng
    )

    p = rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.2)
    out = (dsp.pan(p)[:, None] * line).astype(np.float32)
    out += (dsp.pan(-2 * p)[:, None] * clicks).astype(np.float32)
    # A few early reflections, different per channel, instead of a reverb: the bass stays dry-ish.
    for c in range(2):
        for _ in range(3):
            d = int(rng.uniform(0.004, 0.03) * sr)
            if 0 < d < n:
                out[c, d:] += rng.uniform(0.05, 0.15) * line[: n - d]
    return out
