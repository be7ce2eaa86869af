"""Every form of CUDA_VISIBLE_DEVICES, resolved to the GPUs both energy methods price, on the
simulated NVML of `tests/nvml.py`; the resolution, the meter, CodeCarbon's tracker and Green
Algorithms around it are the real ones."""
from __future__ import annotations

import math
import time

import pynvml
import pytest
import torch

from pipeline.config import EnergyConfig
from pipeline.energy.hardware import visible_gpus
from pipeline.energy.meter import EnergyMeter
from pipeline.errors import UserError
from pipeline.runtime import gpu_ordinals
from tests.nvml import NODE, nvml  # noqa: F401 (a fixture)


def _visible(monkeypatch, value: str | None):
    if value is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    return visible_gpus()


# ----------------------------------------------------------------------------- the resolution


@pytest.mark.parametrize("value, indices, missing", [
    (None, (0, 1, 2), "MIG mode is on"),  # every GPU, one of them cut into slices
    ("", (), ""),  # no GPU visible: nothing to price
    ("-1", (), ""),  # the idiom that hides every GPU
    ("1,0", (1, 0), ""),
    ("GPU-a1a1a1a1-0000-0000-0000-000000000000", (0,), ""),
    ("GPU-b2b2", (1,), ""),  # a unique prefix, as CUDA accepts
    ("GPU-b2b2,GPU-a1", (1, 0), ""),
    ("MIG-e5e5e5e5-0000-0000-0000-000000000000", (2,), "a MIG slice of GPU 2"),
    ("MIG-d4d4", (2,), "a MIG slice of GPU 2"),
    ("MIG-GPU-c3c3c3c3-0000-0000-0000-000000000000/1/0", (2,), "a MIG slice of GPU 2"),  # the legacy form
    ("GPU-ffff", (), "'GPU-ffff' matches no GPU"),
    ("GPU-", (), "matches 3 GPUs"),  # a prefix of every UUID
    ("0,GPU-ffff,1", (0,), "'GPU-ffff' matches no GPU"),  # CUDA stops at the first invalid entry
    ("0,-1,1", (0,), ""),
])
def test_each_form_resolves_to_the_gpus_cuda_uses(nvml, monkeypatch, value, indices, missing):
    gpus = _visible(monkeypatch, value)
    assert gpus.indices == indices
    assert (missing in gpus.missing) if missing else gpus.missing == ""
    if not indices and not missing:
        assert gpus.scope.startswith("no GPU visible")


@pytest.mark.parametrize("value, line", [
    ("3", "CUDA_VISIBLE_DEVICES='3': GPU index 3 is out of range: NVML lists 3 GPUs (0-2)"),
    ("0,gpu0", "CUDA_VISIBLE_DEVICES='0,gpu0': entry 'gpu0' is not a GPU index, GPU-<uuid> or MIG-<uuid>"),
])
def test_a_bad_variable_is_one_line_naming_it(nvml, monkeypatch, value, line):
    with pytest.raises(UserError) as err:
        _visible(monkeypatch, value)
    assert str(err.value) == line


def test_indices_of_differing_gpus_need_the_pci_order(nvml, monkeypatch):
    monkeypatch.delenv("CUDA_DEVICE_ORDER")  # CUDA's default, fastest first: GPU 0 need not be NVML's 0
    assert "CUDA_DEVICE_ORDER" in _visible(monkeypatch, "0").missing
    assert _visible(monkeypatch, "GPU-a1").missing == ""  # a UUID names one GPU whatever the order


def test_without_nvml_there_is_no_gpu(monkeypatch):
    def no_driver():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    gpus = _visible(monkeypatch, "0")
    assert gpus.devices == () and gpus.missing == "" and "NVML lists none" in gpus.scope


@pytest.mark.parametrize("value, ordinals, indices, missing", [
    ("1,0", (1,), (0,), ""),  # cuda:1 is the second visible GPU: NVML's 0
    ("1,0", (0, 1), (1, 0), ""),  # a torchrun node's two ranks
    ("1,2", (0,), (1, 2), "a MIG slice of GPU 2"),  # a list that cannot be attributed stays so, whole
    (None, (), (), ""),  # a CPU execution: no GPU charged, none missing, even on a MIG node
    ("1", (1,), (), "runs on cuda:1, but only 1 GPUs are visible"),
])
def test_an_execution_is_charged_for_the_gpus_it_runs_on(nvml, monkeypatch, value, ordinals, indices, missing):
    gpus = _visible(monkeypatch, value).used(ordinals)
    assert gpus.indices == indices
    assert (missing in gpus.missing) if missing else gpus.missing == ""


