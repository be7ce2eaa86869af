"""One epoch's training steps of a variant of params.yaml (default base), its models side by side
as the study runs them, against a baseline measured in the same run: every job in a thread pool,
as `runtime.side_by_side` ran them before a single worker's jobs ran in the calling thread.

    python benchmarks/training_epoch.py [--variant base] [--steps 80] [--rounds 3]

Rows: all the variant's models, then one model alone (as after the others stopped early). A row
with one worker (a model alone; Open-Unmix's models, which dropout makes run one after the
other) measures the change: target >= 1.5x. A row with several workers runs the same pool in
both arms: its ratio is this run's noise. Both arms run the same steps from the same weights and
must end with equal losses. Run it alone on the machine: it prints the load average.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.prepared import prepared_data  # noqa: E402
from pipeline import config, runtime  # noqa: E402
from pipeline.config import resolve  # noqa: E402
from pipeline.data.manifest import load_manifest  # noqa: E402
from pipeline.data.sampler import training_store  # noqa: E402
from pipeline.specs import separator_specs  # noqa: E402
from pipeline.training import loop  # noqa: E402
from pipeline.training.slot import make_slot  # noqa: E402

TARGET = 1.5  # a one-worker row's ratio


@contextlib.contextmanager
def pooled(count, device, threads=0):
    """The baseline: `runtime.side_by_side`, its one worker a one-thread pool."""
    with runtime.side_by_side(count, device, threads) as (executor, workers):
        pooled.workers = workers
        if workers > 1:
            yield executor, workers
        else:
            with ThreadPoolExecutor(1) as pool:
                yield pool, workers


def epoch_seconds(cfg, manifest, store, models: int, steps: int, arm) -> tuple[float, list[float]]:
    """Seconds of `steps` steps of the first `models` models, fresh from their seed; their losses."""
    device = torch.device("cpu")
    slots = [make_slot(cfg, spec, manifest, store, device, i) for i, spec in enumerate(separator_specs(cfg))][:models]
    loop.side_by_side = arm
    try:
        started = time.perf_counter()
        reached = loop.train_steps(slots, cfg, 0, device, steps, "epoch")
        return time.perf_counter() - started, [loss for r in reached.values() for loss in r["losses"]]
    finally:
        loop.side_by_side = runtime.side_by_side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    parser.add_argument("--variant", default="base")
    args = parser.parse_args()

    study = config.load(args.params)
    cfg = resolve(study, args.variant, study.seed)
    print(f"load average before: {os.getloadavg()[0]:.2f}; {runtime.cores()} cores; {args.variant} of {args.params}, "
          f"{args.steps} steps, {args.rounds} rounds (median), arms alternating")
    with prepared_data(args.params):
        manifest = load_manifest()
        store = training_store(cfg, manifest)
        ok = True
        for models in (len(separator_specs(cfg)), 1):
            times, losses = {"pool": [], "project": []}, {}
            for _ in range(args.rounds):
                for name, arm in (("pool", pooled), ("project", runtime.side_by_side)):
                    seconds, losses[name] = epoch_seconds(cfg, manifest, store, models, args.steps, arm)
                    times[name].append(seconds)
            assert losses["pool"] == losses["project"], "the arms' losses differ"
            base, ours = statistics.median(times["pool"]), statistics.median(times["project"])
            ratio = base / ours
            if pooled.workers == 1:
                ok &= ratio >= TARGET
                verdict = f"target >= {TARGET:.1f}x: {'ok' if ratio >= TARGET else 'BELOW TARGET'}"
            else:
                verdict = "same pool in both arms: the noise"
            print(f"  {models} model(s), {pooled.workers} worker(s): baseline (thread pool) {base:6.2f} s  project "
                  f"{ours:6.2f} s  ({ours / (models * args.steps) * 1000:5.1f} ms a model-step)  ratio {ratio:4.2f}x  "
                  f"{verdict}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
