"""Where and how the computation runs: the device and CPU threads.

These are machine knobs (params section `runtime`): they change how fast a result comes, never
the result, so they never enter a fingerprint. Imports torch only.
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import torch


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
def side_by_side(count: int, device: torch.device, threads: int = 0) -> Iterator[tuple[Executor, int]]:
    """An executor for `count` independent jobs (models, tracks): on the CPU a pool of threads, one
    a core, each job on one intra-op thread; on a GPU, or for one job, the calling thread.

    The models of a CPU-sized study are too small for torch's intra-op threads (a step takes as
    long on one thread as on two), so independent models trained or run side by side in threads,
    which torch's kernels let run in parallel, use the cores instead. One intra-op thread a job
    also keeps the results bitwise independent of the machine's cores and of `threads`: torch's
    float32 reductions on the CPU sum in an order that depends on their thread count (a whole-track
    validation loss differed in its last bits between one thread and two). Results do not depend
    on the number of workers either. Yields the executor and its number of workers.
    """
    available = cores(threads)
    on_cpu = device.type == "cpu"
    workers = max(1, min(count, available)) if on_cpu else 1
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
