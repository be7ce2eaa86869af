"""Evaluation, scoring and separation on the tiny trained study and generated audio."""
import contextlib
import json

import numpy as np
import pytest
import soundfile as sf
from mlflow.tracking import MlflowClient

from pipeline import config, paths, tracking
from pipeline.data.manifest import load_manifest
from pipeline.cli import main
from pipeline.names import TARGETS
from pipeline.evaluation.bounds import oracle_irm
from tests.conftest import BASE, TINY, error_line, write_params

pytestmark = pytest.mark.slow


def test_evaluate_writes_museval_json_metrics_and_a_child_of_the_training_run(trained):
    assert main(["evaluate", "--variant", "base"]) == 0
    result = json.loads(paths.eval_metrics(BASE).read_text())
    for t in TARGETS:
        for metric in ("usdr", "csdr", "sir", "sar", "isr"):
            assert np.isfinite(result[f"{metric}_{t}"])
    assert result["tracks"] == 1 and result["eval_energy_kwh_codecarbon"] > 0
    (track_file,) = [p for p in paths.eval_tracks(BASE).glob("*.json")]
    scores = json.loads(track_file.read_text())
    assert [t["name"] for t in scores["targets"]] == list(TARGETS)
    frame = scores["targets"][0]["frames"][0]
    assert set(frame["metrics"]) == {"SDR", "SIR", "SAR", "ISR"} and frame["duration"] == 1.0

    cfg = config.load("params.yaml")
    tracking.configure(cfg.tracking)
    client = MlflowClient(tracking.resolved(cfg.tracking)[0])
    train_run = json.loads(paths.train_metrics(BASE).read_text())["mlflow_run_id"]
    evaluation, training = client.get_run(result["mlflow_run_id"]), client.get_run(train_run)
    assert evaluation.info.run_name == f"{BASE}-evaluate" and evaluation.data.tags["mlflow.parentRunId"] == train_run
    assert evaluation.data.metrics["eval_energy_kwh_green_algorithms"] > 0
    assert {t.key: t.value for t in evaluation.inputs.dataset_inputs[0].tags}["mlflow.data.context"] == "evaluation"
    # the scores are copied into the training's run, which the evaluation does not reopen
    assert training.data.metrics["csdr_avg"] == pytest.approx(result["csdr_avg"])
    assert training.data.tags["evaluation_run_id"] == evaluation.info.run_id
    assert training.info.end_time < evaluation.info.start_time
    assert "eval_energy_kwh_codecarbon" not in training.data.metrics


def test_bounds_order_the_mixture_below_the_oracle(trained):
    assert main(["evaluate", "--bounds"]) == 0
    mixture = json.loads(paths.eval_metrics("mixture").read_text())
    oracle = json.loads(paths.eval_metrics("oracle_irm").read_text())
    for t in TARGETS:
        assert oracle[f"usdr_{t}"] > 3 > 0 > mixture[f"usdr_{t}"]


def test_a_study_of_some_targets_detects_every_source_and_masks_among_them_all(study):
    """The pilot trains vocals alone: SAD still covers the four sources its sampler mixes, and the
    oracle IRM still shares each bin among all of them (not vocals against itself)."""
    assert main(["evaluate", "--bounds"]) == 0
    every = json.loads(paths.eval_metrics("oracle_irm").read_text())
    write_params(study, {"targets": ["vocals"]})
    assert main(["sad"]) == 0 and all(paths.sad_csv(t).is_file() for t in TARGETS)
    assert main(["evaluate", "--bounds"]) == 0
    vocals = json.loads(paths.eval_metrics("oracle_irm").read_text())
    assert "usdr_bass" not in vocals and vocals["usdr_vocals"] == pytest.approx(every["usdr_vocals"])
    assert vocals["usdr_vocals"] > json.loads(paths.eval_metrics("mixture").read_text())["usdr_vocals"] + 3


