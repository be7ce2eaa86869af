"""The prepared data set as the later stages see it: the manifest written by `prepare`, and audio I/O.

The manifest lists every track with its split (train, valid, test), its folder under the data
root and its length, so that SAD, training and evaluation read wav files directly with soundfile
and agree on the split without asking musdb again.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline import paths
from pipeline.errors import UserError

STEMS = ("mixture", "vocals", "bass", "drums", "other")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Track:
    name: str
    split: str  # train | valid | test
    folder: str  # relative to the manifest's root, e.g. "train/Artist - Title"
    frames: int


@dataclass(frozen=True)
class Manifest:
    source: str
    root: Path
    sample_rate: int
    channels: int
    tracks: tuple[Track, ...]

    def split(self, name: str) -> list[Track]:
        return [t for t in self.tracks if t.split == name]

    def stem_path(self, track: Track, stem: str) -> Path:
        return self.root / track.folder / f"{stem}.wav"

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "root": str(self.root),
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "counts": {s: len(self.split(s)) for s in SPLITS},
            "tracks": [t.__dict__ for t in self.tracks],
        }


def load_manifest(path: Path = paths.MANIFEST) -> Manifest:
    try:
        raw = json.loads(Path(path).read_text())
        return Manifest(
            source=raw["source"],
            root=Path(raw["root"]),
            sample_rate=int(raw["sample_rate"]),
            channels=int(raw["channels"]),
            tracks=tuple(Track(**t) for t in raw["tracks"]),
        )
    except FileNotFoundError:
        raise UserError(f"{path}: no manifest; run `sepcost prepare` (or `dvc repro prepare`) first") from None
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: not a sepcost manifest ({err}); run `sepcost prepare` again") from None


def write_json(path: Path, data) -> None:
    """Write JSON atomically: a reader never sees half a file, an interruption leaves the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_wav(path: Path, start: int = 0, frames: int = -1) -> np.ndarray:
    """Read `frames` samples from `start` as float32 (channels, samples)."""
    try:
        audio, _ = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise UserError(f"{path}: unreadable audio ({err})") from None
    return np.ascontiguousarray(audio.T)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write (channels, samples) audio."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(audio).T, sample_rate, subtype=subtype)


def load_stems(manifest: Manifest, track: Track, stems=STEMS) -> dict[str, np.ndarray]:
    return {s: read_wav(manifest.stem_path(track, s)) for s in stems}
