"""The CPU memory allocator's settings for training: freed tensors' memory is kept and reused.

A CPU training step allocates and frees the same activations, step after step. With glibc's
defaults a freed block of a few MB goes back to the kernel (the heap's top is trimmed beyond
128 kB; the largest blocks are mmapped and unmapped), and the next step faults every 4 kB page of
it in again, zeroed by the kernel: the default Open-Unmix spent a fifth of its CPU time in the
kernel, 70,000 page faults a step. `keep_freed_memory()` asks glibc to keep freed memory for reuse and
torch to back its large tensors with 2 MB pages (`THP_MEM_ALLOC_ENABLE`, read at torch's first
allocation). What a run computes is unchanged; its resident memory stays at its peak
(benchmarks/allocator.py measures both). Settings made by the user (glibc's `MALLOC_*_` or
`GLIBC_TUNABLES` environment, `THP_MEM_ALLOC_ENABLE=0`) are kept. Imports no torch.
"""
from __future__ import annotations

import ctypes
import os
import platform

# mallopt's parameters (malloc.h) and the values asked for: freed memory is never trimmed below
# 1 GB, and blocks up to glibc's largest mmap threshold (32 MB on 64-bit) come from the heap.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP = {M_TRIM_THRESHOLD: 1 << 30, M_MMAP_THRESHOLD: 32 << 20}
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory() -> bool:
    """Applies the settings in this process (torch's also reaches its children, by the
    environment); returns whether glibc's were applied (not off glibc, nor over the user's)."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    user_set = any(k in os.environ for k in USER_SETTINGS) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or user_set:
        return False
    libc = ctypes.CDLL("libc.so.6")
    return all(libc.mallopt(param, value) == 1 for param, value in KEEP.items())
