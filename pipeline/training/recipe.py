"""The replication's training recipe, apart from the loop: the loss, the optimiser and the lr schedule.

Adam at lr x global batch / lr_batch (`TrainConfig.effective_lr`); x lr_decay every lr_decay_every
epochs, or Open-Unmix's ReduceLROnPlateau on the validation loss; L1 loss on the waveform (t), on
the real and imaginary STFT (tf) or both (t+tf), or MSE on magnitudes (Open-Unmix). Imports torch,
the config schema, `pipeline.boundary` and `pipeline.precision`.
"""
from __future__ import annotations

import torch

from pipeline.boundary import device_of
from pipeline.config.schema import Config, TrainConfig
from pipeline.precision import require


def loss_fn(kind: str, model, wave: torch.Tensor, spec: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Training loss between estimates and reference sources (batch, targets, channels, samples)."""
    loss = wave.new_zeros(())
    if kind in ("t", "t+tf"):
        loss = loss + (wave - reference).abs().mean()
    if kind in ("tf", "t+tf", "mse_mag"):
        ref_spec = model.stft(reference)
        if kind == "mse_mag":
            return (spec.abs() - ref_spec.abs()).square().mean()
        loss = loss + (spec.real - ref_spec.real).abs().mean() + (spec.imag - ref_spec.imag).abs().mean()
    return loss


FUSED_ADAM = ("cpu", "cuda")  # the devices of a study, on which torch has a fused Adam


def require_precisions(cfg: Config, device: torch.device) -> None:
    """A training's two precisions (its steps', its validation's), checked before it starts."""
    require(cfg.params_file, "train.precision", cfg.train.precision, device)
    require(cfg.params_file, "eval.precision", cfg.eval.precision, device)


def optimiser(model: torch.nn.Module, train: TrainConfig, ranks: int = 1) -> torch.optim.Optimizer:
    """Adam at the lr of the global batch of `ranks` data-parallel processes; fused, one kernel per
    parameter (torch's default on the CPU loops over a dozen operations per parameter:
    `benchmarks/optimizer.py` measures the difference on a training's steps), on the CPU and CUDA."""
    fused = device_of(model).type in FUSED_ADAM
    return torch.optim.Adam(model.parameters(), lr=train.effective_lr(ranks), weight_decay=train.weight_decay,
                            fused=fused)


def scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig):
    if train.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=train.plateau_factor, patience=train.plateau_patience
        )
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=train.lr_decay_every, gamma=train.lr_decay)
