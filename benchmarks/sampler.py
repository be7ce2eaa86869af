"""Items per second of the training sampler (one worker, 3 s stereo items) on the default data.

Baseline, measured in the same run: the same items with the cache off, every excerpt read from
disk by soundfile (what the sampler falls back to when the training set exceeds runtime.cache_gb).
Target: >= 200 items/s, so that data loading never starves a GPU step.

Uses data/prepared and data/sad of the study in the working directory (`dvc repro prepare sad`),
or builds them from params.yaml in a temporary folder when they are missing.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.prepared import prepared_data  # noqa: E402
from pipeline import config  # noqa: E402
from pipeline.data.manifest import load_manifest  # noqa: E402
from pipeline.data.sampler import TrainingSampler, training_store  # noqa: E402

TARGET_ITEMS_PER_S = 200


def items_per_second(sampler: TrainingSampler, items: int) -> float:
    sampler.set_epoch(0)
    sampler[0]  # warm-up
    started = time.perf_counter()
    for i in range(items):
        sampler[i]
    return items / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    args = parser.parse_args()

    cfg = config.load(args.params)
    with prepared_data(args.params):
        manifest = load_manifest()
        train = dataclasses.replace(cfg.train, chunk_s=3.0, epoch_items=args.items + 1)
        results = {}
        for mode in ("sad", "random"):
            mode_cfg = dataclasses.replace(cfg, train=dataclasses.replace(train, sampler=mode))
            cached = TrainingSampler(mode_cfg, manifest, target="vocals")
            no_cache = dataclasses.replace(mode_cfg, runtime=dataclasses.replace(mode_cfg.runtime, cache_gb=0.0))
            disk = TrainingSampler(mode_cfg, manifest, target="vocals", store=training_store(no_cache, manifest))
            results[mode] = (items_per_second(cached, args.items), items_per_second(disk, args.items // 4))

    print(f"training sampler, one worker, 3 s stereo items, {args.items} items, {len(manifest.split('train'))} training tracks")
    for mode, (fast, baseline) in results.items():
        verdict = "ok" if fast >= TARGET_ITEMS_PER_S else "BELOW TARGET"
        print(f"  {mode:6s}: {fast:8.0f} items/s   baseline (disk reads) {baseline:6.0f} items/s   "
              f"ratio {fast / baseline:5.1f}x   target >= {TARGET_ITEMS_PER_S} items/s: {verdict}")


if __name__ == "__main__":
    main()
