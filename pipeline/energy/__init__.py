"""Energy accounting: what every stage costs, by two methods priced alike.

- **CodeCarbon** (`codecarbon_adapter`, the only module touching CodeCarbon): its offline tracker,
  country and PUE from params, no network; RAPL counters when the machine exposes them, else a
  CPU-load model or a constant; NVML energy counters for NVIDIA GPUs (power x time for those
  without); a RAM model. How it measured
  on this machine is read back into `EnergyMeter.methods`, since it decides how far a figure can be
  trusted. Scope: the machine.
- **Green Algorithms** (`green_algorithms`): runtime x (cores x TDP per core x CPU usage + GPUs x
  GPU TDP x GPU usage + memory GB x 0.3725 W) x PUE, with TDPs from `hardware` (its `tdp.csv`) and
  the usage of this process tree measured by `usage` (CPU time, peak resident memory, NVML
  utilisation): the memory the job needed, what the Green Algorithms calculator asks for. Scope:
  the job.

Both use the same PUE and the same carbon intensity, and price the same GPUs: those
CUDA_VISIBLE_DEVICES leaves this process (`hardware.visible_gpus`), NaN where their energy cannot
be attributed to it. `meter.EnergyMeter` runs both around one execution of a stage and measures
its parts (epochs) as tasks. Imports `pipeline.names` and
`pipeline.errors`; nothing else of the project, so that config can check a country code here.
"""
