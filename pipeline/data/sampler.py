"""The training sampler: random remixes of short excerpts taken from sources of different songs.

Two modes (`train.sampler`):
- `sad`: each source comes from its SAD segments (data/sad/<source>.csv) with a random offset
  inside the segment, a gain drawn uniformly in [-gain_db, gain_db] dB, silenced with probability
  `silent_source_p` (or only the model's target, with `silent_target_p`), then mixture and sources
  are peak-normalised together, as the replication does;
- `random` (Open-Unmix-like): each source from a random training song at a random offset, a linear
  gain drawn in [gain_lo, gain_hi], its channels swapped with probability `channel_swap_p`.

An item depends only on (seed, epoch, index): the same seed gives the same epoch, to the bit,
whatever the cache size, the number of workers or of ranks. The mixture is always the sum of all
four sources. Imports the config schema and the data package's manifest, SAD segments and shared
arrays.
"""
from __future__ import annotations

import collections
import functools
import threading
import weakref

import numpy as np
import soundfile as sf
import torch

from pipeline.config.schema import Config
from pipeline.data.manifest import Manifest, Track
from pipeline.data.sad import load_segments
from pipeline.data.shared_arrays import SharedArrays
from pipeline.names import TARGETS


class TrackStore:
    """Read excerpts of the training stems: from memory for the stems kept there, from disk for the rest.

    As many whole stems as fit in `cache_gb` are kept in memory, first those an item is most likely
    to read per byte (`odds`: the chance that an item reads each stem): each of them then saves the
    most disk reads for the memory it takes, and a stem no item reads (a source without an active
    segment, a track shorter than an excerpt) takes none. Ties go in manifest order. The copy is in
    shared memory where the OS allows (`shared_arrays`, keyed by the data set's digest): DataLoader
    workers and the torchrun ranks of a node map one copy; `close()` (a `with` block, or at the
    latest the end of the process) lets it go.

    Stems are kept as 16-bit integers (half the memory of float32), and 16-bit files are read from
    disk as such: MUSDB18-HQ and the synthetic set are 16-bit files, so nothing is lost, and an
    excerpt is the same to the bit from memory or from disk. Other files are kept as float32.
    """

    def __init__(self, manifest: Manifest, tracks: list[Track], cache_gb: float, odds: dict[tuple[str, str], float]):
        self.manifest = manifest
        self.tracks = {t.name: t for t in tracks}
        self._local = threading.local()  # open files, per thread: models may be trained side by side
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self._shared = SharedArrays.open(manifest.digest[:16])
        self._closer = weakref.finalize(self, self._shared.close) if self._shared else None
        order = {t.name: i for i, t in enumerate(manifest.tracks)}
        # per byte: the stems of a track are as long as it, and have the same channels and sample width
        stems = sorted((key for key, chance in odds.items() if chance > 0),
                       key=lambda key: (-odds[key] / self.tracks[key[0]].frames, order[key[0]], TARGETS.index(key[1])))
        room = cache_gb * 1e9
        for track, source in stems:
            path = str(manifest.stem_path(self.tracks[track], source))
            info = sf.info(path)
            dtype = np.dtype(np.int16 if info.subtype == "PCM_16" else np.float32)
            shape = (info.channels, info.frames)
            if shape[0] * shape[1] * dtype.itemsize > room:
                continue
            room -= shape[0] * shape[1] * dtype.itemsize
            load = functools.partial(_read_stem, path, dtype)
            self._cache[track, source] = (self._shared.array(f"{order[track]}-{source}", dtype, shape, load)
                                          if self._shared else load())
        # the share of the reads that memory serves
        self.memory_share = sum(odds[key] for key in self._cache) / sum(odds.values())

    def read(self, track: str, source: str, start: int, out: np.ndarray, gain: float = 1.0) -> None:
        """Write `gain` x the excerpt from `start` into `out` (channels, frames) float32, zero-padded
        past the end of the track; one pass over the data, no temporary copies."""
        frames = out.shape[1]
        audio = self._cache.get((track, source))
        if audio is not None:
            audio = audio[:, start : start + frames]
        else:
            files = self._local.__dict__.setdefault("files", {})
            handle = files.get((track, source))
            if handle is None:
                path = self.manifest.stem_path(self.tracks[track], source)
                handle = files[track, source] = sf.SoundFile(str(path))
            handle.seek(start)
            audio = handle.read(frames, dtype="int16" if handle.subtype == "PCM_16" else "float32", always_2d=True).T
        if audio.dtype == np.int16:
            gain /= 32768.0
        n = audio.shape[1]
        np.multiply(audio, np.float32(gain), out=out[:, :n], casting="unsafe")
        out[:, n:] = 0.0

    def close(self) -> None:
        """Let the shared copy go (the last process of the node to close it removes it)."""
        if self._closer:
            self._closer()

    def __enter__(self) -> TrackStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        """What a DataLoader worker gets: the shared stems by their file, which it maps, and no open
        file; a private copy (no shared memory) is not sent to every worker, which reads those stems
        from disk."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_local", "_shared", "_closer")}
        state["_cache"] = {key: (a.filename, a.dtype, a.shape) for key, a in self._cache.items()
                           if isinstance(a, np.memmap)}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _local=threading.local(), _shared=None, _closer=None)
        self._cache = {key: np.memmap(file, dtype=dtype, mode="r", shape=shape)
                       for key, (file, dtype, shape) in self._cache.items()}


def training_store(cfg: Config, manifest: Manifest) -> TrackStore:
    """The store of a training's stems, which its models' samplers share."""
    return TrackStore(manifest, manifest.split("train"), cfg.runtime.cache_gb, read_odds(cfg, manifest))


def read_odds(cfg: Config, manifest: Manifest) -> dict[tuple[str, str], float]:
    """The chance that an item reads each training stem (track, source), silencing aside (the same
    for all): one of its SAD segments (`sad`), or the track, if it is at least an excerpt long (`random`)."""
    if cfg.train.sampler == "sad":
        odds = {}
        for source in TARGETS:
            segments = load_segments(source)
            for track, count in collections.Counter(track for track, _, _ in segments).items():
                odds[track, source] = count / len(segments)
        return odds
    tracks = _excerpt_tracks(manifest, _excerpt_frames(cfg, manifest))
    return {(t.name, source): 1 / len(tracks) for t in tracks for source in TARGETS}


def _excerpt_frames(cfg: Config, manifest: Manifest) -> int:
    return int(round(cfg.train.chunk_s * manifest.sample_rate))


def _excerpt_tracks(manifest: Manifest, frames: int) -> list[Track]:
    """The training tracks the `random` mode draws from: those at least an excerpt long, or all."""
    tracks = manifest.split("train")
    return [t for t in tracks if t.frames >= frames] or tracks


def _read_stem(path: str, dtype: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(sf.read(path, dtype=dtype.name, always_2d=True)[0].T)


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
        self.frames = _excerpt_frames(cfg, manifest)
        self.store = store or training_store(cfg, manifest)
        self.epoch = 0
        if cfg.train.sampler == "sad":
            self.segments = {s: load_segments(s) for s in TARGETS}
        else:
            self.tracks = _excerpt_tracks(manifest, self.frames)

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
