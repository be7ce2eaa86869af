"""A training's steps with the recipe's fused Adam against torch's default on the CPU (a loop of
operations per parameter), measured in the same run.

    python benchmarks/optimizer.py [--variant base] [--steps 40] [--rounds 3]

Both arms train the variant's models side by side, as the study does, from the same seed and
batches for `--steps` steps; their losses must agree within 1 % (the two compute the same update,
their rounding differs and drifts over the steps). Target: the fused arm >= 1.1x. Run it alone on
the machine: it prints the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.prepared import prepared_data  # noqa: E402
from pipeline import config, runtime  # noqa: E402
from pipeline.data.manifest import load_manifest  # noqa: E402
from pipeline.data.sampler import training_store  # noqa: E402
from pipeline.specs import separator_specs  # noqa: E402
from pipeline.training import loop, recipe  # noqa: E402
from pipeline.training.slot import make_slot  # noqa: E402

TARGET = 1.1


def steps_seconds(cfg, manifest, store, steps: int, fused: bool) -> tuple[float, list[float]]:
    """Seconds of `steps` steps of every model of the variant, fresh from its seed; their losses."""
    cpu = torch.device("cpu")
    slots = [make_slot(cfg, spec, manifest, store, cpu, i) for i, spec in enumerate(separator_specs(cfg))]
    if not fused:  # the baseline: the same Adam, torch's default implementation on the CPU
        for slot in slots:
            slot.optimizer = torch.optim.Adam(slot.model.parameters(), **{
                k: v for k, v in slot.optimizer.defaults.items() if k != "fused"})
    started = time.perf_counter()
    reached = loop.train_steps(slots, cfg, 0, cpu, steps, "epoch")
    return time.perf_counter() - started, [loss for r in reached.values() for loss in r["losses"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="base")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    args = parser.parse_args()

    study = config.load(args.params)
    cfg = config.resolve(study, args.variant, study.seed)
    assert recipe.optimiser(torch.nn.Linear(1, 1), cfg.train).defaults["fused"], "the recipe's Adam is not fused"
    print(f"load average before: {os.getloadavg()[0]:.2f}; {runtime.cores()} cores; {args.variant} of {args.params}, "
          f"{args.steps} steps of each of its models, {args.rounds} rounds (median), arms alternating")
    with prepared_data(args.params):
        manifest = load_manifest()
        store = training_store(cfg, manifest)
        times, losses = {"default": [], "fused": []}, {}
        for _ in range(args.rounds):
            for name in times:
                seconds, losses[name] = steps_seconds(cfg, manifest, store, args.steps, fused=name == "fused")
                times[name].append(seconds)
    np.testing.assert_allclose(losses["fused"], losses["default"], rtol=1e-2, err_msg="the arms' losses differ")
    base, ours = statistics.median(times["default"]), statistics.median(times["fused"])
    ratio = base / ours
    print(f"  torch's default Adam {base:6.2f} s  fused {ours:6.2f} s  ratio {ratio:4.2f}x  target >= {TARGET:.1f}x: "
          f"{'ok' if ratio >= TARGET else 'BELOW TARGET'}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    sys.exit(0 if ratio >= TARGET else 1)


if __name__ == "__main__":
    main()