def test_bounds_score_no_more_tracks_side_by_side_than_the_memory_holds(study, monkeypatch):
    """Two test tracks on two cores, memory for one and a half of them: one track at a time, both rows."""
    from pipeline import runtime
    from pipeline.stages import evaluate

    write_params(study, {"runtime": {"threads": 2}})
    manifest = load_manifest()
    fixed, per_sample = evaluate.TRACK_BYTES["torch"]
    track_bytes = fixed + per_sample * manifest.channels * max(t.frames for t in manifest.split("test"))
    monkeypatch.setattr(runtime, "memory_available", lambda: track_bytes * 3 // 2)
    pools = []

    @contextlib.contextmanager
    def recorded(count, device, threads, job_bytes):
        with runtime.side_by_side(count, device, threads, job_bytes) as (pool, workers):
            pools.append((count, job_bytes, workers))
            yield pool, workers

    monkeypatch.setattr(evaluate, "side_by_side", recorded)
    assert main(["evaluate", "--bounds"]) == 0
    assert pools == [(2, track_bytes, 1)] * 2


def test_oracle_irm_of_a_single_source_is_the_mixture():
    rng = np.random.default_rng(0)
    sources = np.zeros((2, 2, 8192), np.float32)
    sources[0] = rng.standard_normal((2, 8192))
    estimates = oracle_irm(sources.sum(0), sources, n_fft=512, hop=128)
    np.testing.assert_allclose(estimates[0], sources[0], atol=1e-4)
    np.testing.assert_allclose(estimates[1], 0, atol=1e-4)


def test_evaluate_without_a_model_says_so(study, capsys):
    assert main(["evaluate", "--variant", "large"]) == 1
    assert "models/large-seed42/best.pt: no trained model" in error_line(capsys)


# ----------------------------------------------------------------------------- score


def _musdb_folder(root, tracks, rng, length=3 * 44100, rate=44100):
    for name in tracks:
        for t in TARGETS:
            (root / name).mkdir(parents=True, exist_ok=True)
            sf.write(root / name / f"{t}.wav", 0.1 * rng.standard_normal((length, 2)), rate, subtype="FLOAT")


def test_score_matches_the_references_and_orders_estimates(tmp_path, capsys):
    rng = np.random.default_rng(1)
    refs, good = tmp_path / "refs", tmp_path / "good"
    _musdb_folder(refs, ["A - One", "B - Two"], rng)
    for track in ("A - One", "B - Two"):
        for t in TARGETS:
            audio, rate = sf.read(refs / track / f"{t}.wav")
            (good / track).mkdir(parents=True, exist_ok=True)
            sf.write(good / track / f"{t}.wav", audio + 0.01 * rng.standard_normal(audio.shape), rate, subtype="FLOAT")
    out = tmp_path / "scores.json"
    assert main(["score", str(refs), str(good), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "A - One" in printed and "vocals uSDR" in printed
    scores = json.loads(out.read_text())
    for t in TARGETS:
        assert 15 < scores["aggregate"][t]["usdr"] < 25  # noise 20 dB below the signal
        assert scores["aggregate"][t]["csdr"] == pytest.approx(
            np.median([scores["tracks"][k][t]["csdr"] for k in ("A - One", "B - Two")]))
        assert scores["tracks"]["B - Two"][t]["usdr"] > 10


def test_score_needs_no_params_file(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(5)
    _musdb_folder(tmp_path / "refs", ["A - One"], rng)
    _musdb_folder(tmp_path / "est", ["A - One"], rng)
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    assert main(["score", "refs", "est", "--bsseval", "torch", "--json", "s.json"]) == 0
    printed = capsys.readouterr().out
    assert "A - One" in printed and "kWh measured (CodeCarbon)" in printed
    assert json.loads((tmp_path / "s.json").read_text())["energy"]["energy_kwh_codecarbon"] > 0
    assert not (tmp_path / "mlflow.db").exists()  # without --params nothing is logged anywhere


def _runs_named(name):
    cfg = config.load("params.yaml")
    tracking.configure(cfg.tracking)
    client = MlflowClient(tracking.resolved(cfg.tracking)[0])
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    return client.search_runs([experiment.experiment_id], f"attributes.run_name = '{name}'")


def test_score_with_params_is_a_metered_run_of_the_study(study, tmp_path):
    rng = np.random.default_rng(6)
    _musdb_folder(tmp_path / "refs", ["A - One"], rng)
    _musdb_folder(tmp_path / "est", ["A - One"], rng)
    assert main(["score", str(tmp_path / "refs"), str(tmp_path / "est"), "--params", "params.yaml"]) == 0
    (run,) = _runs_named("score")
    assert run.info.status == "FINISHED" and run.data.metrics["energy_kwh_codecarbon"] > 0
    assert run.data.tags["energy.method.codecarbon"] == "ok"


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "A - One" / "bass.wav").unlink(), "bass.wav: missing target file"),
    (lambda d: sf.write(d / "A - One" / "drums.wav", np.zeros((100, 2)), 44100), "estimates must match the reference length"),
])
def test_score_bad_estimates(tmp_path, capsys, damage, message):
    rng = np.random.default_rng(2)
    _musdb_folder(tmp_path / "refs", ["A - One"], rng)
    _musdb_folder(tmp_path / "est", ["A - One"], rng)
    damage(tmp_path / "est")
    assert main(["score", str(tmp_path / "refs"), str(tmp_path / "est")]) == 1
    assert message in error_line(capsys)


