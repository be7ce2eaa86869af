"""The CodeCarbon internals the adapter relies on, checked against the installed version.

`pipeline/energy/codecarbon_adapter.py` reads and restores private attributes of CodeCarbon's
tracker (there is no public API for them); this file fails first, and says which, when a CodeCarbon
release changes one. pyproject.toml pins the range these tests passed on."""
from __future__ import annotations

import importlib.metadata
import re
import time

import pytest
from packaging.specifiers import SpecifierSet

from pipeline.config import EnergyConfig
from pipeline.energy.codecarbon_adapter import Tracker, carbon_intensity, known_country
from pipeline.energy.hardware import visible_gpus
from tests.conftest import REPO


def _pinned_range() -> SpecifierSet:
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r'"codecarbon([^"]+)"', text)
    assert match, "pyproject.toml: no codecarbon requirement"
    return SpecifierSet(match.group(1))


def test_the_installed_codecarbon_is_in_the_tested_range():
    installed = importlib.metadata.version("codecarbon")
    assert installed in _pinned_range(), f"codecarbon {installed} is outside the tested range {_pinned_range()}"


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    cfg = EnergyConfig(measure_power_s=0.5)
    tracker = Tracker(cfg, tmp_path_factory.mktemp("contract"), "contract", carbon_intensity(cfg), visible_gpus())
    tracker.start()
    yield tracker
    tracker.stop()


def test_the_private_attributes_the_adapter_reads_exist(tracker):
    assert tracker.ok, tracker.status
    t = tracker._tracker
    for name in ("_start_time", "_total_energy", "_total_cpu_energy", "_total_gpu_energy", "_total_ram_energy",
                 "_hardware", "_tracking_mode", "_measure_power_and_energy", "_measure_power_and_energy_if_stale",
                 "_ensure_hardware_ready"):
        assert hasattr(t, name), f"OfflineEmissionsTracker.{name} is gone"
    assert hasattr(t._total_energy, "kWh")
    kinds = {type(hw).__name__: hw for hw in t._hardware}
    assert "CPU" in kinds and all(hasattr(kinds["CPU"], a) for a in ("_mode", "_pid", "_process"))
    assert "RAM" in kinds and all(hasattr(kinds["RAM"], a) for a in ("_tracking_mode", "_pid", "_children"))


def test_totals_grow_while_the_scheduler_samples(tracker):
    scheduler = tracker._tracker._scheduler
    assert scheduler is not None and not scheduler._stopped  # CodeCarbon measures every measure_power_s
    before = tracker.totals(measure=False)["energy"]
    time.sleep(1.2)  # more than two sampling periods, no measurement forced
    assert tracker.totals(measure=False)["energy"] > before
    assert set(tracker.totals(measure=True)) == {"energy", "cpu", "gpu", "ram"}


def test_the_cpu_hardware_can_read_rapl_from_another_folder():
    import inspect

    from codecarbon.external.hardware import CPU

    params = inspect.signature(CPU.__init__).parameters
    assert {"output_dir", "mode", "model", "tdp", "rapl_dir", "tracking_mode"} <= set(params)


def test_the_gpu_internals_the_adapter_reads_exist():
    """The tracker takes the GPUs to meter (`gpu_ids`); `_gpu_method` reads which GPUs a GPU
    hardware meters and whether each fell back to power x time (tests/energy/test_gpus.py runs
    them on a simulated NVML)."""
    import inspect

    from codecarbon.emissions_tracker import BaseEmissionsTracker
    from codecarbon.external.hardware import GPU

    assert "gpu_ids" in inspect.signature(BaseEmissionsTracker.__init__).parameters
    assert hasattr(GPU, "_get_gpu_ids") and "gpu_ids" in GPU.__dataclass_fields__


def test_methods_name_how_it_measured(tracker):
    methods = tracker.methods()
    assert methods["codecarbon"] == "ok" and methods["cpu"] in {"rapl", "cpu_load", "constant", "windows_emi",
                                                                  "power_gadget", "powermetrics", "raspberry_pmic"}
    assert methods["codecarbon_version"] == importlib.metadata.version("codecarbon")


def test_the_packaged_carbon_intensities():
    assert known_country("FRA") and known_country(" deu ") and not known_country("XYZ")
    assert 0 < carbon_intensity(EnergyConfig(country_iso="FRA")) < carbon_intensity(EnergyConfig(country_iso="DEU"))
