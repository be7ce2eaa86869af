"""Arrays the processes of one machine share: files in its shared memory (/dev/shm), each mapped
read-only by every process that uses it, so that the DataLoader workers and the torchrun ranks of a
node hold one copy, not one each.

The rule, for the folder /dev/shm/sepcost-<uid>-<key> (the key names the content; the training
stems' is the data set's digest, so that the ranks of a training, and trainings side by side on
the same data, find the same folder):
- a process that opens it holds a shared lock on `<folder>.users` until it closes it, or dies (the
  kernel releases the lock);
- an array no process has written yet is written by the first one that asks for it, to a temporary
  name, then renamed, under the exclusive lock `<folder>.lock`: the others wait, then map its copy,
  never half of one;
- the last user to close the folder removes it, under the same lock (nobody is opening it then).
  The folder of a process that was killed stays until the next user of the same key closes it;
  a file removed while a process has it mapped lives on until it is unmapped.
Where there is no /dev/shm (macOS, Windows), where the folder is not this user's, or where an array
would leave less than a quarter of /dev/shm free (DataLoader workers pass their batches through
it; a container's is often 64 MB), the caller gets the array's private copy. The two small lock
files stay. Imports numpy only.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

SHM = Path("/dev/shm")
KEEP_FREE = 0.25  # of /dev/shm, left to the DataLoader workers' batches and to other programs


class SharedArrays:
    """The arrays of one key: `open` it, ask for `array`s, `close` it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = os.open(f"{folder}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._users = os.open(f"{folder}.users", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._users, fcntl.LOCK_SH)
        self._opener = os.getpid()

    @classmethod
    def open(cls, key: str) -> SharedArrays | None:
        """The shared folder of `key`; None where this machine has no shared memory to offer."""
        if not key or not SHM.is_dir():
            return None
        try:
            return cls(SHM / f"sepcost-{os.getuid()}-{key}")
        except OSError:  # lock files another user made
            return None

    def array(self, name: str, dtype: np.dtype, shape: tuple[int, ...], load: Callable[[], np.ndarray]) -> np.ndarray:
        """The array `name` (`dtype`, `shape`) mapped read-only from shared memory, written there
        from `load()` by the first process that asks for it; `load()`'s private copy where there is
        no room for it."""
        path = self.folder / name
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        with self._locked():
            if not path.exists():
                self.folder.mkdir(mode=0o700, exist_ok=True)
                if self.folder.stat().st_uid != os.getuid() or not _room_for(nbytes):
                    return load()
                data = np.ascontiguousarray(load(), dtype=dtype)
                tmp = path.with_name(f".{name}.{os.getpid()}")
                try:
                    with open(tmp, "wb") as f:
                        data.tofile(f)
                    os.replace(tmp, path)
                except OSError:  # /dev/shm filled up meanwhile
                    tmp.unlink(missing_ok=True)
                    return data
            return np.memmap(path, dtype=dtype, mode="r", shape=shape)

    def close(self) -> None:
        """Stop using the folder; the last user removes it. A forked child's copy does nothing."""
        if os.getpid() != self._opener or self._users < 0:
            return
        with self._locked():
            try:  # exclusive only when no other process holds the folder open
                fcntl.flock(self._users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(self.folder, ignore_errors=True)
            except BlockingIOError:
                pass
        os.close(self._users)
        os.close(self._lock)
        self._users = self._lock = -1

    @contextlib.contextmanager
    def _locked(self):
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)


def _room_for(nbytes: int) -> bool:
    """Whether /dev/shm keeps KEEP_FREE of its size free after `nbytes` more."""
    fs = os.statvfs(SHM)
    return (fs.f_bavail - KEEP_FREE * fs.f_blocks) * fs.f_frsize >= nbytes
