"""How soon a training stopped by SIGTERM mid-step exits, against the bound measured in the same
run: one training step plus the checkpoint write (the time a stop must wait for).

    python benchmarks/preemption.py [--variant umx] [--size paper|study] [--rounds 3]

Each round trains the variant afresh in a temporary study (`--size paper`: the schema's paper
recipe and model sizes on the built-in synthetic data; `study`: params.yaml's CPU copy), waits for
a few steps, and sends SIGTERM at a random point of the next steps (so at a random point of a
step). The step is the one of the model in flight, from the checkpoint's progress; the write is
what the stop line reports. Target: the exit within the bound (ratio < 1) in every round. What
the exit adds to the step's end and the write (the MLflow run's close, the process's end) is
printed beside it. Run it alone on the machine: it prints the load average.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline import paths  # noqa: E402
from pipeline.checkpoint import load_state  # noqa: E402

WARM_STEPS = 3  # the first steps of a training are slower (allocations, caches)
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
BAR = re.compile(rb"epoch 1/\d+: *\d+%\|[^|]*\| *(\d+)/")


def study_params(size: str) -> dict:
    """params.yaml, or at the paper's size: its data and tracking only, every other key the schema's
    (the paper study's)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if size == "paper":
        params = {"data": params["data"], "tracking": params["tracking"]}
    return params


def sepcost(folder: Path, *argv: str) -> None:
    subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], cwd=folder, env=ENV, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def one_round(folder: Path, variant: str, rng: random.Random) -> dict:
    """A fresh training stopped by SIGTERM at a random point after its warm-up steps."""
    run = f"{variant}-seed42"
    shutil.rmtree(folder / paths.model_dir(run), ignore_errors=True)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "train", "--variant", variant], cwd=folder,
                            env={**ENV, "TQDM_MININTERVAL": "0"},  # the bar tells each step
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen, updates = b"", []  # (time, steps) of each bar update
    while len(updates) <= WARM_STEPS:
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            raise SystemExit(f"train {variant} ended before its steps: {seen[-2000:].decode(errors='replace')}")
        seen += chunk
        steps = [int(m) for m in BAR.findall(chunk)]
        if steps and steps[-1] > 0 and (not updates or steps[-1] > updates[-1][1]):
            updates.append((time.monotonic(), steps[-1]))
    between = (updates[-1][0] - updates[1][0]) / (updates[-1][1] - updates[1][1])  # the bar's time a step
    time.sleep(rng.uniform(0, 4 * between))  # several bar steps wide: any point of a model's step
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=600)
    exit_s = time.time() - sent
    if proc.returncode != 128 + signal.SIGTERM:
        raise SystemExit(f"train {variant} exited {proc.returncode}, expected {128 + signal.SIGTERM}")
    last = folder / paths.model_dir(run) / "last.pt"
    progress = load_state(last)["progress"]
    return {"exit": exit_s, "saved": last.stat().st_mtime - sent,
            "step": max(p["seconds"] / p["steps"] for p in progress.values() if p["steps"]),
            "write": float(re.search(rb"checkpoint written in ([0-9.]+) s", out).group(1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="umx")
    parser.add_argument("--size", choices=("paper", "study"), default="paper")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print(f"load average before: {os.getloadavg()[0]:.2f}; {args.variant} at the {args.size}'s size, "
          f"{args.rounds} rounds")
    folder = Path(tempfile.mkdtemp(prefix="sepcost-preemption-"))
    ok = True
    try:
        (folder / "params.yaml").write_text(yaml.safe_dump(study_params(args.size), sort_keys=False))
        for stage in ("prepare", "sad", "resolve"):
            sepcost(folder, stage)
        rng = random.Random(0)
        for k in range(args.rounds):
            r = one_round(folder, args.variant, rng)
            bound = r["step"] + r["write"]
            ok &= r["exit"] <= bound
            print(f"  round {k + 1}: SIGTERM to exit {r['exit']:6.2f} s  bound {bound:6.2f} s (step {r['step']:.2f} s "
                  f"+ write {r['write']:.2f} s)  ratio {r['exit'] / bound:4.2f}  "
                  f"{'within' if r['exit'] <= bound else 'OVER'}; checkpoint on disk at {r['saved']:.2f} s, "
                  f"close and process end {r['exit'] - r['saved']:.2f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
