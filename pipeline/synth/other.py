"""Other (the accompaniment): a chord layer (detuned-saw pad, organ or FM keys) voiced across the
singer's range, the voices of a chord spread in the stereo field, and a plucked arpeggio on the chord
tones, with an echo on the other side.
"""
from __future__ import annotations

import math

import numpy as np

from pipeline.synth import dsp
from pipeline.synth.arrangement import Plan

_COMPS = (  # chord rhythms: (start beat, length in beats) within a bar
    ((0.0, 4.0),), ((0.0, 2.0), (2.0, 2.0)), ((0.5, 0.5), (1.5, 0.5), (2.5, 0.5), (3.5, 0.5)),
    ((0.0, 1.5), (1.5, 1.0), (2.5, 1.5)), ((0.0, 1.0), (1.5, 0.5), (3.0, 1.0)),
)


def _voicings(plan: Plan, lo: int) -> list[list[int]]:
    """Four-note close voicings per bar, from lo upwards, with the nearest inversion to the last."""
    out, prev = [], None
    for bar in range(plan.bars):
        tones = [int(plan.root + c) for c in plan.chord(bar)]
        best = None
        for inv in range(len(tones)):
            order = tones[inv:] + [t + 12 for t in tones[:inv]]
            base = order[0] + 12 * math.ceil((lo - order[0]) / 12)
            v = [base + (t - order[0]) for t in order]
            if len(v) == 3:
                v.append(v[0] + 12)
            cost = 0 if prev is None else sum(abs(a - b) for a, b in zip(v, prev))
            if best is None or cost < best[0]:
                best = (cost, v)
        prev = best[1]
        out.append(prev)
    return out


def _chords(plan: Plan, rng: np.random.Generator, voicings: list[list[int]]) -> np.ndarray:
    """The chord layer: pad (detuned saws), organ (hollow wave, rotary tremolo) or FM keys."""
    sr, n = plan.sr, plan.n
    timbre = ("pad", "organ", "keys")[int(rng.integers(3))]
    comp = _COMPS[0] if timbre == "pad" and rng.random() < 0.6 else _COMPS[int(rng.integers(len(_COMPS)))]
    events = []  # (start, end, voicing)
    for bar in range(plan.bars):
        for a, length in comp:
            pos = 4.0 * bar + a
            if not plan.silent("other", pos):
                events.append((int(plan.smp(pos)), int(plan.smp(pos + length)), voicings[bar]))
    if not events:
        return np.zeros((2, n), dtype=np.float32)
    att, dec, sus, rel = {
        "pad": (rng.uniform(0.05, 0.25), 0.5, 0.8, rng.uniform(0.2, 0.5)),
        "organ": (0.005, 0.1, 0.9, 0.04),
        "keys": (0.003, rng.uniform(0.4, 0.9), 0.2, 0.15),
    }[timbre]
    starts = [s for s, _, _ in events]
    amp = np.zeros(n, dtype=np.float32)
    for s, e, _ in events:
        dsp.add(amp, s, rng.uniform(0.8, 1.0) * dsp.env(max(e - s, 1), int(rel * sr), sr, att, dec, sus), "max")
    if timbre == "keys":  # modulation index: bright at each onset
        index = np.zeros(n, dtype=np.float32)
        for s, e, _ in events:
            dsp.add(index, s, np.exp(-np.arange(max(e - s, 1) + int(rel * sr)) / (0.15 * sr)), "max")
        index *= rng.uniform(1.5, 3.5)
        index += 0.6

    out = np.zeros((2, n), dtype=np.float32)  # the voices, before the common envelope
    for v in range(4):
        f = dsp.line(starts, dsp.hz([vo[v] for _, _, vo in events]), n)
        gl, gr = dsp.pan((v - 1.5) / 1.5 * rng.uniform(0.3, 0.6))
        if timbre == "pad":  # two detuned saws, one mostly left, the other mostly right
            cents = rng.uniform(4, 12)
            for sign, (a, b) in ((-1, (0.8, 0.2)), (1, (0.2, 0.8))):
                for sl, ph, dt in dsp.phases(f * 2 ** (sign * cents / 1200), sr, rng.random()):
                    x = dsp.saw(ph, dt)
                    out[0, sl] += a * x
                    out[1, sl] += b * x
            continue
        for sl, ph, dt in dsp.phases(f, sr, rng.random()):
            if timbre == "organ":  # a hollow wave: odd harmonics 1.5/k, even ones 0.5/k
                x = dsp.saw(ph, dt)
                x -= 0.5 * dsp.saw(ph + 0.5, dt)
            else:  # FM keys: a sine modulated by itself
                ph *= 2 * np.pi
                x = np.sin(ph + index[sl] * np.sin(ph))
            out[0, sl] += gl * x
            out[1, sl] += gr * x
    out *= amp
    del amp
    if timbre == "pad":
        out = dsp.filt(dsp.butter(sr, "lowpass", rng.uniform(1500, 4000)), out)
    if timbre == "organ":  # rotary tremolo, opposite in the two channels
        w = 2 * np.pi * rng.uniform(4.5, 6.5) / sr
        for sl in dsp.blocks(n):
            trem = 0.2 * np.sin(w * np.arange(sl.start, sl.stop))
            out[0, sl] *= 1 + trem
            out[1, sl] *= 1 - trem
    click = np.exp(-np.arange(int(0.01 * sr)) / (0.002 * sr))
    level = 0.3 if timbre != "pad" else 0.05
    clicks = dsp.bursts(n, starts, [level] * len(starts), click, dsp.butter(sr, "highpass", 2000.0), rng)
    out += (dsp.pan(rng.uniform(-0.3, 0.3))[:, None] * clicks).astype(np.float32)
    return out


