"""A simulated NVML for the tests of the GPU energy and of the jobs' GPUs: the `pynvml` functions that
the project and CodeCarbon call answer from a small device table, NODE (names, UUIDs, MIG devices,
an energy counter that grows with time at the GPU's power). Use the `nvml` fixture
(`from tests.nvml import nvml`); everything around it stays real."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import pynvml
import pytest


@dataclass(eq=False)
class SimulatedGpu:
    name: str
    uuid: str
    watts: float
    counter: bool = True  # NVML's total-energy counter (Volta and newer)
    migs: list["SimulatedGpu"] = field(default_factory=list)  # MIG devices: MIG mode on
    started: float = field(default_factory=time.perf_counter)


# GPU 0 meters its energy with a counter, GPU 1 (Pascal) only its power, GPU 2 is cut into MIG slices.
NODE = [
    SimulatedGpu("NVIDIA A100-SXM4-40GB", "GPU-a1a1a1a1-0000-0000-0000-000000000000", 300.0),
    SimulatedGpu("Tesla P100-PCIE-16GB", "GPU-b2b2b2b2-0000-0000-0000-000000000000", 100.0, counter=False),
    SimulatedGpu("NVIDIA A100-SXM4-40GB", "GPU-c3c3c3c3-0000-0000-0000-000000000000", 250.0, migs=[
        SimulatedGpu("MIG 3g.20gb", "MIG-d4d4d4d4-0000-0000-0000-000000000000", 0.0),
        SimulatedGpu("MIG 3g.20gb", "MIG-e5e5e5e5-0000-0000-0000-000000000000", 0.0)]),
]


def _not_supported(*_):
    raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)


def _energy_mj(gpu: SimulatedGpu) -> int:
    if not gpu.counter or gpu.migs:
        _not_supported()
    return int((time.perf_counter() - gpu.started) * gpu.watts * 1000)


def _mig_device(gpu: SimulatedGpu, slot: int) -> SimulatedGpu:
    if slot >= len(gpu.migs):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
    return gpu.migs[slot]


@pytest.fixture
def nvml(monkeypatch):
    """NODE behind pynvml, for this project and for CodeCarbon (which found no NVML at import);
    CUDA_DEVICE_ORDER=PCI_BUS_ID, so CUDA's indices are NVML's. CodeCarbon's hardware cache is
    emptied before and after, so no other test meters these GPUs."""
    import codecarbon.core.gpu as cc_gpu
    import codecarbon.core.gpu_nvidia as cc_nvidia
    from codecarbon.core.hardware_cache import clear_cache

    functions = {
        "nvmlInit": lambda: None,
        "nvmlDeviceGetCount": lambda: len(NODE),
        "nvmlDeviceGetHandleByIndex": lambda i: NODE[i],
        "nvmlDeviceGetName": lambda h: h.name,
        "nvmlDeviceGetUUID": lambda h: h.uuid,
        "nvmlDeviceGetMigMode": lambda h: [1, 1] if h.migs else _not_supported(),
        "nvmlDeviceGetMaxMigDeviceCount": lambda h: 7,
        "nvmlDeviceGetMigDeviceHandleByIndex": _mig_device,
        "nvmlDeviceGetTotalEnergyConsumption": _energy_mj,
        "nvmlDeviceGetPowerUsage": lambda h: int(h.watts * 1000),
        "nvmlDeviceGetEnforcedPowerLimit": lambda h: int(h.watts * 1000),
        "nvmlDeviceGetUtilizationRates": lambda h: pynvml.c_nvmlUtilization_t(50, 10),
        "nvmlDeviceGetMemoryInfo": lambda h: pynvml.c_nvmlMemory_t(16 * 2**30, 16 * 2**30, 0),
    }
    for name, function in functions.items():
        monkeypatch.setattr(pynvml, name, function)
    monkeypatch.setattr(cc_nvidia, "pynvml", pynvml)
    monkeypatch.setattr(cc_gpu, "PYNVML_AVAILABLE", True)
    monkeypatch.setattr(cc_gpu, "is_nvidia_system", lambda: True)
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    clear_cache()
    yield
    clear_cache()
