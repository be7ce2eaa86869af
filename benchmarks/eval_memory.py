"""Peak memory of evaluating one 4-minute track as `evaluate` and `bounds` do on the CPU: the
oracle IRM and BSSEval scoring alone, and a track of each row (mixture, oracle IRM, a model).

    python benchmarks/eval_memory.py [--seconds 240] [--rows irm,score,mixture,oracle,model]
                                     [--impl before,after] [--hop 512]

The track: four stereo sources at 44.1 kHz (noise through a different one-pole filter each, with
slow envelopes; vocals silent for their first 2 s) and their sum. Each figure comes from a fresh
process on one torch thread with the CLI's allocator settings (`pipeline.allocator`), as
`runtime.side_by_side` runs a track:
- `irm`: `oracle_irm` alone on the float32 track in memory, at params.yaml's STFT (`--hop 512`:
  the paper's);
- `score`: `score_track` alone (uSDR and BSSEval v4 with params.yaml's backend) of the IRM's
  estimates in memory;
- `mixture`, `oracle`, `model`: the stage's whole work on the track (`evaluate._score_all` on a
  one-track manifest: its stems read from 16-bit WAV files, the row's estimate, its scores, its
  JSON); `model` is params.yaml's base variant, untrained.
Working memory: the peak resident set size (VmHWM, reset through /proc/self/clear_refs) minus the
resident size once the imports (and for `irm` and `score` their inputs) are loaded. A track's
peak adds those inputs; the last column divides it by the track's channel-samples.

Baseline, measured in the same run (`--impl before`): `pipeline/evaluation/bounds.py`,
`evaluation/metrics.py`, `inference/separate.py` and `stages/evaluate.py` at d70ed5a, loaded from
git: the oracle IRM on every source's float64 spectra at once, uSDR on float64 copies of the
whole track, a copy of the estimates per model and three more, the stems held beside the stacked
references. No target: the figures size `pipeline.stages.evaluate.TRACK_BYTES`. The baseline's
oracle IRM needs about 7 GB for a 4-minute track: run it alone on the machine; it prints the load
average.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bsseval import _peak_mib, _reset_peak, _rss_mib  # noqa: E402

ROWS = ("irm", "score", "mixture", "oracle", "model")
IMPLS = ("before", "after")
SAMPLE_RATE = 44100
BASELINE = "d70ed5a"  # the commit whose bounds, metrics and inference modules are the baseline


def make_track(seconds: float, seed: int = 0) -> np.ndarray:
    """Four stereo sources (4, 2, samples) float32: noise through a one-pole filter each (lows to
    highs), times a slow envelope; the first source silent for 2 s."""
    import scipy.signal

    rng = np.random.default_rng(seed)
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    sources = np.empty((4, 2, n), dtype=np.float32)
    for j, pole in enumerate((0.9, 0.98, -0.5, 0.3)):
        envelope = 0.3 + np.abs(np.sin(2 * np.pi * (0.15 + 0.1 * j) * t + rng.uniform(0, np.pi)))
        for c in range(2):
            sources[j, c] = 0.1 * (1 - abs(pole)) * envelope * scipy.signal.lfilter([1.0], [1.0, -pole],
                                                                                      rng.standard_normal(n))
    sources[0, :, :2 * SAMPLE_RATE] = 0.0
    return sources


# ------------------------------------------------------------------------------ the baseline
def _module_at(commit: str, path: str):
    """The module at `path` as it was at `commit` (from git), importing today's other modules."""
    import importlib.util

    source = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout
    spec = importlib.util.spec_from_loader(f"{BASELINE}_{Path(path).stem}", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{commit}:{path}", "exec"), module.__dict__)
    return module


# ------------------------------------------------------------------------------ worker side
def worker(row: str, impl: str, data: Path, out: Path, hop: int) -> None:
    from pipeline.allocator import keep_freed_memory

    keep_freed_memory()  # as the CLI, before torch's first allocation
    import torch

    from pipeline import config
    from pipeline.data.manifest import Manifest, Track

    if impl == "before":
        bounds, metrics, inference, evaluate = (
            _module_at(BASELINE, f"pipeline/{path}.py")
            for path in ("evaluation/bounds", "evaluation/metrics", "inference/separate", "stages/evaluate"))
        evaluate.score_track = metrics.score_track  # the baseline's, not today's module's
    else:
        from pipeline.evaluation import bounds, metrics
        from pipeline.inference import separate as inference
        from pipeline.stages import evaluate

    torch.set_num_threads(1)  # as `runtime.side_by_side` runs each track on the CPU
    study = config.load(REPO / "params.yaml")
    n_fft, hop = study.stft.n_fft, hop or study.stft.hop
    models = []
    if row == "model":
        from model import build_separator
        from pipeline.specs import separator_specs

        torch.manual_seed(0)
        models = [build_separator(spec).eval() for spec in separator_specs(config.resolve(study, "base"))]
    estimators = {
        "mixture": bounds.mixture_estimates,
        "oracle": lambda mixture, references: bounds.oracle_irm(mixture, references, n_fft, hop),
        "model": lambda mixture, references: inference.estimate(models, torch.from_numpy(mixture), study.eval,
                                                                SAMPLE_RATE).numpy(),
    }
    sources = mixture = estimates = None
    if row in ("irm", "score"):  # the pieces, on the track in memory
        sources = np.load(data / "sources.npy")
        mixture = sources.sum(axis=0)
        estimates = np.load(data / "estimates.npy") if row == "score" else None
    else:  # the stage's work on a track, its stems read from WAV files
        track = Track("track", "test", "test/track", int(np.load(data / "sources.npy", mmap_mode="r").shape[-1]))
        manifest = Manifest("musdb18hq", data / "musdb", SAMPLE_RATE, 2, (track,), "0" * 16)
        (data / f"{row}-{impl}").mkdir()
    inputs = sum(a.nbytes for a in (sources, mixture, estimates) if a is not None) / 2**20  # held by the stage too

    before = _rss_mib()
    exact = _reset_peak()
    if row == "irm":
        estimates = bounds.oracle_irm(mixture, sources, n_fft, hop)
    elif row == "score":
        metrics.score_track(sources, estimates, study.targets, SAMPLE_RATE, backend=study.eval.bsseval)
    else:
        evaluate._score_all(study, row, manifest, estimators[row], torch.device("cpu"), data / f"{row}-{impl}")
    peak = _peak_mib()
    if row == "irm":
        np.save(data / "estimates.npy", estimates)  # for the score row
    out.write_text(json.dumps({"working_mib": peak - before, "inputs_mib": inputs, "exact_peak": exact}))


# ------------------------------------------------------------------------------ parent side
def _run_worker(row: str, impl: str, folder: Path, hop: int) -> dict:
    out = folder / f"{row}-{impl}.json"
    cmd = [sys.executable, str(SCRIPT), "--worker", row, "--impl", impl, "--data", str(folder), "--out", str(out),
           "--hop", str(hop)]
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(out.read_text())


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=240.0, help="the track's length")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to measure")
    parser.add_argument("--impl", default=",".join(IMPLS), help="before, after or both")
    parser.add_argument("--hop", type=int, default=0, help="the oracle IRM's STFT hop (default: params.yaml's)")
    parser.add_argument("--worker", choices=ROWS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)  # the parent's folder
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.impl, args.data, args.out, args.hop)
        return 0
    rows = [r for r in args.rows.split(",") if r]
    impls = [i for i in args.impl.split(",") if i]
    if set(rows) - set(ROWS) or set(impls) - set(IMPLS):
        parser.error(f"--rows: some of {', '.join(ROWS)}; --impl: some of {', '.join(IMPLS)}")

    from pipeline import config
    from pipeline.data.audio import write_wav
    from pipeline.names import TARGETS

    study = config.load(REPO / "params.yaml")
    hop = args.hop or study.stft.hop
    load_start = os.getloadavg()
    print(f"{args.seconds:g} s of four stereo sources at {SAMPLE_RATE} Hz; STFT {study.stft.n_fft}/{hop}, "
          f"BSSEval {study.eval.bsseval}; {_cpu_model()}, {os.cpu_count()} CPUs, load average {load_start[0]:.2f}",
          flush=True)
    print(f"{'row':<8} {'impl':<7} {'working MiB':>11} {'track peak MiB':>14} {'bytes/sample':>12}", flush=True)
    with tempfile.TemporaryDirectory(prefix="eval-memory-") as tmp:
        folder = Path(tmp)
        sources = make_track(args.seconds)
        channel_samples = sources.shape[1] * sources.shape[2]
        np.save(folder / "sources.npy", sources)
        for name, audio in zip(("mixture", *TARGETS), (sources.sum(axis=0), *sources)):
            write_wav(folder / "musdb" / "test" / "track" / f"{name}.wav", audio, SAMPLE_RATE)  # 16 bits
        del sources
        if "score" in rows and "irm" not in rows:
            rows.append("irm")  # the oracle's estimates to score
        for row in [r for r in ROWS if r in rows]:
            for impl in impls:
                stats = _run_worker(row, impl, folder, hop)
                peak = stats["working_mib"] + stats["inputs_mib"]
                print(f"{row:<8} {impl:<7} {stats['working_mib']:11.0f} {peak:14.0f} "
                      f"{peak * 2**20 / channel_samples:12.1f}", flush=True)
                if not stats["exact_peak"]:
                    print("  note: /proc/self/clear_refs not writable: the peak is the process's lifetime maximum")
    load_end = os.getloadavg()
    print(f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end (others' memory use does not "
          f"change these figures; their CPU use only the time they take)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
