"""The user's MUSDB18-HQ (wav folders) or MUSDB18 (stem mp4 files), checked with the real `musdb`.

Every track is checked with the `musdb` package and its 86/14/50 train/valid/test split; a missing
stem, an unreadable file, a wrong sample rate, mismatched lengths or a mono file is an error
naming the file. MUSDB18-HQ stays where it is; MUSDB18's stem files are decoded once to 16-bit
wav, so that training reads them with soundfile instead of ffmpeg. Imports `musdb`/`stempeg`
(lazily: they need the ffmpeg binaries), `pipeline.paths`, `pipeline.errors`, the data package.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from pipeline import paths
from pipeline.config.schema import Config
from pipeline.data.audio import write_wav
from pipeline.data.manifest import Manifest, Track
from pipeline.errors import UserError
from pipeline.names import CHANNELS, STEMS

STEM_STREAMS = {"mixture": 0, "drums": 1, "bass": 2, "other": 3, "vocals": 4}  # stream order in MUSDB18 mp4


def check(cfg: Config, wav_root: Path) -> Manifest:
    """Check `data.root`; decoded MUSDB18 stems go under `wav_root` (the manifest names their final place)."""
    root = Path(cfg.data.root).expanduser()
    is_wav = cfg.data.source == "musdb18hq"
    layout = "<root>/{train,test}/<Artist - Title>/*.wav" if is_wav else "<root>/{train,test}/*.stem.mp4"
    if not root.is_dir():
        raise UserError(f"{root}: data.root is not a folder (expected a {cfg.data.source} root: {layout})")
    for subset in ("train", "test"):
        if not (root / subset).is_dir():
            raise UserError(f"{root / subset}: missing folder (expected {layout})")

    import musdb  # imported late: it needs the ffmpeg binaries

    if is_wav:
        check = _check_wav_track
    else:
        # musdb probes every stem file as it lists them: check them first, to name a bad one.
        stem_frames = {
            path: _check_stem_file(path, cfg.data.sample_rate)
            for subset in ("train", "test")
            for path in sorted((root / subset).glob("*.stem.mp4"))
        }

        def check(mtrack, sample_rate):
            return stem_frames[Path(mtrack.path)]

    splits = {
        "train": musdb.DB(root=str(root), is_wav=is_wav, subsets="train", split="train"),
        "valid": musdb.DB(root=str(root), is_wav=is_wav, subsets="train", split="valid"),
        "test": musdb.DB(root=str(root), is_wav=is_wav, subsets="test"),
    }
    for split, db in splits.items():
        if len(db) == 0:
            where = root / ("test" if split == "test" else "train")
            what = "musdb's validation track names" if split == "valid" else "tracks"
            raise UserError(f"{where}: empty split '{split}' (no {what} found; expected {layout})")

    tracks = []
    jobs = [(split, mtrack) for split, db in splits.items() for mtrack in db.tracks]
    for split, mtrack in tqdm(jobs, desc=f"prepare: checking {cfg.data.source}", unit="track"):
        frames = check(mtrack, cfg.data.sample_rate)
        subset = "test" if split == "test" else "train"
        tracks.append(Track(name=mtrack.name, split=split, folder=f"{subset}/{mtrack.name}", frames=frames))

    if is_wav:
        return Manifest(cfg.data.source, root, cfg.data.sample_rate, CHANNELS, tuple(tracks))
    for track, (_, mtrack) in tqdm(list(zip(tracks, jobs)), desc="prepare: decoding stems to wav", unit="track"):
        _decode_stem_track(mtrack, wav_root / track.folder, track.frames)
    return Manifest(cfg.data.source, paths.SYNTHETIC_ROOT, cfg.data.sample_rate, CHANNELS, tuple(tracks))


def _check_wav_track(mtrack, sample_rate: int) -> int:
    """Every stem present and readable, with the expected rate and channels, all of one length."""
    folder = Path(mtrack.path).parent
    lengths = {}
    for stem in STEMS:
        path = folder / f"{stem}.wav"
        if not path.is_file():
            raise UserError(f"{path}: missing stem '{stem}' (a track folder holds {', '.join(s + '.wav' for s in STEMS)})")
        try:
            info = sf.info(str(path))
            # Read the last block too: a truncated file can have a valid header.
            sf.read(str(path), start=max(info.frames - 1024, 0), dtype="float32")
        except (sf.LibsndfileError, RuntimeError) as err:
            raise UserError(f"{path}: unreadable or corrupt audio ({err})") from None
        _check_format(path, info.samplerate, info.channels, sample_rate)
        lengths[stem] = info.frames
    return _same_length(folder, lengths, ".wav")


def _check_stem_file(path: Path, sample_rate: int) -> int:
    """The same checks for a stem mp4 file: five streams (mixture and the four sources)."""
    import stempeg

    try:
        info = stempeg.Info(str(path))
    except Exception as err:  # ffprobe failures surface as assorted exception types
        raise UserError(f"{path}: unreadable or corrupt stem file ({type(err).__name__})") from None
    if info.nb_audio_streams != len(STEMS):
        raise UserError(f"{path}: {info.nb_audio_streams} audio streams, expected {len(STEMS)} (mixture, drums, bass, other, vocals)")
    lengths = {}
    for stem in STEMS:
        idx = STEM_STREAMS[stem]
        _check_format(path, info.sample_rate(idx), info.channels(idx), sample_rate, stream=stem)
        lengths[stem] = info.samples(idx)
    # AAC streams of one file can differ by a frame of padding; MUSDB18 tracks are trimmed on reading.
    if max(lengths.values()) - min(lengths.values()) > 2048:
        return _same_length(path, lengths, " stream")
    return min(lengths.values())


def _check_format(path: Path, rate: int, channels: int, sample_rate: int, stream: str | None = None) -> None:
    where = f"{path} ({stream} stream)" if stream else str(path)
    if rate != sample_rate:
        raise UserError(f"{where}: sample rate {rate} Hz, expected {sample_rate} Hz (data.sample_rate)")
    if channels != CHANNELS:
        kind = "mono" if channels == 1 else f"{channels} channels"
        raise UserError(f"{where}: {kind}, expected stereo")


def _same_length(where: Path, lengths: dict[str, int], suffix: str) -> int:
    """The common length of a track's stems; the odd one out (against the majority) is named."""
    counts = {n: list(lengths.values()).count(n) for n in lengths.values()}
    common = max(counts, key=lambda n: (counts[n], n))
    odd = [s for s, n in lengths.items() if n != common]
    if odd:
        name = f"{where / (odd[0] + suffix)}" if suffix == ".wav" else f"{where} ({odd[0]}{suffix})"
        raise UserError(
            f"{name}: {lengths[odd[0]]} samples where the other stems have {common} "
            "(truncated, or not of this track? stems must have one length)"
        )
    return common


def _decode_stem_track(mtrack, folder: Path, frames: int) -> None:
    """Decode the five streams to 16-bit wav, trimmed to the length the container declares."""
    import stempeg

    audio, _ = stempeg.read_stems(str(mtrack.path), dtype=np.float32)  # (stems, samples, channels)
    for stem, idx in STEM_STREAMS.items():
        write_wav(folder / f"{stem}.wav", audio[idx, :frames].T, int(mtrack.rate), subtype="PCM_16")
