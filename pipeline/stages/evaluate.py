"""Stage evaluate@<variant> and the reference rows (stage `bounds`): separate the test split, score it.

Each test track is separated with the shared whole-track inference (Open-Unmix optionally with its
Wiener post-filter), then scored with uSDR and BSSEval v4. Writes per-track scores in museval's
JSON schema under metrics/eval/<variant>/, the data-set figures in metrics/eval/<variant>.json,
and logs both with the evaluation's energy into the MLflow run of the variant's training. The
reference rows (`sepcost evaluate --bounds`) are the mixture itself as every estimate and the
oracle ideal ratio mask, computed once per study.
"""
from __future__ import annotations

import json
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
from pipeline.energy.meter import EnergyMeter
from pipeline.errors import UserError
from pipeline.evaluation.bounds import mixture_estimates, oracle_irm
from pipeline.evaluation.metrics import aggregate, museval_json, score_track
from pipeline.inference.separate import estimate
from pipeline.names import EVAL, EXECUTION_KEYS, REFERENCE_ROWS
from pipeline.runtime import pick_device, side_by_side


def run(study: Config, variant: str, seed: int | None = None) -> dict:
    cfg = resolve(study, variant, seed)
    device = pick_device(cfg.runtime.device)
    manifest = load_manifest()
    checkpoint = paths.model_dir(cfg.run) / "best.pt"
    if not checkpoint.exists():
        raise UserError(f"{checkpoint}: no trained model; run `sepcost train --variant {variant} --seed {cfg.seed}` first")
    models = load_models(checkpoint, device)

    def separate(mixture, references):
        return estimate(models, torch.from_numpy(mixture), cfg.eval, manifest.sample_rate, device).numpy()

    train_metrics = paths.train_metrics(cfg.run)
    run_id = json.loads(train_metrics.read_text()).get("mlflow_run_id") if train_metrics.exists() else None
    result = _tracked(cfg, cfg.run, f"evaluate@{cfg.run}", run_id,
                      lambda track_dir: _score_all(cfg, cfg.run, manifest, separate, device, track_dir))
    print(f"evaluate: {cfg.run}: test uSDR {result['usdr_avg']:.2f} dB, cSDR {result['csdr_avg']:.2f} dB "
          f"over {result['tracks']} tracks")
    return result


def run_bounds(study: Config) -> dict:
    """The mixture and oracle-IRM rows, computed once per study."""
    manifest = load_manifest()
    stft = study.stft
    estimators = {
        "mixture": mixture_estimates,
        "oracle_irm": lambda mixture, references: oracle_irm(mixture, references, stft.n_fft, stft.hop),
    }
    results = {}
    for name in REFERENCE_ROWS:
        results[name] = _tracked(study, name, f"evaluate@{name}", None, lambda track_dir, name=name: _score_all(
            study, name, manifest, estimators[name], torch.device("cpu"), track_dir))
        print(f"evaluate: {name}: test uSDR {results[name]['usdr_avg']:.2f} dB, cSDR {results[name]['csdr_avg']:.2f} dB")
    return results


def _test_tracks(cfg: Config, manifest: Manifest):
    tracks = manifest.split("test")
    if cfg.eval.test_tracks:
        tracks = tracks[: cfg.eval.test_tracks]
    if not tracks:
        raise UserError(f"{paths.MANIFEST}: no test tracks to evaluate on")
    return tracks


def _score_all(cfg: Config, name: str, manifest: Manifest, estimate_fn, device: torch.device, track_dir: Path) -> dict:
    """Separate and score every test track, writing each track's scores into `track_dir`; the
    data-set figures."""

    def score(track) -> dict:
        stems = load_stems(manifest, track, ("mixture", *cfg.targets))
        references = np.stack([stems[t] for t in cfg.targets])
        estimates = estimate_fn(stems["mixture"], references)
        summary, frames = score_track(references, estimates, cfg.targets, manifest.sample_rate,
                                      backend=cfg.eval.bsseval, device=device)
        (track_dir / f"{track.name}.json").write_text(json.dumps(museval_json(frames, cfg.targets), indent=1))
        if cfg.eval.write_estimates:
            for target, audio in zip(cfg.targets, estimates):
                write_wav(paths.estimates_dir(name) / track.name / f"{target}.wav", audio, manifest.sample_rate)
        return summary

    tracks = _test_tracks(cfg, manifest)
    with side_by_side(len(tracks), device, cfg.runtime.threads) as (pool, _):
        summaries = list(tqdm(pool.map(score, tracks), total=len(tracks), desc=f"evaluate {name}", unit="track"))
    scores = {track.name: summary for track, summary in zip(tracks, summaries)}
    return {"variant": cfg.variant or name, "seed": cfg.seed, "run": name, "tracks": len(scores),
            **aggregate(scores, cfg.targets)}


def _tracked(cfg: Config, name: str, stage: str, run_id, work) -> dict:
    """Run `work(track_dir)` inside an energy meter and the MLflow run; write metrics/eval/<name>.json.

    The per-track folder appears whole when the evaluation ends, and the old results are removed
    first: a failed evaluation leaves none that would look current."""
    paths.eval_metrics(name).unlink(missing_ok=True)
    tracking.configure(cfg.tracking)
    with replacing(paths.eval_tracks(name), discard_old=True) as track_dir:
        track_dir.mkdir()
        with tracking.run(cfg, stage=stage, run_id=run_id, run_name=name) as mlrun:
            meter = EnergyMeter(cfg.energy, out_dir=track_dir, project_name=stage)
            mlrun.watch_energy(meter, prefix=EVAL)
            with meter:
                result = work(track_dir)
            totals = meter.totals()
            result.update({f"{EVAL}{k}": totals[k] for k in EXECUTION_KEYS})
            result["mlflow_run_id"] = mlrun.run_id
            mlrun.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float))})
            write_json(paths.eval_metrics(name), result)
            mlrun.log_artifact(paths.eval_metrics(name))
    return result
