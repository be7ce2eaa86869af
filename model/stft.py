"""The models' STFT pair: Hann window, centred frames with zero padding.

Zero (not reflect) padding keeps the transform defined for inputs shorter than half a window;
with the Hann window and hop <= n_fft / 2 the inverse reconstructs the input exactly.
"""
from __future__ import annotations

import torch
from torch import nn


class Stft(nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        if n_fft % 2 or hop < 1 or hop > n_fft // 2:
            raise ValueError(f"STFT: expected an even n_fft and 1 <= hop <= n_fft / 2, got {n_fft}/{hop}")
        self.n_fft = n_fft
        self.hop = hop
        # Not a parameter and not saved: it is rebuilt from n_fft.
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., samples) real -> (..., bins, frames) complex."""
        lead = x.shape[:-1]
        spec = torch.stft(
            x.reshape(-1, x.shape[-1]), self.n_fft, self.hop, window=self.window,
            center=True, pad_mode="constant", return_complex=True,
        )
        return spec.view(*lead, *spec.shape[-2:])

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """(..., bins, frames) complex -> (..., length) real."""
        lead = spec.shape[:-2]
        wave = torch.istft(
            spec.reshape(-1, *spec.shape[-2:]), self.n_fft, self.hop, window=self.window,
            center=True, length=length,
        )
        return wave.view(*lead, length)
