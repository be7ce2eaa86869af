"""What the machine is: CPU model and cores, visible NVIDIA GPUs, memory, and their TDPs.

TDPs come from `tdp.csv` (the longest pattern matching the model name); a CPU that matches no row
gets the Green Algorithms calculator's 12 W per core and a GPU its 200 W. `visible_gpus` is the
one place that resolves CUDA_VISIBLE_DEVICES (unset, empty, indices, GPU and MIG UUIDs) to the
GPUs this process uses. Imports psutil, `pipeline.errors` and, when present, NVML (pynvml).
"""
from __future__ import annotations

import csv
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import psutil

from pipeline.errors import UserError

FALLBACK_TDP_PER_CORE_W = 12.0  # the Green Algorithms calculator's "Any" CPU
FALLBACK_GPU_TDP_W = 200.0  # the Green Algorithms calculator's "Any" GPU
TDP_TABLE = Path(__file__).with_name("tdp.csv")
GIB = 1024**3


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


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA GPU as NVML lists it (MIG slices are not listed: they belong to their parent)."""

    index: int  # NVML's index (PCI bus order)
    handle: object
    name: str
    uuid: str  # "GPU-..."
    mig_uuids: tuple[str, ...] = ()  # its MIG devices' "MIG-..." UUIDs, when MIG mode is on
    mig_enabled: bool = False


@dataclass(frozen=True)
class VisibleGpus:
    """The GPUs this process uses, resolved from CUDA_VISIBLE_DEVICES: the one answer both energy
    methods measure (CodeCarbon meters exactly `indices`, Green Algorithms counts `len(devices)`).

    `missing` is why their energy cannot be attributed to this process ("" when it can); both
    methods then record the GPU part as NaN with that reason, never as 0 kWh. `scope` says in
    words what was resolved from what, for the method labels."""

    devices: tuple[Gpu, ...]
    scope: str
    missing: str = ""

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(gpu.index for gpu in self.devices)

    @property
    def model(self) -> str:
        return ", ".join(sorted({gpu.name for gpu in self.devices}))

    def used(self, ordinals: tuple[int, ...] | None) -> "VisibleGpus":
        """The visible GPUs an execution runs on: CUDA's `ordinals` (`cuda:N` is the N-th visible GPU);
        None for all of them, () for none (a CPU execution, which no GPU is charged to)."""
        if ordinals is None:
            return self
        if not ordinals:
            return VisibleGpus((), f"none: runs on the CPU ({self.scope})")
        if self.missing:  # the visible list is not attributable, so neither is a part of it
            return self
        beyond = [n for n in ordinals if n >= len(self.devices)]
        if beyond:
            return VisibleGpus((), self.scope, f"runs on cuda:{beyond[0]}, but only {len(self.devices)} GPUs are "
                                               f"visible to NVML ({self.scope})")
        chosen = tuple(self.devices[n] for n in sorted(set(ordinals)))
        return VisibleGpus(chosen, f"GPU {','.join(str(g.index) for g in chosen)}: cuda:"
                                   f"{','.join(map(str, sorted(set(ordinals))))} of {self.scope}")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _mig_uuids(pynvml, handle) -> tuple[bool, tuple[str, ...]]:
    """Whether MIG mode is on for a GPU, and the UUIDs of its MIG devices."""
    try:
        current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
    except pynvml.NVMLError:  # a GPU without MIG (before A100)
        return False, ()
    if current != pynvml.NVML_DEVICE_MIG_ENABLE:
        return False, ()
    uuids = []
    for slot in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            uuids.append(_text(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot))))
        except pynvml.NVMLError:  # an empty slot
            continue
    return True, tuple(uuids)


def nvml_gpus() -> tuple[Gpu, ...]:
    """Every NVIDIA GPU NVML lists on this machine (CUDA_VISIBLE_DEVICES aside); empty without a
    GPU, a driver or pynvml: then CUDA has no GPU to use either."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no library, no driver
        return ()
    gpus = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(i)
        mig_enabled, mig_uuids = _mig_uuids(pynvml, handle)
        gpus.append(Gpu(i, handle, _text(pynvml.nvmlDeviceGetName(handle)), _text(pynvml.nvmlDeviceGetUUID(handle)),
                        mig_uuids, mig_enabled))
    return tuple(gpus)


