"""Checkpoints: self-describing models (best.pt) and the whole resume state of a training (last.pt).

A best.pt travels without the params file that made it: each model's spec (the plain dict
`model.build_separator` takes) is stored beside its weights, so `load_models` rebuilds it alone
(Demucs's checkpoints do the same). Both are written atomically; a training's `Writer` writes them
in the background. Imports `model`, `pipeline.atomic`, `pipeline.boundary` and `pipeline.errors`.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from model import build_separator
from pipeline.atomic import replacing
from pipeline.boundary import to_host
from pipeline.errors import UserError

FORMAT = "sepcost-checkpoint/1"


def save(obj, path: Path) -> None:
    """torch.save, atomically."""
    with replacing(path) as tmp:
        torch.save(obj, tmp)


class Writer:
    """Checkpoints written by a thread of their own while the training goes on: `save` takes a
    snapshot of its files on the CPU (the one wait: a copy of the weights and the optimizer's state)
    and queues their writes; `wait` returns when every queued write is on disk, and raises a
    write's error. The other ranks of a training wait for rank 0's snapshot, not for its disk. One
    write at a time, in order: a file is never older on disk than one queued before it."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sepcost-checkpoint")
        self._pending: list[Future] = []

    def save(self, files: dict[Path, object]) -> None:
        """Write each `{path: object}` (`save`), from a snapshot taken now."""
        snapshots = {path: to_host(obj, copy=True) for path, obj in files.items()}  # all before any write
        self._pending += [self._pool.submit(save, obj, path) for path, obj in snapshots.items()]

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        """Wait for the queued writes (a write that failed raises here), then stop the thread."""
        try:
            self.wait()
        finally:
            self._pool.shutdown()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_state(path: Path) -> dict | None:
    """A resume state written by `save`, or None when there is none."""
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def models_file(variant: str | None, config: dict, models: list[dict]) -> dict:
    """A best.pt's content: `models` are {"spec", "state_dict", "best_epoch"}, one per model of the
    variant; `save` writes it, `load_models` reads it."""
    return {"format": FORMAT, "variant": variant, "config": config, "models": models}


def load_models(path: Path, device="cpu") -> list[torch.nn.Module]:
    """The models of a best.pt checkpoint on `device`, ready for inference; no params file needed.
    Each is built and loaded on the CPU, then moved."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not a sepcost checkpoint (expected models/<variant>/best.pt)")
    models = []
    for entry in ckpt["models"]:
        model = build_separator(entry["spec"])
        model.load_state_dict(entry["state_dict"])
        models.append(model.to(device).eval())
    return models
