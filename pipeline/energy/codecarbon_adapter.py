"""The one place that touches CodeCarbon: its offline tracker, its packaged carbon intensities, and
the private attributes that say how it measured on this machine.

CodeCarbon's tracker samples power and energy every `measure_power_s` in a scheduler of its own.
Its task API pauses that scheduler for the length of a task (an epoch: minutes to hours), so the
counters would be read only at the task's ends and a RAPL counter that wraps more than once in
between (about 262 kJ: 30-45 min at 100-150 W) would under-count silently. The adapter therefore
never uses tasks: a part of a run is the difference of the running totals at its ends, and the
scheduler samples all along. CodeCarbon has no public API for the running totals nor for how it
measures (RAPL, a CPU-load model, NVML, a RAM model), so this adapter reads a few private
attributes. `tests/energy/test_codecarbon_contract.py`
checks each of them against the installed version, and `pyproject.toml` pins the tested range.

CodeCarbon is told which GPUs to meter (`hardware.visible_gpus`, as NVML indices) rather than left
to read CUDA_VISIBLE_DEVICES itself: it matches UUIDs after `lstrip("MIG-")` (which strips
characters, not a prefix), so UUID and MIG forms match no GPU and it reports 0 kWh, and its
hardware cache takes an empty list for "every GPU". A GPU part it cannot attribute is NaN.
Imports CodeCarbon (lazily: importing it costs half a second), `pipeline.errors` and the GPUs'
type from `hardware`.
"""
from __future__ import annotations

import logging
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.energy.hardware import VisibleGpus
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.config.schema import EnergyConfig

# CodeCarbon logs at level warning (hardware guesses, "multiple instances") unless this is set
# before it is first imported. A level the user set explicitly is respected.
_USER_LOG_LEVEL = os.environ.get("CODECARBON_LOG_LEVEL")
os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")

_LOGGER = "codecarbon"
# CodeCarbon's CPU modes, as `methods()["cpu"]` names them.
_CPU_MODES = {
    "intel_rapl": "rapl",  # the powercap "intel-rapl" driver, AMD included
    "windows_emi": "windows_emi",
    "intel_power_gadget": "power_gadget",
    "cpu_load": "cpu_load",
    "constant": "constant",
}
EMISSIONS_CSV = "emissions.csv"  # one row per execution, in the meter's folder
# Set by `sepcost launch` for jobs it runs side by side on one machine: how many share it.
NODE_JOBS_ENV = "SEPCOST_NODE_JOBS"


def shared_node() -> str:
    """Why this process shares its machine with other jobs ("" if it does not know it to): a launch
    running jobs side by side, or a scheduler that gave it only some of the CPUs. CodeCarbon then
    measures in process mode (this process's share of the CPU load, its own memory), not the whole
    machine's CPU and RAM, which every job would count as its own."""
    jobs = os.environ.get(NODE_JOBS_ENV, "")
    if jobs.isdigit() and int(jobs) > 1:
        return f"{jobs} jobs launched side by side"
    if hasattr(os, "sched_getaffinity"):
        allowed, cpus = len(os.sched_getaffinity(0)), os.cpu_count() or 0
        if 0 < allowed < cpus:
            return f"{allowed} of the machine's {cpus} CPUs allotted"
    return ""


# ----------------------------------------------------------------------------- carbon intensity


@lru_cache(maxsize=1)
def _energy_mix() -> dict:
    from codecarbon.input import DataSource

    return DataSource().get_global_energy_mix_data()


def known_country(iso: str) -> bool:
    """Whether CodeCarbon's packaged data has a carbon intensity for this ISO 3166 alpha-3 code."""
    return iso.strip().upper() in _energy_mix()


@lru_cache(maxsize=None)
def _country_intensity(iso: str) -> float:
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    mix = _energy_mix()
    if iso not in mix:
        raise ConfigError(
            f"params: energy.country_iso: CodeCarbon has no carbon intensity for {iso!r} "
            "(expected a 3-letter ISO country code such as FRA, DEU or USA)"
        )
    geo = GeoMetadata(country_iso_code=iso, country_name=mix[iso].get("country_name"))
    kg = Emissions(DataSource()).get_private_infra_emissions(Energy.from_energy(kWh=1.0), geo)
    return float(kg) * 1000.0


def carbon_intensity(cfg: EnergyConfig) -> float:
    """g CO2e per kWh: `energy.carbon_intensity_g_per_kwh` if > 0, else CodeCarbon's figure for
    `energy.country_iso` from its packaged data (what its offline tracker applies)."""
    if cfg.carbon_intensity_g_per_kwh > 0:
        return float(cfg.carbon_intensity_g_per_kwh)
    return _country_intensity(cfg.country_iso.strip().upper())


# ----------------------------------------------------------------------------- the tracker


class _CapturedLog(logging.Handler):
    """Keeps CodeCarbon's error records (instead of printing them) so they travel with the result."""

    def __init__(self, limit: int = 20):
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []
        self._limit = limit

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.messages) < self._limit:
            self.messages.append(record.getMessage())


