"""Stage evaluate@<variant> and the reference rows (stage `bounds`): separate the test split, score it.

Each test track is separated with the shared whole-track inference (Open-Unmix optionally with its
Wiener post-filter), then scored with uSDR and BSSEval v4; on the CPU tracks are scored side by
side, no more at once than the cores and the memory available hold (`TRACK_BYTES`). Writes
per-track scores in museval's JSON schema under metrics/eval/<variant>/, the data-set figures in
metrics/eval/<variant>.json, and logs both with the evaluation's energy into an MLflow run of its
own, a child of the variant's training run, into which it copies the test scores. The
reference rows (`sepcost evaluate --bounds`) are the mixture itself as every estimate and the
oracle ideal ratio mask, computed once per study.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline import paths, tracking
from pipeline.atomic import replacing, write_json
from pipeline.checkpoint import load_models
from pipeline.config import Config, resolve
from pipeline.data.audio import load_stems, write_wav
from pipeline.data.manifest import Manifest, load_manifest
from pipeline.errors import UserError
from pipeline.evaluation.bounds import mixture_estimates, oracle_irm
from pipeline.evaluation.metrics import aggregate, museval_json, protocol, score_track, usdr
from pipeline.inference.separate import estimate
from pipeline.inference.streaming import is_causal, latency_samples, separate_streaming
from pipeline.names import (
    EVAL,
    EXECUTION_KEYS,
    METHODS,
    REFERENCE_ROWS,
    SEPARATION,
    SEPARATION_RTF,
    STREAMING,
    STREAMING_LATENCY_MS,
    STREAMING_RTF_MAX,
    TARGETS,
    kwh_key,
    score_key,
    separation_kwh_key,
    stage_name,
)
from pipeline.precision import require
from pipeline.runtime import gpu_ordinals, pick_device, side_by_side


# What an evaluation copies into its training's run, for the runs table: the test scores, the
# streaming mode's, and the cost of separating.
TEST_SCORES = ("usdr_", "csdr_", STREAMING, SEPARATION)
# The peak memory of scoring one track on the CPU, by BSSEval backend: a fixed part and bytes per
# sample of each channel. benchmarks/eval_memory.py measured a track's whole work on a 4-minute
# stereo track of four targets with the torch backend: at most 1235 MiB (61 bytes a
# channel-sample) with params.yaml's base models, 1127 MiB for the oracle IRM's row (1109 at the
# paper's hop of 512), 830 MiB for the mixture's; its stems and estimates, the oracle IRM's blocks
# or a model's batches of chunks, BSSEval's workspace (fixed: 110 MiB). museval's working memory
# grows with the track (benchmarks/bsseval.py at 30 s and 60 s: 540 MiB + 167 bytes a
# channel-sample). With a margin, it bounds how many tracks are scored side by side
# (`runtime.side_by_side`).
TRACK_BYTES = {"torch": (256 * 2**20, 64), "museval": (768 * 2**20, 240)}  # (fixed, per channel-sample)


def run(study: Config, variant: str, seed: int | None = None) -> dict:
    cfg = resolve(study, variant, seed)
    device = pick_device(cfg.runtime.device)
    require(cfg.params_file, "eval.precision", cfg.eval.precision, device)
    manifest = load_manifest()
    checkpoint = paths.model_dir(cfg.run) / "best.pt"
    if not checkpoint.exists():
        raise UserError(f"{checkpoint}: no trained model; "
                        f"run `sepcost train --variant {variant} --seed {cfg.seed}` first")
    models = load_models(checkpoint, device)

    def separate(mixture, references):
        return estimate(models, torch.from_numpy(mixture), cfg.eval, manifest.sample_rate).numpy()

    train_metrics = paths.train_metrics(cfg.run)
    run_id = json.loads(train_metrics.read_text()).get("mlflow_run_id") if train_metrics.exists() else None
    causal = is_causal(models)
    result = _tracked(cfg, cfg.run, stage_name("evaluate", cfg.run), run_id, manifest, device, lambda track_dir: {
        **_score_all(cfg, cfg.run, manifest, separate, device, track_dir),
        **(_streaming(cfg, models, manifest) if causal else {})})
    print(f"evaluate: {cfg.run}: test uSDR {result['usdr_avg']:.2f} dB, cSDR {result['csdr_avg']:.2f} dB "
          f"over {result['tracks']} tracks")
    if causal:
        print(f"evaluate: {cfg.run}: streaming, {result[STREAMING_LATENCY_MS]:.0f} ms latency: uSDR "
              f"{result[STREAMING + score_key('usdr')]:.2f} dB, real-time factor {result[STREAMING_RTF_MAX]:.3f} "
              "at worst")
    return result


def _streaming(cfg: Config, models: list, manifest: Manifest) -> dict:
    """Causal models separating the test tracks as a stream (`inference.streaming`): the latency,
    the real-time factor (a chunk's time over the audio it holds: mean, and worst chunk) and the uSDR."""
    frames, hop = cfg.eval.stream_frames, models[0].stft_module.hop
    per_track, times = {}, []
    for track in _test_tracks(cfg, manifest):
        stems = load_stems(manifest, track, ("mixture", *cfg.targets))
        estimates, seconds = separate_streaming(models, torch.from_numpy(stems["mixture"]), frames)
        per_track[track.name] = usdr(np.stack([stems[t] for t in cfg.targets]), estimates.numpy())
        times += seconds
    chunk_s = frames * hop / manifest.sample_rate
    scores = np.mean(list(per_track.values()), axis=0)
    return {f"{STREAMING}frames": frames,
            STREAMING_LATENCY_MS: 1000 * latency_samples(models[0], frames) / manifest.sample_rate,
            f"{STREAMING}rtf_mean": float(np.mean(times)) / chunk_s, STREAMING_RTF_MAX: float(np.max(times)) / chunk_s,
            **{STREAMING + score_key("usdr", t): float(v) for t, v in zip(cfg.targets, scores)},
            STREAMING + score_key("usdr"): float(np.mean(scores))}


def run_bounds(study: Config) -> dict:
    """The mixture and oracle-IRM rows, computed once per study."""
    manifest = load_manifest()
    stft = study.stft
    estimators = {
        "mixture": mixture_estimates,
        "oracle_irm": lambda mixture, references: oracle_irm(mixture, references, stft.n_fft, stft.hop),
    }
    # the oracle's masks share each bin among every source, whatever the study's targets
    given = {"mixture": study.targets, "oracle_irm": TARGETS}
    results, cpu = {}, torch.device("cpu")  # the reference rows need no model: they run on the CPU
    for name in REFERENCE_ROWS:
        stage = stage_name("evaluate", name)
        results[name] = _tracked(study, name, stage, None, manifest, cpu, lambda track_dir, name=name:
                                 _score_all(study, name, manifest, estimators[name], cpu, track_dir, given[name]))
        scores = results[name]
        print(f"evaluate: {name}: test uSDR {scores['usdr_avg']:.2f} dB, cSDR {scores['csdr_avg']:.2f} dB")
    return results


def _test_tracks(cfg: Config, manifest: Manifest):
    tracks = manifest.split("test")
    if cfg.eval.test_tracks:
        tracks = tracks[: cfg.eval.test_tracks]
    if not tracks:
        raise UserError(f"{paths.MANIFEST}: no test tracks to evaluate on")
    return tracks


def _score_all(cfg: Config, name: str, manifest: Manifest, estimate_fn, device: torch.device, track_dir: Path,
               sources: tuple[str, ...] | None = None) -> dict:
    """Separate and score every test track, writing each track's scores into `track_dir`; the
    data-set figures. `estimate_fn(mixture, stems)` is given the stems of `sources` (default: the
    study's targets, which are scored, and which `sources` must include) and estimates each one."""
    sources = sources or cfg.targets
    scored = [sources.index(t) for t in cfg.targets]

    def score(track) -> tuple[dict, float, float]:
        stems = load_stems(manifest, track, ("mixture", *sources))
        given = np.stack([stems.pop(s) for s in sources])  # the stems go: one copy held
        started = time.perf_counter()
        estimates, references = estimate_fn(stems["mixture"], given), given
        if len(sources) > len(scored):  # only the scored ones kept (a copy of those alone)
            estimates, references = estimates[scored], references[scored]
        separated = time.perf_counter()
        summary, frames = score_track(references, estimates, cfg.targets, manifest.sample_rate,
                                      backend=cfg.eval.bsseval, device=device)
        (track_dir / f"{track.name}.json").write_text(
            json.dumps(museval_json(frames, cfg.targets, cfg.eval.bsseval), indent=1))
        if cfg.eval.write_estimates:
            for target, audio in zip(cfg.targets, estimates):
                write_wav(paths.estimates_dir(name) / track.name / f"{target}.wav", audio, manifest.sample_rate)
        return summary, separated - started, time.perf_counter() - separated

    tracks = _test_tracks(cfg, manifest)
    fixed, per_sample = TRACK_BYTES[cfg.eval.bsseval]
    track_bytes = fixed + per_sample * manifest.channels * max(t.frames for t in tracks)
    with side_by_side(len(tracks), device, cfg.runtime.threads, track_bytes) as (pool, _):
        done = list(tqdm(pool.map(score, tracks), total=len(tracks), desc=f"evaluate {name}", unit="track"))
    scores = {track.name: summary for track, (summary, _, _) in zip(tracks, done)}
    separation_s, scoring_s = sum(d[1] for d in done), sum(d[2] for d in done)
    audio_s = sum(t.frames for t in tracks) / manifest.sample_rate
    return {"variant": cfg.variant or name, "seed": cfg.seed, "run": name, "tracks": len(scores),
            **aggregate(scores, cfg.targets),
            "protocol": protocol(cfg.eval, cfg.eval.bsseval, manifest.source, manifest.digest, len(tracks)),
            # the cost of separating: thread-seconds per second of audio (each track on one thread)
            "audio_s": audio_s, "separation_s": separation_s, "scoring_s": scoring_s,
            SEPARATION_RTF: separation_s / audio_s}


def _tracked(cfg: Config, name: str, stage: str, training_run: str | None, manifest: Manifest,
             device: torch.device, work) -> dict:
    """Run `work(track_dir)` on `device` inside an energy meter and an MLflow run (a child of the
    training's run, into which the scores are copied); write metrics/eval/<name>.json.

    The per-track folder appears whole when the evaluation ends, and the old results are removed
    first: a failed evaluation leaves none that would look current."""
    paths.eval_metrics(name).unlink(missing_ok=True)
    with replacing(paths.eval_tracks(name), discard_old=True) as track_dir:
        track_dir.mkdir()
        run_name = f"{name}-evaluate" if training_run else name
        with tracking.metered(cfg, stage, track_dir, run_name=run_name, parent=training_run,
                              prefix=EVAL, gpus=gpu_ordinals(device)) as (mlrun, meter):
            mlrun.log_dataset(**manifest.dataset(), context="evaluation")
            result = work(track_dir)
            totals = meter.totals()
            result.update({f"{EVAL}{k}": totals[k] for k in EXECUTION_KEYS})
            # the evaluation's energy in the separation's share of its thread time, per minute of audio
            share = result["separation_s"] / max(result["separation_s"] + result["scoring_s"], 1e-9)
            result.update({separation_kwh_key(m): totals[kwh_key(m)] * share / (result["audio_s"] / 60)
                           for m in METHODS})
            result["mlflow_run_id"] = mlrun.run_id
            mlrun.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float))})
            write_json(paths.eval_metrics(name), result)
            mlrun.log_artifact(paths.eval_metrics(name))
    tracking.log_to(cfg.tracking, training_run, {k: v for k, v in result.items() if k.startswith(TEST_SCORES)
                                                 and isinstance(v, (int, float))},
                    {"evaluation_run_id": result["mlflow_run_id"]})
    return result
