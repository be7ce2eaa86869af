"""Stage `prepare`: the data set every later stage reads, described by one manifest.

- `data.source: synthetic` writes the built-in songs in the MUSDB18-HQ layout under
  data/prepared/musdb (`pipeline.data.synthetic`);
- `data.source: musdb18hq` checks the user's wav folders with the real `musdb` package and its
  86/14/50 split, the audio staying where it is; `musdb18` checks the stem mp4 files the same way
  and decodes them once to wav under data/prepared/musdb (`pipeline.data.musdb`).

The manifest carries the digest of the data set's content. Bad data ends the stage with one line
naming the file and the problem, and no manifest: the previous one is removed first, since it
describes data that no longer passes the checks.
"""
from __future__ import annotations

import dataclasses

from pipeline import paths, tracking
from pipeline.atomic import replacing, write_json
from pipeline.config import Config
from pipeline.data import musdb, synthetic
from pipeline.data.manifest import Manifest, content_digest
from pipeline.names import SPLITS


def run(cfg: Config) -> Manifest:
    with tracking.metered(cfg, "prepare", paths.energy_dir("prepare"), run_name="prepare"), \
            replacing(paths.PREPARED, discard_old=True) as out:
        audio = out / paths.SYNTHETIC_ROOT.name  # where the synthetic or decoded stems go
        if cfg.data.source == "synthetic":
            manifest = synthetic.write(cfg, audio)
        else:
            manifest = musdb.check(cfg, audio)
        written_to = manifest.root if manifest.root != paths.SYNTHETIC_ROOT else audio
        manifest = dataclasses.replace(manifest, digest=content_digest(written_to, manifest.tracks))
        write_json(out / paths.MANIFEST.name, manifest.to_json())
    counts = ", ".join(f"{len(manifest.split(s))} {s}" for s in SPLITS)
    print(f"prepare: {cfg.data.source} data set at {manifest.root}: {counts} tracks, digest {manifest.digest[:12]}")
    return manifest
