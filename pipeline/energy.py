"""Energy accounting around a stage: CodeCarbon's measurement and a Green Algorithms estimate.

A stage is wrapped from the outside, never from inside its loop::

    with EnergyMeter(cfg.energy, out_dir=paths.model_dir(variant), project_name="train@base") as meter:
        for epoch in ...:
            with meter.task(f"epoch_{epoch}") as epoch_energy:
                train_one_epoch()
            history.append(epoch_energy.energy_kwh_codecarbon)
    meter.totals()

Two methods price the same interval, with the same PUE and the same carbon intensity:

- **CodeCarbon** (`OfflineEmissionsTracker`: country and PUE from params, no network): RAPL counters
  when the machine exposes them, else a CPU-load model or a constant; NVML energy counters for NVIDIA
  GPUs; a RAM model. Which of these it used on this machine is read back from the tracker into
  `meter.methods`, since it decides how far the figure can be trusted. Its emissions CSV (one row per
  execution) and its task CSV (one row per `task`) are written into `out_dir` and kept.
- **Green Algorithms** (Lannelongue et al., 2021): runtime x (cores x TDP per core x CPU usage +
  GPUs x GPU TDP x GPU usage + memory GB x 0.3725 W) x PUE. Usage is measured here: the CPU time of
  this process and its children (DataLoader workers included) over the wall time and the CPUs the
  process may use; GPU usage from NVML's utilisation counter, sampled by a light background thread.
  TDPs come from `pipeline/tdp.csv`, overridden by `energy.tdp_per_core_w` / `energy.gpu_tdp_w`;
  a CPU that matches no row gets 12 W per core and a GPU 200 W. Memory is the peak resident memory
  of the process tree (sampled), in GiB: the memory the job needed, which is what the Green
  Algorithms calculator asks for ("memory requested"), rather than the machine's whole RAM that
  CodeCarbon's machine-level model prices.

Scopes differ on purpose and are recorded: CodeCarbon measures the machine (tracking mode
"machine"), Green Algorithms the job. On a dedicated machine the two should agree within the
uncertainty of TDP-based estimates.

Resuming: energy spent by earlier executions of the same work is passed in as `previous` (a dict of
`totals()`); `totals()` is then previous + this execution, and `run_totals()` this execution alone
(the whole-study ledger sums the latter over every MLflow run, so nothing is counted twice).
"""
from __future__ import annotations

import os

# CodeCarbon logs at level warning (hardware guesses, "multiple instances") unless this is set
# before it is first imported. A level the user set explicitly is respected.
_USER_CC_LOG_LEVEL = os.environ.get("CODECARBON_LOG_LEVEL")
os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")

import csv  # noqa: E402
import dataclasses  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterator, Mapping  # noqa: E402

import psutil  # noqa: E402

from pipeline.config import EnergyConfig  # noqa: E402
from pipeline.errors import ConfigError  # noqa: E402

MEMORY_W_PER_GB = 0.3725  # Green Algorithms' memory power, W per GB
FALLBACK_TDP_PER_CORE_W = 12.0  # the Green Algorithms calculator's "Any" CPU
FALLBACK_GPU_TDP_W = 200.0  # the Green Algorithms calculator's "Any" GPU
TDP_TABLE = Path(__file__).with_name("tdp.csv")
GIB = 1024**3

# What totals() and run_totals() return; every value is additive over executions.
ENERGY_KEYS = (
    "energy_kwh_codecarbon",
    "energy_kwh_green_algorithms",
    "emissions_kg_co2e",  # CodeCarbon's kWh x carbon intensity
    "ga_emissions_kg_co2e",  # Green Algorithms' kWh x the same intensity
    "duration_s",
    "cpu_kwh",  # CodeCarbon's split
    "gpu_kwh",
    "ram_kwh",
    "ga_cpu_kwh",  # Green Algorithms' split
    "ga_gpu_kwh",
    "ga_ram_kwh",
)

