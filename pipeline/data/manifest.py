"""The prepared data set as the later stages see it: the manifest written by `prepare`.

The manifest lists every track with its split (train, valid, test), its folder under the data
root and its length, so that SAD, training and evaluation read wav files directly and agree on the
split without asking musdb again. Its `digest` names the data set's content (the hash of every
stem file's bytes), so a result can say what it was trained on. Imports `pipeline.paths`,
`pipeline.errors` and `pipeline.names`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipeline import paths
from pipeline.errors import UserError
from pipeline.names import SPLITS, STEMS

_READ_BYTES = 1 << 22


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
    digest: str = ""

    def split(self, name: str) -> list[Track]:
        return [t for t in self.tracks if t.split == name]

    def stem_path(self, track: Track, stem: str) -> Path:
        return self.root / track.folder / f"{stem}.wav"

    def dataset(self) -> dict:
        """The data set as a run's input records it: name, digest, source folder and profile."""
        return {"name": f"{self.source} ({self.channels} ch, {self.sample_rate} Hz)", "digest": self.digest,
                "source": str(Path(self.root).resolve()),
                "profile": {"tracks": {s: len(self.split(s)) for s in SPLITS}, "sample_rate": self.sample_rate,
                            "hours": round(sum(t.frames for t in self.tracks) / self.sample_rate / 3600, 3),
                            "digest": self.digest}}

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "root": str(self.root),
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "digest": self.digest,
            "counts": {s: len(self.split(s)) for s in SPLITS},
            "tracks": [t.__dict__ for t in self.tracks],
        }


def content_digest(root: Path, tracks: tuple[Track, ...]) -> str:
    """sha256 over every track's split, name and stem files' bytes, in manifest order."""
    h = hashlib.sha256()
    for track in tqdm(tracks, desc="prepare: data set digest", unit="track", leave=False):
        h.update(f"{track.split}/{track.name}\n".encode())
        for stem in STEMS:
            with open(root / track.folder / f"{stem}.wav", "rb") as f:
                while block := f.read(_READ_BYTES):
                    h.update(block)
    return h.hexdigest()


def load_manifest(path: Path = paths.MANIFEST) -> Manifest:
    try:
        raw = json.loads(Path(path).read_text())
        return Manifest(
            source=raw["source"],
            root=Path(raw["root"]),
            sample_rate=int(raw["sample_rate"]),
            channels=int(raw["channels"]),
            tracks=tuple(Track(**t) for t in raw["tracks"]),
            digest=str(raw.get("digest", "")),
        )
    except FileNotFoundError:
        raise UserError(f"{path}: no manifest; run `sepcost prepare` (or `dvc repro prepare`) first") from None
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: not a sepcost manifest ({err}); run `sepcost prepare` again") from None
