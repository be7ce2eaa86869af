"""A second device on a machine without one: device mistakes caught on the CPU.

`other_device()` puts every model the stages build or load on torch's `meta` device while their
inputs (data, checkpoints, audio files) stay on the CPU, as a CUDA GPU would. A meta tensor has a
shape and no data, and torch refuses to mix it with a CPU tensor exactly as it refuses to mix a
CUDA tensor with one (a CPU input to a meta layer, a CPU signal with a meta STFT window, a CPU loss
against a meta estimate); `.numpy()` of a meta tensor raises as it does for a CUDA one. What
torch cannot check, this mode does: a meta tensor brought to the CPU (`.cpu()`, `.to("cpu")`,
`.tolist()`) anywhere but in `pipeline.boundary` raises `DeviceMistake`, naming the line (a
number, `.item()` or `float()`, may come back anywhere, as it does from a GPU). Where a real
device would hand back its numbers, a crossing returns random values of the right shape and dtype
(a private generator: the study's random streams are untouched), so that the stages run on to
their outputs.

Measured on torch 2.13 (CPU) before choosing it: an LSTM's forward, backward and an Adam step run
on meta; `istft` has no meta kernel (`aten::equal`), so `torch.istft` of a meta spectrogram is
answered here with an empty tensor of the right shape; meta's LSTM loops over time steps in
Python (2.5 s for a tiny BSRNN's forward), so LSTMs and GRUs are answered with outputs of the
right shape too (0.1 s). A tensor subclass standing for the device counted factory calls
(`torch.zeros(..., device=x.device)`) as mismatches, and `FakeTensorMode` could not build a module
on a fake `cuda` device.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

DEVICE = torch.device("meta")
BOUNDARY = "pipeline.boundary"  # the one module allowed to bring a device tensor to the CPU
_NUMBER = {torch.Tensor.item, torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__bool__}
_TORCH = str(Path(torch.__file__).parent)


class DeviceMistake(AssertionError):
    """A device tensor reached the CPU outside the boundary."""


def _caller() -> tuple[str, str]:
    """The module and line that made the call being intercepted (torch's and this file's frames skipped)."""
    frame = sys._getframe(2)
    while frame and (frame.f_code.co_filename.startswith(_TORCH) or frame.f_code.co_filename == __file__):
        frame = frame.f_back
    if frame is None:
        return "?", "?"
    return frame.f_globals.get("__name__", "?"), f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _target_device(args, kwargs) -> torch.device | None:
    """Where `Tensor.to(...)` sends its tensor (None: it stays)."""
    rest, kw = list(args[1:]), {k: v for k, v in kwargs.items() if k != "copy"}  # parsed apart by torch
    if rest and isinstance(rest[0], torch.Tensor):
        return rest[0].device
    if "other" in kw:
        return kw["other"].device
    device, _, _, _ = torch._C._nn._parse_to(*rest, **kw)
    return device


def _istft_shape(spec: torch.Tensor, args, kwargs) -> tuple[int, ...]:
    n_fft = args[1] if len(args) > 1 else kwargs["n_fft"]
    hop = (args[2] if len(args) > 2 else kwargs.get("hop_length")) or n_fft // 4
    length = kwargs.get("length")
    if length is None:
        length = n_fft + hop * (spec.shape[-1] - 1) - (n_fft if kwargs.get("center", True) else 0)
    return (*spec.shape[:-2], length)


def _recurrent(args):
    """torch's LSTM or GRU of meta tensors, answered with outputs of the right shape that depend on
    every input (for backward). Raises as torch does when the input, the state or a weight is on
    another device."""
    data, hx, params, _, _, _, _, bidirectional, batch_first = args[:9]
    states = list(hx) if isinstance(hx, (tuple, list)) else [hx]
    if any(t.device != DEVICE for t in (data, *states, *params)):
        raise RuntimeError("Input and parameter tensors are not at the same device")
    time_axis, batch_axis = (1, 0) if batch_first else (0, 1)
    hidden = states[0].shape[-1] * (2 if bidirectional else 1)
    shape = [0, 0, hidden]
    shape[time_axis], shape[batch_axis] = data.shape[time_axis], data.shape[batch_axis]
    dependence = sum(t.sum() for t in (data, *states, *params)) * 0
    return (data.new_empty(shape) + dependence, *(s.new_empty(s.shape) + dependence for s in states))


class OtherDevice(TorchFunctionMode):
    """The torch function mode of `other_device` (see the module's docstring)."""

    def __init__(self, strict: bool = True):
        super().__init__()
        self.strict = strict  # tensors cross to the CPU only in the boundary
        self.generator = torch.Generator().manual_seed(0)
        self.crossings = 0  # device tensors brought back through the boundary

    def _data(self, tensor: torch.Tensor) -> torch.Tensor:
        """What the device would have handed back: random values of the tensor's shape and dtype."""
        if tensor.dtype == torch.bool:
            return torch.ones(tensor.shape, dtype=torch.bool)
        if not (tensor.is_floating_point() or tensor.is_complex()):
            return torch.zeros(tensor.shape, dtype=tensor.dtype)
        return torch.randn(tensor.shape, generator=self.generator, dtype=tensor.dtype)

    def _cross(self, what: str) -> None:
        module, where = _caller()
        if self.strict and module != BOUNDARY:
            raise DeviceMistake(f"{what} of a device tensor outside {BOUNDARY}, at {where}")
        self.crossings += 1

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        this = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if this is not None and this.device == DEVICE:
            if func in (torch.Tensor.cpu, torch.Tensor.to) and (
                    func is torch.Tensor.cpu or _target_device(args, kwargs) == torch.device("cpu")):
                self._cross(f"Tensor.{func.__name__}")
                return self._data(this)
            if func is torch.Tensor.tolist:
                self._cross("Tensor.tolist")
                return self._data(this).tolist()
            if func in _NUMBER:
                return func(self._data(this))
        if getattr(func, "__name__", None) in ("lstm", "gru") and this is not None and this.device == DEVICE:
            return _recurrent(args)
        if func is torch.istft and this is not None and this.device == DEVICE:
            return torch.empty(_istft_shape(this, args, kwargs), device=DEVICE)
        return func(*args, **kwargs)


@contextlib.contextmanager
def other_device(monkeypatch, strict: bool = True):
    """Every device the stages pick is `meta`, under `OtherDevice`; yields the mode (its `crossings`).
    `strict=False` lets tensors cross anywhere: only what would crash on a GPU fails."""
    from pipeline import runtime
    from pipeline.cli import STAGES

    for stage in STAGES.values():  # imported first: a module imported under the patch would keep it
        importlib.import_module(stage)
    original = runtime.pick_device
    for module in list(sys.modules.values()):
        if getattr(module, "pick_device", None) is original:
            monkeypatch.setattr(module, "pick_device", lambda name: DEVICE)
    with OtherDevice(strict) as mode:
        yield mode