# CodeCarbon's CPU modes, as `methods["cpu"]` names them.
_CPU_MODES = {
    "intel_rapl": "rapl",  # the powercap "intel-rapl" driver, AMD included
    "windows_emi": "windows_emi",
    "intel_power_gadget": "power_gadget",
    "cpu_load": "cpu_load",
    "constant": "constant",
}

_CC_LOGGER = "codecarbon"


# ----------------------------------------------------------------------------- Green Algorithms


def green_algorithms_kwh(
    runtime_s: float,
    cores: float,
    tdp_per_core_w: float,
    cpu_usage: float,
    n_gpus: float = 0,
    gpu_tdp_w: float = 0.0,
    gpu_usage: float = 0.0,
    memory_gb: float = 0.0,
    pue: float = 1.0,
    memory_w_per_gb: float = MEMORY_W_PER_GB,
) -> dict[str, float]:
    """Green Algorithms energy of a run, in kWh, with its CPU, GPU and memory parts.

    runtime x (cores x TDP per core x CPU usage + GPUs x GPU TDP x GPU usage
    + memory GB x memory W per GB) x PUE. Usages are fractions in [0, 1]. Each part includes the
    PUE, so the parts add up to `energy_kwh`.
    """
    values = dict(runtime_s=runtime_s, cores=cores, tdp_per_core_w=tdp_per_core_w, n_gpus=n_gpus,
                  gpu_tdp_w=gpu_tdp_w, memory_gb=memory_gb, memory_w_per_gb=memory_w_per_gb)
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"green_algorithms_kwh: {name} must be >= 0, got {value}")
    for name, value in (("cpu_usage", cpu_usage), ("gpu_usage", gpu_usage)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"green_algorithms_kwh: {name} must be a fraction in [0, 1], got {value}")
    if pue < 1.0:
        raise ValueError(f"green_algorithms_kwh: pue must be >= 1, got {pue}")
    kwh_per_w = runtime_s / 3600.0 / 1000.0 * pue
    cpu = cores * tdp_per_core_w * cpu_usage * kwh_per_w
    gpu = n_gpus * gpu_tdp_w * gpu_usage * kwh_per_w
    ram = memory_gb * memory_w_per_gb * kwh_per_w
    return {"energy_kwh": cpu + gpu + ram, "cpu_kwh": cpu, "gpu_kwh": gpu, "ram_kwh": ram}


# ----------------------------------------------------------------------------- hardware


def _cpu_model() -> str:
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key.strip().lower() in ("model name", "hardware", "cpu model") and value.strip():
                        return value.strip()
        except OSError:
            pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                 text=True, timeout=5)
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def _visible_gpu_indices(count: int) -> list[int]:
    """NVML indices of the GPUs this process may use (CUDA_VISIBLE_DEVICES as indices)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    indices = []
    for item in visible.split(","):
        item = item.strip()
        if not item.isdigit():  # UUIDs or MIG ids: keep every device rather than guess
            return list(range(count))
        if int(item) < count:
            indices.append(int(item))
    return indices


@lru_cache(maxsize=1)
def _nvml_gpus() -> tuple[tuple[int, object, str], ...]:
    """(index, handle, name) of the visible NVIDIA GPUs; empty without a GPU or NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        gpus = []
        for i in _visible_gpu_indices(count):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append((i, handle, name.decode() if isinstance(name, bytes) else str(name)))
        return tuple(gpus)
    except Exception:  # no library, no driver, no device
        return ()


@lru_cache(maxsize=1)
def _detect_hardware() -> dict:
    logical = psutil.cpu_count(logical=True) or 1
    physical = psutil.cpu_count(logical=False) or logical
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = logical
    gpus = _nvml_gpus()
    names = sorted({name for _, _, name in gpus})
    return {
        "cpu_model": _cpu_model(),
        "cpu_logical_cores": logical,
        "cpu_physical_cores": physical,
        "cpus_available": available,
        "gpu_model": ", ".join(names),
        "gpu_count": len(gpus),
        "memory_gb": round(psutil.virtual_memory().total / GIB, 2),
        "platform": platform.platform(),
    }


def detect_hardware() -> dict:
    """CPU model and cores, visible GPUs (NVML) and machine memory in GiB."""
    return dict(_detect_hardware())