def _match(entry: str, gpus: tuple[Gpu, ...]) -> tuple[Gpu | None, str]:
    """The GPU a CUDA_VISIBLE_DEVICES UUID entry names and, if it is a MIG slice, which GPU's;
    (None, why not) when it names none. UUIDs may be abbreviated to a unique prefix, as CUDA
    allows; a legacy MIG id is MIG-GPU-<uuid>/<GPU instance>/<compute instance>."""
    if entry.startswith("MIG-GPU-"):
        found = [g for g in gpus if g.uuid.lower().startswith(entry[4:].split("/")[0].lower())]
    elif entry.startswith("MIG-"):
        found = [g for g in gpus if any(m.lower().startswith(entry.lower()) for m in g.mig_uuids)]
    else:
        found = [g for g in gpus if g.uuid.lower().startswith(entry.lower())]
    if len(found) != 1:
        return None, f"{entry!r} matches {'no' if not found else len(found)} GPU{'s' if found else ''} NVML lists"
    gpu = found[0]
    if entry.startswith("MIG-") or gpu.mig_enabled:
        return gpu, f"a MIG slice of GPU {gpu.index}"
    return gpu, ""


def resolve_visible(value: str | None, gpus: tuple[Gpu, ...], order: str | None = None) -> VisibleGpus:
    """The GPUs that `CUDA_VISIBLE_DEVICES=value` (None: unset) leaves this process, among NVML's
    `gpus`; `order` is CUDA_DEVICE_ORDER. Mirrors CUDA: unset is every GPU, "" none; entries are
    indices, GPU-<uuid> or MIG-<uuid> (a unique prefix is enough), and the list ends at its first
    invalid entry ("-1", the idiom that hides every GPU, ends it at once).

    A MIG slice is recorded as its parent GPU, marked shared, with its energy missing: NVML's
    energy counter, power and utilisation are the whole GPU's, other slices' jobs included, and
    nothing says what share of them is this slice's; a whole-GPU figure would be counted once per
    slice's job and a share by slice size would be a guess, so both methods declare it NaN with the
    reason. An index beyond NVML's GPUs is an error (a `UserError` naming the variable); a UUID
    NVML does not know makes the GPU energy missing (CUDA may still see a GPU that NVML does not
    match), never 0 kWh."""
    if not gpus:
        return VisibleGpus((), "no NVIDIA GPU (NVML lists none)")
    if value is None:
        chosen, why = list(gpus), ""
        scope = f"all {len(gpus)} GPUs (CUDA_VISIBLE_DEVICES unset)"
    else:
        chosen, why = [], ""
        for entry in (e.strip() for e in value.split(",")):
            if entry == "" or re.fullmatch(r"-\d+", entry):
                break  # CUDA ignores it and every entry after it
            if entry.isdigit():
                if int(entry) >= len(gpus):
                    raise UserError(f"CUDA_VISIBLE_DEVICES={value!r}: GPU index {entry} is out of range: NVML lists "
                                    f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} (0-{len(gpus) - 1})")
                gpu = gpus[int(entry)]
                detail = f"a MIG slice of GPU {gpu.index}" if gpu.mig_enabled else ""
                if len({g.name for g in gpus}) > 1 and order != "PCI_BUS_ID":
                    why = why or (f"CUDA_DEVICE_ORDER is not PCI_BUS_ID and the GPUs differ, so CUDA's index {entry} "
                                  "need not be NVML's (set CUDA_DEVICE_ORDER=PCI_BUS_ID)")
            elif entry.startswith(("GPU-", "MIG-")):
                gpu, detail = _match(entry, gpus)
                if gpu is None:
                    why = why or f"CUDA_VISIBLE_DEVICES entry {detail}: its GPU cannot be identified"
                    break  # CUDA stops at it too
            else:
                raise UserError(f"CUDA_VISIBLE_DEVICES={value!r}: entry {entry!r} is not a GPU index, GPU-<uuid> "
                                "or MIG-<uuid>")
            if detail:  # a MIG slice
                why = why or (f"CUDA_VISIBLE_DEVICES entry {entry!r} is {detail}: NVML measures the whole GPU, "
                              "other slices included, so this slice's share cannot be isolated")
            if gpu not in chosen:
                chosen.append(gpu)
        if not chosen and not why:
            return VisibleGpus((), f"no GPU visible (CUDA_VISIBLE_DEVICES={value!r}, NVML lists {len(gpus)})")
        scope = (f"GPU {','.join(str(g.index) for g in chosen) or 'none'} of {len(gpus)} "
                 f"(CUDA_VISIBLE_DEVICES={value!r})")
    if not why and any(g.mig_enabled for g in chosen):
        why = "MIG mode is on: this process runs on a slice, and NVML measures the whole GPU, other slices included"
    return VisibleGpus(tuple(chosen), scope, why)


