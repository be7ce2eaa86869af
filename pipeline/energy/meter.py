"""The energy meter: CodeCarbon's measurement and a Green Algorithms estimate around one execution.

A stage is wrapped from the outside, never from inside its loop::

    with EnergyMeter(cfg.energy, out_dir=paths.model_dir(variant), project_name="train@base") as meter:
        for epoch in ...:
            with meter.task(f"epoch {epoch}") as epoch_energy:
                train_one_epoch()
            history.append(epoch_energy[KWH_CODECARBON])
    meter.totals()

Resuming: energy spent by earlier executions of the same work is passed in as `previous` (a dict of
`totals()`); `totals()` is then previous + this execution, and `run_totals()` this execution alone
(the whole-study ledger sums the latter over every MLflow run, so nothing is counted twice).

Both methods price the same GPUs: those the execution runs on (`gpus`, CUDA ordinals: none for a
CPU execution) among `hardware.visible_gpus()` (CUDA_VISIBLE_DEVICES resolved once);
where their energy cannot be attributed to this process (a MIG slice, a UUID NVML does not know),
the GPU part and the total of both methods are NaN and `methods["gpu_missing"]` says why.
Imports the other modules of `pipeline.energy` and `pipeline.names`.
"""
from __future__ import annotations

import math
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

from pipeline.energy.codecarbon_adapter import Tracker, carbon_intensity
from pipeline.energy.green_algorithms import green_algorithms_kwh
from pipeline.energy.hardware import GIB, cpu_tdp, detect_hardware, gpu_tdp, visible_gpus
from pipeline.energy.usage import Snapshot, UsageSampler
from pipeline.names import (
    CO2,
    DURATION,
    ENERGY_KEYS,
    GA_CO2,
    KWH_CODECARBON,
    KWH_GREEN_ALGORITHMS,
    PARTS,
    part_key,
)

if TYPE_CHECKING:
    from pipeline.config.schema import EnergyConfig


@dataclass
class TaskEnergy:
    """Energy of one `EnergyMeter.task` (an epoch, a validation pass), keyed like `totals()`
    (`task[KWH_CODECARBON]`); filled when the task ends, also on an exception."""

    name: str
    energy: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ENERGY_KEYS, 0.0))
    cpu_usage: float = 0.0
    gpu_usage: float = 0.0

    def __getitem__(self, key: str) -> float:
        return self.energy[key]


def _check_previous(previous: Mapping[str, float] | None) -> dict[str, float]:
    out = {k: 0.0 for k in ENERGY_KEYS}
    for key, value in (previous or {}).items():
        if key not in out:
            continue  # a checkpoint may carry more; only the additive energy keys are carried on
        try:
            out[key] = math.nan if value is None else float(value)  # None: a figure that was not measured
        except (TypeError, ValueError):
            raise ValueError(f"EnergyMeter: previous[{key!r}] must be a number, got {value!r}") from None
    return out


def energy_line(totals: Mapping[str, float]) -> str:
    """A stage's energy in words, for its closing line on the terminal."""
    return (f"{totals[KWH_CODECARBON]:.3g} kWh measured (CodeCarbon), "
            f"{totals[KWH_GREEN_ALGORITHMS]:.3g} kWh estimated (Green Algorithms)")


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.@-]+", "_", name) or "sepcost"


