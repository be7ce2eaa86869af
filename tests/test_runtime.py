"""The machine knobs' defaults: the cores a process may use, and the memory its jobs may take."""
import os
import subprocess
import sys
import textwrap

import psutil
import pytest
import torch

from tests.conftest import REPO

ONE_CORE = textwrap.dedent("""
    import os
    import torch
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # as `taskset -c 0` would
    from pipeline.runtime import cores, side_by_side
    print(cores())
    with side_by_side(4, torch.device("cpu")) as (pool, workers):
        print(workers)
""")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_every_core_means_the_cores_this_process_may_run_on():
    """`taskset -c 0 sepcost ...` (or a scheduler's allocation of one core) runs on one core: one
    job at a time side by side, not one per core of the machine."""
    done = subprocess.run([sys.executable, "-c", ONE_CORE], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert done.stdout.split() == ["1", "1"]


def test_side_by_side_runs_no_more_jobs_than_the_memory_available_holds(monkeypatch):
    from pipeline import runtime

    monkeypatch.setattr(runtime, "memory_available", lambda: 3 * 2**30)
    cpu = torch.device("cpu")
    for job_bytes, workers in ((2**30, 3), (2**29, 6), (2**31, 1), (2**40, 1), (0, 8)):  # 0: not known
        with runtime.side_by_side(8, cpu, threads=8, job_bytes=job_bytes) as (_, got):
            assert got == workers, job_bytes
    with runtime.side_by_side(8, cpu, threads=2, job_bytes=2**29) as (_, got):
        assert got == 2  # the cores bound it first


def _cgroup(folder, files: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def test_memory_available_is_what_the_tightest_cgroup_limit_leaves(tmp_path, monkeypatch):
    """cgroup v2: a job's limit above the step's own (none); its inactive page cache counts as
    free. cgroup v1: no limit is the largest 64-bit value."""
    from pipeline import runtime

    mib = 2**20
    monkeypatch.setattr(runtime, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(runtime, "PROC_CGROUP", tmp_path / "self-cgroup")
    (tmp_path / "self-cgroup").write_text("0::/job/step\n")
    _cgroup(tmp_path / "job", {"memory.max": f"{1024 * mib}\n", "memory.current": f"{600 * mib}\n",
                               "memory.stat": f"anon {400 * mib}\ninactive_file {100 * mib}\n"})
    _cgroup(tmp_path / "job" / "step", {"memory.max": "max\n", "memory.current": f"{600 * mib}\n",
                                        "memory.stat": "inactive_file 0\n"})
    assert runtime.memory_available() == min(524 * mib, psutil.virtual_memory().available)
    (tmp_path / "self-cgroup").write_text("4:cpu,memory:/slurm/job\n0::/\n")
    _cgroup(tmp_path / "memory" / "slurm", {"memory.limit_in_bytes": f"{2048 * mib}\n",
                                            "memory.usage_in_bytes": f"{1024 * mib}\n",
                                            "memory.stat": f"total_inactive_file {24 * mib}\n"})
    _cgroup(tmp_path / "memory" / "slurm" / "job", {"memory.limit_in_bytes": "9223372036854771712\n"})
    assert runtime.memory_available() == min(1048 * mib, psutil.virtual_memory().available)
    (tmp_path / "self-cgroup").write_text("0::/\n")  # no limit anywhere
    assert 0 < runtime.memory_available() <= psutil.virtual_memory().available
