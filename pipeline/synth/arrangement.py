"""A song's plan, the score every part plays from: tempo, swing, key and mode, one chord per bar
(eight-bar sections alternate a verse and a chorus progression), and where each stem is silent.

Every stem is silent somewhere and active most of the time: the intro has no vocals (and long songs
have instrumental sections); drums, bass and other each drop out for a bar or half a bar per eight
bars, at different places. The parts score no notes there, and `gate` zeroes the rendered stem there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
# Progressions as scale degrees (0 = tonic), one chord per bar.
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 3), (5, 3, 0, 4), (0, 2, 3, 4), (3, 0, 4, 5)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4), (3, 0, 6, 5)),
}


@dataclass
class Plan:
    """Everything the parts share: time grid, key, chords and where each stem is silent."""

    sr: int
    n: int  # samples in the song
    bpm: float
    swing: float  # delay of the off sixteenths, as a fraction of a sixteenth
    bars: int  # bars scored, the last one possibly cut by the song's end
    root: int  # the key's pitch class
    scale: np.ndarray  # seven semitone offsets
    degrees: list[int]  # the chord's scale degree per bar
    sevenths: bool
    silences: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # beats, per stem
    vocal_off: list[tuple[float, float]] = field(default_factory=list)  # intro, instrumentals

    @property
    def beat(self) -> float:
        return 60.0 / self.bpm

    @property
    def bar_s(self) -> float:
        return 4 * self.beat

    def sec(self, beats):
        """Seconds of a position in beats, with swing on the off sixteenths."""
        b = np.asarray(beats, dtype=float)
        q = b * 4.0
        k = np.round(q)
        off = (np.abs(q - k) < 1e-6) & (k.astype(np.int64) % 2 == 1)
        return (b + off * self.swing * 0.25) * self.beat

    def smp(self, beats):
        """Sample index of a position in beats."""
        return np.round(self.sec(beats) * self.sr).astype(np.int64)

    def chord(self, bar: int) -> np.ndarray:
        """The bar's chord as semitones above the key's root (ascending, may exceed 12)."""
        d = self.degrees[bar % len(self.degrees)]
        steps = (0, 2, 4, 6) if self.sevenths else (0, 2, 4)
        return np.array([self.scale[(d + s) % 7] + 12 * ((d + s) // 7) for s in steps])

    def silent(self, stem: str, beat: float) -> bool:
        spans = self.silences.get(stem, []) + (self.vocal_off if stem == "vocals" else [])
        return any(a <= beat < b for a, b in spans)


def make_plan(rng: np.random.Generator, sr: int, n: int) -> Plan:
    """The plan of a song of n samples at sr: tempo, key, chords, and the silences of every stem."""
    bpm = float(rng.uniform(80.0, 160.0))
    mode = "major" if rng.random() < 0.5 else "minor"
    verse = _PROGRESSIONS[mode][int(rng.integers(6))]
    chorus = _PROGRESSIONS[mode][int(rng.integers(6))]
    bar_s = 240.0 / bpm
    duration = n / sr
    bars = max(1, math.ceil(duration / bar_s))
    # Eight-bar sections alternate verse and chorus progressions.
    degrees = [(verse if (b // 8) % 2 == 0 else chorus)[b % 4] for b in range(bars)]
    plan = Plan(
        sr=sr, n=n, bpm=bpm, swing=float(rng.choice([0.0, 0.0, rng.uniform(0.1, 0.3)])), bars=bars,
        root=int(rng.integers(12)), scale=_MAJOR if mode == "major" else _MINOR, degrees=degrees,
        sevenths=bool(rng.random() < 0.35),
    )

    # Vocals: an intro without them (two bars, one bar or two beats: at most a quarter of the song),
    # then instrumental sections now and then in long songs.
    beat = bar_s / 4.0
    intro = 8.0 if bar_s < 1.9 and 8 * beat <= 0.25 * duration else 4.0 if 4 * beat <= 0.25 * duration else 2.0
    plan.vocal_off.append((0.0, intro))
    for start in range(16, bars - 4, 16):
        if rng.random() < 0.4:
            plan.vocal_off.append((4.0 * start, 4.0 * (start + 4)))

    # Drums, bass and other drop out once per eight bars, at different places: a whole bar when bars
    # are short, half a bar (two beats) when they are long.
    unit = 4.0 if bar_s <= 2.0 else 2.0
    full_units = int(math.floor(duration / (unit * bar_s / 4.0) + 1e-9))
    per_block = int(round(32.0 / unit))  # units in eight bars
    for block in range(0, max(full_units, 1), per_block):
        first = max(block, 1)  # never the song's very first unit
        last = min(block + per_block, full_units)
        candidates = np.arange(first, last)
        if block > 0 and len(candidates) < per_block // 2:
            break  # a short last block: the song already has its silences
        if len(candidates) == 0:
            continue
        picks = rng.permutation(candidates)
        for i, stem in enumerate(("drums", "bass", "other")):
            u = int(picks[i % len(picks)])
            plan.silences.setdefault(stem, []).append((u * unit, (u + 1) * unit))
    return plan


def gate(plan: Plan, spans: list[tuple[float, float]]) -> np.ndarray:
    """Gain curve: 1, and exactly 0 inside the spans (in beats), with short fades outside them."""
    g = np.ones(plan.n, dtype=np.float32)
    fade_out, fade_in = int(0.02 * plan.sr), int(0.005 * plan.sr)
    for a, b in spans:
        s0, s1 = int(plan.smp(a)), int(plan.smp(b))
        if s1 <= 0 or s0 >= plan.n:
            continue
        g[max(s0, 0) : min(s1, plan.n)] = 0.0
        if s0 > 0 and fade_out:
            a0 = max(s0 - fade_out, 0)
            g[a0:s0] = np.minimum(g[a0:s0], np.linspace(1.0, 0.0, fade_out + 1)[-(s0 - a0) - 1 : -1])
        if s1 < plan.n and fade_in:
            b1 = min(s1 + fade_in, plan.n)
            g[s1:b1] = np.minimum(g[s1:b1], np.linspace(0.0, 1.0, fade_in + 1)[: b1 - s1])
    return g
