"""Stage `sad`: source activity detection per target over the training tracks.

Each source of each training track (validation tracks excluded) is cut into windows (6 s, hop 3 s);
a window is split into chunks (10), and the RMS of every chunk and channel is compared with a
threshold: the 15 % quantile of the chunk RMS, floored at 1e-3. A window is kept when more than
half of its chunks exceed the threshold in every channel. The quantile is taken per window, as the
replication's code does, or over the whole track (`sad.scope: track`), closer to the original
paper, where a window of a quiet passage can no longer pass on its own quantile.
"""
from __future__ import annotations

import csv
import os
import shutil

import numpy as np
from tqdm import tqdm

from pipeline import paths
from pipeline.audio import load_manifest, read_wav, write_json
from pipeline.config import Config, SadConfig
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


def run(cfg: Config) -> dict:
    """Write data/sad/<target>.csv and data/sad/summary.json; no kept window for a target is an error."""
    manifest = load_manifest()
    tracks = manifest.split("train")
    if not tracks:
        raise UserError(f"{paths.MANIFEST}: no training tracks to detect source activity in")
    shutil.rmtree(paths.SAD, ignore_errors=True)
    partial = paths.SAD.with_name(paths.SAD.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)

    segments = {t: [] for t in cfg.targets}
    totals = dict.fromkeys(cfg.targets, 0)
    for track in tqdm(tracks, desc="sad: training tracks", unit="track"):
        for target in cfg.targets:
            audio = read_wav(manifest.stem_path(track, target))
            kept, windows = active_windows(audio, manifest.sample_rate, cfg.sad)
            segments[target] += [(track.name, start, end) for start, end in kept]
            totals[target] += windows

    summary = {
        "scope": cfg.sad.scope,
        "window_s": cfg.sad.window_s,
        "hop_s": cfg.sad.hop_s,
        "tracks": len(tracks),
        "targets": {t: {"kept": len(segments[t]), "total": totals[t]} for t in cfg.targets},
    }
    for target in cfg.targets:
        if not segments[target]:
            shutil.rmtree(partial, ignore_errors=True)
            raise UserError(
                f"sad: no segment kept for target '{target}' over {len(tracks)} training tracks "
                f"(threshold: {cfg.sad.quantile:.0%} quantile per {cfg.sad.scope}, floored at {cfg.sad.floor}); "
                "check the data or lower sad.floor"
            )
        with open(partial / paths.sad_csv(target).name, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_HEADER)
            writer.writerows(segments[target])
    write_json(partial / paths.SAD_SUMMARY.name, summary)
    os.replace(partial, paths.SAD)
    for target, counts in summary["targets"].items():
        print(f"sad: {target:6s} kept {counts['kept']:5d} of {counts['total']:5d} windows")
    return summary


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
