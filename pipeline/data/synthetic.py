"""The built-in data set: the synthetic songs (`pipeline.synth`) written in the MUSDB18-HQ layout.

Songs are rendered on every core and written as 16-bit stems plus their exact sum as mixture.wav,
with a musdb setup file whose validation list is our own track names, so `musdb.DB` honours the
split. Imports `pipeline.synth`, `pipeline.paths`, the data package's audio and manifest modules.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from pipeline import paths, synth
from pipeline.config.schema import Config
from pipeline.data.audio import write_wav
from pipeline.data.manifest import Manifest, Track
from pipeline.names import CHANNELS

SETUP_FILE = "setup.yaml"  # musdb's name for a data set's own configuration, under its root


def write(cfg: Config, root: Path) -> Manifest:
    """Render the songs into `root`; the manifest points at their final place, data/prepared/musdb."""
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
