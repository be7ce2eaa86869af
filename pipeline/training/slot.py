"""One model under training (a per-target model or the joint model): its optimiser, schedule,
sampler and early-stopping state, and how it is built and restored. Imports `model`, the
config schema, the data package's sampler, the recipe and `pipeline.boundary`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from model import build_separator
from pipeline.boundary import to_device, to_host
from pipeline.config.schema import Config, TrainConfig
from pipeline.data.manifest import Manifest
from pipeline.data.sampler import TrackStore, TrainingSampler
from pipeline.training import recipe

UMX_STATS_ITEMS = 256  # training excerpts that initialise Open-Unmix's input scaling


@dataclass
class Slot:
    spec: dict
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    sampler: TrainingSampler
    best_score: float = -math.inf  # higher is better: uSDR, or minus the loss
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped: bool = False
    best_state: dict = field(default_factory=dict)

    @property
    def targets(self) -> list[str]:
        return self.spec["targets"]

    @property
    def name(self) -> str:
        """Its target, or "joint"."""
        return self.targets[0] if len(self.targets) == 1 else "joint"

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped": self.stopped,
            "best_state": self.best_state,
        }

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for key in ("best_score", "best_epoch", "bad_epochs", "stopped", "best_state"):
            setattr(self, key, state[key])

    def end_epoch(self, epoch: int, usdr: float, loss: float, train: TrainConfig) -> None:
        """Early stopping on the monitored validation figure (keeping the best weights), then the lr."""
        monitored = usdr if train.monitor == "usdr" else -loss
        if monitored > self.best_score:
            self.best_score, self.best_epoch, self.bad_epochs = monitored, epoch + 1, 0
            self.best_state = {k: v.clone() for k, v in to_host(self.model.state_dict()).items()}
        else:
            self.bad_epochs += 1
            self.stopped = self.bad_epochs >= train.patience
        if train.scheduler == "plateau":
            self.scheduler.step(loss)
        else:
            self.scheduler.step()


def make_slot(cfg: Config, spec: dict, manifest: Manifest, store: TrackStore, device: torch.device, index: int,
              ranks: int = 1) -> Slot:
    """The `index`-th model of a variant, initialised from seed + index (the same on every one of
    `ranks` data-parallel processes)."""
    torch.manual_seed(cfg.seed + index)
    model = build_separator(spec).to(device)
    optimizer = recipe.optimiser(model, cfg.train, ranks)
    target = spec["targets"][0] if len(spec["targets"]) == 1 else None
    sampler = TrainingSampler(cfg, manifest, target=target, store=store)
    return Slot(spec, model, optimizer, recipe.scheduler(optimizer, cfg.train), sampler)


def init_umx_stats(slot: Slot) -> None:
    """Open-Unmix scales its input by training-set statistics: take them from training excerpts."""
    from model.umx import input_statistics

    items = min(UMX_STATS_ITEMS, len(slot.sampler))
    batches = (to_device(slot.model, slot.sampler[i][0][None])[0] for i in range(items))
    mean, std = input_statistics(slot.model, batches)
    slot.model.set_input_stats(mean, std)
