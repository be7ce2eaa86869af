"""Drums: kick (pitch-swept sine with a click), snare (tone plus noise), closed and open hi-hats
(noise and metallic squares, high-passed), toms and a crash; a per-song groove at the song's tempo
with ghost notes, per-bar variations, fills at the end of four-bar phrases and crashes. Hats and
crash are panned to opposite sides, the toms spread.
"""
from __future__ import annotations

import numpy as np
from scipy import signal

from pipeline.synth import dsp
from pipeline.synth.arrangement import Plan


def _drum_kit(rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
    """One-shot samples (mono, peak 1) for this song's kit."""

    def noise(seconds):
        return rng.standard_normal(int(seconds * sr))

    def t_of(x):
        return np.arange(len(x)) / sr

    def finish(x):
        k = max(len(x) // 5, 1)
        x[-k:] *= np.linspace(1.0, 0.0, k)
        return x / (np.max(np.abs(x)) + 1e-12)

    kit = {}
    # Kick: a sine swept down from ~170 Hz to ~50 Hz, with a click and some drive.
    nz = noise(rng.uniform(0.3, 0.5))
    t = t_of(nz)
    f_end, f_start = rng.uniform(42, 62), rng.uniform(110, 220)
    f = f_end + (f_start - f_end) * np.exp(-t / rng.uniform(0.015, 0.05))
    body = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / rng.uniform(0.1, 0.25))
    click = signal.sosfilt(dsp.butter(sr, "highpass", 1500.0), nz) * np.exp(-t / 0.004) * rng.uniform(0.15, 0.4)
    kit["kick"] = finish(np.tanh(rng.uniform(1.0, 3.0) * (body + click)))

    # Snare: two damped partials and band-limited noise (the wires).
    nz = noise(rng.uniform(0.25, 0.4))
    t = t_of(nz)
    f1 = rng.uniform(160, 240) * (1 + 0.15 * np.exp(-t / 0.01))
    tone = np.sin(2 * np.pi * np.cumsum(f1) / sr) + 0.6 * np.sin(2 * np.pi * np.cumsum(1.62 * f1) / sr)
    tone *= np.exp(-t / rng.uniform(0.03, 0.07))
    wires = signal.sosfilt(dsp.butter(sr, "bandpass", (rng.uniform(700, 1500), rng.uniform(8000, 12000))), nz)
    wires *= np.exp(-t / rng.uniform(0.07, 0.18)) * 3.0
    kit["snare"] = finish(rng.uniform(0.3, 0.8) * tone + wires)

    # Hi-hats: noise plus six inharmonic squares (the classic drum-machine recipe), high-passed.
    base = rng.uniform(300, 480)
    ratios = np.array([1.0, 1.4471, 1.6170, 1.9265, 2.5028, 2.6637])
    hp = dsp.butter(sr, "highpass", rng.uniform(5500, 8000), order=4)
    for name, length, tau in (("hat", 0.12, rng.uniform(0.012, 0.035)), ("open_hat", 0.6, rng.uniform(0.12, 0.3))):
        nz = noise(length)
        t = t_of(nz)
        metal = np.sign(np.sin(2 * np.pi * np.outer(base * ratios, t))).sum(axis=0) / 6.0
        kit[name] = finish(signal.sosfilt(hp, nz + rng.uniform(0.5, 1.5) * metal) * np.exp(-t / tau))

    # Toms: pitched sweeps with a little skin noise, high to low.
    low = rng.uniform(80, 120)
    for i, ratio in enumerate((1.9, 1.45, 1.0)):
        nz = noise(0.45)
        t = t_of(nz)
        f = low * ratio * (1 + 0.4 * np.exp(-t / 0.03))
        body = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / rng.uniform(0.12, 0.25))
        skin = signal.sosfilt(dsp.butter(sr, "bandpass", (300.0, 6000.0)), nz) * np.exp(-t / 0.03) * 0.5
        kit[f"tom{i}"] = finish(np.tanh(1.5 * (body + skin)))

    # Crash: long bright noise and metal.
    nz = noise(2.0)
    t = t_of(nz)
    metal = np.sign(np.sin(2 * np.pi * np.outer(base * 1.37 * ratios, t))).sum(axis=0) / 6.0
    x = signal.sosfilt(dsp.butter(sr, "highpass", rng.uniform(2500, 4500)), nz + 0.7 * metal)
    kit["crash"] = finish(x * np.exp(-t / rng.uniform(0.6, 1.2)) * np.minimum(t / 0.002, 1.0))
    return kit