def _arpeggio(plan: Plan, rng: np.random.Generator, voicings: list[list[int]]) -> np.ndarray:
    """Chord tones (maybe an octave up), plucked, in eighths or sixteenths, in most two-bar groups."""
    sr, n = plan.sr, plan.n
    rate = 4 if plan.bpm < 110 else 2  # notes per beat
    style = int(rng.integers(4))  # up, down, up-down, random
    octave = 12 * int(rng.integers(0, 2))
    gate = rng.uniform(0.4, 0.9)
    starts, pitches = [], []
    playing = True
    for bar in range(plan.bars):
        if bar % 2 == 0:
            playing = rng.random() < 0.8
        if not playing:
            continue
        pool = sorted(voicings[bar] + [p + 12 for p in voicings[bar]])
        pool = [p + octave for p in pool if p + octave <= 90] or [voicings[bar][0]]
        seq = {0: pool, 1: pool[::-1], 2: pool + pool[-2:0:-1]}.get(style)
        for i in range(4 * rate):
            pos = 4.0 * bar + i / rate
            if plan.silent("other", pos):
                continue
            starts.append(int(plan.smp(pos)))
            pitches.append(seq[i % len(seq)] if seq is not None else pool[int(rng.integers(len(pool)))])
    if not starts:
        return np.zeros((2, n), dtype=np.float32)
    f = dsp.line(starts, dsp.hz(pitches), n)
    width = rng.uniform(0.2, 0.5)
    mix = 0.7 * rng.uniform(0.0, 1.0)
    raw = np.empty(n, dtype=np.float32)
    for sl, ph, dt in dsp.phases(f, sr, rng.random()):  # a saw blended with a pulse
        x = dsp.saw(ph, dt)
        x -= mix * dsp.saw(ph + width, dt)
        raw[sl] = x
    del f
    amp = np.zeros(n, dtype=np.float32)
    bright_env = np.zeros(n, dtype=np.float32)
    tau, tau_b = rng.uniform(0.1, 0.35), rng.uniform(0.03, 0.12)
    length = max(int(gate * plan.beat / rate * sr), 1)
    rel = int(0.02 * sr)
    bright_shape = np.exp(-np.arange(length + rel) / (tau_b * sr))
    for s in starts:
        dsp.add(amp, s, rng.uniform(0.7, 1.0) * dsp.env(length, rel, sr, 0.002, tau, 0.0), "max")
        dsp.add(bright_env, s, bright_shape, "max")
    x = dsp.filt(dsp.butter(sr, "lowpass", rng.uniform(700, 1500)), raw)  # dark, then brightened per note
    raw -= x
    raw *= bright_env
    x += raw
    x *= amp
    del raw, amp, bright_env
    p = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.6)
    out = (dsp.pan(p)[:, None] * x).astype(np.float32)
    delay = int(plan.beat * 0.75 * sr)  # a dotted-eighth echo on the other side
    if delay < n:
        out[:, delay:] += (0.3 * dsp.pan(-p)[:, None] * x[: n - delay]).astype(np.float32)
    return out


def other(plan: Plan, rng: np.random.Generator) -> np.ndarray:
    voicings = _voicings(plan, int(rng.integers(52, 58)))
    chords = _chords(plan, rng, voicings)
    chords /= dsp.rms(chords) + 1e-12
    arp = _arpeggio(plan, rng, voicings)
    arp *= rng.uniform(0.4, 0.9) / (dsp.rms(arp) + 1e-12)
    chords += arp
    return chords
