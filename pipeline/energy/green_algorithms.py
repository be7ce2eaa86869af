"""The Green Algorithms estimate (Lannelongue et al., 2021): energy from runtime, TDPs and usage.

runtime x (cores x TDP per core x CPU usage + GPUs x GPU TDP x GPU usage + memory GB x 0.3725 W)
x PUE. A pure function; imports nothing.
"""
from __future__ import annotations

MEMORY_W_PER_GB = 0.3725  # the method's memory power, W per GB (params: energy.memory_w_per_gb)


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
