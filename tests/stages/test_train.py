"""Training end to end on the tiny synthetic study: outputs, MLflow, resume, failure, forecast."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import mlflow.pytorch
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from pipeline import config, paths, tracking
from pipeline.checkpoint import load_models
from pipeline.names import TARGETS, run_key
from pipeline.training import loop
from pipeline.training.validation import mixture_usdr
from pipeline.cli import main
from tests.conftest import BASE, REPO, TINY, run_in, write_params

pytestmark = pytest.mark.slow


def _client_and_runs(cfg, kinds=("train",)):
    """The study's runs of these stage kinds (prepare and sad have runs of their own), oldest first."""
    tracking.configure(cfg.tracking)
    uri, _ = tracking.resolved(cfg.tracking)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], run_view_type=3, order_by=["attributes.start_time ASC"])
    return client, [r for r in runs if r.data.tags.get("dvc.stage", "").split("@")[0] in kinds]


def test_training_writes_checkpoints_metrics_history_and_an_mlflow_run(trained):
    cfg = config.load("params.yaml")
    models = load_models(paths.model_dir(BASE) / "best.pt")
    assert [m.spec["targets"] for m in models] == [[t] for t in TARGETS]
    wave, _ = models[0](torch.zeros(1, 2, 22050))
    assert wave.shape == (1, 1, 2, 22050)

    result = json.loads(paths.train_metrics(BASE).read_text())
    assert result["epochs"] == 2 and result["params"] > 0
    for key in ("valid_usdr_avg", "energy_kwh_codecarbon", "energy_kwh_green_algorithms", "emissions_kg_co2e", "duration_s"):
        assert key in result
    assert result["energy_kwh_codecarbon"] > 0 and result["energy_kwh_green_algorithms"] > 0
    assert set(result["energy_methods"]) >= {"cpu", "gpu"}
    # the trivial estimate the report's learning check compares with: synthetic stems are levelled
    # within a few dB of each other, so the mixture scores well below silence on every target
    assert all(-10 < result[f"mixture_valid_usdr_{t}"] < -1 for t in TARGETS)
    with open(paths.train_history(BASE)) as f:
        history = list(csv.DictReader(f, delimiter="\t"))
    assert [int(r["epoch"]) for r in history] == [1, 2]
    assert all(f"valid_usdr_{t}" in history[0] for t in TARGETS)

    client, runs = _client_and_runs(cfg)
    (run,) = runs
    assert run.info.run_name == BASE and run.info.status == "FINISHED"
    assert run.info.run_id == result["mlflow_run_id"]
    assert run.data.params["model.bsrnn.n"] == str(TINY["model"]["bsrnn"]["n"])
    tags = run.data.tags
    assert tags["dvc.stage"] == f"train@{BASE}" and tags["seed"] == "42" and tags["variant"] == "base"
    assert "git.commit" in tags and "hardware.cpu_model" in tags and "version.torch" in tags
    for key in ("energy_kwh_codecarbon", "energy_kwh_green_algorithms", "emissions_kg_co2e", "duration_s", "params_m"):
        assert run.data.metrics[key] > 0
    curve = client.get_metric_history(run.info.run_id, "valid_usdr_avg")
    assert len(curve) == 2
    assert len(client.get_metric_history(run.info.run_id, "epoch_energy_kwh_codecarbon")) == 2
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", f"{BASE}.tsv"} <= artifacts
    # what the runs table shows: the recipe as params, the data set, the model, a true Duration
    assert len(run.data.params) <= 60 and run.data.params["change"] == "none (the base recipe)"
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.digest == json.loads(paths.MANIFEST.read_text())["digest"][:36]
    assert {t.key: t.value for t in dataset.tags}["mlflow.data.context"] == "training"
    wall_s = (run.info.end_time - run.info.start_time) / 1000
    print(f"run Duration {wall_s:.2f} s, duration_s {result['duration_s']:.2f} s")
    # the run spans its metered training and closes with its stage (the model is logged after the
    # meter stops: seconds, more on a loaded machine), not when a later stage adds its scores
    assert result["duration_s"] <= wall_s < result["duration_s"] + 60
    separator = mlflow.pytorch.load_model(run.data.tags["model_uri"])
    mixture = torch.randn(1, 2, 22050)
    with torch.no_grad():
        waves = separator(mixture)
        assert waves.shape == (1, len(TARGETS), 2, 22050) and separator.targets == list(TARGETS)
        assert torch.allclose(waves[:, :1], models[0](mixture)[0], atol=1e-5)


