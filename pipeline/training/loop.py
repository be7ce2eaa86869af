"""The training loop: steps of every model side by side, and one epoch (train, validate, early
stopping, lr) of all the models still training. Imports the slot, the recipe's loss, validation,
`pipeline.runtime` and `pipeline.names`.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from pipeline.config.schema import Config
from pipeline.names import EPOCH, KWH_CODECARBON, KWH_GREEN_ALGORITHMS, TARGETS
from pipeline.runtime import autocast, side_by_side
from pipeline.training.recipe import loss_fn
from pipeline.training.slot import Slot
from pipeline.training.validation import VALID, validate

STEPS_S = "steps_s_"  # the seconds a model's steps took in an epoch, by model


def train_step(slot: Slot, mixture: torch.Tensor, sources: torch.Tensor, cfg: Config, device, update: bool) -> float:
    """Forward and backward one batch; `update` applies the accumulated gradients (clipped)."""
    train = cfg.train
    mixture, sources = mixture.to(device), sources.to(device)
    reference = sources[:, [TARGETS.index(t) for t in slot.targets]]
    with autocast(device):
        wave, spec = slot.model(mixture)
    loss = loss_fn(train.loss, slot.model, wave.float(), spec, reference)
    (loss / train.accum_steps).backward()
    if update:
        if train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(slot.model.parameters(), train.grad_clip)
        slot.optimizer.step()
        slot.optimizer.zero_grad(set_to_none=True)
    return loss.item()


def batches(slot: Slot, cfg: Config, epoch: int):
    """The epoch's batches of a model's sampler."""
    slot.sampler.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(
        slot.sampler, batch_size=cfg.train.batch_size, drop_last=True, num_workers=cfg.runtime.num_workers
    )
    return iter(loader)


def _uses_dropout(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Dropout) or (isinstance(m, torch.nn.RNNBase) and m.dropout > 0)
               for m in model.modules())


def train_steps(active: list[Slot], cfg: Config, epoch: int, device: torch.device, steps: int,
                desc: str) -> dict[str, tuple[float, float]]:
    """`steps` steps of each model on its epoch's batches, the models side by side.

    Returns each model's mean training loss and the seconds its steps took, by its name (the share
    of a training's energy each target's model takes is its share of those seconds).
    """
    train = cfg.train
    bar = tqdm(total=steps * len(active), desc=desc, unit="step", leave=False)

    def run(slot: Slot) -> tuple[float, float]:
        started = time.perf_counter()
        slot.model.train()
        loader = batches(slot, cfg, epoch)
        losses = []
        for step in range(steps):
            update = (step + 1) % train.accum_steps == 0 or step + 1 == steps
            losses.append(train_step(slot, *next(loader), cfg, device, update))
            bar.update()
        return float(np.mean(losses)), time.perf_counter() - started

    # Dropout draws from torch's one global generator: models that use it run one after the
    # other, so that their draws (and results) do not depend on thread timing.
    parallel = 1 if any(_uses_dropout(s.model) for s in active) else len(active)
    with side_by_side(parallel, device, cfg.runtime.threads) as (pool, _):
        losses = list(pool.map(run, active))
    bar.close()
    return {s.name: loss for s, loss in zip(active, losses)}


def run_epoch(slots: list[Slot], cfg: Config, epoch: int, device, valid: list[dict], sample_rate: int,
              meter, history: list[dict]) -> dict:
    """Train and validate every active model for one epoch, update early stopping and the lr, and
    return the epoch's row of the history."""
    started = time.perf_counter()
    active = [s for s in slots if not s.stopped]
    with meter.task(f"epoch {epoch + 1}") as task:
        steps = cfg.train.epoch_items // cfg.train.batch_size
        losses = train_steps(active, cfg, epoch, device, steps, desc=f"epoch {epoch + 1}/{cfg.train.max_epochs}")
        scores = validate([s.model for s in active], valid, cfg, sample_rate, device)
    row = {"epoch": epoch + 1, "train_loss": float(np.mean([loss for loss, _ in losses.values()]))}
    row.update({f"train_loss_{name}": loss for name, (loss, _) in losses.items()})
    row.update({f"{STEPS_S}{name}": seconds for name, (_, seconds) in losses.items()})
    for slot in active:
        slot.end_epoch(epoch, usdr=float(np.mean([scores[f"{VALID}usdr_{t}"] for t in slot.targets])),
                       loss=float(np.mean([scores[f"{VALID}loss_{t}"] for t in slot.targets])), train=cfg.train)
    # A model that stopped earlier keeps the scores of its best epoch in the history.
    for slot in slots:
        if slot not in active:
            best = history[slot.best_epoch - 1]
            scores.update({k: best[k] for t in slot.targets for k in (f"{VALID}usdr_{t}", f"{VALID}loss_{t}")})
    scores[f"{VALID}loss"] = float(np.mean([scores[f"{VALID}loss_{t}"] for t in cfg.targets]))
    row.update(scores)
    row[f"{VALID}usdr_avg"] = float(np.mean([row[f"{VALID}usdr_{t}"] for t in cfg.targets]))
    row["lr"] = float(np.mean([s.optimizer.param_groups[0]["lr"] for s in slots]))
    row["epoch_s"] = time.perf_counter() - started
    row[f"{EPOCH}{KWH_CODECARBON}"] = task[KWH_CODECARBON]
    row[f"{EPOCH}{KWH_GREEN_ALGORITHMS}"] = task[KWH_GREEN_ALGORITHMS]
    return row
