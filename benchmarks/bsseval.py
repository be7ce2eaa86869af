"""Benchmark: museval's BSSEval v4 against sepcost's default path (`pipeline.evaluation.bsseval`, torch).

One run scores the same generated track (30 s, 44.1 kHz, stereo, four targets: broadband noise
through different random filters with amplitude envelopes, the first two seconds of vocals silent;
estimates = filtered references + interference from the other targets + noise) with both methods,
each in its own subprocess so that time and peak memory are per method, and prints time, peak
memory, the speed ratio, the memory ratio and the largest difference in dB over the frames museval
scores, against the targets (>= 20x faster, <= 0.25x the memory, <= 0.01 dB, identical NaN frames).
museval runs through `bss_eval_v4(backend="museval")`: museval.metrics.bss_eval exactly as
museval.evaluate calls it (without evaluate's extra copies of the inputs).

Memory: each worker reports its peak resident set size (RSS) and the working memory of the call,
the peak RSS during the call minus the RSS just before it (after imports and data loading; the peak
is reset through /proc/self/clear_refs where Linux allows it). The memory target is checked on the
working memory: the processes' fixed footprints (torch's libraries, museval's pandas) are not the
method's. Both figures are printed.

    python benchmarks/bsseval.py [--seconds 30] [--repeat 3] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GOALS = {"speed": 20.0, "memory": 0.25, "db": 0.01}


def make_track(seconds: float, sample_rate: int = 44100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """References and estimates (4 targets, 2 channels, samples) float32, deterministic for `seed`."""
    import scipy.signal

    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    refs = np.empty((4, 2, n), dtype=np.float32)
    for j in range(4):
        envelope = 0.3 + np.abs(np.sin(2 * np.pi * (0.15 + 0.1 * j) * t + rng.uniform(0, np.pi)))
        for c in range(2):
            taps = rng.standard_normal(48) * np.exp(-np.arange(48) / rng.uniform(3, 20))
            refs[j, c] = scipy.signal.lfilter(taps, [1.0], rng.standard_normal(n)) * envelope
    refs[0, :, :2 * sample_rate] = 0.0  # an intro without vocals: museval gives NaN frames there
    ests = np.empty_like(refs)
    mix = refs.sum(axis=0)
    for j in range(4):
        for c in range(2):
            taps = np.r_[1.0, 0.2 * rng.standard_normal(15)]
            ests[j, c] = (scipy.signal.lfilter(taps, [1.0], refs[j, c]) + 0.15 * (mix[c] - refs[j, c])
                          + 0.05 * rng.standard_normal(n))
    return refs, ests


# ------------------------------------------------------------------------------ worker side
def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(method: str, data: Path, out: Path, repeat: int, device: str) -> None:
    from pipeline.evaluation.bsseval import bss_eval_v4  # imports before the baseline: not the method's memory

    if method == "museval":
        import museval.metrics  # noqa: F401
    with np.load(data) as f:
        refs, ests, sample_rate = f["refs"], f["ests"], int(f["sample_rate"])
    backend = "museval" if method == "museval" else "torch"
    before = _rss_mib()
    exact_peak = _reset_peak()
    times = []
    for _ in range(1 if method == "museval" else repeat):
        start = time.perf_counter()
        scores = bss_eval_v4(refs, ests, sample_rate, backend=backend, device=device)
        times.append(time.perf_counter() - start)
    peak = _peak_mib()
    np.savez(out.with_suffix(".npz"), **scores)
    out.write_text(json.dumps({
        "times_s": times, "rss_before_mib": before, "peak_rss_mib": peak,
        "working_mib": peak - before, "exact_peak": exact_peak,
    }))


# ------------------------------------------------------------------------------ parent side
def _run_worker(method: str, data: Path, folder: Path, repeat: int, device: str) -> tuple[dict, dict]:
    out = folder / f"{method}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--data", str(data),
           "--out", str(out), "--repeat", str(repeat), "--device", device]
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    stats = json.loads(out.read_text())
    with np.load(out.with_suffix(".npz")) as f:
        scores = {k: f[k] for k in f.files}
    return stats, scores


def largest_difference(scores: dict, reference: dict) -> tuple[float, bool]:
    """Largest |difference| in dB over the frames the reference scores (finite there), and whether
    NaN positions (and infinities) agree."""
    worst, same = 0.0, True
    for key, ref in reference.items():
        got = scores[key]
        same &= bool(np.array_equal(np.isnan(got), np.isnan(ref)))
        same &= bool(np.array_equal(np.isposinf(got), np.isposinf(ref)))
        finite = np.isfinite(ref) & np.isfinite(got)
        if finite.any():
            worst = max(worst, float(np.abs(got[finite] - ref[finite]).max()))
    return worst, same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the torch path (best time counts)")
    parser.add_argument("--device", default="cpu", help="device of the torch path")
    parser.add_argument("--worker", choices=("museval", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.data, args.out, args.repeat, args.device)
        return 0

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bsseval-bench-") as tmp:
        folder = Path(tmp)
        refs, ests = make_track(args.seconds, args.sample_rate, args.seed)
        data = folder / "track.npz"
        np.savez(data, refs=refs, ests=ests, sample_rate=args.sample_rate)
        print(f"track: {args.seconds:g} s at {args.sample_rate} Hz, {refs.shape[0]} targets x "
              f"{refs.shape[1]} channels; torch path on {args.device}, best of {args.repeat}; "
              f"{os.cpu_count()} CPUs, load average {load_start[0]:.2f}", flush=True)
        mus_stats, mus_scores = _run_worker("museval", data, folder, 1, args.device)
        fast_stats, fast_scores = _run_worker("torch", data, folder, args.repeat, args.device)
    load_end = os.getloadavg()

    mus_time, fast_time = min(mus_stats["times_s"]), min(fast_stats["times_s"])
    speed = mus_time / fast_time
    memory = fast_stats["working_mib"] / mus_stats["working_mib"]
    memory_total = fast_stats["peak_rss_mib"] / mus_stats["peak_rss_mib"]
    worst, same_nan = largest_difference(fast_scores, mus_scores)
    n_nan = int(np.isnan(mus_scores["sdr"]).sum())

    def row(name, stats):
        runs = ", ".join(f"{t:.2f}" for t in stats["times_s"])
        return (f"{name:<8} time {min(stats['times_s']):7.2f} s (runs: {runs})   working memory "
                f"{stats['working_mib']:7.1f} MiB   peak RSS {stats['peak_rss_mib']:7.1f} MiB")

    print(row("museval", mus_stats))
    print(row("torch", fast_stats))
    verdict = lambda ok: "ok" if ok else "MISSED"  # noqa: E731
    print(f"speed ratio    {speed:7.1f}x   (target >= {GOALS['speed']:g}x)  {verdict(speed >= GOALS['speed'])}")
    print(f"memory ratio   {memory:7.3f}x   (target <= {GOALS['memory']:g}x, working memory; "
          f"peak RSS ratio {memory_total:.3f}x)  {verdict(memory <= GOALS['memory'])}")
    print(f"largest diff   {worst:.2e} dB (target <= {GOALS['db']:g} dB over the frames museval scores; "
          f"{n_nan} NaN frames per metric, identical: {same_nan})  {verdict(worst <= GOALS['db'] and same_nan)}")
    print(f"load average   {load_start[0]:.2f} at start, {load_end[0]:.2f} at end "
          f"(timings are only comparable on an otherwise idle machine)")
    if not mus_stats["exact_peak"]:
        print("note: /proc/self/clear_refs not writable: peaks are process-lifetime maxima")
    ok = speed >= GOALS["speed"] and memory <= GOALS["memory"] and worst <= GOALS["db"] and same_nan
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
