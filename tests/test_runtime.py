"""The machine knobs' defaults: the cores a process may use."""
import os
import subprocess
import sys
import textwrap

import pytest

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
