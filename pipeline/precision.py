"""Numerical precision, part of a result's recipe (never a machine knob).

`train.precision` is the training steps', `eval.precision` every separation's (validation,
evaluation, streaming, `sepcost separate`): `fp32`, or `bf16`, autocast to bfloat16 (matrix
products, convolutions and recurrent layers in bf16; losses, STFTs and the Wiener filter in
fp32). Both enter the resume fingerprint, the MLflow params and every score's protocol, so a
training resumed on another machine continues in its own precision, and a bf16 score never shares
a column with an fp32 one unflagged.

bf16 runs only where the device computes it natively: a CUDA GPU of compute capability 8.0 or newer
(Ampere on; the replication's V100s are not), or a CPU with AVX512-BF16 or AMX. Elsewhere torch
emulates it, many times slower than fp32 (`benchmarks/model_step.py`), so a study asking for it is
refused in one line rather than run in another precision than its recipe says. Imports torch and
`pipeline.errors`.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from pipeline.errors import ConfigError

PRECISIONS = ("fp32", "bf16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # the CPU flags of native bf16 on x86
CPUINFO = Path("/proc/cpuinfo")  # where Linux lists them


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        flags = CPUINFO.read_text().split() if CPUINFO.exists() else []
        return any(flag in flags for flag in CPU_BF16_FLAGS)
    return False


def require(params_file: str, key: str, precision: str, device: torch.device) -> None:
    """Refuse, in one line naming the key, a precision the device cannot compute natively."""
    if precision == "bf16" and not native_bf16(device):
        raise ConfigError(f"{params_file}: {key}: bf16 needs native bf16 on the device (a CUDA GPU of compute "
                          f"capability 8.0 or newer, or a CPU with AVX512-BF16 or AMX), and {device} has none: "
                          f"set {key}: fp32")


def autocast(device: torch.device, precision: str):
    """The context a model's forward pass runs in at `precision`."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
