"""Open-Unmix (Stöter et al. 2019), the study's classic baseline, re-written for this project.

The spectrogram core maps the mixture magnitude to a non-negative mask; the separator around it
does the STFT, applies the mask to the complex mixture STFT (mixture phase) and inverts it, so it
returns the same (wave, spec_est) pair as BSRNN. |spec_est| is the magnitude estimate that Open-Unmix's
MSE loss compares with the target magnitude.

Parameters per target at hidden 512, stereo, n_fft 4096 (2049 bins, 1487 below 16 kHz), bidirectional:
input scaling 2 x 1487, fc1 2974 x 512, bn1 1024, 3 LSTM layers 4,730,880, fc2 1024 x 512, bn2 1024,
fc3 512 x 4098, bn3 8196, output scaling 2 x 2049: 8,893,348.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from model.stft import Stft


def max_bin(sample_rate: int, n_fft: int, bandwidth_hz: float) -> int:
    """Number of bins whose centre frequency is <= bandwidth_hz (1487 at 44.1 kHz, 4096, 16 kHz)."""
    bins = n_fft // 2 + 1
    step = sample_rate / n_fft
    return min(bins, int(bandwidth_hz // step) + 1)


class UmxCore(nn.Module):
    """The spectrogram model of one target."""

    def __init__(self, bins: int, crop: int, channels: int = 2, hidden: int = 512, layers: int = 3,
                 bidirectional: bool = True):
        super().__init__()
        self.bins, self.crop, self.channels, self.hidden = bins, crop, channels, hidden
        # Stored as Open-Unmix does: features are (x + input_mean) * input_scale, so mean = -statistic.
        self.input_mean = nn.Parameter(torch.zeros(crop))
        self.input_scale = nn.Parameter(torch.ones(crop))
        self.fc1 = nn.Linear(crop * channels, hidden, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden)
        lstm_hidden = hidden // 2 if bidirectional else hidden
        self.lstm = nn.LSTM(hidden, lstm_hidden, num_layers=layers, bidirectional=bidirectional,
                            dropout=0.4 if layers > 1 else 0.0)
        self.fc2 = nn.Linear(hidden * 2, hidden, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden)
        self.fc3 = nn.Linear(hidden, bins * channels, bias=False)
        self.bn3 = nn.BatchNorm1d(bins * channels)
        self.output_scale = nn.Parameter(torch.ones(bins))
        self.output_mean = nn.Parameter(torch.ones(bins))

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        """mag (batch, channels, bins, frames) -> mask (batch, channels, bins, frames), >= 0."""
        return self.step(mag)[0]

    def step(self, mag: torch.Tensor, state=None) -> tuple[torch.Tensor, tuple]:
        """`forward` on consecutive frames, the LSTM starting from `state` (None: zeros); returns
        the mask and the LSTM's state after the last frame. A unidirectional core fed a track chunk
        by chunk this way gives the masks of the whole track (every other layer is per frame)."""
        batch, channels, bins, frames = mag.shape
        x = mag.permute(3, 0, 1, 2)[..., :self.crop]  # (frames, batch, channels, crop)
        x = (x + self.input_mean) * self.input_scale
        x = self.bn1(self.fc1(x.reshape(frames * batch, channels * self.crop)))
        x = torch.tanh(x).view(frames, batch, self.hidden)
        y, state = self.lstm(x, state)
        x = torch.cat([x, y], -1).view(frames * batch, 2 * self.hidden)
        x = F.relu(self.bn2(self.fc2(x)))
        x = self.bn3(self.fc3(x)).view(frames, batch, channels, bins)
        x = F.relu(x * self.output_scale + self.output_mean)
        return x.permute(1, 2, 3, 0), state


class OpenUnmix(nn.Module):
    """Waveform-to-waveform Open-Unmix: one core per target."""

    def __init__(self, targets: list[str], sample_rate: int = 44100, n_fft: int = 4096, hop: int = 1024,
                 hidden: int = 512, layers: int = 3, bidirectional: bool = True, max_bin_hz: float = 16000.0,
                 channels: int = 2):
        super().__init__()
        self.targets = list(targets)
        self.stft_module = Stft(n_fft, hop)
        bins = n_fft // 2 + 1
        self.crop = max_bin(sample_rate, n_fft, max_bin_hz)
        self.channels = channels
        self.cores = nn.ModuleList(
            [UmxCore(bins, self.crop, channels, hidden, layers, bidirectional) for _ in self.targets]
        )

    def stft(self, x: torch.Tensor) -> torch.Tensor:
        """(..., samples) -> complex (..., bins, frames)."""
        return self.stft_module(x)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """complex (..., bins, frames) -> (..., length)."""
        return self.stft_module.inverse(spec, length)

    def masks(self, spec: torch.Tensor) -> torch.Tensor:
        """Mixture STFT (batch, channels, bins, frames) -> real masks (batch, targets, channels, bins, frames)."""
        mag = spec.abs()
        return torch.stack([core(mag).float() for core in self.cores], 1)

    def forward(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mixture (batch, channels, samples) -> (wave (batch, targets, channels, samples),
        spec_est complex (batch, targets, channels, bins, frames) = mask * mixture STFT)."""
        spec = self.stft(mixture)
        spec_est = self.masks(spec) * spec.unsqueeze(1)
        return self.istft(spec_est, mixture.shape[-1]), spec_est

    @torch.no_grad()
    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Initialise every core's input scaling from per-bin statistics of the cropped mixture
        magnitude (`input_statistics`): features become (|X| - mean) / std."""
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean.numel() != self.crop or std.numel() != self.crop:
            raise ValueError(f"input stats: expected {self.crop} bins, got {mean.numel()} and {std.numel()}")
        for core in self.cores:
            core.input_mean.copy_(-mean)
            core.input_scale.copy_(1.0 / std.clamp_min(1e-8))


@torch.no_grad()
def input_statistics(separator: OpenUnmix, batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bin mean and standard deviation of the cropped mixture magnitude over mixture batches
    (batch, channels, samples), every channel and frame counted; pass the result to set_input_stats."""
    total = None
    count = 0
    for mixture in batches:
        mag = separator.stft(mixture.float()).abs()[..., :separator.crop, :]  # (batch, channels, crop, frames)
        x = mag.transpose(-1, -2).reshape(-1, separator.crop).double()
        sums = torch.stack([x.sum(0), (x * x).sum(0)])
        total = sums if total is None else total + sums
        count += x.shape[0]
    if total is None or count == 0:
        raise ValueError("input stats: no mixture batches")
    mean = total[0] / count
    var = (total[1] / count - mean * mean).clamp_min(0.0)
    return mean.float(), var.sqrt().float()
