"""Benchmark: museval's BSSEval v4 against sepcost's default path (`pipeline.evaluation.bsseval`, torch),
on several kinds of signal in one run.

Each kind is one track of four stereo targets at 44.1 kHz, with estimates = the references through
short random filters + interference from the other targets + noise:
- `noise`: broadband noise through random filters with amplitude envelopes, vocals silent for 2 s;
- `harmonic`: a built-in synthetic song (harmonic voice, bass and chords, drums; rests where the
  arrangement has them), rounded to 16 bits as MUSDB18-HQ and the synthetic set are;
- `mostly_silent`: that song with vocals, bass and drums each silent for 60-65 % of it, overlapping
  for a quarter (museval leaves a frame NaN for every target when one reference is silent in it);
- `panned`: every target a mono source panned to stereo, then rounded to 16 bits (its channels
  proportional but for the rounding: the references' correlation matrix is nearly singular);
- `long`: the harmonic kind over 4 minutes (a song's length).
Each method runs in its own subprocess per kind, so that time and peak memory are per method. A
row per kind prints both times, the speed ratio, the working-memory ratio and the largest
difference in dB over the frames museval scores; the last line the worst kind's ratio against the
targets (>= 20x faster on the worst kind, <= 0.25x the memory, <= 0.01 dB, identical NaN frames).
museval runs through `bss_eval_v4(backend="museval")`: museval.metrics.bss_eval exactly as
museval.evaluate calls it (without evaluate's extra copies of the inputs).

Memory: each worker reports its peak resident set size (RSS) and the working memory of the call,
the peak RSS during the call minus the RSS just before it (after imports and data loading; the peak
is reset through /proc/self/clear_refs where Linux allows it). The memory target is checked on the
working memory: the processes' fixed footprints (torch's libraries, museval's pandas) are not the
method's.

    python benchmarks/bsseval.py [--seconds 30] [--long-seconds 240] [--kinds noise,harmonic,...]
                                 [--repeat 3] [--device cpu]
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


KINDS = ("noise", "harmonic", "mostly_silent", "panned", "long")


def _estimates(refs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each reference through a short random filter, plus 15 % of the other targets and noise at
    -26 dB of the target's level."""
    import scipy.signal

    ests = np.empty_like(refs)
    mix = refs.sum(axis=0)
    for j in range(refs.shape[0]):
        level = float(np.sqrt(np.mean(refs[j].astype(np.float64) ** 2)))
        for c in range(refs.shape[1]):
            taps = np.r_[1.0, 0.2 * rng.standard_normal(15)]
            ests[j, c] = (scipy.signal.lfilter(taps, [1.0], refs[j, c]) + 0.15 * (mix[c] - refs[j, c])
                          + 0.05 * level * rng.standard_normal(refs.shape[2]))
    return ests


