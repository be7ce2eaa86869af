"""Training steps with the project's allocator settings (`pipeline.allocator`: freed memory kept,
2 MB pages for large tensors) against glibc's and torch's defaults, measured in the same run.

    python benchmarks/allocator.py [--variant base --variant umx --variant large] [--steps 20] [--rounds 3]

The settings act from a process's first allocation, so each arm is a fresh process, the arms
alternating: it builds the variant's models from the seed, takes one warm-up step and times
`--steps` steps of every model side by side, as the study trains them. Both arms must end with
equal losses. Printed per variant: the median seconds, page faults a step and peak resident
memory of each arm. Target: the variants' summed time >= 1.1x. Run it alone on the machine: it
prints the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.prepared import prepared_data  # noqa: E402
from pipeline import config, runtime  # noqa: E402
from pipeline.allocator import keep_freed_memory  # noqa: E402

TARGET = 1.1
ARMS = ("defaults", "project")


def measure(params: str, variant: str, steps: int) -> dict:
    """In this process: `steps` steps of the variant's models after one warm-up step."""
    import torch

    from pipeline.data.manifest import load_manifest
    from pipeline.data.sampler import training_store
    from pipeline.specs import separator_specs
    from pipeline.training import loop
    from pipeline.training.slot import make_slot

    study = config.load(params)
    cfg = config.resolve(study, variant, study.seed)
    manifest = load_manifest()
    store = training_store(cfg, manifest)
    cpu = torch.device("cpu")
    slots = [make_slot(cfg, spec, manifest, store, cpu, i) for i, spec in enumerate(separator_specs(cfg))]
    loop.train_steps(slots, cfg, 0, cpu, 1, "warm-up")
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    reached = loop.train_steps(slots, cfg, 1, cpu, steps, "steps")
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": seconds, "faults_per_step": (usage.ru_minflt - faults) / steps,
            "peak_rss_gb": usage.ru_maxrss / 2**20, "losses": [x for r in reached.values() for x in r["losses"]]}


def run_arm(arm: str, params: str, variant: str, steps: int) -> dict:
    """One arm in a fresh process, in this working directory (the prepared data)."""
    env = {**os.environ, "CODECARBON_LOG_LEVEL": "error"}
    if arm == "defaults":
        env["THP_MEM_ALLOC_ENABLE"] = "0"
    done = subprocess.run([sys.executable, str(SCRIPT), "--arm", arm, "--params", params, "--variant", variant,
                           "--steps", str(steps)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", help="repeatable (default: base, umx, large)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # a child process: one measurement
    args = parser.parse_args()
    variants = args.variant or ["base", "umx", "large"]
    args.params = str(Path(args.params).resolve())  # the children run where the prepared data is

    if args.arm:
        if args.arm == "project":
            assert keep_freed_memory(), "glibc's settings were not applied"
        print(json.dumps(measure(args.params, variants[0], args.steps)))
        return

    print(f"load average before: {os.getloadavg()[0]:.2f}; {runtime.cores()} cores; {', '.join(variants)} of "
          f"{args.params}, {args.steps} steps of each model, {args.rounds} rounds (median), arms alternating")
    totals = dict.fromkeys(ARMS, 0.0)
    with prepared_data(args.params):
        for variant in variants:
            found = {arm: [] for arm in ARMS}
            for _ in range(args.rounds):
                for arm in ARMS:
                    found[arm].append(run_arm(arm, args.params, variant, args.steps))
            assert all(r["losses"] == found["defaults"][0]["losses"] for rs in found.values() for r in rs), \
                f"{variant}: the arms' losses differ"
            row = {}
            for arm in ARMS:
                seconds = statistics.median(r["seconds"] for r in found[arm])
                totals[arm] += seconds
                row[arm] = (f"{seconds:6.2f} s, {statistics.median(r['faults_per_step'] for r in found[arm]):8.0f} "
                            f"faults a step, peak {max(r['peak_rss_gb'] for r in found[arm]):.2f} GB")
            ratio = statistics.median(d["seconds"] for d in found["defaults"]) / statistics.median(
                p["seconds"] for p in found["project"])
            print(f"  {variant:>8}: defaults {row['defaults']}  project {row['project']}  ratio {ratio:4.2f}x")
    ratio = totals["defaults"] / totals["project"]
    ok = ratio >= TARGET
    print(f"  together: defaults {totals['defaults']:.2f} s  project {totals['project']:.2f} s  ratio {ratio:4.2f}x  "
          f"target >= {TARGET:.1f}x: {'ok' if ok else 'BELOW TARGET'}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
