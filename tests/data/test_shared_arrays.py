import os
import signal
import subprocess
import sys
import uuid

import numpy as np
import pytest

from pipeline.data import shared_arrays
from pipeline.data.shared_arrays import SharedArrays
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not shared_arrays.SHM.is_dir(), reason="no /dev/shm on this system")

DATA = np.arange(12, dtype=np.int16).reshape(2, 6)

# Another process: opens the key, maps array "a" (its `load` must not be called: the array is
# there), prints its sum, then holds the folder open until its stdin closes or it is killed.
OTHER = """
import sys
from pipeline.data.shared_arrays import SharedArrays
shared = SharedArrays.open(sys.argv[1])
a = shared.array("a", "int16", (2, 6), load=lambda: 1 / 0)
print(type(a).__name__, int(a.sum()), flush=True)
sys.stdin.read()
shared.close()
"""


@pytest.fixture
def key():
    key = f"test-{uuid.uuid4().hex[:12]}"
    yield key
    for suffix in (".lock", ".users"):
        (shared_arrays.SHM / f"sepcost-{os.getuid()}-{key}{suffix}").unlink(missing_ok=True)


def _other(key: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", OTHER, key], env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_the_first_process_writes_an_array_and_another_maps_it(key):
    shared = SharedArrays.open(key)
    a = shared.array("a", np.int16, DATA.shape, load=lambda: DATA)
    assert isinstance(a, np.memmap) and np.array_equal(a, DATA) and not a.flags.writeable
    other = _other(key)
    assert other.stdout.readline().split() == ["memmap", str(DATA.sum())]
    other.communicate("")
    assert shared.folder.is_dir()  # this process still uses it
    shared.close()
    assert not shared.folder.exists()


def test_the_last_user_removes_the_folder_a_killed_one_leaves_it(key):
    first, second = SharedArrays.open(key), SharedArrays.open(key)
    first.array("a", np.int16, DATA.shape, load=lambda: DATA)
    first.close()
    assert second.folder.is_dir()
    second.close()
    assert not second.folder.exists()

    other = SharedArrays.open(key)
    other.array("a", np.int16, DATA.shape, load=lambda: DATA)
    killed = _other(key)
    killed.stdout.readline()
    other.close()
    assert other.folder.is_dir()  # the other process holds it open
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert other.folder.is_dir()  # its lock went with it, its folder stays ...
    last = SharedArrays.open(key)
    assert np.array_equal(last.array("a", np.int16, DATA.shape, load=lambda: 1 / 0), DATA)  # ... reused
    last.close()
    assert not last.folder.exists()  # ... and removed by the next last user


def test_a_forked_child_does_not_close_its_parents_folder(key):
    shared = SharedArrays.open(key)
    shared.array("a", np.int16, DATA.shape, load=lambda: DATA)
    pid = os.fork()
    if pid == 0:
        shared.close()
        os._exit(0)
    os.waitpid(pid, 0)
    assert shared.folder.is_dir()
    shared.close()
    assert not shared.folder.exists()


def test_without_room_or_shared_memory_the_array_is_a_private_copy(key, monkeypatch):
    monkeypatch.setattr(shared_arrays, "KEEP_FREE", 1.0)
    shared = SharedArrays.open(key)
    a = shared.array("a", np.int16, DATA.shape, load=lambda: DATA.copy())
    assert not isinstance(a, np.memmap) and np.array_equal(a, DATA)
    assert not (shared.folder / "a").exists()
    shared.close()
    monkeypatch.setattr(shared_arrays, "SHM", REPO / "no-such-folder")
    assert SharedArrays.open(key) is None
