"""The training sampler: random remixes of short excerpts taken from sources of different songs.

Two modes (`train.sampler`):
- `sad`: each source comes from its SAD segments (data/sad/<source>.csv) with a random offset
  inside the segment, a gain drawn uniformly in [-gain_db, gain_db] dB, silenced with probability
  `silent_source_p` (or only the model's target, with `silent_target_p`), then mixture and sources
  are peak-normalised together, as the replication does;
- `random` (Open-Unmix-like): each source from a random training song at a random offset, a linear
  gain drawn in [gain_lo, gain_hi], its channels swapped with probability `channel_swap_p`.

An item depends only on (seed, epoch, index): the same seed gives the same epoch, whatever the
number of workers. The mixture is always the sum of all four sources. Imports the config schema and
the data package's manifest and SAD segments.
"""
from __future__ import annotations

import threading

import numpy as np
import soundfile as sf
import torch

from pipeline.config.schema import Config
from pipeline.data.manifest import Manifest, Track
from pipeline.data.sad import load_segments
from pipeline.names import TARGETS


class TrackStore:
    """Read excerpts of training stems: from memory when they fit in `cache_gb`, else from disk.

    Stems are kept as 16-bit integers (half the memory of float32); MUSDB18-HQ and the synthetic
    set are 16-bit files, so nothing is lost. Files that are not 16-bit are read as float32.
    """

    def __init__(self, manifest: Manifest, tracks: list[Track], cache_gb: float):
        self.manifest = manifest
        self.tracks = {t.name: t for t in tracks}
        total_bytes = sum(t.frames for t in tracks) * manifest.channels * 2 * len(TARGETS)
        self.in_memory = total_bytes <= cache_gb * 1e9
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self._local = threading.local()  # open files, per thread: models may be trained side by side
        if self.in_memory:
            for track in tracks:
                for source in TARGETS:
                    path = manifest.stem_path(track, source)
                    pcm16 = sf.info(str(path)).subtype == "PCM_16"
                    audio, _ = sf.read(str(path), dtype="int16" if pcm16 else "float32", always_2d=True)
                    self._cache[track.name, source] = np.ascontiguousarray(audio.T)

    def read(self, track: str, source: str, start: int, out: np.ndarray, gain: float = 1.0) -> None:
        """Write `gain` x the excerpt from `start` into `out` (channels, frames) float32, zero-padded
        past the end of the track; one pass over the data, no temporary copies."""
        frames = out.shape[1]
        if self.in_memory:
            audio = self._cache[track, source][:, start : start + frames]
            if audio.dtype == np.int16:
                gain /= 32768.0
        else:
            files = self._local.__dict__.setdefault("files", {})
            handle = files.get((track, source))
            if handle is None:
                path = self.manifest.stem_path(self.tracks[track], source)
                handle = files[track, source] = sf.SoundFile(str(path))
            handle.seek(start)
            audio = handle.read(frames, dtype="float32", always_2d=True).T
        n = audio.shape[1]
        np.multiply(audio, np.float32(gain), out=out[:, :n], casting="unsafe")
        out[:, n:] = 0.0


def _peak(x: np.ndarray) -> float:
    return max(float(x.max()), -float(x.min()))


class TrainingSampler(torch.utils.data.Dataset):
    """Items of `train.chunk_s` seconds: (mixture (channels, samples), sources (4, channels, samples)).

    `target` names the model's target when `silent_target_p` applies to it alone; the sources are
    always all four, in the order vocals, bass, drums, other.
    """

    def __init__(self, cfg: Config, manifest: Manifest, target: str | None = None, store: TrackStore | None = None):
        self.train = cfg.train
        self.seed = cfg.seed
        self.target = target
        self.frames = int(round(cfg.train.chunk_s * manifest.sample_rate))
        tracks = manifest.split("train")
        self.store = store or TrackStore(manifest, tracks, cfg.runtime.cache_gb)
        self.epoch = 0
        if cfg.train.sampler == "sad":
            self.segments = {s: load_segments(s) for s in TARGETS}
        else:
            self.tracks = [t for t in tracks if t.frames >= self.frames] or tracks

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.train.epoch_items

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        sources = np.empty((len(TARGETS), self.store.manifest.channels, self.frames), np.float32)
        make = self._sad_source if self.train.sampler == "sad" else self._random_source
        for k, source in enumerate(TARGETS):
            make(rng, source, sources[k])
        mixture = sources.sum(axis=0)
        if self.train.sampler == "sad":
            peak = max(_peak(mixture), _peak(sources))
            if peak > 1.0:
                mixture /= peak
                sources /= peak
        return torch.from_numpy(mixture), torch.from_numpy(sources)

    def _sad_source(self, rng: np.random.Generator, source: str, out: np.ndarray) -> None:
        track, start, end = self.segments[source][rng.integers(len(self.segments[source]))]
        offset = start + int(rng.integers(0, max(end - start - self.frames, 0) + 1))
        gain = 10.0 ** (rng.uniform(-self.train.gain_db, self.train.gain_db) / 20.0)
        silent = rng.random() < self.train.silent_source_p
        silent_target = rng.random() < self.train.silent_target_p and source == self.target
        if silent or silent_target:
            out[:] = 0.0
        else:
            self.store.read(track, source, offset, out, gain)

    def _random_source(self, rng: np.random.Generator, source: str, out: np.ndarray) -> None:
        track = self.tracks[rng.integers(len(self.tracks))]
        offset = int(rng.integers(0, max(track.frames - self.frames, 0) + 1))
        gain = rng.uniform(self.train.gain_lo, self.train.gain_hi)
        swap = rng.random() < self.train.channel_swap_p
        self.store.read(track.name, source, offset, out[::-1] if swap else out, gain)
