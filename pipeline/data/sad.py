"""Source activity detection: the active windows of one source, and the segments `sad` wrote.

Each source of each training track (validation tracks excluded) is cut into windows (6 s, hop 3 s);
a window is split into chunks (10), and the RMS of every chunk and channel is compared with a
threshold: the 15 % quantile of the chunk RMS, floored at 1e-3. A window is kept when more than
half of its chunks exceed the threshold in every channel. The quantile is taken per window, as the
replication's code does, or over the whole track (`sad.scope: track`), closer to the original
paper, where a window of a quiet passage can no longer pass on its own quantile.
Imports `pipeline.paths`, `pipeline.errors` and the config schema.
"""
from __future__ import annotations

import csv

import numpy as np

from pipeline import paths
from pipeline.config.schema import SadConfig
from pipeline.errors import UserError

CSV_HEADER = ("track", "start", "end")


def active_windows(audio: np.ndarray, sample_rate: int, cfg: SadConfig) -> tuple[list[tuple[int, int]], int]:
    """The (start, end) sample ranges of the active windows of one source, and the number of windows.

    audio: (channels, samples).
    """
    window = int(round(cfg.window_s * sample_rate))
    hop = int(round(cfg.hop_s * sample_rate))
    chunk = window // cfg.chunks
    channels, samples = audio.shape
    if samples < window or chunk == 0:
        return [], 0
    starts = np.arange(0, samples - window + 1, hop)
    # Chunk energies from a running sum of squares: no copy of the overlapping windows.
    energy = np.zeros((channels, samples + 1))
    np.cumsum(np.square(audio, dtype=np.float64), axis=1, out=energy[:, 1:])
    chunk_starts = starts[:, None] + np.arange(cfg.chunks) * chunk  # (windows, chunks)
    chunk_energy = energy[:, chunk_starts + chunk] - energy[:, chunk_starts]
    rms = np.sqrt(np.maximum(chunk_energy, 0.0) / chunk)  # (channels, windows, chunks)
    if cfg.scope == "window":
        threshold = np.quantile(rms, cfg.quantile, axis=-1, keepdims=True)
    else:
        threshold = np.quantile(rms.reshape(channels, -1), cfg.quantile, axis=-1)[:, None, None]
    threshold = np.maximum(threshold, cfg.floor)
    active_share = np.mean(rms > threshold, axis=-1)  # (channels, windows)
    keep = np.all(active_share > 0.5, axis=0)
    return [(int(s), int(s) + window) for s in starts[keep]], len(starts)


def load_segments(target: str) -> list[tuple[str, int, int]]:
    """The active windows of `target`, as written by `run`."""
    path = paths.sad_csv(target)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise UserError(f"{path}: no SAD segments; run `sepcost sad` (or `dvc repro sad`) first") from None
    if not rows:
        raise UserError(f"{path}: no SAD segments for target '{target}'")
    return [(r["track"], int(r["start"]), int(r["end"])) for r in rows]
