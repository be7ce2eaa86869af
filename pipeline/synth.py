"""The built-in data set's songs: seeded, deterministic multitrack music in MUSDB18's four stems.

A song is first *scored* (tempo, key, chord progression, arrangement, the notes and hits of every
part) and then *rendered* part by part with vectorised numpy/scipy code: a Python loop runs over
notes and hits (to fill envelopes and pitch curves) and over blocks of 65536 samples (oscillator
phases, `sosfilt` with carried state, an overlap-add FFT reverb), never over samples. Buffers are
float32 and parts are rendered one after the other, so a 10-minute song fits in about 2 GB.

What a song contains (see `render_song`):

- drums: kick (pitch-swept sine with a click), snare (tone plus noise), closed and open hi-hats
  (noise and metallic squares, high-passed), toms and a crash; a per-song groove at the song's
  tempo with ghost notes, per-bar variations, fills at the end of four-bar phrases and crashes;
- bass: a saw/pulse/sine oscillator, driven and low-passed with a plucked filter envelope and pick
  clicks, playing a rhythmic line on the chord roots (fifths, octaves, approach notes);
- vocals: a glottal-pulse source (Rosenberg pulse derivative) with glides, vibrato and drift,
  aspiration noise, a cascade of formant resonators whose vowel changes with the syllables, a
  presence shelf, sibilant/plosive consonants and breaths, sung in phrases with rests on a melody
  in the key that lands on chord tones;
- other: a chord layer (detuned-saw pad, organ or FM keys) voiced across the singer's range and a
  plucked arpeggio on the chord tones, with an echo on the other side.

Every element is panned (hats and crash on opposite sides, toms spread, voices of a chord spread);
vocals, drums and other get a small stereo room reverb, the bass only early reflections. Every
stem is silent somewhere (the intro has no vocals; drums, bass and other each drop out for a bar or
half a bar per eight bars, at different places) and active most of the time. Stems are levelled
within 4.5 dB of each other, the voice on top (LEVEL_RANGES_DB), and scaled together so that the
mixture stays within [-1, 1].
Key, mode, progression, tempo (80-160 bpm), swing, patterns, timbres, pans, levels and the room
vary with the seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy import signal

STEMS = ("vocals", "bass", "drums", "other")
SPLITS = ("train", "valid", "test")

# ----------------------------------------------------------------------------- names

_ADJECTIVES = (
    "Amber", "Violet", "Copper", "Velvet", "Lunar", "Quiet", "Neon", "Marble", "Saffron", "Cinder",
    "Polar", "Indigo", "Tidal", "Cobalt", "Juniper", "Brindle", "Paper", "Woollen", "Silver",
    "Crooked", "Gentle", "Northern", "Scarlet", "Tangled", "Wandering", "Dusky", "Hazel", "Ivory",
)
_GROUPS = (
    "Orchard", "Foxes", "Engines", "Harbour", "Satellites", "Lanterns", "Gardeners", "Signals",
    "Weavers", "Ferns", "Cartographers", "Hymnals", "Bicycles", "Moths", "Telegraphs", "Otters",
    "Almanacs", "Kites", "Ferries", "Lighthouses", "Thistles", "Comets", "Pelicans", "Quarries",
)
_GIVEN = (
    "Ada", "Bram", "Cleo", "Dario", "Edith", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Kaia",
    "Lionel", "Maren", "Nico", "Odile", "Pavel", "Rosa", "Silas", "Tilde", "Ulric", "Vera", "Wim",
)
_SURNAMES = (
    "Ashdown", "Brightwater", "Corvale", "Dunmore", "Elsworth", "Fairhold", "Greyling", "Hollin",
    "Ivers", "Kestrell", "Larkspur", "Merriman", "Northcote", "Ollerton", "Pellow", "Quennell",
    "Rookwood", "Stavely", "Thornbury", "Underhill", "Vantongeren", "Wetherby",
)
_TITLE_ADJ = (
    "Slow", "Bright", "Hidden", "Paper", "Golden", "Distant", "Broken", "Silent", "Electric",
    "Borrowed", "Endless", "Secret", "Winter", "Summer", "Falling", "Restless", "Hollowed", "Open",
)
_TITLE_NOUN = (
    "Rivers", "Lights", "Mornings", "Windows", "Machines", "Letters", "Horizons", "Gardens",
    "Echoes", "Stations", "Mirrors", "Tides", "Signals", "Streets", "Harbours", "Fields", "Clocks",
    "Wires", "Shadows", "Rooftops",
)
_TITLE_VERB = (
    "Follow", "Carry", "Remember", "Chase", "Hold", "Count", "Paint", "Forget", "Answer", "Call",
)


def song_names(split: str, count: int, seed: int) -> list[str]:
    """`count` made-up "Artist - Title" names for a split, deterministic for `seed`.

    The three splits take interleaved entries of one de-duplicated sequence (train 0, 3, 6, ...;
    valid 1, 4, 7, ...; test 2, 5, 8, ...), so they never share a name whatever the counts. Names use
    letters and spaces only, with one " - " between artist and title: safe as folder names.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    offset = SPLITS.index(split)
    needed = offset + 3 * (count - 1) + 1 if count else 0
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x50_4E_41_4D]))
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < needed:
        name = f"{_artist(rng)} - {_title(rng)}"
        if name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    return names[offset::3][:count]


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    return words[int(rng.integers(len(words)))]


