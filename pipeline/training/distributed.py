"""Data-parallel training across processes (torchrun): who this process is, and what the ranks share.

`sepcost train --nproc N` (or `torchrun --nnodes ... --nproc_per_node ... -m pipeline.cli train
...`) starts one process per rank; `World.from_env()` reads torchrun's variables and joins the
process group (NCCL on GPUs, gloo on CPUs). Each rank draws its own items of every global batch
from the seeded sampler (`rank_items`), and after the backward pass of each update the gradients
are averaged over the ranks (`average_gradients`): the same all-reduce DistributedDataParallel
does, done once per update in one flat buffer, so that it holds for every variant's model (unused
parameters and gradient accumulation included) and the weights stay identical on every rank.
Validation, checkpoints and MLflow are rank 0's; a stop request is agreed by all ranks after each
update, so they all stop after the same step. Without torchrun the world is this one process and
nothing here calls torch.distributed. Imports torch.
"""
from __future__ import annotations

import datetime
import os
import random
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

# A collective waits this long for a slow rank (rank 0 validating, writing a checkpoint).
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @classmethod
    def from_env(cls, device: torch.device) -> "World":
        """This process's place among torchrun's ranks (one process when not under torchrun); joins
        the process group when there are several: NCCL when the training runs on GPUs (`device`,
        from `runtime.device`), else gloo, even where a GPU is present."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        world = cls(rank=int(os.environ.get("RANK", "0")), size=size,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                    local_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        if size > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(world.local_rank)
            torch.distributed.init_process_group(backend, timeout=TIMEOUT)
        return world

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: validates, writes checkpoints and results, and holds the MLflow run."""
        return self.rank == 0

    @property
    def node_leader(self) -> bool:
        """The first rank of its node: it measures the node's CPU and RAM (and its ranks' GPUs)."""
        return self.local_rank == 0

    @property
    def nodes(self) -> int:
        return max(1, self.size // max(1, self.local_size))

    def device(self, device: torch.device) -> torch.device:
        """This rank's GPU (`cuda:LOCAL_RANK`) when training on GPUs."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" and self.distributed else device

    # -- collectives (no-ops for one process) ------------------------------------------------------

    def average_gradients(self, model: torch.nn.Module) -> None:
        """Replace each parameter's gradient by its mean over the ranks (a missing one counts as 0)."""
        if not self.distributed:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.size
        offset = 0
        for p, g in zip(params, grads):
            averaged = flat[offset : offset + g.numel()].view_as(g)
            if p.grad is None:
                p.grad = averaged.clone()
            else:
                p.grad.copy_(averaged)
            offset += g.numel()

    def agree(self, signum: int) -> int:
        """The signal any rank received (0 for none): every rank stops after the same step."""
        if not self.distributed:
            return signum
        flag = torch.tensor([signum], dtype=torch.int64, device=self._collective_device())
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())

    def mean(self, value: float) -> float:
        """`value`'s mean over the ranks (a training loss: each rank saw its own items)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self._collective_device())
        torch.distributed.all_reduce(t)
        return float(t.item()) / self.size

    def from_main(self, obj):
        """Rank 0's `obj`, on every rank (validation scores, a stop found while validating)."""
        if not self.distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """`obj` of every rank, in rank order, on rank 0 (an empty list on the others)."""
        if not self.distributed:
            return [obj]
        out = [None] * self.size if self.main else None
        torch.distributed.gather_object(obj, out, dst=0)
        return out or []

    def sum_over_nodes(self, figures: Mapping[str, float], keys: tuple[str, ...],
                       wall: tuple[str, ...] = ()) -> dict[str, float]:
        """The node leaders' `figures` added up (other ranks contribute nothing), except the `wall`
        keys (durations, the same on every node), which keep this rank's own value."""
        if not self.distributed:
            return dict(figures)
        own = [float(figures.get(k, 0.0)) if self.node_leader else 0.0 for k in keys]
        t = torch.tensor(own, dtype=torch.float64, device=self._collective_device())
        torch.distributed.all_reduce(t)
        summed = dict(zip(keys, t.tolist()))
        summed.update({k: float(figures.get(k, 0.0)) for k in wall})
        return summed

    def close(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def _collective_device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" \
            else torch.device("cpu")


def rank_items(step: int, batch: int, world: World) -> list[int]:
    """The sampler indices rank `world.rank` trains on at `step` of an epoch: its `batch` of the
    step's global batch of batch x ranks consecutive items. With one rank at batch x ranks, the
    same items make the same global batch: results do not depend on how it is split."""
    first = step * batch * world.size + world.rank * batch
    return list(range(first, first + batch))


# ----------------------------------------------------------------------------- random state


def random_state(device: torch.device) -> dict:
    """Every random generator a training on `device` draws from (dropout, anything seeded globally):
    on a GPU, its own generator alone, so that a resume needs no more GPUs than the rank uses."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_random_state(state: Mapping, device: torch.device) -> None:
    """`random_state`'s generators again, the GPU's onto `device` (a GPU training resumed on the
    CPU draws from the CPU's alone)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
