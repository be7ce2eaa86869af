"""The one device boundary: every call into a model goes through here (demucs's `apply_model`).

`apply(model, fn, *inputs)` moves the tensor inputs to the model's device, runs `fn` there (a
forward pass, a loss, the model's STFT, the Wiener filter) and brings the tensor results back to
the CPU; `to_device` and `to_host` are its two halves, for the training step, whose loss stays on
the device until its one number comes back. Nothing else in the project moves a tensor between
devices, and no `.numpy()` touches a device tensor: what `to_host` returns is on the CPU.
`tests/devices.py` holds every model call to this on the CPU, with the models on another device.
Imports torch only.
"""
from __future__ import annotations

from typing import Callable

import torch


def device_of(model: torch.nn.Module) -> torch.device:
    """Where the model's weights are (the CPU for a model without any)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def to_device(model: torch.nn.Module, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The inputs of a call into `model`, on its device."""
    device = device_of(model)
    return tuple(t.to(device) for t in tensors)


def to_host(result, copy: bool = False):
    """A result back on the CPU, detached: a tensor, or tensors in tuples, lists and dicts. With
    `copy`, a snapshot that shares no memory with the originals, CPU ones included (a checkpoint
    written while the training goes on updating them)."""
    if isinstance(result, torch.Tensor):
        return result.detach().to("cpu", copy=copy)
    if isinstance(result, (tuple, list)):
        return type(result)(to_host(r, copy) for r in result)
    if isinstance(result, dict):
        return {k: to_host(v, copy) for k, v in result.items()}
    return result


def apply(model: torch.nn.Module, fn: Callable, *inputs: torch.Tensor):
    """`fn(*inputs)` on the model's device, its tensor results on the CPU."""
    return to_host(fn(*to_device(model, *inputs)))
