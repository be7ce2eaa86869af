"""How much of the machine this process tree uses: CPU time, peak memory and GPU utilisation.

Green Algorithms prices the job, not the machine, so its usage figures come from here: the CPU
seconds of this process and its children (DataLoader workers included), the peak resident memory
of the tree, and NVML's GPU utilisation. Imports psutil and, with GPUs, pynvml.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Snapshot:
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


class UsageSampler:
    """Samples the process tree's memory and the GPUs' utilisation every `interval_s` seconds in a
    daemon thread; CPU time needs no sampling (it is cumulative) and is read at each snapshot.

    Listing the process tree scans all of /proc (milliseconds), so only the thread does it; a
    snapshot reads the processes it last listed (a child started since is counted from the next
    listing on, with all its CPU time)."""

    def __init__(self, interval_s: float, gpu_handles: list, root_pid: int | None = None):
        self._proc = psutil.Process(root_pid)  # None: this process
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

    def start(self) -> Snapshot:
        self._t_last = time.perf_counter()
        snap = self.snapshot()
        self._thread = threading.Thread(target=self._loop, name="sepcost-energy-sampler", daemon=True)
        self._thread.start()
        return snap

    def snapshot(self, reset_task_peak: bool = False) -> Snapshot:
        if reset_task_peak:
            with self._lock:
                self.task_peak_bytes = 0
        cpu = self._sample()
        busy, total = _system_cpu()
        with self._lock:
            return Snapshot(self._t_last, cpu, self._gpu_int, busy, total)

    def stop(self) -> Snapshot:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._procs = _tree(self._proc)
        return self.snapshot()