def _quiet() -> bool:
    level = (_USER_LOG_LEVEL or "error").strip().lower()
    return level in ("error", "critical", "fatal")


class Tracker:
    """CodeCarbon's `OfflineEmissionsTracker` over one execution (no network, machine scope), metering
    exactly the GPUs of `gpus`.

    `status` says whether it runs ("ok", or why not); while it does not, every figure is NaN, a
    missing measurement, never 0 kWh passed off as one. `gpu_missing` says why the GPU part (and so
    the total) is NaN: `gpus.missing`, or CodeCarbon finding no GPU to meter where there is one.
    """

    def __init__(self, cfg: EnergyConfig, out_dir: Path, project_name: str, intensity_g_per_kwh: float,
                 gpus: VisibleGpus, process_root: int | None = None):
        self.cfg = cfg
        self.out_dir = out_dir
        self.project_name = project_name
        self.intensity_g_per_kwh = intensity_g_per_kwh
        self.gpu_missing = gpus.missing
        self._gpu_ids = [] if gpus.missing else list(gpus.indices)  # what CodeCarbon meters
        self.status = "not started"
        self.ok = False  # started; stays True after a failure at stop, whose totals still count
        self._tracker = None
        self._log = _CapturedLog()
        self.shared = shared_node()
        self.process_root = process_root  # in process mode, whose process tree is measured (default: this one's)

    def start(self) -> None:
        from codecarbon import OfflineEmissionsTracker
        from codecarbon.output_methods.base_output import OutputMethod

        self._capture_logger()
        # One CSV per execution: the previous execution's went to its MLflow run with its energy.
        (self.out_dir / EMISSIONS_CSV).unlink(missing_ok=True)
        try:
            tracker = OfflineEmissionsTracker(
                project_name=self.project_name,
                measure_power_secs=self.cfg.measure_power_s,
                output_dir=str(self.out_dir),
                output_file=EMISSIONS_CSV,
                output_methods=[OutputMethod.CSV],
                on_csv_write="append",
                country_iso_code=self.cfg.country_iso.strip().upper(),
                pue=self.cfg.pue,
                force_carbon_intensity_g_co2e_kwh=self.intensity_g_per_kwh,
                tracking_mode="process" if self.shared else "machine",
                allow_multiple_runs=True,  # no lock file: a killed run must not disable the next
                log_level="error" if _quiet() else _USER_LOG_LEVEL,
                gpu_ids=self._gpu_ids,  # NVML indices; CodeCarbon 3 takes ints as indices
            )
            self._capture_logger()  # the tracker's constructor re-adds a console handler
            if self.cfg.rapl_dir:
                _read_rapl_from(tracker, self.cfg.rapl_dir, self.out_dir)
            if self.shared and self.process_root:
                _measure_tree_of(tracker, self.process_root)
            self._meter_gpus(tracker)
            tracker.start()
        except Exception as err:
            self.status = f"failed: {type(err).__name__}: {err}"
            return
        self._tracker = tracker
        self.ok = getattr(tracker, "_start_time", None) is not None
        self.status = "ok" if self.ok else "failed to start"

    def _meter_gpus(self, tracker) -> None:
        """No GPU hardware where there is no GPU to meter (its cache would read `gpu_ids=[]` as every
        GPU); where there is one and CodeCarbon found none (it looks for `nvidia-smi`), the GPU part
        is missing."""
        tracker._ensure_hardware_ready()  # CodeCarbon detects the hardware lazily, at start
        gpu_hw = [hw for hw in tracker._hardware if type(hw).__name__ == "GPU"]
        if not self._gpu_ids:
            tracker._hardware = [hw for hw in tracker._hardware if hw not in gpu_hw]
        elif not gpu_hw and not self.gpu_missing:
            self.gpu_missing = (f"CodeCarbon found no NVIDIA GPU to meter (it needs nvidia-smi on the PATH), "
                                f"but this process uses GPU {','.join(map(str, self._gpu_ids))}")

    def stop(self) -> None:
        """Measure the tail and write the CSV; keeps CodeCarbon's logged errors for `methods`."""
        if self.ok:
            try:
                self._tracker.stop()
            except Exception as err:  # CodeCarbon suppresses most errors itself
                self.status = f"failed at stop: {err}"
        logging.getLogger(_LOGGER).removeHandler(self._log)

    def _capture_logger(self) -> None:
        if not _quiet():
            return
        logger = logging.getLogger(_LOGGER)
        logger.setLevel(logging.ERROR)
        logger.handlers = [h for h in logger.handlers
                           if isinstance(h, (logging.FileHandler, _CapturedLog))
                           or not isinstance(h, logging.StreamHandler)]
        if self._log not in logger.handlers:
            logger.addHandler(self._log)

    def totals(self, measure: bool) -> dict[str, float]:
        """kWh so far (with the PUE) in all and by part, NaN when not measured; measures first when
        asked (a part of a run ends) and running."""
        t = self._tracker
        if not self.ok:
            return dict.fromkeys(("energy", "cpu", "gpu", "ram"), math.nan)
        if measure and getattr(t, "_start_time", None) is not None:
            try:
                # Between its scheduled samples CodeCarbon has not yet counted the energy since the
                # last one; flush() would measure too but also append a row to the CSV.
                t._measure_power_and_energy_if_stale(0.2)
            except Exception:
                pass
        out = {"energy": float(t._total_energy.kWh), "cpu": float(t._total_cpu_energy.kWh),
               "gpu": float(t._total_gpu_energy.kWh), "ram": float(t._total_ram_energy.kWh)}
        if self.gpu_missing:  # a part not measured: the total is not known either
            out["gpu"] = out["energy"] = math.nan
        return out

    def methods(self) -> dict:
        """How CodeCarbon measures here, read from the hardware objects it set up."""
        out: dict = {"codecarbon": self.status}
        if self.gpu_missing:
            out.update(gpu="missing", gpu_missing=self.gpu_missing)
        if self._log.messages:
            out["codecarbon_errors"] = " | ".join(self._log.messages)[:2000]
        tracker = self._tracker
        if tracker is None:
            return out
        for hw in getattr(tracker, "_hardware", []):
            kind = type(hw).__name__
            if kind == "CPU":
                mode = getattr(hw, "_mode", "unknown")
                out["cpu"] = _CPU_MODES.get(mode, mode)
                if mode in ("cpu_load", "constant") and getattr(hw, "_tdp", None):
                    out["cpu_tdp_w"] = float(hw._tdp)  # CodeCarbon's TDP for the whole CPU
            elif kind == "GPU" and not self.gpu_missing:
                out["gpu"] = _gpu_method(hw)
            elif kind == "RAM":
                if getattr(hw, "_force_ram_power", None) is not None:
                    out["ram"] = "constant"
                else:
                    out["ram"] = f"dimm_model_{getattr(hw, '_tracking_mode', 'machine')}"
            elif kind == "AppleSiliconChip":
                out["cpu" if hw.chip_part == "CPU" else "gpu"] = "powermetrics"
            elif kind == "Raspberry":
                out["cpu" if hw.chip_part == "CPU" else "ram"] = "raspberry_pmic"
        out["tracking_mode"] = getattr(tracker, "_tracking_mode", "machine")
        if self.shared:
            out["node_shared"] = self.shared
        out["measure_power_s"] = self.cfg.measure_power_s
        ram_power = getattr(getattr(tracker, "_ram_power", None), "W", None)
        if ram_power:
            out["ram_power_w"] = round(float(ram_power), 3)
        try:
            from codecarbon import __version__

            out["codecarbon_version"] = __version__
        except ImportError:
            pass
        return out

    def files(self) -> list[Path]:
        """CodeCarbon's CSV of this execution, if it wrote one."""
        return [p for p in [self.out_dir / EMISSIONS_CSV] if p.is_file()]