_KICKS = (  # kick patterns, in sixteenths of a bar
    (0, 8), (0, 8, 10), (0, 6, 8), (0, 3, 8, 11), (0, 7, 10), (0, 4, 8, 12), (0, 10), (0, 2, 8, 9),
)


def drums(plan: Plan, rng: np.random.Generator) -> np.ndarray:
    sr, n = plan.sr, plan.n
    kit = _drum_kit(rng, sr)
    side = rng.choice([-1.0, 1.0])
    pans = {
        "kick": 0.0, "snare": rng.uniform(-0.12, 0.12), "hat": side * rng.uniform(0.25, 0.6),
        "open_hat": side * rng.uniform(0.25, 0.6), "crash": -side * rng.uniform(0.3, 0.7),
        "tom0": -side * 0.5, "tom1": 0.0, "tom2": side * 0.5,
    }
    levels = {
        "kick": 1.0, "snare": rng.uniform(0.6, 0.9), "hat": rng.uniform(0.4, 0.7),
        "open_hat": rng.uniform(0.3, 0.5), "crash": rng.uniform(0.25, 0.4),
        "tom0": 0.7, "tom1": 0.75, "tom2": 0.8,
    }
    # Stereo one-shots, panned and levelled once.
    shots = {el: (levels[el] * dsp.pan(pans[el])[:, None] * x).astype(np.float32) for el, x in kit.items()}
    kick_a = _KICKS[int(rng.integers(len(_KICKS)))]
    kick_b = _KICKS[int(rng.integers(len(_KICKS)))]
    half_time = plan.bpm > 135 and rng.random() < 0.4
    snares = (8,) if half_time else (4, 12)
    hat_step = 1 if (plan.bpm < 115 and rng.random() < 0.6) else 2
    open_hat_p = rng.uniform(0.0, 0.5)
    ghost_p = rng.uniform(0.0, 0.35)

    hits: list[tuple[float, str, float]] = []  # (beats, element, velocity)
    for bar in range(plan.bars):
        phrase_pos = bar % 4
        beat0 = 4.0 * bar
        kicks = set(kick_b if phrase_pos == 3 else kick_a)
        if rng.random() < 0.3:  # a variation: one more kick
            kicks.add(int(rng.choice([2, 3, 6, 7, 10, 11, 14, 15])))
        fill_from = 16
        if phrase_pos == 3 and rng.random() < 0.85:  # a fill ends most four-bar phrases
            fill_from = 12 if rng.random() < 0.6 else 8
        for step in range(fill_from):
            pos = beat0 + step / 4.0
            if step in kicks:
                hits.append((pos, "kick", rng.uniform(0.85, 1.0)))
            if step in snares:
                hits.append((pos, "snare", rng.uniform(0.85, 1.0)))
            elif step % 2 == 1 and rng.random() < ghost_p:
                hits.append((pos, "snare", rng.uniform(0.15, 0.3)))
            if step % hat_step == 0:
                accent = 1.0 if step % 4 == 0 else 0.7
                if step == 14 and rng.random() < open_hat_p:
                    hits.append((pos, "open_hat", accent * rng.uniform(0.8, 1.0)))
                else:
                    hits.append((pos, "hat", accent * rng.uniform(0.75, 1.0)))
        if fill_from < 16:
            kind = int(rng.integers(3))  # snare roll, tom run, or both alternating
            steps = list(range(fill_from, 16))
            for i, step in enumerate(steps):
                if step % 2 == 1 and rng.random() < 0.3:
                    continue
                vel = 0.5 + 0.5 * (i + 1) / len(steps)
                if kind == 0 or (kind == 2 and i % 2 == 0):
                    el = "snare"
                else:
                    el = f"tom{min(3 * i // len(steps), 2)}"
                hits.append((beat0 + step / 4.0, el, vel))
            hits.append((beat0 + fill_from / 4.0, "kick", 0.9))
        if phrase_pos == 0 and (bar > 0 or rng.random() < 0.5):
            hits.append((beat0, "crash", rng.uniform(0.8, 1.0)))
    for _, end in plan.silences.get("drums", []):
        hits.append((end, "crash", 0.9))  # the drums come back with a crash and a kick
        hits.append((end, "kick", 1.0))

    out = np.zeros((2, n), dtype=np.float32)
    jitter = rng.normal(0.0, 0.003, len(hits))
    for (pos, el, vel), dt in zip(hits, jitter):
        if not plan.silent("drums", pos):
            dsp.add(out, int(round((float(plan.sec(pos)) + dt) * sr)), vel * shots[el])
    return out
