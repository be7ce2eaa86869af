"""Items per second of the training sampler (3 s stereo items), against today's loader past
`runtime.cache_gb`, measured in the same run.

    python benchmarks/sampler.py [--items 2000]
    python benchmarks/sampler.py --musdb-size [--gb 14.5] [--cache-gb G] [--items 800] [--workers N] [--folder DIR]

The baseline is today's sampler on a training set over `cache_gb`: every excerpt read from disk
(its file decoded to float32 by soundfile) in the training thread, no worker.

Default: the default data (data/prepared and data/sad of the study in the working directory,
`dvc repro prepare sad`, or built from params.yaml in a temporary folder), all of it in memory,
item by item in one thread. Target: >= 200 items/s, so that data loading never starves a GPU step.

`--musdb-size`: synthetic noise of MUSDB18-HQ's training size (100 songs, 14.5 GB of 16-bit
stereo stems at 44.1 kHz; `--gb` for a quick check), written to a temporary folder on disk
(`--folder`: not a tmpfs, or "disk" means memory) with a manifest and SAD segments (6 s windows;
vocals active in 60 % of them, the other sources in 90 %), removed afterwards. The store caches
`cache_gb` of it (params.yaml's, the most read stems per byte) in /dev/shm; batches of 8 come
from the training's loader in the training thread, then from `--workers` worker processes. The
page cache would serve every "disk" read of files just written: each measurement starts with the
stems' pages dropped (POSIX_FADV_DONTNEED), for the baseline as for the others, then runs again
on the same items, their pages now cached (a second epoch on a machine whose memory holds the
data set). Every arm runs as a training does: the CLI's allocator settings, torch on one thread.
Run it alone on the machine: it prints the CPU and the load average.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.prepared import prepared_data  # noqa: E402
from pipeline import config, paths, runtime  # noqa: E402
from pipeline.allocator import keep_freed_memory  # noqa: E402
from pipeline.config.schema import Config  # noqa: E402
from pipeline.data.manifest import Manifest, Track, load_manifest  # noqa: E402
from pipeline.data.sad import CSV_HEADER  # noqa: E402
from pipeline.data.sampler import TrackStore, TrainingSampler, read_odds, training_store  # noqa: E402
from pipeline.names import TARGETS  # noqa: E402
from pipeline.training.loop import loader  # noqa: E402

TARGET_ITEMS_PER_S = 200
MUSDB_TRACKS, MUSDB_GB = 100, 14.5  # MUSDB18-HQ's training songs, and their four stems at 16 bits
SAMPLE_RATE, CHANNELS = 44100, 2
ACTIVE = {"vocals": 0.6}  # share of active SAD windows; 0.9 for the other sources
CHUNK_S, BATCH = 3.0, 8  # the paper's items and batches


class TodaysDiskReads(TrackStore):
    """The baseline: today's store past cache_gb, nothing in memory, every excerpt decoded from
    disk to float32 (the store now reads 16-bit files as int16: the same items, to the bit)."""

    def __init__(self, cfg: Config, manifest: Manifest):
        super().__init__(manifest, manifest.split("train"), 0.0, read_odds(cfg, manifest))

    def read(self, track: str, source: str, start: int, out: np.ndarray, gain: float = 1.0) -> None:
        files = self._local.__dict__.setdefault("files", {})
        handle = files.get((track, source))
        if handle is None:
            handle = files[track, source] = sf.SoundFile(str(self.manifest.stem_path(self.tracks[track], source)))
        handle.seek(start)
        audio = handle.read(out.shape[1], dtype="float32", always_2d=True).T
        np.multiply(audio, np.float32(gain), out=out[:, : audio.shape[1]])
        out[:, audio.shape[1]:] = 0.0


def items_per_second(sampler: TrainingSampler, items: int) -> float:
    sampler.set_epoch(0)
    sampler[0]  # warm-up
    started = time.perf_counter()
    for i in range(items):
        sampler[i]
    return items / (time.perf_counter() - started)


def default_data(args) -> None:
    cfg = config.load(args.params)
    with prepared_data(args.params):
        manifest = load_manifest()
        train = dataclasses.replace(cfg.train, chunk_s=CHUNK_S, epoch_items=args.items + 1)
        results = {}
        for mode in ("sad", "random"):
            mode_cfg = dataclasses.replace(cfg, train=dataclasses.replace(train, sampler=mode))
            with training_store(mode_cfg, manifest) as store, TodaysDiskReads(mode_cfg, manifest) as today:
                cached = TrainingSampler(mode_cfg, manifest, target="vocals", store=store)
                disk = TrainingSampler(mode_cfg, manifest, target="vocals", store=today)
                results[mode] = (items_per_second(cached, args.items), items_per_second(disk, args.items // 4),
                                 store.memory_share)

    print(f"training sampler, one thread, 3 s stereo items, {args.items} items, {len(manifest.split('train'))} training tracks")
    for mode, (fast, baseline, share) in results.items():
        verdict = "ok" if fast >= TARGET_ITEMS_PER_S else "BELOW TARGET"
        print(f"  {mode:6s}: {fast:8.0f} items/s ({share:.0%} of reads from memory)   baseline (disk reads) {baseline:6.0f} "
              f"items/s   ratio {fast / baseline:5.1f}x   target >= {TARGET_ITEMS_PER_S} items/s: {verdict}")
    print(f"  {_machine()}")


# --------------------------------------------------------------------------- MUSDB18-HQ's size


def write_musdb_size(root: Path, gb: float, cfg: Config) -> Manifest:
    """Noise stems of `gb` in all, songs of random lengths (0.4 to 1.6 x the mean), their manifest
    at data/prepared and SAD segments at data/sad of the working directory; no page left cached."""
    rng = np.random.default_rng(0)  # the same data for the same size: a fixed digest (its folder in /dev/shm)
    lengths = rng.uniform(0.4, 1.6, MUSDB_TRACKS)
    total = gb * 1e9 / (len(TARGETS) * CHANNELS * 2)
    noise = rng.integers(-3000, 3000, (20 * SAMPLE_RATE, CHANNELS), dtype=np.int16)
    tracks, segments = [], {s: [] for s in TARGETS}
    window, hop = int(cfg.sad.window_s * SAMPLE_RATE), int(cfg.sad.hop_s * SAMPLE_RATE)
    for i, share in enumerate(tqdm(lengths / lengths.sum(), desc=f"writing {gb:g} GB of stems", unit="song", leave=False)):
        track = Track(f"Song {i:03d}", "train", f"train/Song {i:03d}", int(share * total))
        tracks.append(track)
        (root / track.folder).mkdir(parents=True)
        for source in TARGETS:
            path = root / track.folder / f"{source}.wav"
            with sf.SoundFile(str(path), "w", SAMPLE_RATE, CHANNELS, "PCM_16") as f:
                done, at = 0, int(rng.integers(len(noise)))
                while done < track.frames:
                    n = min(track.frames - done, len(noise) - at)
                    f.write(noise[at : at + n])
                    done, at = done + n, 0
            _drop_pages(path, sync=True)
            starts = range(0, track.frames - window + 1, hop)
            keep = rng.random(len(starts)) < ACTIVE.get(source, 0.9)
            segments[source] += [(track.name, s, s + window) for s, k in zip(starts, keep) if k]
    digest = hashlib.sha256(f"sepcost benchmark: {gb} GB of noise, seed 0".encode()).hexdigest()
    manifest = Manifest("synthetic, MUSDB18-HQ's size", root.resolve(), SAMPLE_RATE, CHANNELS, tuple(tracks), digest)
    paths.MANIFEST.parent.mkdir(parents=True)
    paths.MANIFEST.write_text(json.dumps(manifest.to_json()))
    paths.SAD.mkdir(parents=True)
    for source, rows in segments.items():
        with open(paths.sad_csv(source), "w", newline="") as f:
            csv.writer(f).writerows([CSV_HEADER, *rows])
    return manifest


def _drop_pages(path: Path, sync: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if sync:
            os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def loader_items_per_second(sampler: TrainingSampler, cfg: Config, items: int, cold: bool) -> float:
    """Items a second through the training's loader; `cold`: the stems' pages dropped first."""
    if cold:
        manifest = sampler.store.manifest
        for track in manifest.tracks:
            for source in TARGETS:
                _drop_pages(manifest.stem_path(track, source))
    batches = loader(sampler, list(range(items)), cfg, torch.device("cpu"))
    started = time.perf_counter()
    for _ in batches:
        pass
    return items / (time.perf_counter() - started)


def musdb_size(args) -> None:
    study = config.load(args.params)
    here, workdir = Path.cwd(), Path(tempfile.mkdtemp(prefix="sepcost-bench-musdb-", dir=args.folder))
    os.chdir(workdir)
    try:
        manifest = write_musdb_size(workdir / "musdb", args.gb, study)
        cache_gb = study.runtime.cache_gb if args.cache_gb is None else args.cache_gb
        cfg = dataclasses.replace(study, train=dataclasses.replace(
            study.train, sampler="sad", chunk_s=CHUNK_S, batch_size=BATCH, epoch_items=args.items),
            runtime=dataclasses.replace(study.runtime, cache_gb=cache_gb))
        workers = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, num_workers=args.workers))
        no_cache = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, cache_gb=0.0))
        started = time.perf_counter()
        store = training_store(cfg, manifest)
        built = time.perf_counter() - started
        with store, TodaysDiskReads(cfg, manifest) as today, training_store(no_cache, manifest) as disk:
            started = time.perf_counter()
            list(loader(TrainingSampler(cfg, manifest, "vocals", store), [0], workers, torch.device("cpu")))
            server = time.perf_counter() - started  # the fork server's start, once a training process
            arms = [("today's loader: every excerpt from disk, in the training thread", today, cfg),
                    ("no cache, 16-bit reads from disk, in the training thread", disk, cfg),
                    ("partial cache, in the training thread", store, cfg),
                    (f"partial cache, {args.workers} loader workers", store, workers)]
            arms = [(name, TrainingSampler(cfg, manifest, "vocals", arm_store), arm_cfg)
                    for name, arm_store, arm_cfg in arms]
            figures = {cold: [(loader_items_per_second(sampler, arm_cfg, args.items, cold), os.getloadavg()[0])
                              for _, sampler, arm_cfg in arms] for cold in (True, False)}
            cached = len(store._cache)
            shared = store._shared is not None and store._shared.folder
            share = store.memory_share
    finally:
        os.chdir(here)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"training sampler at MUSDB18-HQ's size: {MUSDB_TRACKS} songs, {args.gb:.1f} GB of 16-bit stereo stems "
          f"(synthetic noise, on disk at {workdir.parent}), {CHUNK_S:g} s items in batches of {BATCH}, {args.items} items")
    print(f"  cache_gb {cfg.runtime.cache_gb:g}: {cached} of {len(TARGETS) * MUSDB_TRACKS} stems in memory "
          f"({shared or 'a private copy'}), {share:.0%} of the reads; built in {built:.1f} s; the workers' fork server "
          f"started in {server:.1f} s (once a process)")
    for cold, title in ((True, "the stems' pages dropped before each"), (False, "again, their pages now cached")):
        print(f"  {title}:")
        baseline = figures[cold][0][0]
        for (name, _, _), (rate, load) in zip(arms, figures[cold]):
            print(f"    {name:66s} {rate:7.0f} items/s  {rate / baseline:5.1f}x   (load average {load:.1f})")
    print(f"  {_machine()}")


def _machine() -> str:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"CPU: {cpu}, {runtime.cores()} cores for this process, {os.cpu_count()} on the machine; load average {load}"


def main() -> None:
    # as a training runs: the CLI's allocator settings, one torch thread (a training's on the CPU;
    # more would spin against the loader workers on a busy machine: 4x slower collation here)
    keep_freed_memory()
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    parser.add_argument("--items", type=int, help="items a measurement (default: 2000, 800 with --musdb-size)")
    parser.add_argument("--musdb-size", action="store_true", help="synthetic data of MUSDB18-HQ's training size")
    parser.add_argument("--gb", type=float, default=MUSDB_GB, help="its stems' size (MUSDB18-HQ's: %(default)s)")
    parser.add_argument("--cache-gb", type=float, help="runtime.cache_gb (default: the params file's)")
    parser.add_argument("--workers", type=int, default=runtime.cores(), help="loader workers (default: the cores)")
    parser.add_argument("--folder", help="where to write it (default: the temporary folder)")
    args = parser.parse_args()
    if args.musdb_size:
        args.items = args.items or 800
        musdb_size(args)
    else:
        args.items = args.items or 2000
        default_data(args)


if __name__ == "__main__":
    main()