# ----------------------------------------------------------------------------- TDP table


def _normalise_model(name: str) -> str:
    name = re.sub(r"\((R|TM|tm|r)\)", " ", name)
    name = re.sub(r"@\s*[\d.]+\s*[GM]Hz", " ", name, flags=re.IGNORECASE)
    name = re.sub(r"\bCPU\b", " ", name)
    return " ".join(name.split())


@lru_cache(maxsize=1)
def _tdp_rows() -> tuple[dict, ...]:
    with open(TDP_TABLE, encoding="utf-8") as f:
        lines = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
    rows = []
    for row in csv.DictReader(lines):
        rows.append({
            "kind": row["kind"].strip(),
            "pattern": row["pattern"].strip(),
            "tdp_w": float(row["tdp_w"]),
            "cores": int(row["cores"]) if row.get("cores", "").strip() else None,
        })
    return tuple(rows)


def lookup_tdp(model: str, kind: str) -> dict | None:
    """The row of pipeline/tdp.csv for a CPU or GPU model name (longest matching pattern), or None."""
    text = _normalise_model(model or "")
    best = None
    for row in _tdp_rows():
        if row["kind"] != kind:
            continue
        pattern = r"(?<![A-Za-z0-9])" + re.escape(row["pattern"]) + r"(?![A-Za-z0-9])"
        if re.search(pattern, text, flags=re.IGNORECASE):
            if best is None or len(row["pattern"]) > len(best["pattern"]):
                best = row
    return dict(best) if best else None


def _cpu_tdp(cfg: EnergyConfig, model: str) -> tuple[float, str]:
    if cfg.tdp_per_core_w > 0:
        return cfg.tdp_per_core_w, "params: energy.tdp_per_core_w"
    row = lookup_tdp(model, "cpu")
    if row and row["cores"]:
        return row["tdp_w"] / row["cores"], f"table: {row['pattern']} ({row['tdp_w']:g} W / {row['cores']} cores)"
    return FALLBACK_TDP_PER_CORE_W, f"fallback: no row of pipeline/tdp.csv matches {model!r}"


def _gpu_tdp(cfg: EnergyConfig, model: str) -> tuple[float, str]:
    if cfg.gpu_tdp_w > 0:
        return cfg.gpu_tdp_w, "params: energy.gpu_tdp_w"
    if not model:
        return 0.0, "no GPU"
    row = lookup_tdp(model, "gpu")
    if row:
        return row["tdp_w"], f"table: {row['pattern']} ({row['tdp_w']:g} W)"
    return FALLBACK_GPU_TDP_W, f"fallback: no row of pipeline/tdp.csv matches {model!r}"


# ----------------------------------------------------------------------------- carbon intensity


@lru_cache(maxsize=None)
def _codecarbon_intensity(iso: str) -> float:
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    mix = DataSource().get_global_energy_mix_data()
    if iso not in mix:
        raise ConfigError(
            f"params: energy.country_iso: CodeCarbon has no carbon intensity for {iso!r} "
            "(expected a 3-letter ISO country code such as FRA, DEU or USA, "
            "or set energy.carbon_intensity_g_per_kwh)"
        )
    geo = GeoMetadata(country_iso_code=iso, country_name=mix[iso].get("country_name"))
    kg = Emissions(DataSource()).get_private_infra_emissions(Energy.from_energy(kWh=1.0), geo)
    return float(kg) * 1000.0


def carbon_intensity(cfg: EnergyConfig) -> float:
    """g CO2e per kWh: `energy.carbon_intensity_g_per_kwh` if > 0, else CodeCarbon's figure for
    `energy.country_iso` from its packaged data (what its offline tracker would apply)."""
    if cfg.carbon_intensity_g_per_kwh > 0:
        return float(cfg.carbon_intensity_g_per_kwh)
    return _codecarbon_intensity(cfg.country_iso.strip().upper())


# ----------------------------------------------------------------------------- usage sampling


