"""submitit's executor for each way of running a launch, and the script a dry run prints.

`local` runs the jobs on this machine, `jobs` at a time, each with GPUs of its own
(`gpu_slots`: submitit sets each job's CUDA_VISIBLE_DEVICES) or, with `gpus_per_job: 0`, none;
`debug` runs them one after the other in this process (tests, pdb); `slurm` submits a job array
(sbatch) and `oar` an OAR array (oarsub, through the submitit-oar plugin, the replication's
scheduler). A dry run builds the submission script with submitit's own script builders, so it is
the one a submission would write, without a scheduler. Imports submitit (and submitit-oar for
OAR), this process's GPUs from `pipeline.energy.hardware` and `pipeline.errors`.
"""
from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path

import submitit

from pipeline.config.schema import LaunchConfig
from pipeline.energy.hardware import visible_gpus
from pipeline.errors import ConfigError, UserError

CLUSTERS = ("slurm", "oar")


def scheduler_options(text: str, where: str) -> dict[str, str | list[str]]:
    """Extra scheduler options, "--qos=high --constraint a100 -t besteffort", as submitit's
    `additional_parameters` (a repeated option becomes a list, as OAR's `-t` often is)."""
    out: dict[str, str | list[str]] = {}
    words = shlex.split(text)
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("-") or word in ("-", "--"):
            raise ConfigError(f"{where}: expected options such as --qos=high or -t besteffort, got {word!r}")
        key, eq, value = word.lstrip("-").partition("=")
        if not eq:
            if i + 1 >= len(words) or words[i + 1].startswith("-"):
                raise ConfigError(f"{where}: option {word} needs a value")
            value, i = words[i + 1], i + 1
        previous = out.get(key)
        out[key] = value if previous is None else [*([previous] if isinstance(previous, str) else previous), value]
        i += 1
    return out


# Each scheduler's name for the resources a launch asks for (absent: the scheduler's default).
_RESOURCES = {
    "slurm": {"partition": "partition", "account": "account", "gpus_per_job": "gpus_per_node",
              "cpus_per_job": "cpus_per_task"},
    "oar": {"partition": "queue", "gpus_per_job": "gpu", "cpus_per_job": "cores"},
}


def _parameters(cfg: LaunchConfig, cluster: str, where: str) -> dict:
    """submitit's parameters of a cluster executor: the time limit, the array's parallelism and a
    job's memory (SLURM; OAR has neither), the resources set and the extra options."""
    if cluster == "slurm":
        params = {"time": cfg.time_min, "array_parallelism": cfg.jobs, "signal_delay_s": 120, "job_name": "sepcost",
                  **({"mem": f"{math.ceil(cfg.mem_gb)}GB"} if cfg.mem_gb else {})}
    else:
        hours, minutes = divmod(cfg.time_min, 60)
        params = {"timeout_min": cfg.time_min, "walltime": f"{hours:02}:{minutes:02}", "n": "sepcost"}
    params.update({name: getattr(cfg, key) for key, name in _RESOURCES[cluster].items() if getattr(cfg, key)})
    params["additional_parameters"] = scheduler_options(cfg.options, where)
    return params


def make_executor(cfg: LaunchConfig, folder: Path, where: str):
    """The submitit executor of `cfg.executor`, its parameters set; `where` names the params."""
    if cfg.executor == "debug":
        return submitit.DebugExecutor(folder)
    if cfg.executor == "local":
        executor = submitit.LocalExecutor(folder)
        executor.update_parameters(timeout_min=cfg.time_min, gpus_per_node=cfg.gpus_per_job, signal_delay_s=30)
        return executor
    try:
        if cfg.executor == "slurm":
            executor = submitit.SlurmExecutor(folder)
            executor.update_parameters(**_parameters(cfg, "slurm", where))
        else:
            from submitit_oar.oar import OarExecutor

            executor = OarExecutor(folder)
            executor.update_parameters(**_parameters(cfg, "oar", where))
    except RuntimeError as err:  # no sbatch / oarsub on this machine
        raise ConfigError(f"{where}: executor {cfg.executor}: {err} (try --dry-run to see the script)") from None
    return executor


def gpu_slots(cfg: LaunchConfig, jobs: int, where: str) -> list[tuple[int, ...]]:
    """The GPUs of each of `jobs` local jobs side by side: `cfg.gpus_per_job` of this process's GPUs
    each, none shared, as NVML indices (the jobs run with CUDA_DEVICE_ORDER=PCI_BUS_ID, so CUDA's
    indices are NVML's); `()` each with `gpus_per_job: 0`, so that a job on the CPU is charged for
    no GPU. Refused in one line where the GPUs are too few or cannot be handed out whole."""
    if cfg.gpus_per_job == 0:
        return [()] * jobs
    gpus = visible_gpus()
    if gpus.missing:
        raise UserError(f"{where}: gpus_per_job {cfg.gpus_per_job}: this machine's GPUs cannot be given one job "
                        f"each: {gpus.missing}")
    need = jobs * cfg.gpus_per_job
    if need > len(gpus.devices):
        raise UserError(f"{where}: {jobs} jobs at once x gpus_per_job {cfg.gpus_per_job} need {need} GPUs, "
                        f"this process has {len(gpus.devices)} ({gpus.scope}): lower jobs or gpus_per_job")
    return [gpus.indices[i * cfg.gpus_per_job:(i + 1) * cfg.gpus_per_job] for i in range(jobs)]


def dry_run_script(cfg: LaunchConfig, folder: Path, jobs: int, where: str) -> str:
    """The array's submission script `cfg.executor` would submit for `jobs` jobs."""
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    if cfg.executor == "slurm":
        from submitit.slurm.slurm import _make_sbatch_string

        return _make_sbatch_string(command=command, folder=folder, map_count=jobs, **_parameters(cfg, "slurm", where))
    if cfg.executor == "oar":
        from submitit_oar.oar import _make_oarsub_string

        return _make_oarsub_string(command=command, folder=folder, map_count=jobs, **_parameters(cfg, "oar", where))
    raise ConfigError(f"{where}: --dry-run shows a cluster's script: use --executor slurm or oar")
