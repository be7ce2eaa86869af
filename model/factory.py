"""The one factory: a separator from a plain spec dict (stored in checkpoints, so a model rebuilds
without the params file that made it).

spec = {"arch": "bsrnn" | "umx", "targets": [...], "sample_rate": 44100,
        "stft": {"n_fft": 2048, "hop": 512}, "bsrnn": {...}, "umx": {...}}
Keys left out of "bsrnn" / "umx" take the defaults of BSRNN / OpenUnmix; unknown keys are errors.
"""
from __future__ import annotations

import copy
import inspect

import torch
from torch import nn

from model.bands import RECIPES
from model.bsrnn import BSRNN
from model.umx import OpenUnmix

KNOWN_TARGETS = frozenset(RECIPES) - {"joint"}  # the sources the band-split recipes are made for
_BUILT_FROM_TOP = ("targets", "sample_rate", "n_fft", "hop")


def _options(cls) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "channels", *_BUILT_FROM_TOP}


def build_separator(spec: dict) -> nn.Module:
    """Separator described by `spec`; the spec is kept as `separator.spec` (a copy)."""
    if not isinstance(spec, dict):
        raise ValueError(f"separator spec: expected a dict, got {type(spec).__name__}")
    unknown = set(spec) - {"arch", "targets", "sample_rate", "stft", "bsrnn", "umx"}
    if unknown:
        raise ValueError(f"separator spec: unknown keys {sorted(unknown)}")
    arch = spec.get("arch")
    targets = list(spec.get("targets") or [])
    if not targets or any(t not in KNOWN_TARGETS for t in targets):
        raise ValueError(f"separator spec: targets: expected a non-empty list among {sorted(KNOWN_TARGETS)}, got {targets}")
    stft = spec.get("stft", {})
    common = dict(targets=targets, sample_rate=int(spec.get("sample_rate", 44100)),
                  n_fft=int(stft.get("n_fft", 2048 if arch == "bsrnn" else 4096)),
                  hop=int(stft.get("hop", 512 if arch == "bsrnn" else 1024)))
    if arch == "bsrnn":
        cls, options = BSRNN, dict(spec.get("bsrnn", {}))
    elif arch == "umx":
        cls, options = OpenUnmix, dict(spec.get("umx", {}))
    else:
        raise ValueError(f"separator spec: arch: expected bsrnn or umx, got {arch!r}")
    bad = set(options) - _options(cls)
    if bad:
        raise ValueError(f"separator spec: {arch}: unknown keys {sorted(bad)}")
    separator = cls(**common, **options)
    separator.spec = copy.deepcopy(spec)
    return separator


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (every learnable tensor, buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in module.parameters())


class VariantSeparator(nn.Module):
    """A variant's models (one per target, or one joint model) as one separator, as a saved
    MLflow model is loaded: mixture (batch, channels, samples) -> waves (batch, targets, channels,
    samples), the targets in `targets` order. The whole input in one pass, no Wiener post-filter:
    long tracks are `sepcost separate`'s (chunks, overlap, Open-Unmix's Wiener filter)."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.models = nn.ModuleList(models)
        self.targets = [t for m in models for t in m.spec["targets"]]

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(mixture)[0] for m in self.models], dim=1)