def _artist(rng: np.random.Generator) -> str:
    form = int(rng.integers(3))
    if form == 0:
        return f"{_pick(rng, _ADJECTIVES)} {_pick(rng, _GROUPS)}"
    if form == 1:
        return f"The {_pick(rng, _ADJECTIVES)} {_pick(rng, _GROUPS)}"
    return f"{_pick(rng, _GIVEN)} {_pick(rng, _SURNAMES)}"


def _title(rng: np.random.Generator) -> str:
    form = int(rng.integers(3))
    if form == 0:
        return f"{_pick(rng, _TITLE_ADJ)} {_pick(rng, _TITLE_NOUN)}"
    if form == 1:
        return f"{_pick(rng, _TITLE_VERB)} The {_pick(rng, _TITLE_NOUN)}"
    return f"{_pick(rng, _TITLE_NOUN)} Of {_pick(rng, _TITLE_NOUN)}"


# ----------------------------------------------------------------------------- the score

_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
# Progressions as scale degrees (0 = tonic), one chord per bar.
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 3), (5, 3, 0, 4), (0, 2, 3, 4), (3, 0, 4, 5)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4), (3, 0, 6, 5)),
}


@dataclass
class _Plan:
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


def _plan(rng: np.random.Generator, sr: int, n: int) -> _Plan:
    bpm = float(rng.uniform(80.0, 160.0))
    mode = "major" if rng.random() < 0.5 else "minor"
    verse = _PROGRESSIONS[mode][int(rng.integers(6))]
    chorus = _PROGRESSIONS[mode][int(rng.integers(6))]
    bar_s = 240.0 / bpm
    duration = n / sr
    bars = max(1, math.ceil(duration / bar_s))
    # Eight-bar sections alternate verse and chorus progressions.
    degrees = [(verse if (b // 8) % 2 == 0 else chorus)[b % 4] for b in range(bars)]
    plan = _Plan(
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


# ----------------------------------------------------------------------------- DSP helpers

BLOCK = 1 << 16  # samples per block of the block-wise loops: bounded memory, cache-friendly


def _blocks(n: int):
    for a in range(0, n, BLOCK):
        yield slice(a, min(a + BLOCK, n))


def _sos(sr: int, kind: str, freq, order: int = 2) -> np.ndarray:
    """Butterworth sections; edges are kept below 0.45 * sr so any sample rate works."""
    top = 0.45 * sr
    if kind == "bandpass":
        lo, hi = freq
        hi = min(hi, top)
        lo = min(lo, 0.5 * hi)
        return signal.butter(order, [lo, hi], btype="bandpass", fs=sr, output="sos")
    return signal.butter(order, min(freq, top), btype=kind, fs=sr, output="sos")


def _filt(sos: np.ndarray, x: np.ndarray, settle: bool = False) -> np.ndarray:
    """sosfilt along the last axis, block by block, into float32. `settle` starts the filter in the
    steady state of the first sample (for control curves that do not start at zero)."""
    if settle:
        base = signal.sosfilt_zi(sos).reshape((sos.shape[0],) + (1,) * (x.ndim - 1) + (2,))
        zi = base * np.asarray(x[..., 0], dtype=float)[None, ..., None]
    else:
        zi = np.zeros((sos.shape[0],) + x.shape[:-1] + (2,))
    y = np.empty(x.shape, dtype=np.float32)
    for sl in _blocks(x.shape[-1]):
        y[..., sl], zi = signal.sosfilt(sos, x[..., sl], zi=zi)
    return y


def _one_pole_sos(tau_s: float, sr: float) -> np.ndarray:
    a = math.exp(-1.0 / max(tau_s * sr, 1e-9))
    return np.array([[1.0 - a, 0.0, 0.0, 1.0, -a, 0.0]])


def _smooth(x: np.ndarray, tau_s: float, sr: float) -> np.ndarray:
    """One-pole low-pass of a control curve (time constant tau_s), starting settled."""
    return _filt(_one_pole_sos(tau_s, sr), x, settle=True)


def _pan(p: float) -> np.ndarray:
    """Constant-power gains (left, right) for a position in [-1, 1]."""
    a = (np.clip(p, -1.0, 1.0) + 1.0) * np.pi / 4.0
    return np.array([np.cos(a), np.sin(a)])


def _hz(midi) -> np.ndarray:
    return 440.0 * np.exp2((np.asarray(midi, dtype=float) - 69.0) / 12.0)


def _phases(freq: np.ndarray, sr: int, start: float = 0.0):
    """Block by block, the running phase (in cycles) of an oscillator at `freq` Hz (one value per
    sample) and its increment: yields (slice, phase, dt), phase and dt float64."""
    acc = start
    for sl in _blocks(freq.shape[-1]):
        dt = freq[sl].astype(np.float64)
        dt *= 1.0 / sr
        ph = np.cumsum(dt)
        ph += acc
        acc = ph[-1]
        yield sl, ph, dt


def _saw(phase: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Band-limited (PolyBLEP) sawtooth in [-1, 1] from a phase in cycles and its increment."""
    t = np.floor(phase)
    np.subtract(phase, t, out=t)  # position in the cycle, [0, 1)
    y = np.multiply(t, 2.0)
    y -= 1.0
    i = np.flatnonzero(t < dt)  # just after a wrap
    x = t[i] / dt[i]
    y[i] -= x + x - x * x - 1.0
    t += dt
    i = np.flatnonzero(t > 1.0)  # just before one
    x = (t[i] - dt[i] - 1.0) / dt[i]
    y[i] -= x * x + x + x + 1.0
    return y


def _line(starts, values, n: int) -> np.ndarray:
    """Per-sample step curve (float32): each value holds from its start to the next start (the
    first one from sample 0)."""
    if len(starts) == 0:
        return np.zeros(n, dtype=np.float32)
    s = np.clip(np.asarray(starts, dtype=np.int64), 0, n)
    order = np.argsort(s, kind="stable")
    s, v = s[order], np.asarray(values, dtype=np.float32)[order]
    bounds = np.concatenate([[0], s[1:], [n]])
    return np.repeat(v, np.maximum(np.diff(bounds), 0))


def _env(n_on: int, n_rel: int, sr: int, att: float, dec: float, sus: float) -> np.ndarray:
    """Attack-decay-sustain for n_on samples, then a linear release to zero over n_rel samples."""
    t = np.arange(n_on + n_rel) / sr
    e = np.minimum(t / max(att, 1e-4), 1.0) * (sus + (1.0 - sus) * np.exp(-t / max(dec, 1e-4)))
    if n_rel > 0:
        end = e[n_on - 1] if n_on > 0 else 0.0
        e[n_on:] = end * (1.0 - np.arange(n_rel) / n_rel)
    return e


def _add(buf: np.ndarray, start: int, seg: np.ndarray, how: str = "add") -> None:
    """Add (or max) a segment into a buffer at `start`, clipped to the buffer."""
    n = buf.shape[-1]
    a, b = max(start, 0), min(start + seg.shape[-1], n)
    if b <= a:
        return
    part = seg[..., a - start : b - start]
    if how == "max":
        np.maximum(buf[..., a:b], part, out=buf[..., a:b])
    else:
        buf[..., a:b] += part


def _bursts(n: int, starts, gains, shape: np.ndarray, sos: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Short filtered-noise events (clicks, consonants, breaths): fresh noise per event, filtered,
    times `shape`, added at each start. Only the events' samples are computed."""
    out = np.zeros(n, dtype=np.float32)
    m = len(shape)
    for s, g in zip(starts, gains):
        seg = g * shape * signal.sosfilt(sos, rng.standard_normal(m))
        _add(out, int(s), seg)
    return out


def _rms(x: np.ndarray) -> float:
    total = 0.0
    for sl in _blocks(x.shape[-1]):
        b = x[..., sl].astype(np.float64).ravel()
        total += float(np.dot(b, b))
    return math.sqrt(total / max(x.size, 1))


def _convolve(x: np.ndarray, ir: np.ndarray, block: int = 1 << 17) -> np.ndarray:
    """(samples,) * (channels, taps) -> (channels, samples) float32, overlap-add in blocks."""
    n, taps = x.shape[-1], ir.shape[-1]
    nfft = sfft.next_fast_len(block + taps - 1, real=True)
    spec = sfft.rfft(ir.astype(np.float32), nfft, axis=-1)
    y = np.zeros((ir.shape[0], n + taps - 1), dtype=np.float32)
    for s in range(0, n, block):
        seg = x[s : s + block]
        if not np.any(seg):
            continue
        out = sfft.irfft(sfft.rfft(seg, nfft) * spec, nfft, axis=-1)[:, : len(seg) + taps - 1]
        y[:, s : s + out.shape[-1]] += out
    return y[:, :n]


def _reverb(x: np.ndarray, ir: np.ndarray, down: int) -> np.ndarray:
    """Stereo reverb of a mono send, computed at 1/down of the rate (down is 1 or 2): the send is
    averaged in pairs, convolved, and interpolated back linearly."""
    n = x.shape[-1]
    if down == 1:
        return _convolve(x, ir)
    half = np.add(x[0 : n - n % 2 : 2], x[1::2]) * 0.5 if n > 1 else x.copy()
    if n % 2:
        half = np.append(half, x[-1])
    wet = _convolve(half, ir)
    out = np.empty((2, n), dtype=np.float32)
    out[:, 0::2] = wet[:, : (n + 1) // 2]
    nxt = np.concatenate([wet[:, 1:], wet[:, -1:]], axis=1)
    out[:, 1::2] = 0.5 * (wet[:, : n // 2] + nxt[:, : n // 2])
    return out


def _reverb_ir(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A small room: decorrelated exponentially decaying noise per channel, damped, after a pre-delay."""
    rt60 = rng.uniform(0.4, 1.1)
    taps = int(min(rt60, 0.8) * sr)
    pre = int(rng.uniform(0.008, 0.03) * sr)
    t = np.arange(taps) / sr
    tail = rng.standard_normal((2, taps)) * np.exp(-6.9 * t / rt60)
    tail = signal.sosfilt(_sos(sr, "lowpass", rng.uniform(5000, 9000)), tail, axis=-1)
    ramp = int(0.004 * sr)
    tail[:, :ramp] *= np.linspace(0.0, 1.0, ramp)
    ir = np.concatenate([np.zeros((2, pre)), tail], axis=1)
    return ir / np.sqrt(np.sum(ir**2) / 2.0)


def _gate(plan: _Plan, spans: list[tuple[float, float]]) -> np.ndarray:
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


# ----------------------------------------------------------------------------- drums


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
    click = signal.sosfilt(_sos(sr, "highpass", 1500.0), nz) * np.exp(-t / 0.004) * rng.uniform(0.15, 0.4)
    kit["kick"] = finish(np.tanh(rng.uniform(1.0, 3.0) * (body + click)))

    # Snare: two damped partials and band-limited noise (the wires).
    nz = noise(rng.uniform(0.25, 0.4))
    t = t_of(nz)
    f1 = rng.uniform(160, 240) * (1 + 0.15 * np.exp(-t / 0.01))
    tone = np.sin(2 * np.pi * np.cumsum(f1) / sr) + 0.6 * np.sin(2 * np.pi * np.cumsum(1.62 * f1) / sr)
    tone *= np.exp(-t / rng.uniform(0.03, 0.07))
    wires = signal.sosfilt(_sos(sr, "bandpass", (rng.uniform(700, 1500), rng.uniform(8000, 12000))), nz)
    wires *= np.exp(-t / rng.uniform(0.07, 0.18)) * 3.0
    kit["snare"] = finish(rng.uniform(0.3, 0.8) * tone + wires)

    # Hi-hats: noise plus six inharmonic squares (the classic drum-machine recipe), high-passed.
    base = rng.uniform(300, 480)
    ratios = np.array([1.0, 1.4471, 1.6170, 1.9265, 2.5028, 2.6637])
    hp = _sos(sr, "highpass", rng.uniform(5500, 8000), order=4)
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
        skin = signal.sosfilt(_sos(sr, "bandpass", (300.0, 6000.0)), nz) * np.exp(-t / 0.03) * 0.5
        kit[f"tom{i}"] = finish(np.tanh(1.5 * (body + skin)))

    # Crash: long bright noise and metal.
    nz = noise(2.0)
    t = t_of(nz)
    metal = np.sign(np.sin(2 * np.pi * np.outer(base * 1.37 * ratios, t))).sum(axis=0) / 6.0
    x = signal.sosfilt(_sos(sr, "highpass", rng.uniform(2500, 4500)), nz + 0.7 * metal)
    kit["crash"] = finish(x * np.exp(-t / rng.uniform(0.6, 1.2)) * np.minimum(t / 0.002, 1.0))
    return kit


_KICKS = (  # kick patterns, in sixteenths of a bar
    (0, 8), (0, 8, 10), (0, 6, 8), (0, 3, 8, 11), (0, 7, 10), (0, 4, 8, 12), (0, 10), (0, 2, 8, 9),
)


def _drums(plan: _Plan, rng: np.random.Generator) -> np.ndarray:
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
    shots = {el: (levels[el] * _pan(pans[el])[:, None] * x).astype(np.float32) for el, x in kit.items()}
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
            _add(out, int(round((float(plan.sec(pos)) + dt) * sr)), vel * shots[el])
    return out


# ----------------------------------------------------------------------------- bass

_BASS_PATTERNS = (  # (sixteenth, role): R root, O octave, F fifth, A approach to the next chord
    ((0, "R"), (8, "R"), (14, "A")),
    ((0, "R"), (3, "R"), (6, "R"), (8, "R"), (11, "R"), (14, "A")),
    ((0, "R"), (2, "R"), (4, "O"), (6, "R"), (8, "R"), (10, "F"), (12, "R"), (14, "A")),
    ((0, "R"), (6, "R"), (8, "F"), (10, "O"), (14, "A")),
    ((0, "R"), (4, "R"), (7, "R"), (10, "F"), (12, "O")),
    ((0, "R"), (3, "F"), (6, "O"), (10, "R"), (12, "F"), (14, "A")),
)


def _bass(plan: _Plan, rng: np.random.Generator) -> np.ndarray:
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
    f = _smooth(_line(starts, _hz(pitches), n), 0.004, sr)
    pw, mix, drive = rng.uniform(0.3, 0.5), rng.uniform(0.0, 1.0), rng.uniform(1.0, 3.0)
    raw = np.empty(n, dtype=np.float32)
    for sl, ph, dt in _phases(f, sr):
        saw = _saw(ph, dt)
        x = saw * (1.0 - 0.3 * mix)
        x -= (0.7 * mix) * _saw(ph + pw, dt)
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
        _add(amp, s, v * _env(on, rel, sr, 0.004, 0.4, 0.6), "max")
        _add(bright_env, s, np.exp(-np.arange(on) / (tau_b * sr)), "max")
    cutoff = rng.uniform(300, 900)
    line = _filt(_sos(sr, "lowpass", cutoff), raw)
    bright = _filt(_sos(sr, "lowpass", cutoff * rng.uniform(3.0, 6.0)), raw)
    del raw
    bright -= line
    bright *= bright_env
    line += bright
    line *= amp
    del bright, bright_env, amp
    pick = np.exp(-np.arange(int(0.015 * sr)) / (0.003 * sr))
    clicks = _bursts(n, starts, np.array(vels) * rng.uniform(0.08, 0.2), pick, _sos(sr, "highpass", 1200.0), rng)

    p = rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.2)
    out = (_pan(p)[:, None] * line).astype(np.float32)
    out += (_pan(-2 * p)[:, None] * clicks).astype(np.float32)
    # A few early reflections, different per channel, instead of a reverb: the bass stays dry-ish.
    for c in range(2):
        for _ in range(3):
            d = int(rng.uniform(0.004, 0.03) * sr)
            if 0 < d < n:
                out[c, d:] += rng.uniform(0.05, 0.15) * line[: n - d]
    return out


# ----------------------------------------------------------------------------- vocals

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


def _vocals(plan: _Plan, rng: np.random.Generator) -> np.ndarray:
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
    midi = _smooth(_line(starts, [x[2] for x in notes], n), rng.uniform(0.02, 0.05), sr)
    hop = 64  # control rate: one value per hop samples
    nc = n // hop + 2
    ctrl_t = np.arange(nc) * hop / sr
    vib_env = np.zeros(nc)
    delay = rng.uniform(0.12, 0.3)
    for s, e in zip(starts, ends):
        a, b = min((s + int(delay * sr)) // hop, nc), min(e // hop, nc)
        if b > a:
            vib_env[a:b] = np.minimum(np.arange(1, b - a + 1) * hop / (0.25 * sr), 1.0)
    vib_env = _smooth(vib_env, 0.05, sr / hop)
    knots = rng.normal(0.0, 0.06, int(ctrl_t[-1] / 0.1) + 2)  # semitones, every 100 ms
    drift = _smooth(np.interp(ctrl_t, np.arange(len(knots)) * 0.1, knots), 0.1, sr / hop)
    bend = vib_depth * vib_env * np.sin(2 * np.pi * vib_rate * ctrl_t + 0.6 * np.sin(2 * np.pi * 0.3 * ctrl_t))
    bend += drift
    ctrl_x = np.arange(nc) * hop
    for sl in _blocks(n):
        midi[sl] += np.interp(np.arange(sl.start, sl.stop), ctrl_x, bend)
    f0 = _hz(midi).astype(np.float32)
    del midi

    # Loudness: legato within a phrase, a dip between syllables, a release at rests.
    amp = np.zeros(n, dtype=np.float32)
    rel = int(0.08 * sr)
    for s, e in zip(starts, ends):
        _add(amp, s, rng.uniform(0.75, 1.0) * _env(max(e - s, 1), rel, sr, 0.04, 0.3, 0.85), "max")

    # Glottal source: the derivative of a Rosenberg pulse, looked up by phase in a one-cycle table,
    # plus aspiration noise in the open phase.
    table = 4096
    tp, tn = 0.65 * oq, 0.35 * oq
    grid = np.arange(table) / table
    flow = np.where(grid < tp, 0.5 * (1 - np.cos(np.pi * grid / tp)),
                    np.where(grid < tp + tn, np.cos(np.pi * (grid - tp) / (2 * tn)), 0.0))
    dflow = np.diff(flow, append=flow[:1]) * table / (np.pi / (2 * tn))  # slope per cycle, peak ~1
    hp = _sos(sr, "highpass", 1500.0)
    zi = np.zeros((hp.shape[0], 2))
    src = np.empty(n, dtype=np.float32)
    for sl, ph, dt in _phases(f0, sr):
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
    weights = _smooth(weights, 0.035, sr / hop)
    weights /= np.maximum(weights.sum(axis=0), 1e-6)
    filters = [_formant_sos(fs, bws, formant_scale, sr) for fs, bws in _VOWELS.values()]
    states = [np.zeros((len(sos), 2)) for sos in filters]
    voice = np.empty(n, dtype=np.float32)
    for sl in _blocks(n):
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
    voice += presence * _filt(_sos(sr, "highpass", 2000.0), voice)
    active = amp > 0.3
    level = math.sqrt(float(np.mean(voice[active].astype(float) ** 2))) if np.any(active) else 1.0
    del amp, active

    # Consonants before some syllables (s, sh, f, t, k) and breaths before phrases.
    for k, (band, length, lev) in enumerate(_CONSONANTS):
        m = int(length * sr)
        shape = np.sin(np.pi * np.arange(m) / m) ** 2 if length > 0.05 else np.exp(-np.arange(m) / (0.006 * sr))
        at = [s - int(0.7 * m) for note, s in zip(notes, starts) if note[5] == k]
        voice += _bursts(n, at, [2.0 * level * lev] * len(at), shape, _sos(sr, "bandpass", band), rng)
    m = int(0.25 * sr)
    shape = np.sin(np.pi * np.arange(m) / m) ** 2
    at = [int(plan.smp(b)) - m - int(0.03 * sr) for b in breaths]
    voice += _bursts(n, at, [0.3 * level] * len(at), shape, _sos(sr, "bandpass", (800.0, 6000.0)), rng)

    # The (slightly off-centre) dry voice and a ping-pong echo.
    out = (_pan(rng.uniform(-0.15, 0.15))[:, None] * voice).astype(np.float32)
    delay = int(plan.beat * float(rng.choice([0.75, 0.5, 1.0])) * sr)
    fb = rng.uniform(0.08, 0.18)
    for i in range(1, 3):
        if delay * i < n:
            out[i % 2, delay * i :] += fb**i * voice[: n - delay * i]
    return out


# ----------------------------------------------------------------------------- other (accompaniment)

_COMPS = (  # chord rhythms: (start beat, length in beats) within a bar
    ((0.0, 4.0),), ((0.0, 2.0), (2.0, 2.0)), ((0.5, 0.5), (1.5, 0.5), (2.5, 0.5), (3.5, 0.5)),
    ((0.0, 1.5), (1.5, 1.0), (2.5, 1.5)), ((0.0, 1.0), (1.5, 0.5), (3.0, 1.0)),
)


def _voicings(plan: _Plan, lo: int) -> list[list[int]]:
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


def _chords(plan: _Plan, rng: np.random.Generator, voicings: list[list[int]]) -> np.ndarray:
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
        _add(amp, s, rng.uniform(0.8, 1.0) * _env(max(e - s, 1), int(rel * sr), sr, att, dec, sus), "max")
    if timbre == "keys":  # modulation index: bright at each onset
        index = np.zeros(n, dtype=np.float32)
        for s, e, _ in events:
            _add(index, s, np.exp(-np.arange(max(e - s, 1) + int(rel * sr)) / (0.15 * sr)), "max")
        index *= rng.uniform(1.5, 3.5)
        index += 0.6

    out = np.zeros((2, n), dtype=np.float32)  # the voices, before the common envelope
    for v in range(4):
        f = _line(starts, _hz([vo[v] for _, _, vo in events]), n)
        gl, gr = _pan((v - 1.5) / 1.5 * rng.uniform(0.3, 0.6))
        if timbre == "pad":  # two detuned saws, one mostly left, the other mostly right
            cents = rng.uniform(4, 12)
            for sign, (a, b) in ((-1, (0.8, 0.2)), (1, (0.2, 0.8))):
                for sl, ph, dt in _phases(f * 2 ** (sign * cents / 1200), sr, rng.random()):
                    x = _saw(ph, dt)
                    out[0, sl] += a * x
                    out[1, sl] += b * x
            continue
        for sl, ph, dt in _phases(f, sr, rng.random()):
            if timbre == "organ":  # a hollow wave: odd harmonics 1.5/k, even ones 0.5/k
                x = _saw(ph, dt)
                x -= 0.5 * _saw(ph + 0.5, dt)
            else:  # FM keys: a sine modulated by itself
                ph *= 2 * np.pi
                x = np.sin(ph + index[sl] * np.sin(ph))
            out[0, sl] += gl * x
            out[1, sl] += gr * x
    out *= amp
    del amp
    if timbre == "pad":
        out = _filt(_sos(sr, "lowpass", rng.uniform(1500, 4000)), out)
    if timbre == "organ":  # rotary tremolo, opposite in the two channels
        w = 2 * np.pi * rng.uniform(4.5, 6.5) / sr
        for sl in _blocks(n):
            trem = 0.2 * np.sin(w * np.arange(sl.start, sl.stop))
            out[0, sl] *= 1 + trem
            out[1, sl] *= 1 - trem
    click = np.exp(-np.arange(int(0.01 * sr)) / (0.002 * sr))
    level = 0.3 if timbre != "pad" else 0.05
    clicks = _bursts(n, starts, [level] * len(starts), click, _sos(sr, "highpass", 2000.0), rng)
    out += (_pan(rng.uniform(-0.3, 0.3))[:, None] * clicks).astype(np.float32)
    return out


def _arpeggio(plan: _Plan, rng: np.random.Generator, voicings: list[list[int]]) -> np.ndarray:
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
    f = _line(starts, _hz(pitches), n)
    width = rng.uniform(0.2, 0.5)
    mix = 0.7 * rng.uniform(0.0, 1.0)
    raw = np.empty(n, dtype=np.float32)
    for sl, ph, dt in _phases(f, sr, rng.random()):  # a saw blended with a pulse
        x = _saw(ph, dt)
        x -= mix * _saw(ph + width, dt)
        raw[sl] = x
    del f
    amp = np.zeros(n, dtype=np.float32)
    bright_env = np.zeros(n, dtype=np.float32)
    tau, tau_b = rng.uniform(0.1, 0.35), rng.uniform(0.03, 0.12)
    length = max(int(gate * plan.beat / rate * sr), 1)
    rel = int(0.02 * sr)
    bright_shape = np.exp(-np.arange(length + rel) / (tau_b * sr))
    for s in starts:
        _add(amp, s, rng.uniform(0.7, 1.0) * _env(length, rel, sr, 0.002, tau, 0.0), "max")
        _add(bright_env, s, bright_shape, "max")
    x = _filt(_sos(sr, "lowpass", rng.uniform(700, 1500)), raw)  # dark, then brightened per note
    raw -= x
    raw *= bright_env
    x += raw
    x *= amp
    del raw, amp, bright_env
    p = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.6)
    out = (_pan(p)[:, None] * x).astype(np.float32)
    delay = int(plan.beat * 0.75 * sr)  # a dotted-eighth echo on the other side
    if delay < n:
        out[:, delay:] += (0.3 * _pan(-p)[:, None] * x[: n - delay]).astype(np.float32)
    return out


def _other(plan: _Plan, rng: np.random.Generator) -> np.ndarray:
    voicings = _voicings(plan, int(rng.integers(52, 58)))
    chords = _chords(plan, rng, voicings)
    chords /= _rms(chords) + 1e-12
    arp = _arpeggio(plan, rng, voicings)
    arp *= rng.uniform(0.4, 0.9) / (_rms(arp) + 1e-12)
    chords += arp
    return chords


# ----------------------------------------------------------------------------- the song


LEVEL_RANGES_DB = {"vocals": (0.0, 2.0)}  # the other stems: -2.5 to +0.5 dB


def render_song(seed: int, sample_rate: int, duration_s: float) -> dict[str, np.ndarray]:
    """Render one song: the four stems (`STEMS`), each float32 (2, round(duration_s * sample_rate)).

    Deterministic for `seed` (a non-negative integer). Each stem's RMS over the song lies in its
    range of LEVEL_RANGES_DB around a common level (within 4.5 dB of each other, the voice on
    top), and all stems are scaled alike so that the mixture's peak is at most
    0.85 (the sum stays within [-1, 1], also after rounding every stem to 16 bits).
    """
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be >= 8000 Hz, got {sample_rate}")
    n = int(round(duration_s * sample_rate))
    if n < 1:
        raise ValueError(f"duration_s must give at least one sample, got {duration_s}")
    sr = int(sample_rate)

    seeds = np.random.SeedSequence([int(seed), 0x53_59_4E_54]).spawn(6)
    plan_rng, drum_rng, bass_rng, voc_rng, oth_rng, mix_rng = (np.random.default_rng(s) for s in seeds)
    plan = _plan(plan_rng, sr, n)
    parts = {
        "vocals": lambda: _vocals(plan, voc_rng),
        "bass": lambda: _bass(plan, bass_rng),
        "drums": lambda: _drums(plan, drum_rng),
        "other": lambda: _other(plan, oth_rng),
    }
    # The reverb runs at half the rate when that still covers its band (its tail is damped < 9 kHz).
    down = 2 if sr >= 32000 else 1
    ir = _reverb_ir(mix_rng, sr // down)
    wet = {"vocals": mix_rng.uniform(0.15, 0.3), "bass": 0.0,  # the bass stays dry, as in most mixes
           "drums": mix_rng.uniform(0.05, 0.15), "other": mix_rng.uniform(0.15, 0.3)}
    # dB around a common level; the lead voice sits on top of the mix, as in most songs.
    offsets = {stem: mix_rng.uniform(*LEVEL_RANGES_DB.get(stem, (-2.5, 0.5))) for stem in STEMS}

    stems = {}
    for stem in STEMS:  # one part at a time, so memory holds one part's work at once
        x = parts[stem]()
        rms = _rms(x)
        if rms > 0:
            x /= rms
            if wet[stem] > 0:
                x += wet[stem] * _reverb(x.mean(axis=0), ir, down)
            x *= _gate(plan, plan.silences.get(stem, []) + (plan.vocal_off if stem == "vocals" else []))
            rms = _rms(x)
            if rms > 0:
                x *= 10 ** (offsets[stem] / 20) / rms
        stems[stem] = x
    peak = 0.0
    for sl in _blocks(n):
        peak = max(peak, float(np.max(np.abs(sum(s[:, sl].astype(np.float64) for s in stems.values())))))
    scale = mix_rng.uniform(0.5, 0.85) / peak if peak > 0 else 1.0
    for x in stems.values():
        x *= scale
    return stems