def visible_gpus() -> VisibleGpus:
    """This process's GPUs: `resolve_visible` of its CUDA_VISIBLE_DEVICES among NVML's GPUs."""
    return resolve_visible(os.environ.get("CUDA_VISIBLE_DEVICES"), nvml_gpus(), os.environ.get("CUDA_DEVICE_ORDER"))


@lru_cache(maxsize=1)
def _detect_hardware() -> dict:
    logical = psutil.cpu_count(logical=True) or 1
    physical = psutil.cpu_count(logical=False) or logical
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = logical
    return {
        "cpu_model": _cpu_model(),
        "cpu_logical_cores": logical,
        "cpu_physical_cores": physical,
        "cpus_available": available,
        "memory_gb": round(psutil.virtual_memory().total / GIB, 2),
        "platform": platform.platform(),
    }


def detect_hardware() -> dict:
    """CPU model and cores, this process's GPUs (`visible_gpus`) and machine memory in GiB."""
    gpus = visible_gpus()
    return {**_detect_hardware(), "gpu_model": gpus.model, "gpu_count": len(gpus.devices)}


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
    """The row of pipeline/energy/tdp.csv for a CPU or GPU model name (longest matching pattern), or None."""
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


def cpu_tdp(tdp_per_core_w: float, model: str) -> tuple[float, str]:
    """Watts per core for Green Algorithms and where the figure comes from: `tdp_per_core_w` (from
    params) when positive, else the table's row for the CPU model, else the fallback."""
    if tdp_per_core_w > 0:
        return tdp_per_core_w, "params: energy.tdp_per_core_w"
    row = lookup_tdp(model, "cpu")
    if row and row["cores"]:
        return row["tdp_w"] / row["cores"], f"table: {row['pattern']} ({row['tdp_w']:g} W / {row['cores']} cores)"
    return FALLBACK_TDP_PER_CORE_W, f"fallback: no row of pipeline/energy/tdp.csv matches {model!r}"


def gpu_tdp(gpu_tdp_w: float, model: str) -> tuple[float, str]:
    """Watts per GPU and their source, as `cpu_tdp`; 0 without a GPU."""
    if gpu_tdp_w > 0:
        return gpu_tdp_w, "params: energy.gpu_tdp_w"
    if not model:
        return 0.0, "no GPU"
    row = lookup_tdp(model, "gpu")
    if row:
        return row["tdp_w"], f"table: {row['pattern']} ({row['tdp_w']:g} W)"
    return FALLBACK_GPU_TDP_W, f"fallback: no row of pipeline/energy/tdp.csv matches {model!r}"
