"""The training loop: steps of every model side by side, and one epoch (train, validate, early
stopping, lr) of all the models still training, on this process or on every data-parallel rank.

An epoch stops between two updates when a stop signal came (`Stopper`); how far each model got
(`progress`) is what an interrupted epoch resumes from, and with the random state the checkpoint
keeps, it continues exactly as if it had never stopped. Imports the slot, the data package's
sampler, the recipe's loss, validation, `training.distributed`, `training.preemption`,
`pipeline.boundary`, `pipeline.precision`, `pipeline.runtime` and `pipeline.names`.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import time

import numpy as np
import torch
from tqdm import tqdm

from pipeline import precision
from pipeline.boundary import device_of, to_device, to_host
from pipeline.config.schema import Config
from pipeline.data.sampler import TrainingSampler
from pipeline.names import DURATION, ENERGY_KEYS, EPOCH, KWH_CODECARBON, KWH_GREEN_ALGORITHMS, TARGETS
from pipeline.runtime import side_by_side
from pipeline.training.distributed import World, rank_items
from pipeline.training.preemption import StopSignals
from pipeline.training.recipe import loss_fn
from pipeline.training.slot import Slot
from pipeline.training.validation import VALID, validate

STEPS_S = "steps_s_"  # the seconds a model's steps took in an epoch, by model


def train_step(slot: Slot, mixture: torch.Tensor, sources: torch.Tensor, cfg: Config, update: bool,
               world: World) -> float:
    """Forward and backward one batch on the model's device, at `train.precision`; `update`
    averages the accumulated gradients over the ranks and applies them (clipped)."""
    train = cfg.train
    mixture, sources = to_device(slot.model, mixture, sources)
    reference = sources[:, [TARGETS.index(t) for t in slot.targets]]
    with precision.autocast(device_of(slot.model), train.precision):
        wave, spec = slot.model(mixture)
    loss = loss_fn(train.loss, slot.model, wave.float(), spec, reference)
    (loss / train.accum_steps).backward()
    if update:
        world.average_gradients(slot.model)
        if train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(slot.model.parameters(), train.grad_clip)
        slot.optimizer.step()
        slot.optimizer.zero_grad(set_to_none=True)
    return float(to_host(loss))


def batches(slot: Slot, cfg: Config, epoch: int, world: World, first: int, steps: int):
    """This rank's batches of a model's sampler for steps `first` .. `steps` - 1 of the epoch."""
    slot.sampler.set_epoch(epoch)
    items = [i for step in range(first, steps) for i in rank_items(step, cfg.train.batch_size, world)]
    return iter(loader(slot.sampler, items, cfg, device_of(slot.model)))


def loader(sampler: TrainingSampler, items: list[int], cfg: Config,
           device: torch.device) -> torch.utils.data.DataLoader:
    """The batches of `items` of the sampler's epoch, made by `runtime.num_workers` worker processes,
    in pinned memory for a model on a GPU (its copies to the device are faster).

    A loader lasts one epoch of one model: its workers are not forked from the training, whose
    side-by-side threads make fork unsafe (a worker forked from them died once), but by a fork
    server started once with the sampler's imports preloaded (3 s on a busy 2-core EPYC), which
    forks two and has their first batch in 0.1 s, less than fork itself takes from a training
    process; they map the shared stems (`TrackStore`) instead of inheriting them. DataLoader draws a seed for its workers from the
    generator it is given: a private one, so that the global generator (dropout's) does not depend
    on how often an epoch was resumed."""
    workers = None
    if cfg.runtime.num_workers:
        workers = multiprocessing.get_context("forkserver")
        workers.set_forkserver_preload([TrainingSampler.__module__])  # no-op once the server runs
    return torch.utils.data.DataLoader(sampler, batch_size=cfg.train.batch_size, sampler=items,
                                       num_workers=cfg.runtime.num_workers, multiprocessing_context=workers,
                                       pin_memory=device.type == "cuda", generator=torch.Generator())


def _uses_dropout(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Dropout) or (isinstance(m, torch.nn.RNNBase) and m.dropout > 0)
               for m in model.modules())


class Stopper:
    """Whether the training stops before its next update's steps: a stop signal any rank received,
    agreed by all ranks at every update boundary (`before_update`), so they all stop at the same
    one, and no step begins after the signal came (one that came between epochs or while a batch
    was being drawn costs no step)."""

    def __init__(self, signals: StopSignals | None, world: World):
        self.signals, self.world = signals, world
        self.signum = 0

    def before_update(self) -> bool:
        if not self.signum:
            self.signum = self.world.agree(self.signals.requested if self.signals else 0)
        return bool(self.signum)

    def local(self) -> bool:
        """This rank was asked to stop (no agreement: validation is rank 0's alone)."""
        return bool(self.signum or (self.signals and self.signals.requested))


def train_steps(active: list[Slot], cfg: Config, epoch: int, device: torch.device, steps: int, desc: str,
                world: World = World(), stopper: Stopper | None = None,
                progress: dict | None = None) -> dict[str, dict]:
    """Steps of each model up to `steps` on its epoch's batches, the models side by side, from
    where `progress` (an interrupted epoch's) left them; a `stopper` ends them after the update it
    asks for.

    Returns each model's progress by its name: {"steps" done, their "losses", the "seconds" they
    took} (the share of a training's energy each target's model takes is its share of the seconds).
    """
    train = cfg.train
    progress = progress or {}
    stopper = stopper or Stopper(None, world)
    done = sum(progress.get(s.name, {}).get("steps", 0) for s in active)
    bar = tqdm(total=steps * len(active), initial=done, desc=desc, unit="step", leave=False, disable=not world.main)

    def run(slot: Slot) -> dict:
        state = progress.get(slot.name, {"steps": 0, "losses": [], "seconds": 0.0})
        losses, step = list(state["losses"]), state["steps"]
        started = time.perf_counter()
        slot.model.train()
        loader = None  # made at the first step: a model stopped before its turn starts no workers
        while step < steps:
            # a stop comes between updates (accumulated gradients are never lost), before the batch
            # is drawn: a model stopped before its turn starts there when resumed
            if step % train.accum_steps == 0 and stopper.before_update():
                break
            if loader is None:
                loader = batches(slot, cfg, epoch, world, step, steps)
            update = (step + 1) % train.accum_steps == 0 or step + 1 == steps
            losses.append(train_step(slot, *next(loader), cfg, update, world))
            step += 1
            bar.update()
        return {"steps": step, "losses": losses, "seconds": state["seconds"] + time.perf_counter() - started}

    # Dropout draws from torch's one global generator: models that use it run one after the
    # other, so that their draws (and results) do not depend on thread timing; so do the models
    # of a data-parallel training, whose ranks must reach their collectives in the same order.
    sequential = world.distributed or any(_uses_dropout(s.model) for s in active)
    with side_by_side(1 if sequential else len(active), device, cfg.runtime.threads) as (pool, _):
        reached = list(pool.map(run, active))
    bar.close()
    return {s.name: r for s, r in zip(active, reached)}


def run_epoch(slots: list[Slot], cfg: Config, epoch: int, device, valid: list[dict], sample_rate: int,
              meter, history: list[dict], world: World = World(), stopper: Stopper | None = None,
              progress: dict | None = None) -> tuple[dict | None, dict]:
    """Train and validate every active model for one epoch (from `progress`, where an interrupted
    one stopped), update early stopping and the lr. Returns the epoch's row of the history, or
    None and how far the models got when the `stopper` ended it; on data-parallel ranks, rank 0
    validates and every rank gets its scores."""
    started = time.perf_counter()
    active = [s for s in slots if not s.stopped]
    stopper = stopper or Stopper(None, world)
    steps = cfg.train.steps_per_epoch(world.size)
    with meter.task(f"epoch {epoch + 1}") if meter else contextlib.nullcontext() as task:
        reached = train_steps(active, cfg, epoch, device, steps, f"epoch {epoch + 1}/{cfg.train.max_epochs}",
                              world, stopper, progress)
        scores = None
        if not stopper.signum:
            if world.main:
                scores = validate([s.model for s in active], valid, cfg, sample_rate, should_stop=stopper.local)
            scores = world.from_main(scores)
    energy = world.sum_over_nodes(task.energy if task else {}, ENERGY_KEYS, wall=(DURATION,))
    if scores is None:  # stopped: in a step, or while rank 0 validated
        stopper.signum = stopper.signum or world.from_main(stopper.signals.requested if stopper.signals else 0)
        return None, reached
    row = {"epoch": epoch + 1}
    losses = {name: world.mean(float(np.mean(r["losses"]))) for name, r in reached.items()}
    row["train_loss"] = float(np.mean(list(losses.values())))
    row.update({f"train_loss_{name}": loss for name, loss in losses.items()})
    row.update({f"{STEPS_S}{name}": r["seconds"] for name, r in reached.items()})
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
    row[f"{EPOCH}{KWH_CODECARBON}"] = energy[KWH_CODECARBON]
    row[f"{EPOCH}{KWH_GREEN_ALGORITHMS}"] = energy[KWH_GREEN_ALGORITHMS]
    return row, {}
