"""Audio files: (channels, samples) float32 arrays in and out of wav and flac files.

Imports soundfile, scipy and `pipeline.errors`; the manifest (`manifest.py`) says where the files are.
"""
from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.errors import UserError
from pipeline.names import STEMS


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


def load_stems(manifest, track, stems=STEMS) -> dict[str, np.ndarray]:
    """The stems of one track of a `Manifest`, by name."""
    return {s: read_wav(manifest.stem_path(track, s)) for s in stems}


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling of (channels, samples) audio."""
    if rate_in == rate_out:
        return audio
    from scipy.signal import resample_poly

    g = gcd(rate_in, rate_out)
    return resample_poly(audio, rate_out // g, rate_in // g, axis=-1).astype(np.float32)
