"""Precision is part of the recipe: refused where the device has no native bf16, in the resume
fingerprint, the MLflow params and every score's protocol. The CPU's flags are simulated (hosts
differ: some have AVX512-BF16, some no AVX-512)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from mlflow.tracking import MlflowClient

from pipeline import config, paths, precision, tracking
from pipeline.data.manifest import load_manifest
from pipeline.training.resume import fingerprint
from tests.conftest import BASE, TINY, error_line, run_in, write_params

WITHOUT = "flags\t\t: fpu sse2 avx2 fma\n"
WITH = "flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16\n"


@pytest.fixture
def cpu_flags(tmp_path, monkeypatch):
    """Set this machine's CPU flags: with or without native bf16."""
    def set_flags(text: str) -> None:
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(text)
        monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    return set_flags


def test_native_bf16_is_read_from_the_cpu_flags(cpu_flags):
    cpu_flags(WITHOUT)
    assert not precision.native_bf16(torch.device("cpu"))
    cpu_flags(WITH)
    assert precision.native_bf16(torch.device("cpu"))
    assert not precision.native_bf16(torch.device("meta"))


@pytest.mark.parametrize("key, command", [("train.precision", "train"), ("eval.precision", "train"),
                                          ("eval.precision", "evaluate")])
def test_bf16_is_refused_in_one_line_on_a_device_without_it(study, cpu_flags, capsys, key, command):
    cpu_flags(WITHOUT)
    section, name = key.split(".")
    write_params(study, {**TINY, section: {**TINY[section], name: "bf16"}})
    assert run_in(study, [command, "--variant", "base"]) == 2
    line = error_line(capsys)
    assert f"params.yaml: {key}: bf16 needs native bf16" in line and f"set {key}: fp32" in line
    assert not paths.model_dir(BASE).exists()  # refused before anything was written


def test_precision_is_in_the_fingerprint_the_params_and_the_protocol(study, cpu_flags):
    cpu_flags(WITH)  # as on a CPU with AVX512-BF16 (here torch may emulate it: the tiny model is quick)
    write_params(study, {**TINY, "train": {**TINY["train"], "max_epochs": 1, "precision": "bf16"},
                         "eval": {**TINY["eval"], "precision": "bf16"}})
    assert run_in(study, ["train", "--variant", "base"]) == 0
    assert run_in(study, ["evaluate", "--variant", "base"]) == 0
    cfg = config.resolve(config.load("params.yaml"), "base")
    saved = torch.load(paths.model_dir(BASE) / "last.pt", weights_only=False)
    assert saved["fingerprint"] == fingerprint(cfg, load_manifest())
    for section in ("train", "eval"):  # a training in the other precision would not resume from it
        fp32 = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), precision="fp32")})
        assert fingerprint(fp32, load_manifest()) != saved["fingerprint"]
    tracking.configure(cfg.tracking)
    run_id = json.loads(paths.train_metrics(BASE).read_text())["mlflow_run_id"]
    params = MlflowClient(tracking.resolved(cfg.tracking)[0]).get_run(run_id).data.params
    assert params["train.precision"] == "bf16" and params["eval.precision"] == "bf16"
    assert json.loads(paths.eval_metrics(BASE).read_text())["protocol"]["inference"]["precision"] == "bf16"
