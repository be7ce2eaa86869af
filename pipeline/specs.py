"""From a variant's config to its models: the spec dict of each model (what `model.build_separator`
takes and a checkpoint stores), and their parameter count. Imports `model` and the config schema.
"""
from __future__ import annotations

import dataclasses

from pipeline.config.schema import Config


def separator_specs(cfg: Config) -> list[dict]:
    """The spec dict of each model of a (resolved) variant: one per target, or one joint model."""
    common = {
        "arch": cfg.model.arch,
        "sample_rate": cfg.data.sample_rate,
        "stft": {"n_fft": cfg.stft.n_fft, "hop": cfg.stft.hop},
        "bsrnn": dataclasses.asdict(cfg.model.bsrnn),
        "umx": dataclasses.asdict(cfg.model.umx),
    }
    groups = [list(cfg.targets)] if cfg.model.joint else [[t] for t in cfg.targets]
    return [{**common, "targets": g} for g in groups]


def count(cfg: Config) -> int:
    """Parameters of all the models of a (resolved) variant together, counted on the meta device."""
    import torch

    from model import build_separator, count_parameters

    with torch.device("meta"):
        return sum(count_parameters(build_separator(spec)) for spec in separator_specs(cfg))