def test_mixture_usdr_of_hand_made_tracks():
    ones = np.ones((2, 100), dtype=np.float32)
    track = {"mixture": ones, "vocals": ones / 2, "bass": ones}  # error = half the mixture; none
    scores = mixture_usdr([track], ("vocals", "bass"))
    assert scores["mixture_valid_usdr_vocals"] == pytest.approx(0.0, abs=1e-6)
    assert scores["mixture_valid_usdr_bass"] == pytest.approx(10 * np.log10((200 + 1e-7) / 1e-7))


def test_rerun_after_completion_trains_again_from_scratch(trained, capsys):
    assert main(["train", "--variant", "base"]) == 0
    assert "resuming" not in capsys.readouterr().out


def _wait_for(path, proc, timeout=300):
    started = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() - started < timeout
        time.sleep(0.2)


def test_an_interrupted_training_resumes_and_keeps_its_energy(prepared_study, tmp_path):
    import shutil

    folder = tmp_path / "study"
    shutil.copytree(prepared_study, folder)
    # epochs long enough that the interrupt always lands before the last one ends
    write_params(folder, {**TINY, "variants": {"base": {"train": {"epoch_items": 96, "max_epochs": 3}}}})
    last = folder / paths.model_dir(BASE) / "last.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Ctrl-C must reach the child as KeyboardInterrupt even where the test runner ignores SIGINT
    # (pytest-xdist workers do, and children inherit an ignored signal).
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "train", "--variant", "base"], cwd=folder,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(last, proc)
    proc.send_signal(signal.SIGINT)  # Ctrl-C during the second epoch
    assert proc.wait(timeout=120) != 0
    first_energy = json.loads((folder / paths.model_dir(BASE) / "energy.json").read_text())["totals"]
    assert first_energy["energy_kwh_codecarbon"] > 0

    os.chdir(folder)
    try:
        assert main(["train", "--variant", "base"]) == 0
        result = json.loads(paths.train_metrics(BASE).read_text())
        cfg = config.load("params.yaml")
        _, runs = _client_and_runs(cfg)
    finally:
        os.chdir(REPO)
    assert result["epochs"] == 3
    # The total includes the interrupted execution, the partial epoch it lost included.
    assert result["energy_kwh_codecarbon"] > first_energy["energy_kwh_codecarbon"]
    assert [r.info.status for r in runs] == ["KILLED", "FINISHED"]
    killed, finished = runs
    assert killed.data.metrics["run_energy_kwh_codecarbon"] > 0
    assert finished.data.tags.get("resumed_from") == killed.info.run_id


def test_a_training_killed_without_warning_is_closed_by_its_resumption(prepared_study, tmp_path):
    """kill -9 after the first checkpoint: the process cannot close its run; the resumed training
    closes it KILLED, and the ledger counts each execution's energy once."""
    import shutil

    from pipeline.report.ledger import runs_table

    folder = tmp_path / "study"
    shutil.copytree(prepared_study, folder)
    write_params(folder, {**TINY, "train": {**TINY["train"], "epoch_items": 96, "max_epochs": 3}})
    last = folder / paths.model_dir(BASE) / "last.pt"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "train", "--variant", "base"], cwd=folder,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(last, proc)
    proc.kill()  # SIGKILL: no handler runs, the MLflow run stays RUNNING
    proc.wait(timeout=60)
    os.chdir(folder)
    try:
        cfg = config.load("params.yaml")
        _, before = _client_and_runs(cfg)
        assert [r.info.status for r in before] == ["RUNNING"]
        assert main(["train", "--variant", "base"]) == 0
        client, runs = _client_and_runs(cfg)
        table = runs_table(cfg.tracking)
    finally:
        os.chdir(REPO)
    killed, finished = runs
    assert killed.info.status == "KILLED" and killed.data.tags["closed_by"] == finished.info.run_id
    assert finished.data.tags["resumed_from"] == killed.info.run_id
    lost = killed.data.metrics["ledger_energy_kwh_codecarbon"]  # what its first epoch logged
    assert lost > 0
    # the resumed run's total includes the first execution; the ledger adds each execution once
    own = finished.data.metrics["ledger_energy_kwh_codecarbon"]
    assert finished.data.metrics["energy_kwh_codecarbon"] > own
    trainings = table[table["stage"].str.startswith("train@")]  # the study's prepare and sad have runs too
    assert list(trainings["run_id"]) == [killed.info.run_id, finished.info.run_id]
    assert trainings["kwh_codecarbon"].sum() == pytest.approx(lost + own)


