"""Signal helpers the parts share: block loops, Butterworth filters, smoothed control curves,
constant-power panning, oscillators, envelopes, noise bursts, RMS and the room reverb.

Loops run over blocks of BLOCK samples (oscillator phases, `sosfilt` with carried state, an
overlap-add FFT reverb), never over samples; audio comes out as float32.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import fft as sfft
from scipy import signal

BLOCK = 1 << 16  # samples per block of the block-wise loops: bounded memory, cache-friendly


def blocks(n: int):
    for a in range(0, n, BLOCK):
        yield slice(a, min(a + BLOCK, n))


def butter(sr: int, kind: str, freq, order: int = 2) -> np.ndarray:
    """Butterworth sections; edges are kept below 0.45 * sr so any sample rate works."""
    top = 0.45 * sr
    if kind == "bandpass":
        lo, hi = freq
        hi = min(hi, top)
        lo = min(lo, 0.5 * hi)
        return signal.butter(order, [lo, hi], btype="bandpass", fs=sr, output="sos")
    return signal.butter(order, min(freq, top), btype=kind, fs=sr, output="sos")


def filt(sos: np.ndarray, x: np.ndarray, settle: bool = False) -> np.ndarray:
    """sosfilt along the last axis, block by block, into float32. `settle` starts the filter in the
    steady state of the first sample (for control curves that do not start at zero)."""
    if settle:
        base = signal.sosfilt_zi(sos).reshape((sos.shape[0],) + (1,) * (x.ndim - 1) + (2,))
        zi = base * np.asarray(x[..., 0], dtype=float)[None, ..., None]
    else:
        zi = np.zeros((sos.shape[0],) + x.shape[:-1] + (2,))
    y = np.empty(x.shape, dtype=np.float32)
    for sl in blocks(x.shape[-1]):
        y[..., sl], zi = signal.sosfilt(sos, x[..., sl], zi=zi)
    return y


def _one_pole_sos(tau_s: float, sr: float) -> np.ndarray:
    a = math.exp(-1.0 / max(tau_s * sr, 1e-9))
    return np.array([[1.0 - a, 0.0, 0.0, 1.0, -a, 0.0]])


def smooth(x: np.ndarray, tau_s: float, sr: float) -> np.ndarray:
    """One-pole low-pass of a control curve (time constant tau_s), starting settled."""
    return filt(_one_pole_sos(tau_s, sr), x, settle=True)


def pan(p: float) -> np.ndarray:
    """Constant-power gains (left, right) for a position in [-1, 1]."""
    a = (np.clip(p, -1.0, 1.0) + 1.0) * np.pi / 4.0
    return np.array([np.cos(a), np.sin(a)])


def hz(midi) -> np.ndarray:
    return 440.0 * np.exp2((np.asarray(midi, dtype=float) - 69.0) / 12.0)


def phases(freq: np.ndarray, sr: int, start: float = 0.0):
    """Block by block, the running phase (in cycles) of an oscillator at `freq` Hz (one value per
    sample) and its increment: yields (slice, phase, dt), phase and dt float64."""
    acc = start
    for sl in blocks(freq.shape[-1]):
        dt = freq[sl].astype(np.float64)
        dt *= 1.0 / sr
        ph = np.cumsum(dt)
        ph += acc
        acc = ph[-1]
        yield sl, ph, dt


def saw(phase: np.ndarray, dt: np.ndarray) -> np.ndarray:
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


def line(starts, values, n: int) -> np.ndarray:
    """Per-sample step curve (float32): each value holds from its start to the next start (the
    first one from sample 0)."""
    if len(starts) == 0:
        return np.zeros(n, dtype=np.float32)
    s = np.clip(np.asarray(starts, dtype=np.int64), 0, n)
    order = np.argsort(s, kind="stable")
    s, v = s[order], np.asarray(values, dtype=np.float32)[order]
    bounds = np.concatenate([[0], s[1:], [n]])
    return np.repeat(v, np.maximum(np.diff(bounds), 0))


def env(n_on: int, n_rel: int, sr: int, att: float, dec: float, sus: float) -> np.ndarray:
    """Attack-decay-sustain for n_on samples, then a linear release to zero over n_rel samples."""
    t = np.arange(n_on + n_rel) / sr
    e = np.minimum(t / max(att, 1e-4), 1.0) * (sus + (1.0 - sus) * np.exp(-t / max(dec, 1e-4)))
    if n_rel > 0:
        end = e[n_on - 1] if n_on > 0 else 0.0
        e[n_on:] = end * (1.0 - np.arange(n_rel) / n_rel)
    return e


def add(buf: np.ndarray, start: int, seg: np.ndarray, how: str = "add") -> None:
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


def bursts(n: int, starts, gains, shape: np.ndarray, sos: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Short filtered-noise events (clicks, consonants, breaths): fresh noise per event, filtered,
    times `shape`, added at each start. Only the events' samples are computed."""
    out = np.zeros(n, dtype=np.float32)
    m = len(shape)
    for s, g in zip(starts, gains):
        seg = g * shape * signal.sosfilt(sos, rng.standard_normal(m))
        add(out, int(s), seg)
    return out


def rms(x: np.ndarray) -> float:
    total = 0.0
    for sl in blocks(x.shape[-1]):
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


def reverb(x: np.ndarray, ir: np.ndarray, down: int) -> np.ndarray:
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


def reverb_ir(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A small room: decorrelated exponentially decaying noise per channel, damped, after a pre-delay."""
    rt60 = rng.uniform(0.4, 1.1)
    taps = int(min(rt60, 0.8) * sr)
    pre = int(rng.uniform(0.008, 0.03) * sr)
    t = np.arange(taps) / sr
    tail = rng.standard_normal((2, taps)) * np.exp(-6.9 * t / rt60)
    tail = signal.sosfilt(butter(sr, "lowpass", rng.uniform(5000, 9000)), tail, axis=-1)
    ramp = int(0.004 * sr)
    tail[:, :ramp] *= np.linspace(0.0, 1.0, ramp)
    ir = np.concatenate([np.zeros((2, pre)), tail], axis=1)
    return ir / np.sqrt(np.sum(ir**2) / 2.0)