def _gpu_method(hw) -> str:
    """How CodeCarbon meters its GPUs: "nvml_counter" (NVML's total-energy counter, Volta and
    newer), "nvml_power" (power x time, where the GPU has no counter or it failed), both joined by
    "+" when the GPUs differ, or "amdsmi"."""
    metered = [d for d in hw.devices.devices if d.gpu_index in hw._get_gpu_ids()]
    if any(type(d).__name__ != "NvidiaGPUDevice" for d in metered):
        return "amdsmi"
    return "+".join(sorted({"nvml_power" if d._use_power_fallback else "nvml_counter" for d in metered})) or "none"


def _measure_tree_of(tracker, root: int) -> None:
    """In process mode, make the tracker measure the CPU time and memory of `root`'s process tree
    rather than this process's: under torchrun, the agent's, so that the node's meter on its first
    rank counts every rank of the node, not its own rank and its loader workers alone."""
    import psutil

    tracker._ensure_hardware_ready()  # CodeCarbon detects the hardware lazily, at start
    for hw in tracker._hardware:
        if type(hw).__name__ == "CPU":
            hw._pid, hw._process = root, psutil.Process(root)
        elif type(hw).__name__ == "RAM":
            hw._pid, hw._children = root, True


def _read_rapl_from(tracker, rapl_dir: str, out_dir: Path) -> None:
    """Make the tracker read the CPU's RAPL counters from `rapl_dir` (`energy.rapl_dir`: a container
    that bind-mounts the host's powercap folder elsewhere, or a test's simulated counter)."""
    from codecarbon.external.hardware import CPU

    tracker._ensure_hardware_ready()  # CodeCarbon detects the hardware lazily, at start
    for i, hw in enumerate(tracker._hardware):
        if type(hw).__name__ == "CPU":
            tracker._hardware[i] = CPU(output_dir=str(out_dir), mode="intel_rapl", model=hw._model, tdp=hw._tdp,
                                       rapl_dir=rapl_dir, tracking_mode=hw._tracking_mode)
