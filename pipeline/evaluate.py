"""Stage evaluate@<variant> (and the reference rows): separate the test split and score it.

Each test track is separated with the shared whole-track inference (Open-Unmix optionally with its
multichannel Wiener post-filter), then scored with uSDR and BSSEval v4 (pipeline.metrics). Writes
per-track scores in museval's JSON schema under metrics/eval/<variant>/, the data-set figures in
metrics/eval/<variant>.json, and logs both with the evaluation's energy into the MLflow run of
the variant's training.

The reference rows are computed once by `sepcost evaluate --bounds`: the mixture itself as the
estimate of every target (a lower bound) and the oracle ideal ratio mask (an upper bound).
"""
from __future__ import annotations

import importlib.metadata
import json
import shutil

import numpy as np
import torch
from tqdm import tqdm

from pipeline import energy, paths, tracking
from pipeline.audio import Manifest, load_manifest, load_stems, write_json, write_wav
from pipeline.config import Config
from pipeline.errors import UserError
from pipeline.metrics import aggregate, score_track
from pipeline.separate import separate
from pipeline.train import load_models, pick_device, side_by_side

BOUNDS = ("mixture", "oracle_irm")


def _wiener(models, mixture: torch.Tensor, estimates: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Open-Unmix's post-filter on whole-track estimates: magnitudes from their STFT."""
    from model.wiener import wiener

    model = models[0]
    mix_spec = model.stft(mixture)  # (channels, bins, frames)
    magnitudes = model.stft(estimates).abs()  # (targets, channels, bins, frames)
    filtered = wiener(
        magnitudes, mix_spec, iterations=cfg.eval.wiener_iterations,
        softmask=cfg.eval.wiener_softmask, residual=cfg.eval.wiener_residual,
    )
    return model.istft(filtered, length=mixture.shape[-1])[: estimates.shape[0]]


def museval_json(frames: dict, targets) -> dict:
    """Framewise scores in museval's per-track JSON schema (1 s frames; NaN where museval has NaN)."""
    return {
        "museval_version": importlib.metadata.version("museval"),
        "targets": [
            {
                "name": target,
                "frames": [
                    {"time": float(j), "duration": 1.0,
                     "metrics": {m.upper(): float(frames[m][i][j]) for m in ("sdr", "sir", "sar", "isr")}}
                    for j in range(len(frames["sdr"][i]))
                ],
            }
            for i, target in enumerate(targets)
        ],
    }


def oracle_irm(mixture: np.ndarray, sources: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Ideal ratio mask estimates: each source's share of the summed power, applied to the mixture."""
    window = torch.hann_window(n_fft, dtype=torch.float64)

    def stft(x):
        return torch.stft(torch.as_tensor(x, dtype=torch.float64).reshape(-1, x.shape[-1]), n_fft, hop,
                          window=window, return_complex=True)

    mix_spec = stft(mixture)  # (channels, bins, frames)
    power = stft(sources).abs().square().reshape(sources.shape[0], *mix_spec.shape)
    masks = power / power.sum(dim=0).clamp_min(1e-12)
    est = torch.istft((masks * mix_spec).reshape(-1, *mix_spec.shape[-2:]), n_fft, hop, window=window,
                      length=mixture.shape[-1])
    return est.reshape(sources.shape).float().numpy()


def _test_tracks(cfg: Config, manifest: Manifest):
    tracks = manifest.split("test")
    if cfg.eval.test_tracks:
        tracks = tracks[: cfg.eval.test_tracks]
    if not tracks:
        raise UserError(f"{paths.MANIFEST}: no test tracks to evaluate on")
    return tracks


def _score_all(cfg: Config, name: str, manifest: Manifest, estimate_fn, device) -> dict:
    """Separate and score every test track; write per-track JSON and the data-set figures."""
    track_dir = paths.eval_tracks(name)

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
    with side_by_side(len(tracks), torch.device(device)) as (pool, _):
        summaries = list(tqdm(pool.map(score, tracks), total=len(tracks), desc=f"evaluate {name}", unit="track"))
    scores = {track.name: summary for track, summary in zip(tracks, summaries)}
    result = {"variant": name, "tracks": len(scores), **aggregate(scores, cfg.targets)}
    return result


def run(study: Config, variant: str) -> dict:
    cfg = study.resolve(variant)
    device = pick_device(cfg.train.device)
    manifest = load_manifest()
    checkpoint = paths.model_dir(variant) / "best.pt"
    if not checkpoint.exists():
        raise UserError(f"{checkpoint}: no trained model; run `sepcost train --variant {variant}` first")
    models = load_models(checkpoint, device)
    use_wiener = cfg.eval.wiener_iterations > 0 and models[0].spec["arch"] == "umx"

    def estimate(mixture, references):
        mix = torch.from_numpy(mixture)
        est = separate(models, mix, cfg.eval, manifest.sample_rate, device)
        if use_wiener:
            est = _wiener(models, mix, est, cfg)
        return est.numpy()

    train_metrics = paths.train_metrics(variant)
    run_id = json.loads(train_metrics.read_text()).get("mlflow_run_id") if train_metrics.exists() else None
    result = _tracked(cfg, variant, f"evaluate@{variant}", run_id, lambda: _score_all(cfg, variant, manifest, estimate, device))
    print(f"evaluate: {variant}: test uSDR {result['usdr_avg']:.2f} dB, cSDR {result['csdr_avg']:.2f} dB "
          f"over {result['tracks']} tracks")
    return result


def run_bounds(study: Config) -> dict:
    """The mixture and oracle-IRM rows, computed once per study."""
    manifest = load_manifest()
    results = {}
    stft = study.stft
    estimators = {
        "mixture": lambda mixture, references: np.repeat(mixture[None], len(references), axis=0),
        "oracle_irm": lambda mixture, references: oracle_irm(mixture, references, stft.n_fft, stft.hop),
    }
    for name in BOUNDS:
        results[name] = _tracked(study, name, f"evaluate@{name}", None,
                                 lambda name=name: _score_all(study, name, manifest, estimators[name], "cpu"))
        print(f"evaluate: {name}: test uSDR {results[name]['usdr_avg']:.2f} dB, cSDR {results[name]['csdr_avg']:.2f} dB")
    return results


def _tracked(cfg: Config, name: str, stage: str, run_id, work) -> dict:
    """Run `work` inside an energy meter and the MLflow run; write metrics/eval/<name>.json."""
    track_dir = paths.eval_tracks(name)
    shutil.rmtree(track_dir, ignore_errors=True)
    paths.eval_metrics(name).unlink(missing_ok=True)
    track_dir.mkdir(parents=True)
    tracking.configure(cfg.tracking)
    with tracking.run(cfg, stage=stage, run_id=run_id, run_name=name) as mlrun:
        meter = energy.EnergyMeter(cfg.energy, out_dir=track_dir, project_name=stage)
        mlrun.watch_energy(meter, prefix="eval_")
        with meter:
            result = work()
        totals = meter.totals()
        result.update({f"eval_{k}": totals[k] for k in ("energy_kwh_codecarbon", "energy_kwh_green_algorithms",
                                                         "emissions_kg_co2e", "duration_s")})
        result["mlflow_run_id"] = mlrun.run_id
        mlrun.log_metrics({k: v for k, v in result.items() if isinstance(v, (int, float))})
        write_json(paths.eval_metrics(name), result)
        mlrun.log_artifact(paths.eval_metrics(name))
    return result