def _noise(seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    import scipy.signal

    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    refs = np.empty((4, 2, n), dtype=np.float32)
    for j in range(4):
        envelope = 0.3 + np.abs(np.sin(2 * np.pi * (0.15 + 0.1 * j) * t + rng.uniform(0, np.pi)))
        for c in range(2):
            taps = rng.standard_normal(48) * np.exp(-np.arange(48) / rng.uniform(3, 20))
            refs[j, c] = scipy.signal.lfilter(taps, [1.0], rng.standard_normal(n)) * envelope
    refs[0, :, :2 * sample_rate] = 0.0  # an intro without vocals: museval gives NaN frames there
    return refs


def _song(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """A built-in synthetic song's stems, rounded to 16 bits."""
    from pipeline.names import TARGETS
    from pipeline.synth.song import render_song

    stems = render_song(seed, sample_rate, seconds)
    return (np.round(np.stack([stems[t] for t in TARGETS]) * 32767) / 32767).astype(np.float32)


def make_track(kind: str, seconds: float, sample_rate: int = 44100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """References and estimates (4 targets, 2 channels, samples) float32 of one `kind` (KINDS),
    deterministic for `seed`."""
    rng = np.random.default_rng(seed)
    if kind == "noise":
        refs = _noise(seconds, sample_rate, rng)
    elif kind in ("harmonic", "long"):
        refs = _song(seconds, sample_rate, seed + 1)
    elif kind == "mostly_silent":
        refs = _song(seconds, sample_rate, seed + 1)
        n = refs.shape[2]
        for j, (start, stop) in enumerate(((0.25, 0.6), (0.35, 0.65), (0.3, 0.7))):  # vocals, bass, drums
            keep = np.zeros(n, dtype=bool)
            keep[int(start * n):int(stop * n)] = True
            refs[j, :, ~keep] = 0.0
    elif kind == "panned":
        mono = _song(seconds, sample_rate, seed + 1).mean(axis=1)
        pans = rng.uniform(0.1, 0.9, size=4)
        panned = np.stack([np.stack([np.sqrt(1 - p) * x, np.sqrt(p) * x]) for p, x in zip(pans, mono)])
        refs = np.round(panned * 32767) / 32767  # stems on disk: 16 bits after the panning
    else:
        raise ValueError(f"unknown signal kind {kind!r}, expected one of {', '.join(KINDS)}")
    return refs.astype(np.float32), _estimates(refs, rng).astype(np.float32)


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


def _cell(stats: dict) -> str:
    return f"{min(stats['times_s']):7.2f} s  {stats['working_mib']:7.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of every kind but `long`")
    parser.add_argument("--long-seconds", type=float, default=240.0, help="length of the `long` kind")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds to run")
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
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"--kinds: unknown {', '.join(unknown)}; expected some of {', '.join(KINDS)}")

    load_start = os.getloadavg()
    print(f"four stereo targets at {args.sample_rate} Hz; torch path on {args.device}, best of {args.repeat}; "
          f"{os.cpu_count()} CPUs, load average {load_start[0]:.2f}", flush=True)
    print(f"{'kind':<14} {'seconds':>7}  {'museval time, memory':>22}  {'torch time, memory':>22}  "
          f"{'speed':>7}  {'memory':>7}  {'largest diff':>12}  NaN frames", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bsseval-bench-") as tmp:
        folder = Path(tmp)
        for kind in kinds:
            seconds = args.long_seconds if kind == "long" else args.seconds
            refs, ests = make_track(kind, seconds, args.sample_rate, args.seed)
            data = folder / f"{kind}.npz"
            np.savez(data, refs=refs, ests=ests, sample_rate=args.sample_rate)
            del refs, ests
            mus_stats, mus_scores = _run_worker("museval", data, folder, 1, args.device)
            fast_stats, fast_scores = _run_worker("torch", data, folder, args.repeat, args.device)
            speed = min(mus_stats["times_s"]) / min(fast_stats["times_s"])
            memory = fast_stats["working_mib"] / mus_stats["working_mib"]
            worst, same_nan = largest_difference(fast_scores, mus_scores)
            n_nan = int(np.isnan(mus_scores["sdr"]).sum())
            results[kind] = (speed, memory, worst, same_nan)
            print(f"{kind:<14} {seconds:7g}  {_cell(mus_stats):>22}  {_cell(fast_stats):>22}  "
                  f"{speed:6.1f}x  {memory:6.3f}x  {worst:9.2e} dB  {n_nan} of {mus_scores['sdr'].size}, "
                  f"identical: {same_nan}", flush=True)
            if not mus_stats["exact_peak"]:
                print("  note: /proc/self/clear_refs not writable: peaks are process-lifetime maxima")
    load_end = os.getloadavg()

    verdict = lambda ok: "ok" if ok else "MISSED"  # noqa: E731
    slowest = min(results, key=lambda k: results[k][0])
    speed = results[slowest][0]
    memory = max(r[1] for r in results.values())
    worst = max(r[2] for r in results.values())
    same_nan = all(r[3] for r in results.values())
    print(f"worst speed    {speed:7.1f}x on {slowest} (target >= {GOALS['speed']:g}x)  {verdict(speed >= GOALS['speed'])}")
    print(f"worst memory   {memory:7.3f}x   (target <= {GOALS['memory']:g}x, working memory)  "
          f"{verdict(memory <= GOALS['memory'])}")
    print(f"largest diff   {worst:.2e} dB (target <= {GOALS['db']:g} dB over the frames museval scores; "
          f"NaN frames identical: {same_nan})  {verdict(worst <= GOALS['db'] and same_nan)}")
    print(f"load average   {load_start[0]:.2f} at start, {load_end[0]:.2f} at end "
          f"(timings are only comparable on an otherwise idle machine)")
    ok = speed >= GOALS["speed"] and memory <= GOALS["memory"] and worst <= GOALS["db"] and same_nan
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