@dataclass(frozen=True)
class _Snapshot:
    t: float  # perf_counter
    cpu_s: float  # CPU seconds of the process tree
    gpu_int: float  # integral of the mean GPU utilisation (fraction) over time, in seconds
    sys_busy: float  # system-wide busy and total CPU seconds
    sys_total: float


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc] + proc.children(recursive=True)
    except psutil.Error:
        return [proc]


def _tree_stats(procs: list[psutil.Process]) -> tuple[float, int]:
    """CPU seconds and resident bytes of a process and its live descendants (`_tree`).

    A live process counts its own time plus its reaped children's (children_user/system); a child's
    time moves into its parent's children_* fields when it is reaped, so nothing counts twice. A
    child that ended since the list was made is skipped: its time is in its parent's by then."""
    cpu, rss = 0.0, 0
    for p in procs:
        try:
            with p.oneshot():
                t = p.cpu_times()
                cpu += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
                rss += p.memory_info().rss
        except psutil.Error:
            continue
    return cpu, rss


def _system_cpu() -> tuple[float, float]:
    t = psutil.cpu_times()
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    return total - t.idle - getattr(t, "iowait", 0.0), total


class _UsageSampler:
    """Samples the process tree's memory and the GPUs' utilisation every `interval_s` seconds in a
    daemon thread; CPU time needs no sampling (it is cumulative) and is read at each snapshot.

    Listing the process tree scans all of /proc (milliseconds), so only the thread does it; a
    snapshot reads the processes it last listed (a child started since is counted from the next
    listing on, with all its CPU time)."""

    def __init__(self, interval_s: float, gpu_handles: list):
        self._proc = psutil.Process()
        self._procs = _tree(self._proc)
        self._interval = interval_s
        self._gpus = gpu_handles
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t_last = 0.0
        self._gpu_last = 0.0
        self._gpu_int = 0.0
        self.peak_bytes = 0
        self.task_peak_bytes = 0

    def _gpu_utilisation(self) -> float:
        if not self._gpus:
            return 0.0
        import pynvml

        total = 0.0
        for handle in self._gpus:
            try:
                total += pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0
            except Exception:
                pass
        return total / len(self._gpus)

    def _sample(self, relist: bool = False) -> float:
        if relist:
            self._procs = _tree(self._proc)
        cpu, rss = _tree_stats(self._procs)
        util = self._gpu_utilisation()
        now = time.perf_counter()
        with self._lock:
            self._gpu_int += self._gpu_last * (now - self._t_last)
            self._t_last = now
            self._gpu_last = util
            self.peak_bytes = max(self.peak_bytes, rss)
            self.task_peak_bytes = max(self.task_peak_bytes, rss)
        return cpu

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample(relist=True)

    def start(self) -> _Snapshot:
        self._t_last = time.perf_counter()
        snap = self.snapshot()
        self._thread = threading.Thread(target=self._loop, name="sepcost-energy-sampler", daemon=True)
        self._thread.start()
        return snap

    def snapshot(self, reset_task_peak: bool = False) -> _Snapshot:
        if reset_task_peak:
            with self._lock:
                self.task_peak_bytes = 0
        cpu = self._sample()
        busy, total = _system_cpu()
        with self._lock:
            return _Snapshot(self._t_last, cpu, self._gpu_int, busy, total)

    def stop(self) -> _Snapshot:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._procs = _tree(self._proc)
        return self.snapshot()


# ----------------------------------------------------------------------------- the meter


@dataclass
class TaskEnergy:
    """Energy of one `EnergyMeter.task` (an epoch, a validation pass); filled when the task ends."""

    name: str
    duration_s: float = 0.0
    energy_kwh_codecarbon: float = 0.0
    energy_kwh_green_algorithms: float = 0.0
    emissions_kg_co2e: float = 0.0
    cpu_kwh: float = 0.0
    gpu_kwh: float = 0.0
    ram_kwh: float = 0.0
    ga_cpu_kwh: float = 0.0
    ga_gpu_kwh: float = 0.0
    ga_ram_kwh: float = 0.0
    cpu_usage: float = 0.0
    gpu_usage: float = 0.0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class _CapturedLog(logging.Handler):
    """Keeps CodeCarbon's error records (instead of printing them) so they travel with the result."""

    def __init__(self, limit: int = 20):
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []
        self._limit = limit

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.messages) < self._limit:
            self.messages.append(record.getMessage())