def test_a_training_node_runs_on_its_ranks_gpus():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert gpu_ordinals(cuda, per_node=4) == (0, 1, 2, 3)  # rank N on cuda:N
    assert gpu_ordinals(torch.device("cuda", 2)) == (2,)
    assert gpu_ordinals(cuda) == (0,) and gpu_ordinals(cpu, per_node=4) == ()


# ----------------------------------------------------------------------------- both methods


def _meter(tmp_path, monkeypatch, value: str, gpus: tuple[int, ...] | None = None) -> EnergyMeter:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    with EnergyMeter(EnergyConfig(measure_power_s=0.2), out_dir=tmp_path / "out", project_name="gpu",
                     gpus=gpus) as meter:
        time.sleep(1.0)
    return meter


@pytest.mark.parametrize("value, gpus, index, method", [
    ("GPU-a1a1", None, 0, "nvml_counter"),  # a UUID: CodeCarbon alone would match no GPU and report 0 kWh
    ("1", None, 1, "nvml_power"),  # no energy counter: power x time
    ("0,1", (1,), 1, "nvml_power"),  # running on cuda:1, the node's other visible GPU not charged
])
def test_the_resolved_gpu_alone_is_metered_and_its_method_recorded(nvml, tmp_path, monkeypatch, value, gpus, index,
                                                                   method):
    meter = _meter(tmp_path, monkeypatch, value, gpus)
    totals, methods = meter.totals(), meter.methods
    assert methods["codecarbon"] == "ok" and methods["gpu"] == method
    assert methods["gpu_ids"] == str(index) and methods["ga_gpu_count"] == 1 and "gpu_missing" not in methods
    # this GPU's power over the run, not the node's: the simulated GPUs draw 300, 100 and 250 W
    assert totals["gpu_kwh"] == pytest.approx(NODE[index].watts * totals["duration_s"] / 3.6e6, rel=0.25)
    assert meter.ga_inputs()["n_gpus"] == 1 and totals["ga_gpu_kwh"] > 0
    assert methods["ga_gpu_tdp_source"].startswith("table: " + ("A100" if index == 0 else "P100"))


def test_no_gpu_visible_prices_no_gpu_and_says_so(nvml, tmp_path, monkeypatch):
    meter = _meter(tmp_path, monkeypatch, "")  # what `sepcost launch` gives a job with gpus_per_job 0
    totals, methods = meter.totals(), meter.methods
    assert totals["gpu_kwh"] == 0 and totals["ga_gpu_kwh"] == 0 and totals["energy_kwh_codecarbon"] > 0
    assert methods["gpu"] == "none" and methods["gpu_scope"].startswith("no GPU visible")
    assert methods["ga_gpu_count"] == 0 and "gpu_ids" not in methods


@pytest.mark.parametrize("value, reason", [
    ("MIG-d4d4", "a MIG slice of GPU 2"),
    ("GPU-ffff", "'GPU-ffff' matches no GPU"),
])
def test_a_gpu_that_cannot_be_attributed_is_missing_with_its_reason(nvml, tmp_path, monkeypatch, value, reason):
    meter = _meter(tmp_path, monkeypatch, value)
    totals, methods = meter.totals(), meter.methods
    for key in ("gpu_kwh", "energy_kwh_codecarbon", "ga_gpu_kwh", "energy_kwh_green_algorithms"):
        assert math.isnan(totals[key]), key
    assert totals["cpu_kwh"] > 0 and totals["ga_cpu_kwh"] > 0  # the parts that were measured stay
    assert methods["gpu"] == "missing" and reason in methods["gpu_missing"]


def test_a_gpu_codecarbon_cannot_see_is_missing(nvml, tmp_path, monkeypatch):
    import codecarbon.core.gpu as cc_gpu

    monkeypatch.setattr(cc_gpu, "is_nvidia_system", lambda: False)  # no nvidia-smi on the PATH
    meter = _meter(tmp_path, monkeypatch, "0")
    assert math.isnan(meter.totals()["gpu_kwh"]) and "nvidia-smi" in meter.methods["gpu_missing"]
    assert meter.totals()["ga_gpu_kwh"] > 0  # Green Algorithms still prices GPU 0 from its TDP