class EnergyMeter:
    """CodeCarbon (offline) and Green Algorithms around one execution of a stage.

    `with EnergyMeter(cfg.energy, out_dir=..., project_name=...) as meter:`. `totals()` works
    during the run, after it and after an exception; `task(name)` measures one part (an epoch).
    """

    def __init__(self, cfg: EnergyConfig, out_dir: str | Path, project_name: str = "sepcost",
                 previous: Mapping[str, float] | None = None, sample_s: float = 1.0, process_root: int | None = None,
                 gpus: tuple[int, ...] | None = None):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.project_name = _safe_name(project_name)
        self.previous = _check_previous(previous)
        self.sample_s = float(sample_s)
        self.process_root = process_root  # whose process tree Green Algorithms prices (default: this one's)
        self._elsewhere = dict.fromkeys(ENERGY_KEYS, 0.0)  # this execution's energy measured on other nodes
        self.intensity_g_per_kwh = carbon_intensity(cfg)  # a bad country fails here, before any work
        self.hardware = detect_hardware()
        self.gpus = visible_gpus().used(gpus)  # gpus: the CUDA ordinals the execution runs on (None: all)
        self._gpus = [] if self.gpus.missing else [gpu.handle for gpu in self.gpus.devices]  # whose usage GA samples
        self._tdp_per_core_w, tdp_source = cpu_tdp(cfg.tdp_per_core_w, self.hardware["cpu_model"])
        self._gpu_tdp_w, gpu_source = gpu_tdp(cfg.gpu_tdp_w, self.gpus.model)
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
            "ga_gpu_count": len(self.gpus.devices),
            "gpu_scope": self.gpus.scope,
            **({"gpu_ids": ",".join(map(str, self.gpus.indices))} if self.gpus.devices else {}),
            "ga_cpu_usage": "process tree CPU time / (wall time x CPUs available)",
            "ga_memory": "peak RSS of the process tree (GiB)",
        }
        self.tasks: list[TaskEnergy] = []
        self._lock = threading.RLock()
        self._tracker = Tracker(cfg, self.out_dir, self.project_name, self.intensity_g_per_kwh, self.gpus,
                                process_root=process_root)
        self._sampler: UsageSampler | None = None
        self._start_snap: Snapshot | None = None
        self._t0 = 0.0
        self._final: dict | None = None
        self._final_inputs: dict | None = None
        self._active_task: str | None = None
        # (unix time in ms, this execution's totals) every measure_power_s, as CodeCarbon sampled them
        self.samples: list[tuple[int, dict[str, float]]] = []
        self._sampling = threading.Event()

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
        self._tracker.start()
        self.methods.update(self._tracker.methods())
        self._sampler = UsageSampler(self.sample_s, self._gpus, root_pid=self.process_root)
        self._t0 = time.perf_counter()
        self._start_snap = self._sampler.start()
        threading.Thread(target=self._record_samples, name="sepcost-energy-samples", daemon=True).start()
        return self

    def _record_samples(self) -> None:
        """Every measure_power_s, the totals CodeCarbon's scheduler has measured, for the run's history."""
        while not self._sampling.wait(self.cfg.measure_power_s):
            with self._lock:
                if self._final is not None:
                    return
                sample = self._assemble(self._sampler.snapshot(), measure=False)
            self.samples.append((int(time.time() * 1000), sample))

    def stop(self) -> dict:
        """Stop both methods (idempotent); returns this execution's totals."""
        with self._lock:
            if self._final is not None:
                return self.run_totals()
            if self._sampler is None:
                raise RuntimeError("EnergyMeter.stop(): the meter was never started")
            self._sampling.set()
            self._tracker.stop()  # measures the tail, writes the CSV
            snap = self._sampler.stop()
            self._final = self._assemble(snap, measure=False)
            self._final_inputs = self._ga_inputs(self._start_snap, snap)
            self.methods.update(self._tracker.methods())
            return self.run_totals()

    # -- Green Algorithms ------------------------------------------------------------------------

    def _ga_inputs(self, a: Snapshot, b: Snapshot, peak_bytes: int | None = None) -> dict:
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
            "n_gpus": len(self.gpus.devices),
            "gpu_tdp_w": self._gpu_tdp_w,
            "gpu_usage": min(1.0, max(0.0, gpu_usage)),
            "memory_gb": peak / GIB,
            "pue": self.cfg.pue,
            "memory_w_per_gb": self.cfg.memory_w_per_gb,
            "system_cpu_usage": (b.sys_busy - a.sys_busy) / sys_total if sys_total > 0 else 0.0,
        }

    def _ga(self, inputs: Mapping) -> dict[str, float]:
        args = {k: v for k, v in inputs.items() if k != "system_cpu_usage"}
        out = green_algorithms_kwh(**args)
        if self.gpus.missing:  # their usage is not sampled (`_gpus` is empty): not 0 kWh, unknown
            out.update(gpu_kwh=math.nan, energy_kwh=math.nan)
        return out

    # -- results ---------------------------------------------------------------------------------

    def _figures(self, cc: Mapping[str, float], ga: Mapping[str, float], duration_s: float) -> dict[str, float]:
        """`ENERGY_KEYS` from CodeCarbon's kWh (energy, cpu, gpu, ram) and Green Algorithms' result."""
        k = self.intensity_g_per_kwh / 1000.0
        return {
            KWH_CODECARBON: cc["energy"],
            KWH_GREEN_ALGORITHMS: ga["energy_kwh"],
            CO2: cc["energy"] * k,
            GA_CO2: ga["energy_kwh"] * k,
            DURATION: duration_s,
            **{part_key("codecarbon", p): cc[p] for p in PARTS},
            **{part_key("green_algorithms", p): ga[f"{p}_kwh"] for p in PARTS},
        }

    def _assemble(self, snap: Snapshot, measure: bool) -> dict[str, float]:
        ga = self._ga(self._ga_inputs(self._start_snap, snap))
        return self._figures(self._tracker.totals(measure), ga, snap.t - self._t0)

    def include(self, elsewhere: Mapping[str, float]) -> None:
        """This execution's energy so far on other machines (the other nodes of a data-parallel
        training, gathered by its rank 0), added to `run_totals` from now on; durations aside."""
        with self._lock:
            self._elsewhere = {k: (0.0 if k == DURATION else float(elsewhere.get(k, 0.0))) for k in ENERGY_KEYS}

    def run_totals(self) -> dict[str, float]:
        """This execution's energy so far (no `previous`), keys `ENERGY_KEYS`."""
        with self._lock:
            if self._final is not None:
                own = self._final
            elif self._sampler is None:
                own = dict.fromkeys(ENERGY_KEYS, 0.0)
            else:
                own = self._assemble(self._sampler.snapshot(), measure=True)
            return {k: own[k] + self._elsewhere[k] for k in ENERGY_KEYS}

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
        """CodeCarbon's CSV of this execution, if it wrote one."""
        return self._tracker.files()

    # -- tasks -------------------------------------------------------------------------------------

    @contextmanager
    def task(self, name: str) -> Iterator[TaskEnergy]:
        """Measure one part of the run (an epoch): the difference of both methods' running totals
        at its ends (CodeCarbon keeps sampling every `measure_power_s` in between).

        Yields a `TaskEnergy` whose fields are filled when the block ends (also on an exception).
        Tasks do not nest."""
        if not self.running:
            raise RuntimeError("EnergyMeter.task(): the meter is not running (use it inside `with EnergyMeter(...)`)")
        if self._active_task is not None:
            raise RuntimeError(f"EnergyMeter.task({name!r}): task {self._active_task!r} is still running")
        record = TaskEnergy(name=name)
        with self._lock:
            cc_a = self._tracker.totals(measure=True)
            a = self._sampler.snapshot(reset_task_peak=True)
        self._active_task = name
        try:
            yield record
        finally:
            with self._lock:
                cc_b = self._tracker.totals(measure=True)
                b = self._sampler.snapshot()
                task_peak = self._sampler.task_peak_bytes
            self._active_task = None
            inputs = self._ga_inputs(a, b, peak_bytes=task_peak)
            cc = {k: cc_b[k] - cc_a[k] for k in cc_b}
            record.energy = self._figures(cc, self._ga(inputs), b.t - a.t)
            record.cpu_usage, record.gpu_usage = inputs["cpu_usage"], inputs["gpu_usage"]
            self.tasks.append(record)
