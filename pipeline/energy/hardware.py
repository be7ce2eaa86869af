"""What the machine is: CPU model and cores, visible NVIDIA GPUs, memory, and their TDPs.

TDPs come from `tdp.csv` (the longest pattern matching the model name); a CPU that matches no row
gets the Green Algorithms calculator's 12 W per core and a GPU its 200 W. Imports psutil and,
when present, NVML (pynvml).
"""
from __future__ import annotations

import csv
import os
import platform
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import psutil

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
def nvml_gpus() -> tuple[tuple[int, object, str], ...]:
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
    gpus = nvml_gpus()
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
