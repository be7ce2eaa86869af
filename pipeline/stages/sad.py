"""Stage `sad`: source activity detection per source over the training tracks.

Writes data/sad/<source>.csv (the active windows) and data/sad/summary.json; a source with no
active window anywhere is an error, not an empty result. Every source of MUSDB's four, whatever
the study's targets: the SAD sampler mixes active segments of each one into a training mixture.
"""
from __future__ import annotations

import csv

from tqdm import tqdm

from pipeline import paths, tracking
from pipeline.atomic import replacing, write_json
from pipeline.config import Config
from pipeline.data.audio import read_wav
from pipeline.data.manifest import load_manifest
from pipeline.data.sad import CSV_HEADER, active_windows
from pipeline.errors import UserError
from pipeline.names import TARGETS


def run(cfg: Config) -> dict:
    manifest = load_manifest()
    tracks = manifest.split("train")
    if not tracks:
        raise UserError(f"{paths.MANIFEST}: no training tracks to detect source activity in")
    segments = {t: [] for t in TARGETS}
    totals = dict.fromkeys(TARGETS, 0)
    with tracking.metered(cfg, "sad", paths.energy_dir("sad"), run_name="sad"), \
            replacing(paths.SAD, discard_old=True) as out:
        for track in tqdm(tracks, desc="sad: training tracks", unit="track"):
            for target in TARGETS:
                audio = read_wav(manifest.stem_path(track, target))
                kept, windows = active_windows(audio, manifest.sample_rate, cfg.sad)
                segments[target] += [(track.name, start, end) for start, end in kept]
                totals[target] += windows
        out.mkdir()
        for target in TARGETS:
            if not segments[target]:
                raise UserError(
                    f"sad: no segment kept for target '{target}' over {len(tracks)} training tracks "
                    f"(threshold: {cfg.sad.quantile:.0%} quantile per {cfg.sad.scope}, floored at {cfg.sad.floor}); "
                    "check the data or lower sad.floor"
                )
            with open(out / paths.sad_csv(target).name, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(CSV_HEADER)
                writer.writerows(segments[target])
        summary = {
            "scope": cfg.sad.scope,
            "window_s": cfg.sad.window_s,
            "hop_s": cfg.sad.hop_s,
            "tracks": len(tracks),
            "targets": {t: {"kept": len(segments[t]), "total": totals[t]} for t in TARGETS},
        }
        write_json(out / paths.SAD_SUMMARY.name, summary)
    for target, counts in summary["targets"].items():
        print(f"sad: {target:6s} kept {counts['kept']:5d} of {counts['total']:5d} windows")
    return summary
