"""Stage `prepare`: the data set every later stage reads, described by one manifest.

- `data.source: synthetic` writes the built-in songs (pipeline.synth) in the MUSDB18-HQ layout
  under data/prepared/musdb, with a musdb setup file whose validation list is our own track names.
- `data.source: musdb18hq` checks the user's wav folders with the real `musdb` package and its
  86/14/50 train/valid/test split; the audio stays where it is.
- `data.source: musdb18` checks the user's stem mp4 files the same way and decodes them once to
  wav under data/prepared/musdb, so training reads them with soundfile instead of ffmpeg.

Bad data ends the stage with one line naming the file and the problem, and no manifest.
"""
from __future__ import annotations

import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from tqdm import tqdm

from pipeline import paths, synth
from pipeline.audio import STEMS, Manifest, Track, write_json, write_wav
from pipeline.config import Config
from pipeline.errors import UserError

SETUP_FILE = "setup.yaml"  # musdb's name for a data set's own configuration, under its root
CHANNELS = 2
STEM_STREAMS = {"mixture": 0, "drums": 1, "bass": 2, "other": 3, "vocals": 4}  # stream order in MUSDB18 mp4


def run(cfg: Config) -> Manifest:
    """Build data/prepared from scratch; the old output is removed first so a failure leaves none."""
    shutil.rmtree(paths.PREPARED, ignore_errors=True)
    partial = paths.PREPARED.with_name(paths.PREPARED.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        if cfg.data.source == "synthetic":
            manifest = _write_synthetic(cfg, partial / paths.SYNTHETIC_ROOT.name)
        else:
            manifest = _check_musdb(cfg, partial / paths.SYNTHETIC_ROOT.name)
        write_json(partial / paths.MANIFEST.name, manifest.to_json())
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    os.replace(partial, paths.PREPARED)
    counts = ", ".join(f"{len(manifest.split(s))} {s}" for s in ("train", "valid", "test"))
    print(f"prepare: {cfg.data.source} data set at {manifest.root}: {counts} tracks")
    return manifest


# ----------------------------------------------------------------------------- synthetic


def _write_synthetic(cfg: Config, root: Path) -> Manifest:
    """Render the songs; the manifest points at their final place, data/prepared/musdb."""
    syn, sr = cfg.data.synthetic, cfg.data.sample_rate
    plan = [
        ("train", "train", syn.train_songs),
        ("valid", "train", syn.valid_songs),  # MUSDB keeps validation tracks in train/
        ("test", "test", syn.test_songs),
    ]
    jobs = []
    for split_index, (split, subset, count) in enumerate(plan):
        names = synth.song_names(split, count, cfg.seed)
        for i, name in enumerate(names):
            song_seed = int(np.random.SeedSequence([cfg.seed, split_index, i]).generate_state(1)[0])
            jobs.append((split, subset, name, song_seed))

    tracks = []
    # Songs are rendered on every core, in order; each is written as soon as it is ready.
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        songs = pool.map(synth.render_song, [job[3] for job in jobs], repeat(sr), repeat(syn.song_s))
        progress = tqdm(zip(jobs, songs), total=len(jobs), desc="prepare: synthetic songs", unit="song")
        for (split, subset, name, _), stems in progress:
            frames = _write_song(root / subset / name, stems, sr)
            tracks.append(Track(name=name, split=split, folder=f"{subset}/{name}", frames=frames))

    valid_names = [t.name for t in tracks if t.split == "valid"]
    _write_setup_file(root, valid_names)
    return Manifest("synthetic", paths.SYNTHETIC_ROOT, sr, CHANNELS, tuple(tracks))


def _write_song(folder: Path, stems: dict[str, np.ndarray], sample_rate: int) -> int:
    """Write 16-bit stems and their exact sum as mixture.wav, as in MUSDB18-HQ.

    Stems are rounded to the 16-bit grid first and the mixture is summed from the rounded stems,
    so that on reading, mixture == vocals + bass + drums + other holds to the last bit.
    """
    ints = {s: np.clip(np.round(a * 32768.0), -32768, 32767).astype(np.int32) for s, a in stems.items()}
    mixture = sum(ints.values())
    if np.abs(mixture).max() > 32767:
        raise RuntimeError(f"{folder}: synthetic mixture clips; pipeline.synth must keep it within [-1, 1]")
    for stem, audio in {"mixture": mixture, **ints}.items():
        write_wav(folder / f"{stem}.wav", audio.astype(np.int16), sample_rate)
    return int(mixture.shape[-1])


def _write_setup_file(root: Path, valid_names: list[str]) -> None:
    """musdb's own configuration with our validation track names, so musdb.DB honours the split."""
    import musdb  # imported late: it needs the ffmpeg binaries

    setup = yaml.safe_load((Path(musdb.__path__[0]) / "configs" / "mus.yaml").read_text())
    setup["validation_tracks"] = valid_names
    (root / SETUP_FILE).write_text(yaml.safe_dump(setup, sort_keys=False))


# ----------------------------------------------------------------------------- real MUSDB18(-HQ)


def _check_musdb(cfg: Config, wav_root: Path) -> Manifest:
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
