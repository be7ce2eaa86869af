"""Every call into a model, with the models on another device than their inputs (`tests/devices.py`):
the training step and validation, the forecast, Open-Unmix's input statistics, evaluation with and
without the Wiener filter, streaming, and `sepcost separate`. A call whose inputs stay on the CPU,
a loss or STFT on the wrong side, `.numpy()` of a device tensor, or a tensor brought back to the
CPU outside `pipeline.boundary` fails here as it would on a GPU (the last as the house rules
forbid). Each path has its own test, the models it needs trained on the CPU beforehand."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from pipeline import paths
from pipeline.config import merge
from pipeline.data.audio import write_wav
from tests.conftest import TINY, run_in, write_params
from tests.devices import DEVICE, DeviceMistake, OtherDevice, other_device

UMX_VARIANTS = ("umx", "umx_unidirectional")
# Open-Unmix's tiny copies: one short epoch (their params-file recipe has 22 steps of 1 s)
PARAMS = merge(TINY, {"variants": {v: {"train": {"epoch_items": 32, "max_epochs": 1}} for v in UMX_VARIANTS}})


@pytest.fixture(scope="module")
def trained_on_cpu(prepared_study, tmp_path_factory):
    """The tiny study with base and Open-Unmix's two rows trained on the CPU."""
    folder = tmp_path_factory.mktemp("devices") / "study"
    shutil.copytree(prepared_study, folder)
    write_params(folder, PARAMS)
    for variant in ("base", *UMX_VARIANTS):
        assert run_in(folder, ["train", "--variant", variant]) == 0
    return folder


@pytest.fixture
def trained(trained_on_cpu, tmp_path, monkeypatch):
    copy = tmp_path / "study"
    shutil.copytree(trained_on_cpu, copy)
    monkeypatch.chdir(copy)
    return copy


# -- the harness catches what a GPU would ---------------------------------------------------------

def test_the_harness_catches_inputs_windows_losses_numpy_and_crossings():
    layer, window = torch.nn.Linear(4, 2).to(DEVICE), torch.hann_window(16, device=DEVICE)
    with OtherDevice() as mode:
        with pytest.raises(RuntimeError, match="device"):
            layer(torch.ones(3, 4))  # a CPU input to a device layer
        with pytest.raises(RuntimeError, match="same device"):
            torch.stft(torch.ones(64), 16, window=window, return_complex=True)  # a CPU signal, a device window
        estimate = layer(torch.ones(3, 4, device=DEVICE))
        with pytest.raises(RuntimeError, match="device"):
            (estimate - torch.ones(3, 2)).abs().mean()  # a loss against a CPU reference
        with pytest.raises(TypeError, match="meta"):
            estimate.numpy()
        with pytest.raises(DeviceMistake, match="test_devices.py"):
            estimate.cpu()  # outside pipeline.boundary
        with pytest.raises(DeviceMistake):
            estimate.to("cpu")
        assert isinstance(estimate.sum().item(), float)  # a number may come back anywhere
        assert torch.istft(torch.ones(9, 5, dtype=torch.complex64, device=DEVICE), 16, 4, length=30,
                           window=window).shape == (30,)
    assert mode.crossings == 0


# -- each path into a model ------------------------------------------------------------------------

def test_the_training_step_and_validation_run_on_another_device(study, monkeypatch):
    """Base's t+tf loss: validation takes the STFT of its whole-track estimates."""
    write_params(study, PARAMS)
    with other_device(monkeypatch):
        assert run_in(study, ["train", "--variant", "base"]) == 0
    assert json.loads(paths.train_metrics("base-seed42").read_text())["epochs"] == TINY["train"]["max_epochs"]


def test_the_forecast_runs_on_another_device(study, monkeypatch):
    write_params(study, PARAMS)
    with other_device(monkeypatch):
        assert run_in(study, ["forecast", "--variant", "base", "--steps", "1"]) == 0


def test_open_unmix_takes_its_input_statistics_on_another_device(study, monkeypatch):
    write_params(study, PARAMS)
    with other_device(monkeypatch):
        assert run_in(study, ["train", "--variant", "umx"]) == 0


@pytest.mark.parametrize("variant", ["base", "umx"])  # umx: with the Wiener filter
def test_evaluation_runs_on_another_device(trained, monkeypatch, variant):
    with other_device(monkeypatch) as mode:
        assert run_in(trained, ["evaluate", "--variant", variant]) == 0
    scores = json.loads(paths.eval_metrics(f"{variant}-seed42").read_text())
    assert np.isfinite(scores["usdr_avg"]) and mode.crossings > 0
    assert scores["protocol"]["inference"]["wiener_iterations"] == (1 if variant == "umx" else 0)


@pytest.mark.parametrize("variant", ["base", "umx"])
def test_separate_runs_on_another_device(trained, tmp_path, monkeypatch, variant):
    song = tmp_path / "song.wav"
    write_wav(song, np.random.default_rng(0).uniform(-0.3, 0.3, (2, 3 * 44100)).astype(np.float32), 44100)
    with other_device(monkeypatch):
        assert run_in(trained, ["separate", str(song), "--variant", variant, "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "song").iterdir()) == [
        "bass.wav", "drums.wav", "other.wav", "vocals.wav"]


def test_a_causal_model_per_target_streams_on_another_device(trained, monkeypatch):
    """umx_unidirectional as it is trained: one unidirectional Open-Unmix per target."""
    with other_device(monkeypatch):
        assert run_in(trained, ["evaluate", "--variant", "umx_unidirectional"]) == 0
    scores = json.loads(paths.eval_metrics("umx_unidirectional-seed42").read_text())
    assert scores["streaming_latency_ms"] > 0 and np.isfinite(scores["streaming_usdr_avg"])
