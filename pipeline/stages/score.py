"""`sepcost score REFERENCE_DIR ESTIMATES_DIR`: score any estimates folder in the MUSDB layout.

Both folders hold `<track>/<target>.wav` (a MUSDB18-HQ `test/` folder is a reference folder). Every
track of the estimates folder is scored against the reference of the same name with the metrics of
`sepcost evaluate`: uSDR (mean over tracks) and BSSEval v4 (median over frames, then over tracks).
It needs no params file: it scores any folders, anywhere, metered with the default energy settings.
With `--params` it is metered with that study's and logged as a run `score` of its MLflow
experiment, which the ledger counts among "other stages".
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline import paths, tracking
from pipeline.atomic import write_json
from pipeline.config import Config
from pipeline.config.schema import EnergyConfig
from pipeline.data.audio import read_wav
from pipeline.energy.meter import EnergyMeter, energy_line
from pipeline.errors import UserError
from pipeline.evaluation.metrics import aggregate, score_track
from pipeline.names import KWH_CODECARBON, KWH_GREEN_ALGORITHMS, SCORES, TARGETS, score_key


def _read_target(path: Path, rate: int | None) -> tuple[np.ndarray, int]:
    if not path.is_file():
        raise UserError(f"{path}: missing target file (expected <track>/<target>.wav for {', '.join(TARGETS)})")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise UserError(f"{path}: unreadable audio ({err})") from None
    if rate is not None and info.samplerate != rate:
        raise UserError(f"{path}: sample rate {info.samplerate} Hz, expected {rate} Hz like the other files of the track")
    return read_wav(path), info.samplerate


def load_pair(reference_dir: Path, estimates_dir: Path, track: str) -> tuple[np.ndarray, np.ndarray, int]:
    """References and estimates of one track as (targets, channels, samples), with their rate."""
    refs, ests, rate = [], [], None
    for target in TARGETS:
        ref, rate = _read_target(reference_dir / track / f"{target}.wav", rate)
        est, _ = _read_target(estimates_dir / track / f"{target}.wav", rate)
        if ref.shape != est.shape:
            raise UserError(
                f"{estimates_dir / track / (target + '.wav')}: {est.shape[1]} samples x {est.shape[0]} channels, "
                f"but the reference has {ref.shape[1]} x {ref.shape[0]} (estimates must match the reference length)"
            )
        if not np.any(ref):
            raise UserError(f"{reference_dir / track / (target + '.wav')}: silent reference (BSSEval is undefined for an all-zero source)")
        refs.append(ref)
        ests.append(est)
    return np.stack(refs), np.stack(ests), rate


@contextmanager
def _metered(study: Config | None):
    """The study's metered MLflow run, or without a study a meter alone (its CSV thrown away)."""
    if study is not None:
        with tracking.metered(study, "score", paths.energy_dir("score"), run_name="score") as (_, meter):
            yield meter
        return
    with tempfile.TemporaryDirectory(prefix="sepcost-score-") as out, \
            EnergyMeter(EnergyConfig(), out_dir=out, project_name="score") as meter:
        yield meter


def run(reference_dir: str, estimates_dir: str, json_path: str | None = None, backend: str = "torch",
        study: Config | None = None) -> dict:
    reference_dir, estimates_dir = Path(reference_dir), Path(estimates_dir)
    for folder in (reference_dir, estimates_dir):
        if not folder.is_dir():
            raise UserError(f"{folder}: not a folder (expected <track>/<target>.wav inside)")
    tracks = sorted(p.name for p in estimates_dir.iterdir() if p.is_dir())
    if not tracks:
        raise UserError(f"{estimates_dir}: no track folders (expected <track>/<target>.wav inside)")
    for track in tracks:
        if not (reference_dir / track).is_dir():
            raise UserError(f"{reference_dir / track}: no reference for estimated track '{track}'")

    from tqdm import tqdm

    scores = {}
    with _metered(study) as meter:
        for track in tqdm(tracks, desc="score", unit="track"):
            references, estimates, rate = load_pair(reference_dir, estimates_dir, track)
            scores[track], _ = score_track(references, estimates, TARGETS, rate, backend=backend)
    figures = aggregate(scores, TARGETS)
    totals = meter.totals()
    result = {"aggregate": {t: {m: figures[score_key(m, t)] for m in SCORES} for t in TARGETS}, "tracks": scores,
              "energy": {k: totals[k] for k in (KWH_CODECARBON, KWH_GREEN_ALGORITHMS)}}
    print(format_table(result))
    print(f"score: {len(tracks)} tracks, {energy_line(totals)}")
    if json_path:
        write_json(Path(json_path), result)
    return result


def format_table(result: dict) -> str:
    """Tracks as rows, uSDR and cSDR of each target as columns, the aggregate last."""
    header = f"{'track':32s} " + " ".join(f"{t + ' uSDR':>12s} {t + ' cSDR':>12s}" for t in TARGETS)
    rows = [header, "-" * len(header)]
    named = [*result["tracks"].items(), ("(mean uSDR, median cSDR)", result["aggregate"])]
    for name, per_target in named:
        cells = " ".join(f"{per_target[t]['usdr']:12.2f} {per_target[t]['csdr']:12.2f}" for t in TARGETS)
        rows.append(f"{name[:32]:32s} {cells}")
    return "\n".join(rows)
