"""How long rank 0 holds the other ranks of a training at each epoch's checkpoint, against the
synchronous write measured in the same run.

    python benchmarks/checkpoint.py [--variant large] [--rounds 3] [--folder DIR]

The state is a training's at the paper's size (the schema's recipe, `configs/paper.yaml`): every
model of the variant with its Adam moments, as `last.pt` holds them, and the best weights as
`best.pt` does. Baseline: `checkpoint.save` of both, in the training's thread, what the other
ranks waited for until their next all-reduce. Now: `checkpoint.Writer.save` of both, which returns
after the snapshot on the CPU and writes in its own thread; the stall is that snapshot, and the
write's end is printed beside it. With the training's allocator settings (`pipeline.allocator`);
a training checkpoints every epoch, so the figures are the median of the rounds after the first,
whose snapshot also pays the kernel for its fresh memory (printed apart). Target: the stall a
fraction of the write (ratio < 0.5). The folder (default: a temporary one here) decides the disk:
a local disk whose page cache takes the whole write flatters the baseline, a cluster's network
file system does not. Run it alone: it prints the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model import build_separator, count_parameters  # noqa: E402
from pipeline import checkpoint  # noqa: E402
from pipeline.allocator import keep_freed_memory  # noqa: E402
from pipeline.config import load, resolve  # noqa: E402
from pipeline.specs import separator_specs  # noqa: E402


def training_state(variant: str) -> tuple[dict, dict, int]:
    """last.pt's and best.pt's content for `variant` at the paper's size, after one Adam step."""
    cfg = resolve(load(REPO / "configs" / "paper.yaml"), variant)
    slots, best, params = [], [], 0
    for spec in separator_specs(cfg):
        separator = build_separator(spec)
        optimizer = torch.optim.Adam(separator.parameters())
        for p in separator.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()  # the moments exist, as after the first step
        slots.append({"model": separator.state_dict(), "optimizer": optimizer.state_dict()})
        best.append({"spec": spec, "state_dict": {k: v.clone() for k, v in separator.state_dict().items()}})
        params += count_parameters(separator)
    return {"slots": slots}, checkpoint.models_file(variant, cfg.as_dict(), best), params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="large")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", help="where to write (default: a temporary folder)")
    args = parser.parse_args()

    keep_freed_memory()
    last, best, params = training_state(args.variant)
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        paths = Path(folder) / "last.pt", Path(folder) / "best.pt"
        synchronous, stalls, written = [], [], []
        with checkpoint.Writer() as writer:
            for _ in range(args.rounds + 1):
                started = time.perf_counter()
                checkpoint.save(last, paths[0])
                checkpoint.save(best, paths[1])
                synchronous.append(time.perf_counter() - started)

                started = time.perf_counter()
                writer.save({paths[0]: last, paths[1]: best})
                stalls.append(time.perf_counter() - started)
                writer.wait()
                written.append(time.perf_counter() - started)
        size_gb = sum(p.stat().st_size for p in paths) / 1e9

    stall, baseline = statistics.median(stalls[1:]), statistics.median(synchronous[1:])
    print(f"checkpoint of {args.variant} at the paper's size: {params / 1e6:.1f} M parameters, "
          f"{size_gb:.2f} GB (last.pt + best.pt), median of {args.rounds} rounds")
    print(f"  baseline, written in the training's thread: {baseline:.2f} s the other ranks wait")
    print(f"  writer: {stall:.2f} s the other ranks wait (the snapshot), written after "
          f"{statistics.median(written[1:]):.2f} s in the background; the first round: {stalls[0]:.2f} s "
          f"against {synchronous[0]:.2f} s")
    verdict = "ok" if stall / baseline < 0.5 else "ABOVE TARGET"
    print(f"  ratio {stall / baseline:.2f} (target < 0.5: {verdict}); load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
