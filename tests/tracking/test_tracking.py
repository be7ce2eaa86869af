"""MLflow tracking against a real SQLite store in a temporary folder, with real CodeCarbon meters;
everything is read back through `MlflowClient`."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipeline import tracking
from pipeline.config import Config, EnergyConfig, TrackingConfig
from pipeline.energy.meter import EnergyMeter
from pipeline.report import ledger
from pipeline.tracking import provenance
from tests.conftest import REPO
from tests.nvml import nvml  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One SQLite store for the module (creating its tables takes seconds); tests use experiments."""
    return tmp_path_factory.mktemp("mlflow")


def make_config(store: Path, experiment: str, variant: str = "base", **energy) -> Config:
    tracking_cfg = TrackingConfig(uri=f"sqlite:///{store / 'mlflow.db'}", artifacts=str(store / "mlartifacts"),
                                  experiment=experiment)
    energy_cfg = EnergyConfig(measure_power_s=0.5, **energy)
    return Config(energy=energy_cfg, tracking=tracking_cfg, variant=variant)


def client_for(cfg: Config) -> MlflowClient:
    uri, _ = tracking.resolved(cfg.tracking)
    return MlflowClient(tracking_uri=uri)


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(i * i for i in range(10_000))


def test_a_variants_params_are_its_recipe_seed_and_change():
    cfg = Config(variants={"large": {"seeds": 2, "model": {"bsrnn": {"n": 16}}, "train": {"patience": 9}}},
                 variant="large", seed=43)
    params = provenance.run_params(cfg, "train@large-seed43")
    assert params["train.lr"] == str(cfg.train.lr) and params["model.bsrnn.n"] == str(cfg.model.bsrnn.n)
    assert params["train.lr_effective"] == str(cfg.train.effective_lr())
    assert params["seed"] == "43" and params["variant"] == "large"
    assert params["change"] == "model.bsrnn.n=16, train.patience=9"  # the declared change, seeds aside
    assert not any(k.startswith(("model.umx", "data", "energy", "tracking", "sad", "variants", "runtime"))
                   for k in params)  # the other architecture's settings and the study's are not the run's
    assert len(params) <= 60
    base = Config(variants={"base": {}}, variant="base")
    assert provenance.run_params(base, "train@base-seed42")["change"] == "none (the base recipe)"
    # a study stage logs the sections it reads; its settings are the experiment's tags
    assert {k.split(".")[0] for k in provenance.run_params(Config(), "prepare")} == {"seed", "data"}
    assert provenance.run_params(Config(), "report") == {}
    tags = provenance.study_tags(Config())
    assert tags["study.energy.pue"] == str(Config().energy.pue) and json.loads(tags["study.targets"])[0] == "vocals"