def _check_previous(previous: Mapping[str, float] | None) -> dict[str, float]:
    out = {k: 0.0 for k in ENERGY_KEYS}
    for key, value in (previous or {}).items():
        if key not in out:
            continue  # a checkpoint may carry more; only the additive energy keys are carried on
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"EnergyMeter: previous[{key!r}] must be a number, got {value!r}") from None
    return out


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.@-]+", "_", name) or "sepcost"


class EnergyMeter:
    """CodeCarbon (offline) and Green Algorithms around one execution of a stage.

    `with EnergyMeter(cfg.energy, out_dir=..., project_name=...) as meter:`. `totals()` works
    during the run, after it and after an exception; `task(name)` measures one part (an epoch).
    """

    def __init__(self, cfg: EnergyConfig, out_dir: str | Path, project_name: str = "sepcost",
                 previous: Mapping[str, float] | None = None, sample_s: float = 1.0):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.project_name = _safe_name(project_name)
        self.previous = _check_previous(previous)
        self.sample_s = float(sample_s)
        self.intensity_g_per_kwh = carbon_intensity(cfg)  # a bad country fails here, before any work
        self.hardware = detect_hardware()
        self._gpus = [handle for _, handle, _ in _nvml_gpus()]
        self._tdp_per_core_w, tdp_source = _cpu_tdp(cfg, self.hardware["cpu_model"])
        self._gpu_tdp_w, gpu_source = _gpu_tdp(cfg, self.hardware["gpu_model"])
        logical = max(1, self.hardware["cpu_logical_cores"])
        # Green Algorithms counts physical cores (the TDP table's unit) among the CPUs we may use.
        self._ga_cores = self.hardware["cpus_available"] * self.hardware["cpu_physical_cores"] / logical
        self.methods: dict = {
            "codecarbon": "not started",
            "cpu": "none",
            "gpu": "none",
            "ram": "none",
            "pue": cfg.pue,
            "carbon_intensity_g_per_kwh": round(self.intensity_g_per_kwh, 3),
            "carbon_intensity_source": ("params: energy.carbon_intensity_g_per_kwh"
                                        if cfg.carbon_intensity_g_per_kwh > 0
                                        else f"codecarbon: {cfg.country_iso.upper()}"),
            "ga_tdp_per_core_w": round(self._tdp_per_core_w, 3),
            "ga_tdp_source": tdp_source,
            "ga_cores": round(self._ga_cores, 3),
            "ga_gpu_tdp_w": self._gpu_tdp_w,
            "ga_gpu_tdp_source": gpu_source,
            "ga_gpu_count": len(self._gpus),
            "ga_cpu_usage": "process tree CPU time / (wall time x CPUs available)",
            "ga_memory": "peak RSS of the process tree (GiB)",
        }
        self.tasks: list[TaskEnergy] = []
        self._lock = threading.RLock()
        self._tracker = None
        self._cc_ok = False
        self._sampler: _UsageSampler | None = None
        self._start_snap: _Snapshot | None = None
        self._t0 = 0.0
        self._final: dict | None = None
        self._final_inputs: dict | None = None
        self._active_task: str | None = None
        self._log_capture: _CapturedLog | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "EnergyMeter":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.stop()
        return False

    @property
    def running(self) -> bool:
        return self._sampler is not None and self._final is None

    def start(self) -> "EnergyMeter":
        if self._sampler is not None:
            raise RuntimeError("EnergyMeter.start(): this meter was already started")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._start_codecarbon()
        self._sampler = _UsageSampler(self.sample_s, self._gpus)
        self._t0 = time.perf_counter()
        self._start_snap = self._sampler.start()
        return self

    def stop(self) -> dict:
        """Stop both methods (idempotent); returns this execution's totals."""
        with self._lock:
            if self._final is not None:
                return dict(self._final)
            if self._sampler is None:
                raise RuntimeError("EnergyMeter.stop(): the meter was never started")
            if self._cc_ok:
                try:
                    self._tracker.stop()  # measures the tail, writes the CSVs
                except Exception as err:  # CodeCarbon suppresses most errors itself
                    self.methods["codecarbon"] = f"failed at stop: {err}"
            snap = self._sampler.stop()
            self._final = self._assemble(snap, measure=False)
            self._final_inputs = self._ga_inputs(self._start_snap, snap)
            self._read_codecarbon_methods()
            self._release_logger()
            return dict(self._final)

    # -- CodeCarbon ------------------------------------------------------------------------------

    def _quiet(self) -> bool:
        level = (_USER_CC_LOG_LEVEL or "error").strip().lower()
        return level in ("error", "critical", "fatal")

    def _start_codecarbon(self) -> None:
        from codecarbon import OfflineEmissionsTracker
        from codecarbon.output_methods.base_output import OutputMethod

        level = "error" if self._quiet() else _USER_CC_LOG_LEVEL
        self._capture_logger()
        try:
            tracker = OfflineEmissionsTracker(
                project_name=self.project_name,
                experiment_name=self.project_name,  # names the task CSV: emissions_<name>_<id>.csv
                measure_power_secs=self.cfg.measure_power_s,
                output_dir=str(self.out_dir),
                output_file="emissions.csv",
                output_methods=[OutputMethod.CSV],
                on_csv_write="append",
                country_iso_code=self.cfg.country_iso.strip().upper(),
                pue=self.cfg.pue,
                force_carbon_intensity_g_co2e_kwh=self.intensity_g_per_kwh,
                tracking_mode="machine",
                allow_multiple_runs=True,  # no lock file: a killed run must not disable the next
                log_level=level,
            )
            self._capture_logger()  # the tracker's constructor re-adds a console handler
            tracker.start()
        except Exception as err:
            self.methods["codecarbon"] = f"failed: {type(err).__name__}: {err}"
            return
        self._tracker = tracker
        self._cc_ok = getattr(tracker, "_start_time", None) is not None
        self.methods["codecarbon"] = "ok" if self._cc_ok else "failed to start"
        self._read_codecarbon_methods()

    def _capture_logger(self) -> None:
        if not self._quiet():
            return
        logger = logging.getLogger(_CC_LOGGER)
        logger.setLevel(logging.ERROR)
        logger.handlers = [h for h in logger.handlers
                           if isinstance(h, (logging.FileHandler, _CapturedLog))
                           or not isinstance(h, logging.StreamHandler)]
        if self._log_capture is None:
            self._log_capture = _CapturedLog()
        if self._log_capture not in logger.handlers:
            logger.addHandler(self._log_capture)

    def _release_logger(self) -> None:
        if self._log_capture is not None:
            logging.getLogger(_CC_LOGGER).removeHandler(self._log_capture)
            if self._log_capture.messages:
                self.methods["codecarbon_errors"] = " | ".join(self._log_capture.messages)[:2000]

    def _read_codecarbon_methods(self) -> None:
        """How CodeCarbon measures, read from the hardware objects it set up."""
        tracker = self._tracker
        if tracker is None:
            return
        for hw in getattr(tracker, "_hardware", []):
            kind = type(hw).__name__
            if kind == "CPU":
                mode = getattr(hw, "_mode", "unknown")
                self.methods["cpu"] = _CPU_MODES.get(mode, mode)
                if mode in ("cpu_load", "constant") and getattr(hw, "_tdp", None):
                    self.methods["cpu_tdp_w"] = float(hw._tdp)  # CodeCarbon's TDP for the whole CPU
            elif kind == "GPU":
                devices = getattr(getattr(hw, "devices", None), "devices", [])
                nvidia = any(type(d).__name__ == "NvidiaGPUDevice" for d in devices)
                self.methods["gpu"] = "nvml" if nvidia else "amdsmi"
                self.methods["gpu_count"] = len(getattr(hw, "gpu_ids", None) or devices)
            elif kind == "RAM":
                if getattr(hw, "_force_ram_power", None) is not None:
                    self.methods["ram"] = "constant"
                else:
                    self.methods["ram"] = f"dimm_model_{getattr(hw, '_tracking_mode', 'machine')}"
            elif kind == "AppleSiliconChip":
                self.methods["cpu" if hw.chip_part == "CPU" else "gpu"] = "powermetrics"
            elif kind == "Raspberry":
                self.methods["cpu" if hw.chip_part == "CPU" else "ram"] = "raspberry_pmic"
        self.methods["tracking_mode"] = getattr(tracker, "_tracking_mode", "machine")
        self.methods["measure_power_s"] = self.cfg.measure_power_s
        ram_power = getattr(getattr(tracker, "_ram_power", None), "W", None)
        if ram_power:
            self.methods["ram_power_w"] = round(float(ram_power), 3)
        try:
            from codecarbon import __version__

            self.methods["codecarbon_version"] = __version__
        except ImportError:
            pass

    def _codecarbon_kwh(self, measure: bool) -> dict[str, float]:
        """CodeCarbon's totals so far (with the PUE applied), measuring first if asked and running."""
        t = self._tracker
        if not self._cc_ok:
            return {"energy": 0.0, "cpu": 0.0, "gpu": 0.0, "ram": 0.0}
        if measure and getattr(t, "_start_time", None) is not None:
            try:
                # Between its scheduled samples CodeCarbon has not yet counted the energy since the
                # last one; flush() would measure too but also append a row to the CSV.
                t._measure_power_and_energy_if_stale(0.2)
            except Exception:
                pass
        return {
            "energy": float(t._total_energy.kWh),
            "cpu": float(t._total_cpu_energy.kWh),
            "gpu": float(t._total_gpu_energy.kWh),
            "ram": float(t._total_ram_energy.kWh),
        }

    # -- Green Algorithms ------------------------------------------------------------------------

    def _ga_inputs(self, a: _Snapshot, b: _Snapshot, peak_bytes: int | None = None) -> dict:
        runtime = max(0.0, b.t - a.t)
        cpus = max(1, self.hardware["cpus_available"])
        cpu_usage = (b.cpu_s - a.cpu_s) / (runtime * cpus) if runtime > 0 else 0.0
        gpu_usage = (b.gpu_int - a.gpu_int) / runtime if runtime > 0 and self._gpus else 0.0
        sys_total = b.sys_total - a.sys_total
        peak = self._sampler.peak_bytes if peak_bytes is None else peak_bytes
        return {
            "runtime_s": runtime,
            "cores": self._ga_cores,
            "tdp_per_core_w": self._tdp_per_core_w,
            "cpu_usage": min(1.0, max(0.0, cpu_usage)),
            "n_gpus": len(self._gpus),
            "gpu_tdp_w": self._gpu_tdp_w,
            "gpu_usage": min(1.0, max(0.0, gpu_usage)),
            "memory_gb": peak / GIB,
            "pue": self.cfg.pue,
            "memory_w_per_gb": self.cfg.memory_w_per_gb,
            "system_cpu_usage": (b.sys_busy - a.sys_busy) / sys_total if sys_total > 0 else 0.0,
        }

    def _ga(self, inputs: Mapping) -> dict[str, float]:
        args = {k: v for k, v in inputs.items() if k != "system_cpu_usage"}
        return green_algorithms_kwh(**args)

    # -- results ---------------------------------------------------------------------------------

    def _assemble(self, snap: _Snapshot, measure: bool) -> dict[str, float]:
        cc = self._codecarbon_kwh(measure)
        ga = self._ga(self._ga_inputs(self._start_snap, snap))
        k = self.intensity_g_per_kwh / 1000.0
        return {
            "energy_kwh_codecarbon": cc["energy"],
            "energy_kwh_green_algorithms": ga["energy_kwh"],
            "emissions_kg_co2e": cc["energy"] * k,
            "ga_emissions_kg_co2e": ga["energy_kwh"] * k,
            "duration_s": snap.t - self._t0,
            "cpu_kwh": cc["cpu"],
            "gpu_kwh": cc["gpu"],
            "ram_kwh": cc["ram"],
            "ga_cpu_kwh": ga["cpu_kwh"],
            "ga_gpu_kwh": ga["gpu_kwh"],
            "ga_ram_kwh": ga["ram_kwh"],
        }

    def run_totals(self) -> dict[str, float]:
        """This execution's energy so far (no `previous`), keys `ENERGY_KEYS`."""
        with self._lock:
            if self._final is not None:
                return dict(self._final)
            if self._sampler is None:
                return {k: 0.0 for k in ENERGY_KEYS}
            return self._assemble(self._sampler.snapshot(), measure=True)

    def totals(self) -> dict[str, float]:
        """Energy so far including `previous` executions: works mid-run, after stop and after an
        exception. Keys `ENERGY_KEYS`; kWh with the PUE, emissions with `intensity_g_per_kwh`."""
        own = self.run_totals()
        return {k: self.previous[k] + own[k] for k in ENERGY_KEYS}

    def ga_inputs(self) -> dict:
        """The Green Algorithms inputs of this execution so far (runtime, cores, TDPs, usages, memory)."""
        with self._lock:
            if self._final_inputs is not None:
                return dict(self._final_inputs)
            if self._sampler is None:
                return {}
            return self._ga_inputs(self._start_snap, self._sampler.snapshot())

    def files(self) -> list[Path]:
        """CodeCarbon's CSVs of this execution that exist: the emissions CSV, then the task CSV."""
        out = [self.out_dir / "emissions.csv"]
        run_id = getattr(self._tracker, "run_id", None)
        if run_id is not None:
            out.append(self.out_dir / f"emissions_{self.project_name}_{run_id}.csv")
        return [p for p in out if p.is_file()]

    @property
    def emissions_csv(self) -> Path:
        return self.out_dir / "emissions.csv"

    # -- tasks -------------------------------------------------------------------------------------

    @contextmanager
    def task(self, name: str) -> Iterator[TaskEnergy]:
        """Measure one part of the run (an epoch) with CodeCarbon's task API and Green Algorithms.

        Yields a `TaskEnergy` whose fields are filled when the block ends (also on an exception).
        Tasks do not nest."""
        if not self.running:
            raise RuntimeError("EnergyMeter.task(): the meter is not running (use it inside `with EnergyMeter(...)`)")
        if self._active_task is not None:
            raise RuntimeError(f"EnergyMeter.task({name!r}): task {self._active_task!r} is still running")
        record = TaskEnergy(name=name)
        tracker = self._tracker if self._cc_ok else None
        with self._lock:
            if tracker is not None:
                try:
                    # start_task forgets the energy since CodeCarbon's last sample and resets its
                    # run clock: measure first, and put the clock back so its CSV's duration holds.
                    run_start = tracker._start_time
                    tracker._measure_power_and_energy()
                    tracker.start_task(name)
                    tracker._start_time = run_start
                except Exception:
                    tracker = None
            a = self._sampler.snapshot(reset_task_peak=True)
        self._active_task = name
        try:
            yield record
        finally:
            data = None
            with self._lock:
                if tracker is not None:
                    try:
                        data = tracker.stop_task()
                    except Exception:
                        data = None
                b = self._sampler.snapshot()
                task_peak = self._sampler.task_peak_bytes
            self._active_task = None
            inputs = self._ga_inputs(a, b, peak_bytes=task_peak)
            ga = self._ga(inputs)
            record.duration_s = b.t - a.t
            if data is not None:
                record.energy_kwh_codecarbon = float(data.energy_consumed)
                record.cpu_kwh = float(data.cpu_energy)
                record.gpu_kwh = float(data.gpu_energy)
                record.ram_kwh = float(data.ram_energy)
            record.energy_kwh_green_algorithms = ga["energy_kwh"]
            record.ga_cpu_kwh, record.ga_gpu_kwh, record.ga_ram_kwh = ga["cpu_kwh"], ga["gpu_kwh"], ga["ram_kwh"]
            record.emissions_kg_co2e = record.energy_kwh_codecarbon * self.intensity_g_per_kwh / 1000.0
            record.cpu_usage, record.gpu_usage = inputs["cpu_usage"], inputs["gpu_usage"]
            self.tasks.append(record)
