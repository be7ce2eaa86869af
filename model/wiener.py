"""Multichannel Wiener filter (the EM post-filter of Open-Unmix / norbert), written in torch.

Usable on any model's magnitude estimates: each source j is modelled per bin and frame as a zero-mean
complex Gaussian with power v_j(f, t) and spatial covariance R_j(f) (channels x channels); every
iteration re-estimates (v_j, R_j) from the current estimates and filters the mixture again with
y_j = v_j R_j (sum_k v_k R_k)^-1 x.
"""
from __future__ import annotations

import torch


def _solve(cov: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """cov (..., C, C) complex, x (..., C) -> cov^-1 x; closed form for the stereo case."""
    if cov.shape[-1] == 2:
        a, b, c, d = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 0], cov[..., 1, 1]
        det = a * d - b * c
        x0, x1 = x[..., 0], x[..., 1]
        return torch.stack([d * x0 - b * x1, a * x1 - c * x0], -1) / det.unsqueeze(-1)
    return torch.linalg.solve(cov, x.unsqueeze(-1)).squeeze(-1)


def wiener(
    mags: torch.Tensor,
    mix: torch.Tensor,
    iterations: int = 1,
    softmask: bool = False,
    residual: bool = False,
    eps: float = 1e-10,
) -> torch.Tensor:
    """Filter the mixture STFT with the targets' magnitude estimates.

    mags: (batch, targets, channels, bins, frames) non-negative magnitude estimates, targets stacked.
    mix: complex (batch, channels, bins, frames), the mixture STFT. Both may also come without the
        batch axis, (targets, channels, bins, frames) and (channels, bins, frames).
    iterations: EM iterations; 0 returns the initial estimates.
    softmask: initial estimates by ratio masks mix * v_j / sum v, instead of the estimated magnitude
        with the mixture phase.
    residual: add a source for what the targets leave out (the last one returned); the returned
        sources then sum to the mixture (the residual is taken as mix minus the others, which also
        absorbs the filter's regularisation eps).
    Returns complex (batch, targets [+1 with residual], channels, bins, frames), without the batch
    axis when the inputs had none.
    """
    if mags.dim() == 4 and mix.dim() == 3:
        return wiener(mags[None], mix[None], iterations, softmask, residual, eps)[0]
    if mags.dim() != 5 or mix.dim() != 4 or mags.shape[0] != mix.shape[0] or mags.shape[2:] != mix.shape[1:]:
        raise ValueError(f"wiener: expected mags (batch, targets, channels, bins, frames) and mix "
                         f"(batch, channels, bins, frames), got {tuple(mags.shape)} and {tuple(mix.shape)}")
    mags = mags.to(mix.real.dtype)
    if softmask:
        y = mix.unsqueeze(1) * (mags / (mags.sum(1, keepdim=True) + eps))
    else:
        y = mags * torch.exp(1j * torch.angle(mix)).unsqueeze(1)
    if residual:
        y = torch.cat([y, (mix - y.sum(1)).unsqueeze(1)], 1)

    channels = mix.shape[1]
    x = mix.permute(0, 2, 3, 1)  # (batch, bins, frames, channels)
    eye = torch.eye(channels, dtype=mix.dtype, device=mix.device)
    for _ in range(iterations):
        yc = y.permute(0, 1, 3, 4, 2)  # (batch, sources, bins, frames, channels)
        v = (yc.abs() ** 2).mean(-1)  # (batch, sources, bins, frames)
        outer = yc.unsqueeze(-1) * yc.conj().unsqueeze(-2)  # (..., channels, channels)
        r = outer.sum(3) / (v.sum(3)[..., None, None] + eps)  # (batch, sources, bins, C, C)
        cov = (v[..., None, None] * r.unsqueeze(3)).sum(1) + eps * eye  # (batch, bins, frames, C, C)
        z = _solve(cov, x)  # (batch, bins, frames, channels)
        yc = v[..., None] * torch.einsum("bjfcd,bftd->bjftc", r, z)
        y = yc.permute(0, 1, 4, 2, 3)
    if residual:
        y = torch.cat([y[:, :-1], (mix - y[:, :-1].sum(1)).unsqueeze(1)], 1)
    return y.contiguous()