def test_run_logs_params_tags_epochs_final_metrics_and_artifacts(store, tmp_path, monkeypatch):
    cfg = make_config(store, "logging")
    handler_before = signal.getsignal(signal.SIGTERM)
    calls = []
    with tracking.run(cfg, "train@base") as tracked, \
            EnergyMeter(cfg.energy, out_dir=tmp_path / "models" / "base", project_name="train@base") as meter:
        tracked.watch_energy(meter)
        assert signal.getsignal(signal.SIGTERM) is not handler_before  # installed for the run
        real_log_batch = tracked.client.log_batch
        monkeypatch.setattr(tracked.client, "log_batch", lambda *a, **k: (calls.append(1), real_log_batch(*a, **k))[1])
        for epoch in range(1, 4):
            with meter.task(f"epoch {epoch}") as task:
                busy(0.3)
            calls.clear()
            tracked.log_epoch(epoch, {"train_loss": 1.0 / epoch, "valid_usdr_avg": float(epoch),
                                      "epoch_energy_kwh_codecarbon": task["energy_kwh_codecarbon"]})
            tracked.flush()  # written in the background
            assert len(calls) == 1  # one batched call per epoch, energy so far included
        calls.clear()
        tracked.log_metrics({"params_m": 0.25, "valid_usdr_avg": 2.5, "best_epoch": 3})
        assert len(calls) == 1
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(cfg.as_dict()))
        tracked.log_artifact(config_file)
    assert signal.getsignal(signal.SIGTERM) is handler_before  # restored

    client = client_for(cfg)
    run = client.get_run(tracked.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "base-seed42"  # names.run_key
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["train.lr"] == str(cfg.train.lr) and params["seed"] == "42"
    assert not any(k.startswith("variants") for k in params)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=os.getcwd())
    if head.returncode == 0:
        assert tags["git.commit"] == head.stdout.strip()
        assert tags["git.dirty"] in ("true", "false")
    assert tags["dvc.stage"] == "train@base" and tags["variant"] == "base" and tags["seed"] == "42"
    assert tags["host"] and tags["hardware.cpu_model"] and "hardware.memory_gb" in tags
    for name in ("torch", "mlflow", "codecarbon", "dvc", "musdb", "museval", "numpy", "python"):
        assert tags[f"version.{name}"]
    assert tags["energy.method.cpu"] in {"rapl", "cpu_load", "constant", "windows_emi", "power_gadget", "powermetrics"}
    assert tags["energy.method.gpu"] in {"nvml_counter", "nvml_power", "nvml_counter+nvml_power", "amdsmi", "none", "missing"}

    history = client.get_metric_history(tracked.run_id, "train_loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3]
    assert len(client.get_metric_history(tracked.run_id, "run_energy_kwh_codecarbon")) == 4  # 3 epochs + final
    assert metrics["valid_usdr_avg"] == 2.5  # the final value is the latest, not epoch 3's
    assert metrics["params_m"] == 0.25
    for key in ("energy_kwh_codecarbon", "energy_kwh_green_algorithms", "emissions_kg_co2e", "duration_s"):
        assert metrics[key] > 0
    assert metrics["run_energy_kwh_codecarbon"] == pytest.approx(metrics["energy_kwh_codecarbon"])
    assert metrics["ledger_energy_kwh_codecarbon"] == pytest.approx(metrics["energy_kwh_codecarbon"])
    assert metrics["energy_kwh_codecarbon"] == pytest.approx(meter.totals()["energy_kwh_codecarbon"])

    artifacts = {a.path for a in client.list_artifacts(tracked.run_id)}
    assert {"config.json", "energy"} <= artifacts
    assert "energy/emissions.csv" in {a.path for a in client.list_artifacts(tracked.run_id, "energy")}
    assert (store / "mlartifacts" / tracked.run_id / "artifacts" / "config.json").is_file()


def test_exception_ends_failed_with_energy(store, tmp_path):
    cfg = make_config(store, "failure")
    with pytest.raises(RuntimeError, match="diverged"):
        with tracking.run(cfg, "train@base") as tracked, \
                EnergyMeter(cfg.energy, out_dir=tmp_path, project_name="train@base") as meter:
            tracked.watch_energy(meter)
            busy(0.3)
            raise RuntimeError("loss diverged")
    run = client_for(cfg).get_run(tracked.run_id)
    assert run.info.status == "FAILED"
    assert "RuntimeError: loss diverged" in run.data.tags["error"]
    assert run.data.metrics["energy_kwh_codecarbon"] > 0
    assert run.data.metrics["run_energy_kwh_green_algorithms"] > 0


def test_a_logging_problem_at_close_is_tagged_and_the_run_still_ends(store, tmp_path):
    """The close writes the energy and the outcome in one batch, then the meter's files: a file
    gone by then is named in `tracking.problems`, the energy and the error stay logged."""
    cfg = make_config(store, "close-problem")
    with pytest.raises(RuntimeError, match="diverged"):
        with tracking.run(cfg, "train@base") as tracked, \
                EnergyMeter(cfg.energy, out_dir=tmp_path, project_name="train@base") as meter:
            tracked.watch_energy(meter)
            meter.files = lambda: [tmp_path / "gone.csv"]
            busy(0.2)
            raise RuntimeError("loss diverged")
    run = client_for(cfg).get_run(tracked.run_id)
    assert run.info.status == "FAILED" and "RuntimeError: loss diverged" in run.data.tags["error"]
    problems = run.data.tags["tracking.problems"]
    assert "energy not logged" in problems and "gone.csv" in problems
    assert run.data.metrics["run_energy_kwh_codecarbon"] > 0 and run.data.tags["energy.method.codecarbon"]


def test_keyboard_interrupt_ends_killed_with_energy(store, tmp_path):
    cfg = make_config(store, "interrupt")
    with pytest.raises(KeyboardInterrupt):
        with tracking.run(cfg, "train@base") as tracked, \
                EnergyMeter(cfg.energy, out_dir=tmp_path, project_name="train@base") as meter:
            tracked.watch_energy(meter)
            busy(0.2)
            raise KeyboardInterrupt
    run = client_for(cfg).get_run(tracked.run_id)
    assert run.info.status == "KILLED"
    assert run.data.metrics["energy_kwh_codecarbon"] > 0


def test_sigterm_ends_killed_with_energy(store, tmp_path):
    cfg = make_config(store, "sigterm")
    id_file = tmp_path / "run_id"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from pipeline import tracking
        from pipeline.config import Config, EnergyConfig, TrackingConfig
        from pipeline.energy.meter import EnergyMeter

        cfg = Config(energy=EnergyConfig(measure_power_s=0.5), variant="base",
                     tracking=TrackingConfig(uri={cfg.tracking.uri!r}, artifacts={cfg.tracking.artifacts!r},
                                             experiment={cfg.tracking.experiment!r}))
        with tracking.run(cfg, "train@base") as tracked, \\
                EnergyMeter(cfg.energy, out_dir={str(tmp_path / "out")!r}, project_name="train@base") as meter:
            tracked.watch_energy(meter)
            Path({str(id_file)!r}).write_text(tracked.run_id)
            while True:
                sum(i * i for i in range(10_000))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while not id_file.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the child never started its run"
        time.sleep(0.1)
    time.sleep(1.0)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGTERM, err
    assert out == "" and err == ""  # no traceback, no CodeCarbon or MLflow noise
    run = client_for(cfg).get_run(id_file.read_text())
    assert run.info.status == "KILLED"
    assert run.data.metrics["energy_kwh_codecarbon"] > 0
    assert run.data.metrics["run_duration_s"] >= 1.0


def test_an_evaluation_is_a_child_run_and_leaves_the_training_closed(store, tmp_path):
    cfg = make_config(store, "evaluation")
    with tracking.run(cfg, "train@base") as trained, \
            EnergyMeter(cfg.energy, out_dir=tmp_path, project_name="train@base") as meter:
        trained.watch_energy(meter)
        for epoch in range(1, 3):
            trained.log_epoch(epoch, {"valid_usdr_avg": float(epoch)})
    client = client_for(cfg)
    closed = client.get_run(trained.run_id).info

    time.sleep(0.2)
    with tracking.run(cfg, "evaluate@base", run_name="base-seed42-evaluate", parent=trained.run_id) as evaluated, \
            EnergyMeter(cfg.energy, out_dir=tmp_path, project_name="evaluate@base") as eval_meter:
        evaluated.watch_energy(eval_meter, prefix="eval_")
        busy(0.2)
        evaluated.log_metrics({"usdr_avg": 9.0})
    tracking.log_to(cfg.tracking, trained.run_id, {"usdr_avg": 9.0}, {"evaluation_run_id": evaluated.run_id})

    training, evaluation = client.get_run(trained.run_id), client.get_run(evaluated.run_id)
    assert training.info.status == "FINISHED" and training.info.end_time == closed.end_time  # Duration stays
    assert training.data.metrics["usdr_avg"] == 9.0 and training.data.tags["evaluation_run_id"] == evaluated.run_id
    assert evaluation.data.tags["mlflow.parentRunId"] == trained.run_id
    assert json.loads(evaluation.data.tags["energy.prefixes"]) == ["eval_"]
    assert evaluation.data.metrics["eval_energy_kwh_codecarbon"] > 0
    assert "eval_energy_kwh_codecarbon" not in training.data.metrics
    table = ledger.runs_table(cfg.tracking).set_index("run_id")
    for run_id, prefix in ((trained.run_id, ""), (evaluated.run_id, "eval_")):
        metrics = client.get_run(run_id).data.metrics
        assert table.loc[run_id, "kwh_codecarbon"] == pytest.approx(metrics[f"{prefix}ledger_energy_kwh_codecarbon"])

    # when the energy was spent: both epochs and the training's end, then the evaluation's end
    timeline = ledger.energy_timeline(cfg.tracking)
    assert list(timeline.columns) == ledger.TIMELINE_COLUMNS
    assert len(timeline) >= 4 and timeline["time"].is_monotonic_increasing
    for method in ("codecarbon", "green_algorithms"):
        assert (timeline[f"kwh_{method}"] >= 0).all()
        assert timeline[f"kwh_{method}"].sum() == pytest.approx(table[f"kwh_{method}"].sum())
    end = client.get_metric_history(evaluated.run_id, "eval_ledger_energy_kwh_codecarbon")[-1].timestamp
    assert pd.to_datetime(end, unit="ms", utc=True) in set(timeline["time"])


def test_the_experiment_opens_on_training_runs_and_carries_the_study_settings(store):
    from pipeline.tracking.store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

    cfg = make_config(store, "kind")
    client = client_for(cfg)
    client.create_experiment("kind")  # made elsewhere, without the tag
    with tracking.run(cfg, "prepare"):
        pass
    tags = client.get_experiment_by_name("kind").tags
    assert tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert tags["study.energy.measure_power_s"] == "0.5" and "usdr_avg" in tags["mlflow.note.content"]
    assert "metrics.`usdr_avg`" in json.loads(tags["mlflow.sharedViewState.sepcost"])["selectedColumns"]


def test_artifacts_land_in_the_study_folder_from_elsewhere(tmp_path, monkeypatch):
    study, elsewhere = tmp_path / "study", tmp_path / "elsewhere"
    study.mkdir()
    elsewhere.mkdir()
    cfg = Config(tracking=TrackingConfig(uri="sqlite:///mlflow.db", artifacts="mlartifacts", experiment="relative"),
                 energy=EnergyConfig(measure_power_s=0.5), variant="base")
    monkeypatch.chdir(study)
    tracking.configure(cfg.tracking)
    monkeypatch.chdir(elsewhere)
    note = elsewhere / "note.txt"
    note.write_text("hello")
    with tracking.run(cfg, "train@base") as tracked:
        tracked.log_artifact(note, "notes")
    assert (study / "mlflow.db").is_file()
    assert (study / "mlartifacts" / tracked.run_id / "artifacts" / "notes" / "note.txt").read_text() == "hello"
    assert not (elsewhere / "mlflow.db").exists() and not (elsewhere / "mlartifacts").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    location = client.get_experiment_by_name("relative").artifact_location
    assert location == (study / "mlartifacts").as_uri()


def test_runs_table_lists_every_run_failed_ones_too(store, tmp_path):
    cfg = make_config(store, "ledger")
    outcomes = [None, RuntimeError("out of memory"), KeyboardInterrupt()]
    for i, failure in enumerate(outcomes):
        try:
            with tracking.run(cfg, "train@base") as tracked, \
                    EnergyMeter(cfg.energy, out_dir=tmp_path / str(i), project_name="train@base") as meter:
                tracked.watch_energy(meter)
                busy(0.2)
                if failure is not None:
                    raise failure
        except (RuntimeError, KeyboardInterrupt):
            pass
        if i == 0:
            finished = tracked.run_id
    table = ledger.runs_table(cfg.tracking)
    assert list(table.columns) == ledger.RUNS_COLUMNS
    assert list(table["status"]) == ["FINISHED", "FAILED", "KILLED"]
    assert (table["variant"] == "base").all() and (table["stage"] == "train@base").all()
    assert (table["kwh_codecarbon"] > 0).all() and (table["kwh_green_algorithms"] > 0).all()
    assert (table["end_time"] >= table["start_time"]).all()
    assert table["run_id"].iloc[0] == finished
    empty = ledger.runs_table(dataclasses.replace(cfg.tracking, experiment="never-used"))
    assert empty.empty and list(empty.columns) == ledger.RUNS_COLUMNS


def test_a_run_whose_gpu_energy_is_missing_is_unknown_in_the_ledger_not_0_kwh(store, tmp_path, monkeypatch, nvml):
    cfg = make_config(store, "gpu-missing")
    for name, visible in (("on-a-gpu", "GPU-a1a1"), ("on-a-mig-slice", "MIG-d4d4")):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        with tracking.run(cfg, "train@base", run_name=name) as tracked, \
                EnergyMeter(cfg.energy, out_dir=tmp_path / name, project_name="train@base") as meter:
            tracked.watch_energy(meter)
            busy(0.2)
    table = ledger.runs_table(cfg.tracking).set_index("run_name")
    assert table.loc["on-a-gpu", "kwh_codecarbon"] > 0 and table.loc["on-a-gpu", "kwh_green_algorithms"] > 0
    for column in ("kwh_codecarbon", "kwh_green_algorithms", "own_kwh_codecarbon", "kg_co2e"):
        assert math.isnan(table.loc["on-a-mig-slice", column]), column
    assert table.loc["on-a-mig-slice", "duration_s"] > 0
    assert "gpu=missing" in table.loc["on-a-mig-slice", "methods"]
    table["current"], table["category"] = False, "other"
    totals = ledger.summarize_ledger(table, cfg)
    assert totals["runs_energy_unknown"] == 1 and totals["runs"] == 2
    assert totals["kwh_codecarbon"] == pytest.approx(table.loc["on-a-gpu", "kwh_codecarbon"])


def test_runs_record_the_dvc_lock_entries_they_build_on(store, tmp_path, monkeypatch):
    cfg = make_config(store, "provenance")
    monkeypatch.chdir(tmp_path)
    lock = {"schema": "2.0", "stages": {
        "prepare": {"cmd": "sepcost prepare", "outs": [{"path": "data/prepared", "md5": "a1.dir"}]},
        "sad": {"cmd": "sepcost sad", "deps": [{"path": "data/prepared", "md5": "a1.dir"}]},
    }}
    (tmp_path / "dvc.lock").write_text(json.dumps(lock))  # JSON is YAML
    monkeypatch.setenv("DVC_STAGE", "train@base")
    with tracking.run(cfg, "train@base") as trained:
        pass
    lock["stages"]["train@base"] = {"cmd": "sepcost train --variant base", "outs": [{"path": "models/base"}]}
    (tmp_path / "dvc.lock").write_text(json.dumps(lock))
    monkeypatch.setenv("DVC_STAGE", "evaluate@base")
    with tracking.run(cfg, "evaluate@base", parent=trained.run_id) as evaluated:
        pass

    tags = client_for(cfg).get_run(trained.run_id).data.tags
    eval_tags = client_for(cfg).get_run(evaluated.run_id).data.tags
    assert tags["dvc.running_stage"] == "train@base" and eval_tags["dvc.running_stage"] == "evaluate@base"
    assert set(k for k in tags if k.startswith("dvc.lock.")) == {"dvc.lock.prepare", "dvc.lock.sad"}
    assert tags["dvc.lock.prepare"] == eval_tags["dvc.lock.prepare"]  # the same entry, the same hash
    assert len(eval_tags["dvc.lock.train"]) == 32 and "dvc.lock.sad" not in eval_tags
    monkeypatch.delenv("DVC_STAGE")
    (tmp_path / "dvc.lock").unlink()
    assert provenance.dvc_lock_tags("train@base") == {}  # run by hand, before any `dvc repro`
