"""Where and how the computation runs: the device, CPU threads and the memory jobs may take.

These are machine knobs (params section `runtime`): they change how fast a result comes, never
the result, so they never enter a fingerprint. Imports torch and psutil.
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator

import psutil
import torch

PROC_CGROUP = Path("/proc/self/cgroup")  # this process's control groups
CGROUP_ROOT = Path("/sys/fs/cgroup")  # where they are mounted (v2; v1's memory controller in memory/)
UNLIMITED = 2**60  # cgroup v1 writes no limit as the largest page-aligned 64-bit value


def pick_device(name: str) -> torch.device:
    """`auto` is the GPU when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def gpu_ordinals(device: torch.device, per_node: int = 1) -> tuple[int, ...]:
    """The CUDA ordinals an execution on `device` runs on, the GPUs its energy is charged for: none on
    the CPU; `device`'s own; for a training's node, its `per_node` ranks' (rank N on `cuda:N`)."""
    if device.type != "cuda":
        return ()
    return tuple(range(per_node)) if per_node > 1 else (device.index or 0,)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (CUDA kernels run asynchronously): before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cores(threads: int = 0) -> int:
    """The CPU threads to use: `threads`, or when it is 0 every core this process may run on (its CPU
    affinity, which `taskset` and a scheduler's allocation set), not every core of the machine."""
    if threads > 0:
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform (macOS)
        return os.cpu_count() or 1


def memory_available() -> int:
    """Bytes this process may still take: the memory the system has available (Linux's
    MemAvailable), or less where a memory limit of its control group (a container's, a scheduler's
    job: cgroup v2 memory.max, v1 memory.limit_in_bytes) leaves less, at its group or any above it:
    the limit minus the group's usage, its inactive page cache counted as free (the kernel reclaims
    it before failing an allocation)."""
    return min([psutil.virtual_memory().available, *_cgroup_rooms()])


def _cgroup_rooms() -> Iterator[int]:
    """What each memory limit over this process leaves: its own cgroup's, then those above it."""
    try:
        lines = PROC_CGROUP.read_text().splitlines()
    except OSError:  # not Linux
        return
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if not controllers:  # v2: one hierarchy
            root, files = CGROUP_ROOT, ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):
            root, files = CGROUP_ROOT / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes",
                                                   "total_inactive_file")
        else:
            continue
        folder = root / path.lstrip("/")
        if not folder.is_dir():  # in a cgroup namespace the process's group is mounted as the root
            folder = root
        for group in (folder, *folder.parents):
            room = _cgroup_room(group, *files)
            if room is not None:
                yield room
            if group == root:
                break


def _cgroup_room(group: Path, limit_file: str, usage_file: str, inactive_key: str) -> int | None:
    """The limit of a cgroup minus its usage, inactive page cache not counted; None without a limit."""
    try:
        limit = (group / limit_file).read_text().strip()
        if limit == "max" or int(limit) >= UNLIMITED:
            return None
        usage = int((group / usage_file).read_text())
        stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
    except (OSError, ValueError):
        return None
    return max(0, int(limit) - usage + int(stat.get(inactive_key, 0)))


class InCallingThread(Executor):
    """The executor of a single worker: each job runs in the calling thread, in order.

    torch's intra-op threads can be several times slower when a pool thread calls them: an epoch
    of the default base's one model took 3.5x as long in a one-worker pool as in the calling
    thread (benchmarks/training_epoch.py); in whole trainings the slowdown came in some runs and
    not in others (the lone model's last epoch: 13.1 s in one, 3.3 s in another).
    """

    def map(self, fn: Callable, *iterables: Iterable, timeout=None, chunksize=1) -> Iterator:
        return iter([fn(*args) for args in zip(*iterables)])


@contextlib.contextmanager
def side_by_side(count: int, device: torch.device, threads: int = 0,
                 job_bytes: int = 0) -> Iterator[tuple[Executor, int]]:
    """An executor for `count` independent jobs (models, tracks): on the CPU a pool of threads, one
    a core, each job on one intra-op thread, and where the peak memory of a job is known
    (`job_bytes`), no more workers than the memory available holds (one at least); on a GPU, or
    for one job, the calling thread.

    The models of a CPU-sized study are too small for torch's intra-op threads (a step takes as
    long on one thread as on two), so independent models trained or run side by side in threads,
    which torch's kernels let run in parallel, use the cores instead. One intra-op thread a job
    also keeps the results bitwise independent of the machine's cores and of `threads`: torch's
    float32 reductions on the CPU sum in an order that depends on their thread count (a whole-track
    validation loss differed in its last bits between one thread and two). Results do not depend
    on the number of workers either. Yields the executor and its number of workers.
    """
    on_cpu = device.type == "cpu"
    workers = 1
    if on_cpu:
        workers = max(1, min(count, cores(threads), memory_available() // job_bytes if job_bytes > 0 else count))
    previous = torch.get_num_threads()
    if on_cpu:
        torch.set_num_threads(1)
    elif threads > 0:
        torch.set_num_threads(threads)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="sepcost") if workers > 1 else InCallingThread()
    try:
        yield pool, workers
    finally:
        pool.shutdown()
        torch.set_num_threads(previous)
