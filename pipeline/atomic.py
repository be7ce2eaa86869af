"""Outputs that appear whole or not at all: the one helper every stage writes its results with.

A reader (a later stage, DVC, a person) never sees half a file or half a folder, and a command
that fails or is interrupted leaves the previous output, or nothing, rather than a partial one
that looks like a result. Imports nothing of the project.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def replacing(path: str | Path, discard_old: bool = False) -> Iterator[Path]:
    """A temporary path next to `path` to write a file or a folder to; when the block ends without
    an error it takes `path`'s place in one rename (a folder is swapped whole), otherwise it is
    removed and `path` is left as it was. With `discard_old`, `path` is removed first, so that a
    failure leaves nothing (for outputs that must not outlive a failed check of their inputs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    _remove(tmp)
    if discard_old:
        _remove(path)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if tmp.is_dir() and path.is_dir():
        old = path.with_name(f".{path.name}.old")
        _remove(old)
        os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    else:
        os.replace(tmp, path)


def _strict(value):
    """NaN and infinities, which JSON has no words for, as null (a missing figure)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def write_json(path: str | Path, data) -> None:
    """Write `data` as indented, strict JSON (NaN as null), atomically."""
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(_strict(data), indent=2, allow_nan=False) + "\n")