def test_score_silent_reference(tmp_path, capsys):
    rng = np.random.default_rng(3)
    _musdb_folder(tmp_path / "refs", ["A - One"], rng)
    _musdb_folder(tmp_path / "est", ["A - One"], rng)
    sf.write(tmp_path / "refs" / "A - One" / "other.wav", np.zeros((3 * 44100, 2)), 44100)
    assert main(["score", str(tmp_path / "refs"), str(tmp_path / "est")]) == 1
    assert "other.wav: silent reference" in error_line(capsys)


def test_evaluated_estimates_score_the_same(trained, tmp_path):
    write_params(trained, {**TINY, "eval": {**TINY["eval"], "write_estimates": True}})
    cfg = config.load("params.yaml")
    assert main(["evaluate", "--variant", "base"]) == 0
    result = json.loads(paths.eval_metrics(BASE).read_text())
    manifest = load_manifest()
    reference_dir = manifest.root / "test"
    assert main(["score", str(reference_dir), str(paths.estimates_dir(BASE)), "--json", str(tmp_path / "s.json")]) == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    for t in cfg.targets:
        assert scores["aggregate"][t]["usdr"] == pytest.approx(result[f"usdr_{t}"], abs=0.05)


# ----------------------------------------------------------------------------- separate


@pytest.mark.parametrize("rate, channels", [(22050, 1), (48000, 2)])
def test_separate_user_files_at_any_rate(trained, tmp_path, rate, channels):
    rng = np.random.default_rng(4)
    audio = 0.1 * rng.standard_normal((int(1.5 * rate), channels))
    path = tmp_path / f"song_{rate}.flac"
    sf.write(path, audio if channels > 1 else audio[:, 0], rate)
    out = tmp_path / "out"
    assert main(["separate", str(path), "--variant", "base", "--out", str(out)]) == 0
    (run,) = _runs_named(f"separate-{BASE}")  # metered, in the study's experiment
    assert run.data.metrics["energy_kwh_green_algorithms"] > 0
    for t in TARGETS:
        estimate, estimate_rate = sf.read(out / path.stem / f"{t}.wav", always_2d=True)
        assert estimate_rate == rate and estimate.shape == (len(audio), channels)
        assert np.all(np.isfinite(estimate))


def test_separate_bad_input(trained, tmp_path, capsys):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    assert main(["separate", str(bad), "--variant", "base"]) == 1
    assert "notes.wav: unreadable audio" in error_line(capsys)
    assert main(["separate", str(bad), "--variant", "large"]) == 1
    assert "models/large-seed42/best.pt: no trained model" in error_line(capsys)