def test_a_failing_training_ends_failed_with_its_energy(study, monkeypatch, capsys):
    write_params(study, TINY)

    def broken_validation(*args, **kwargs):
        raise RuntimeError("validation exploded")

    monkeypatch.setattr(loop, "validate", broken_validation)
    with pytest.raises(RuntimeError, match="validation exploded"):
        main(["train", "--variant", "base"])
    _, runs = _client_and_runs(config.load("params.yaml"))
    (run,) = runs
    assert run.info.status == "FAILED"
    assert run.data.metrics["energy_kwh_codecarbon"] > 0 and run.data.metrics["energy_kwh_green_algorithms"] > 0
    assert not paths.train_metrics(BASE).exists()


def test_forecast_predicts_the_duration_of_the_training(study, capsys):
    tiny = {**TINY, "train": {**TINY["train"], "epoch_items": 32, "max_epochs": 3, "patience": 5}}
    write_params(study, tiny)
    assert main(["forecast", "--variant", "mask_mu2", "--steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "full schedule (3 epochs x 8 steps)" in out and "kWh (CodeCarbon)" in out
    cfg = config.load("params.yaml")
    _, runs = _client_and_runs(cfg, kinds=("forecast",))
    forecast = runs[-1].data.metrics
    assert forecast["forecast_energy_kwh_codecarbon"] > 0 and forecast["forecast_energy_kwh_green_algorithms"] > 0

    assert main(["train", "--variant", "mask_mu2"]) == 0
    trained = json.loads(paths.train_metrics(run_key("mask_mu2", 42)).read_text())
    # the same order of magnitude (a timing on a shared machine is no tighter than that)
    assert trained["duration_s"] / 3 < forecast["forecast_duration_s"] < 3 * trained["duration_s"]
    # and the training's own forecast, made after its first epoch, with its error at the end
    assert trained["forecast_epochs"] == 3 and trained["forecast_min_epochs"] == 3  # patience 5: no early stop
    assert trained["forecast_duration_s"] == pytest.approx(trained["forecast_min_duration_s"])
    assert abs(trained["forecast_error_duration_s_pct"]) < 200
    assert trained["forecast_within_range_duration_s"] in (0.0, 1.0)
    _, runs = _client_and_runs(cfg)
    history = _client_and_runs(cfg)[0].get_metric_history(runs[-1].info.run_id, "forecast_duration_s")
    assert [m.step for m in history][0] == 0  # logged with the first epoch


@pytest.mark.parametrize("knob", [{"device": "cpu"}, {"threads": 1}, {"cache_gb": 0.0}, {"cache_gb": 0.006},
                                  {"num_workers": 2}], ids=lambda knob: "=".join(map(str, next(iter(knob.items())))))
def test_a_runtime_knob_changes_neither_the_fingerprint_nor_the_result(trained_study, prepared_study, tmp_path, knob):
    """Machine knobs change how fast a result comes, never the result: the same training with one
    changed has the fingerprint (it would resume the other's checkpoint), weights and scores of
    the trained fixture's (default knobs): with the stems on disk, some in memory (6 MB: four
    stems), or loader workers (started by a fork server, not forked from the side-by-side
    threads: a worker forked from them died once in a loaded CI run)."""
    folder = tmp_path / "study"
    shutil.copytree(prepared_study, folder)
    write_params(folder, {**TINY, "runtime": knob})
    assert run_in(folder, ["train", "--variant", "base"]) == 0
    ours, theirs = (torch.load(f / "models" / BASE / "last.pt", weights_only=False) for f in (folder, trained_study))
    assert ours["fingerprint"] == theirs["fingerprint"]
    best = [torch.load(f / "models" / BASE / "best.pt", weights_only=False)["models"] for f in (folder, trained_study)]
    for a, b in zip(*best):
        assert a["state_dict"].keys() == b["state_dict"].keys()
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    rows = [[{k: v for k, v in row.items() if k.startswith(("valid_", "train_loss"))} for row in state["history"]]
            for state in (ours, theirs)]
    assert rows[0] == rows[1]
