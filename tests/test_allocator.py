"""The allocator's settings keep freed memory for reuse, and leave the user's own settings alone."""
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

# Each process allocates and frees a block over glibc's largest mmap threshold, as a training step
# does its largest activations, and prints whether glibc's settings were applied and the page
# faults of the rounds after the first (what a step after the first costs). What glibc's settings
# save in a real step's pattern of allocations is measured by benchmarks/allocator.py.
SCRIPT = textwrap.dedent("""
    import resource, sys
    from pipeline.allocator import keep_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "project" else None
    import torch

    def step():
        block = torch.ones(10 << 20)  # 40 MB
        del block

    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step()
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(arm: str, **env) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE" and not k.startswith("MALLOC_")} | env
    done = subprocess.run([sys.executable, "-c", SCRIPT, arm], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    applied, faults = done.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's settings")
def test_large_tensors_fault_in_2_mb_pages_and_glibc_keeps_freed_memory():
    _, defaults = _faults("defaults")
    applied, project = _faults("project")
    assert applied == "True"
    assert defaults >= 5 * 10_000  # each round faults its 40 MB in again, 10,240 pages of 4 kB
    assert project < defaults / 10, (project, defaults)  # most of it in 20 pages of 2 MB


def test_the_users_own_settings_are_kept():
    theirs = {"MALLOC_TRIM_THRESHOLD_": "131072", "THP_MEM_ALLOC_ENABLE": "0"}
    applied, kept = _faults("project", **theirs)
    _, unchanged = _faults("defaults", **theirs)
    assert applied == "False"
    assert kept > unchanged / 2  # neither glibc's nor torch's setting was changed
