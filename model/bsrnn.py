"""Band-Split RNN (Luo & Yu) and the variants of its replication study.

Axes: batch, channels, bins, frames as in Open-Unmix; inside the network the features are laid out
(bands, rows, frames, N), rows = batch x channels (mono, tac) or batch (naive stereo). That layout
lets the time layer see (bands*rows, frames, N) and the band layer (bands, rows*frames, N) as plain
views, and lets every per-band layer run as one batched matmul over bands (`torch.baddbmm`).

Parameter counts equal the replication's per-band formulation (a ModuleList of GroupNorm + Linear per
band): bands of equal width are stored stacked, a per-band GroupNorm's affine is folded into the
following matmul at run time, nothing is added or shared. Building blocks and counts:

- band split, per band of width w (P = 2 packed channels for naive stereo, else 1):
  GroupNorm(1, 2Pw) over (features, frames), Linear 2Pw -> N.
- R blocks, each a time layer then a band layer, each GroupNorm(1, N) -> BLSTM (hidden 2N per
  direction) -> Linear 4N -> N, plus a residual: 104 N^2 + 70 N per block.
- masker per band: GroupNorm(1, N) -> N -> mu N, tanh -> mu N -> mu N, tanh -> mu N -> 4Pw,
  a GLU (value * sigmoid(gate)) giving the real and imaginary mask.
At N=64, R=8, mu=4, 2048/512, 44.1 kHz: vocals 8,020,296, bass 7,111,432, drums 9,177,032,
other 8,020,296, together 32,329,056 (published 32.33 M).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from model.bands import band_widths, runs
from model.stft import Stft

LAYERS = ("lstm", "gru", "conv")
STEREO = ("mono", "naive", "tac")


def _uniform(shape, fan_in: int) -> nn.Parameter:
    """nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


def _norm_over(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """GroupNorm(1, C) for x (batch, seq, C): statistics over (seq, C), affine per channel C."""
    shape = x.shape[-2:]
    return F.layer_norm(x, shape, weight.expand(shape), bias.expand(shape), eps)


# ----------------------------------------------------------------------------- band split


class BandSplit(nn.Module):
    """Per-band normalisation and projection of the spectrum to N features per band."""

    def __init__(self, widths: list[int], n: int, packed: int = 1, eps: float = 1e-7):
        super().__init__()
        self.runs = runs(widths)
        self.n = n
        self.packed = packed
        self.eps = eps
        self.norm_weight = nn.ParameterList()
        self.norm_bias = nn.ParameterList()
        self.weight = nn.ParameterList()
        self.bias = nn.ParameterList()
        for _, w, count in self.runs:
            d = 2 * packed * w
            self.norm_weight.append(nn.Parameter(torch.ones(count, d)))
            self.norm_bias.append(nn.Parameter(torch.zeros(count, d)))
            self.weight.append(_uniform((count, d, n), d))
            self.bias.append(_uniform((count, n), d))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """spec: real view (rows, packed, bins, frames, 2) -> features (bands, rows, frames, N)."""
        rows, packed, _, frames, _ = spec.shape
        out = []
        for i, ((_, w, count), x) in enumerate(zip(self.runs, spec.split([w * c for _, w, c in self.runs], 2))):
            d = 2 * packed * w
            x = x.reshape(rows, packed, count, w, frames, 2)
            x = x.permute(2, 0, 4, 1, 3, 5).reshape(count, rows, frames, d)
            x = F.layer_norm(x, (frames, d), eps=self.eps)  # GroupNorm(1, d) statistics
            weight = self.norm_weight[i].unsqueeze(-1) * self.weight[i]  # fold the norm's affine
            bias = self.bias[i] + torch.bmm(self.norm_bias[i].unsqueeze(1), self.weight[i]).squeeze(1)
            y = torch.baddbmm(bias.unsqueeze(1), x.view(count, rows * frames, d), weight)
            out.append(y.view(count, rows, frames, self.n))
        return torch.cat(out, 0) if len(out) > 1 else out[0]


# ----------------------------------------------------------------------------- masker


class _BandMLP(torch.autograd.Function):
    """The masker's three per-band layers, tanh(tanh(x_k W1_k + b1_k) W2_k + b2_k) W3_k + b3_k,
    with a hand-written backward.

    The two mu N-wide layers are the bulk of the masker (41 x 1036 x 256 activations per layer at
    paper size) and are GEMM-bound. What this saves over autograd is memory traffic: the tanh are
    applied in place, the backward writes the last layer's input gradient run by run into one tensor
    (no concatenation) and reuses the saved activations' memory for the tanh derivatives instead of
    allocating (page-faulting) fresh 40 MB tensors at every step. The saved activations are
    overwritten by the backward, which therefore runs once (no retain_graph / double backward).
    x (bands, M, N), w1 (bands, N, H), b1 (bands, H), w2 (bands, H, H), b2 (bands, H), then for each
    run of c bands of equal width w3 (c, H, D), b3 (c, D) -> one (c, M, D) output per run.
    """

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, *last):
        h1 = torch.baddbmm(b1.unsqueeze(1), x, w1).tanh_()
        h2 = torch.baddbmm(b2.unsqueeze(1), h1, w2).tanh_()
        w3s, b3s = last[0::2], last[1::2]
        parts = h2.split([w.shape[0] for w in w3s])
        outs = tuple(torch.baddbmm(b.unsqueeze(1), p, w) for p, w, b in zip(parts, w3s, b3s))
        ctx.save_for_backward(x, w1, w2, h1, h2, *w3s)
        ctx.used = False
        return outs

    @staticmethod
    def backward(ctx, *grads):
        if ctx.used:
            raise RuntimeError("the masker's backward runs once (no retain_graph)")
        ctx.used = True
        x, w1, w2, h1, h2, *w3s = ctx.saved_tensors
        g2 = torch.empty_like(h2)
        last, start = [], 0
        for w3, gy in zip(w3s, grads):
            c = w3.shape[0]
            last += [torch.bmm(h2[start:start + c].transpose(1, 2), gy), gy.sum(1)]
            torch.bmm(gy, w3.transpose(1, 2), out=g2[start:start + c])
            start += c
        d2 = h2.mul_(h2).neg_().add_(1.0).mul_(g2)  # gradient of the pre-activation, in h2's memory
        gw2 = torch.bmm(h1.transpose(1, 2), d2)
        g1 = torch.bmm(d2, w2.transpose(1, 2), out=g2)  # g2 is no longer needed
        gb2 = d2.sum(1)
        d1 = h1.mul_(h1).neg_().add_(1.0).mul_(g1)  # in h1's memory
        gw1 = torch.bmm(x.transpose(1, 2), d1)
        gx = torch.bmm(d1, w1.transpose(1, 2))
        return (gx, gw1, d1.sum(1), gw2, gb2, *last)


def _band_mlp(x, w1, b1, w2, b2, w3s, b3s, fused: bool | None = None) -> list[torch.Tensor]:
    """The masker's layers; `fused` (default: on CPU in float32 without autocast) picks _BandMLP."""
    last = [t for pair in zip(w3s, b3s) for t in pair]
    if fused is None:
        fused = x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
    if fused:
        return list(_BandMLP.apply(x.contiguous(), w1, b1, w2, b2, *last))
    # elsewhere (GPU, autocast) batched matmuls are the fast way
    h = torch.tanh(torch.baddbmm(b1.unsqueeze(1), x, w1))
    h = torch.tanh(torch.baddbmm(b2.unsqueeze(1), h, w2))
    parts = h.split([w.shape[0] for w in w3s])
    return [torch.baddbmm(b.unsqueeze(1), p, w) for p, w, b in zip(parts, w3s, b3s)]


class Masker(nn.Module):
    """Per-band MLP to a complex mask (one per target)."""

    def __init__(self, widths: list[int], n: int, mu: int, packed: int = 1, eps: float = 1e-7):
        super().__init__()
        k, h = len(widths), mu * n
        self.runs = runs(widths)
        self.packed = packed
        self.eps = eps
        self.norm_weight = nn.Parameter(torch.ones(k, n))
        self.norm_bias = nn.Parameter(torch.zeros(k, n))
        self.w1, self.b1 = _uniform((k, n, h), n), _uniform((k, h), n)
        self.w2, self.b2 = _uniform((k, h, h), h), _uniform((k, h), h)
        self.w3 = nn.ParameterList([_uniform((c, h, 4 * packed * w), h) for _, w, c in self.runs])
        self.b3 = nn.ParameterList([_uniform((c, 4 * packed * w), h) for _, w, c in self.runs])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (bands, rows, frames, N) -> mask as a real view (rows, packed, bins, frames, 2)."""
        k, rows, frames, n = x.shape
        x = F.layer_norm(x, (frames, n), eps=self.eps)  # GroupNorm(1, N) statistics per band
        w1 = self.norm_weight.unsqueeze(-1) * self.w1
        b1 = self.b1 + torch.bmm(self.norm_bias.unsqueeze(1), self.w1).squeeze(1)
        ys = _band_mlp(x.reshape(k, rows * frames, n), w1, b1, self.w2, self.b2, list(self.w3), list(self.b3))
        out = []
        for (_, w, count), y in zip(self.runs, ys):
            y = y.view(count, rows, frames, 2, self.packed, w, 2)
            m = y[:, :, :, 0] * torch.sigmoid(y[:, :, :, 1])  # GLU: (count, rows, frames, packed, w, 2)
            out.append(m.permute(1, 3, 0, 4, 2, 5).reshape(rows, self.packed, count * w, frames, 2))
        return torch.cat(out, 2) if len(out) > 1 else out[0]


# ----------------------------------------------------------------------------- sequence layers


class DilatedConv(nn.Module):
    """BSCNN's replacement for an RNN: a stack of dilated 1-D convolutions over a sequence.

    input conv (kernel k) + ReLU, then D residual units (GroupNorm, conv with dilation 2^i, ReLU,
    1x1 conv), then a 1x1 conv from the D unit outputs concatenated back to N. With the enclosing
    layer's GroupNorm: (3 + 5D) N^2 + (4 + 4D) N parameters; at k=3, D=4, N=64 that is 95,488 per
    layer, so four per-target models with the joint 57-band split and R=8 have 29,705,504 (published
    29.7 M). The receptive field is 1 + (k-1) 2^D steps (33 for k=3, D=4).
    """

    def __init__(self, n: int, kernel: int, dilations: int):
        super().__init__()
        self.inp = nn.Conv1d(n, n, kernel, padding="same")
        self.norms = nn.ModuleList([nn.GroupNorm(1, n) for _ in range(dilations)])
        self.convs = nn.ModuleList(
            [nn.Conv1d(n, n, kernel, padding="same", dilation=2 ** i) for i in range(dilations)]
        )
        self.points = nn.ModuleList([nn.Conv1d(n, n, 1) for _ in range(dilations)])
        self.out = nn.Conv1d(dilations * n, n, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, N, seq) -> (batch, N, seq)."""
        h = F.relu(self.inp(x))
        skips = []
        for norm, conv, point in zip(self.norms, self.convs, self.points):
            h = h + point(F.relu(conv(norm(h))))
            skips.append(h)
        return self.out(torch.cat(skips, 1))


class SeqLayer(nn.Module):
    """GroupNorm(1, N) -> BLSTM | BGRU (hidden 2N per direction) -> Linear 4N -> N, or the dilated
    conv stack; plus a residual. Works on (batch, seq, N) when batch_first, else (seq, batch, N).

    The RNN always gets a contiguous (seq, batch, N) input, the layout oneDNN's kernels use, so its
    4N-wide output feeds the Linear without a transposed copy.
    """

    def __init__(self, kind: str, n: int, batch_first: bool, conv_kernel: int = 3, conv_dilations: int = 4,
                 eps: float = 1e-7):
        super().__init__()
        if kind not in LAYERS:
            raise ValueError(f"unknown layer type {kind!r} (expected one of {', '.join(LAYERS)})")
        self.kind = kind
        self.batch_first = batch_first
        self.eps = eps
        self.norm_weight = nn.Parameter(torch.ones(n))
        self.norm_bias = nn.Parameter(torch.zeros(n))
        if kind == "conv":
            self.conv = DilatedConv(n, conv_kernel, conv_dilations)
        else:
            rnn = nn.LSTM if kind == "lstm" else nn.GRU
            self.rnn = rnn(n, 2 * n, bidirectional=True)
            self.fc = nn.Linear(4 * n, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, seq, N) if batch_first else (seq, batch, N); same shape out."""
        h = _norm_over(x if self.batch_first else x.transpose(0, 1), self.norm_weight, self.norm_bias, self.eps)
        if self.kind == "conv":
            h = self.conv(h.transpose(1, 2))  # (batch, N, seq)
            h = h.transpose(1, 2) if self.batch_first else h.permute(2, 0, 1)
        else:
            h, _ = self.rnn(h.transpose(0, 1).contiguous())  # (seq, batch, 4N)
            h = self.fc(h)
            if self.batch_first:
                h = h.transpose(0, 1)
        return x + h


# ----------------------------------------------------------------------------- TAC, attention


class TAC(nn.Module):
    """Transform-average-concatenate across channels (Luo et al. 2020), with a residual.

    Linear N -> 3N, act; mean over channels; Linear 3N -> 3N, act; concat [own, mean];
    Linear 6N -> N, act. 18 N^2 + 7 N parameters (+3 PReLU slopes); one after each block's band layer.
    At R=8, N=64 this adds 32 x 74,179 = 2,373,728 to the four models (base 32.33 M -> 34.70 M
    published); at N=128, R=12 it adds 48 x 295,811 (149.92 M -> 164.12 M).
    """

    def __init__(self, n: int, activation: str):
        super().__init__()
        if activation not in ("tanh", "prelu"):
            raise ValueError(f"unknown TAC activation {activation!r} (expected tanh or prelu)")
        act = nn.Tanh if activation == "tanh" else nn.PReLU
        self.transform = nn.Sequential(nn.Linear(n, 3 * n), act())
        self.average = nn.Sequential(nn.Linear(3 * n, 3 * n), act())
        self.concat = nn.Sequential(nn.Linear(6 * n, n), act())

    def forward(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        """x (bands, batch*channels, frames, N) -> same shape."""
        k, rows, frames, n = x.shape
        v = self.transform(x).view(k, rows // channels, channels, frames, -1)
        m = self.average(v.mean(2, keepdim=True)).expand_as(v)
        y = self.concat(torch.cat([v, m], -1))
        return x + y.view(k, rows, frames, n)


class FullBandAttention(nn.Module):
    """Full-band self-attention over frames (TF-GridNet's module), after each block.

    Per head: 1x1 projections of the N features to Q and K (Ea channels each) and V (N/Na channels),
    each with a PReLU and a layer norm over (channels, bands) whose gain and bias are per channel and
    band; attention between frames with each frame's (bands x channels) flattened; then a 1x1
    projection N -> N, PReLU, the same norm, and a residual. Parameters per block, with K bands:
    (2 Na Ea + N)(N + 1 + 2K) + 3 Na + N^2 + N + 1 + 2 N K. Over the four models (K = 41, 30, 55, 41)
    and R=8, N=64 this adds 684,416 at Na=1, Ea=8 (33.01 M published) and 912,608 at Na=2, Ea=16
    (33.24 M); at N=128, R=12, 2/16 it adds 3,264,336 (146.66 M -> 149.92 M).
    """

    def __init__(self, n: int, bands: int, heads: int, dim: int, eps: float = 1e-5):
        super().__init__()
        if n % heads:
            raise ValueError(f"attention: N ({n}) must be a multiple of the heads ({heads})")
        self.heads, self.dim, self.eps = heads, dim, eps
        width = 2 * heads * dim + n  # Q and K of every head, then V of every head
        self.qkv = nn.Linear(n, width)
        self.qkv_slope = nn.Parameter(torch.full((3 * heads,), 0.25))  # one PReLU per projection
        self.qkv_norm_weight = nn.Parameter(torch.ones(bands, width))
        self.qkv_norm_bias = nn.Parameter(torch.zeros(bands, width))
        self.proj = nn.Linear(n, n)
        self.proj_slope = nn.Parameter(torch.full((1,), 0.25))
        self.proj_norm_weight = nn.Parameter(torch.ones(bands, n))
        self.proj_norm_bias = nn.Parameter(torch.zeros(bands, n))

    def _norm(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (bands, rows, frames, groups, C): statistics over (bands, C) per row, frame and group."""
        var, mean = torch.var_mean(x, dim=(0, 4), keepdim=True, correction=0)
        k, g, c = x.shape[0], x.shape[3], x.shape[4]
        shape = (k, 1, 1, g, c)
        return (x - mean) * torch.rsqrt(var + self.eps) * weight.view(shape) + bias.view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (bands, rows, frames, N) -> same shape."""
        k, rows, frames, n = x.shape
        na, e, nv = self.heads, self.dim, n // self.heads
        h = self.qkv(x)
        sizes = [e] * (2 * na) + [nv] * na
        slope = torch.repeat_interleave(self.qkv_slope, torch.tensor(sizes, device=x.device), output_size=h.shape[-1])
        h = torch.where(h >= 0, h, h * slope)
        split = [2 * na * e, n]
        (qk, v), (wqk, wv), (bqk, bv) = (t.split(split, -1) for t in (h, self.qkv_norm_weight, self.qkv_norm_bias))
        qk = self._norm(qk.reshape(k, rows, frames, 2 * na, e), wqk, bqk)
        v = self._norm(v.reshape(k, rows, frames, na, nv), wv, bv)
        # (bands, rows, frames, heads, C) -> (rows, heads, frames, bands * C)
        qk = qk.permute(1, 3, 2, 0, 4).reshape(rows, 2 * na, frames, k * e)
        v = v.permute(1, 3, 2, 0, 4).reshape(rows, na, frames, k * nv)
        q, kk = qk.chunk(2, 1)
        y = F.scaled_dot_product_attention(q, kk, v)  # scale 1/sqrt(bands * Ea)
        y = y.view(rows, na, frames, k, nv).permute(3, 0, 2, 1, 4).reshape(k, rows, frames, n)
        y = self.proj(y)
        y = torch.where(y >= 0, y, y * self.proj_slope)
        y = self._norm(y.unsqueeze(3), self.proj_norm_weight, self.proj_norm_bias).squeeze(3)
        return x + y


# ----------------------------------------------------------------------------- block


class Block(nn.Module):
    """One band-and-sequence block: time layer, band layer, then TAC and attention when enabled.

    With H heads (the multi-head module) the time and band layers work on N/H features with weights
    shared across the H slices of N, so each layer has 52 (N/H)^2 + 35 N/H parameters instead of
    52 N^2 + 35 N; at H=2 the four base models have 22,033,760 (published 22.0 M).
    """

    def __init__(self, n: int, bands: int, time_layer: str, band_layer: str, heads: int, tac: str | None,
                 attention_heads: int, attention_dim: int, conv_kernel: int, conv_dilations: int):
        super().__init__()
        if n % heads:
            raise ValueError(f"heads: N ({n}) must be a multiple of the heads ({heads})")
        self.heads = heads
        sub = n // heads
        self.time = SeqLayer(time_layer, sub, True, conv_kernel, conv_dilations)
        self.band = SeqLayer(band_layer, sub, False, conv_kernel, conv_dilations)
        self.tac = TAC(n, tac) if tac else None
        self.attention = FullBandAttention(n, bands, attention_heads, attention_dim) if attention_heads else None

    def forward(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        """x (bands, rows, frames, N) -> same shape; `channels` groups rows for TAC."""
        k, rows, frames, n = x.shape
        hd, sub = self.heads, n // self.heads
        if hd == 1:
            x = self.time(x.reshape(k * rows, frames, n)).view(k, rows, frames, n)
        else:  # heads join the batch: (bands, rows, heads, frames, N/H)
            t = x.view(k, rows, frames, hd, sub).transpose(2, 3).reshape(k * rows * hd, frames, sub)
            x = self.time(t).view(k, rows, hd, frames, sub).transpose(2, 3).reshape(k, rows, frames, n)
        x = self.band(x.reshape(k, rows * frames * hd, sub)).view(k, rows, frames, n)
        if self.tac is not None:
            x = self.tac(x, channels)
        if self.attention is not None:
            x = self.attention(x)
        return x


# ----------------------------------------------------------------------------- separator


class BSRNN(nn.Module):
    """Waveform-to-waveform BSRNN separator for one target or, jointly, several (one masker each).

    Stereo modes: mono (channels as batch), naive (channels packed into each band's features, so the
    band split sees 4w inputs and the masker returns 8w outputs: +1,189,000 per base model, 37.09 M
    together), tac (channels as batch with a TAC module after each block's band layer).

    checkpoint_blocks: in training, the first `checkpoint_blocks` of the R blocks keep only their
    input and recompute their activations during backward. Each block stores about two BLSTMs'
    workspaces (0.77 GB at N=64, batch 2 x 3 s stereo), so this trades one extra forward of those
    blocks (about +3 % step time per block at paper base size) for memory; results are unchanged.
    """

    def __init__(self, targets: list[str], sample_rate: int = 44100, n_fft: int = 2048, hop: int = 512,
                 n: int = 64, r: int = 8, mu: int = 4, time_layer: str = "lstm", band_layer: str = "lstm",
                 stereo: str = "mono", tac_activation: str = "prelu", attention_heads: int = 0,
                 attention_dim: int = 0, heads: int = 1, band_split: str = "target", conv_kernel: int = 3,
                 conv_dilations: int = 4, checkpoint_blocks: int = 0, channels: int = 2):
        super().__init__()
        if stereo not in STEREO:
            raise ValueError(f"unknown stereo mode {stereo!r} (expected one of {', '.join(STEREO)})")
        if band_split not in ("target", "joint"):
            raise ValueError(f"unknown band_split {band_split!r} (expected target or joint)")
        if attention_heads and attention_dim < 1:
            raise ValueError("attention_dim must be >= 1 when attention_heads > 0")
        self.targets = list(targets)
        recipe = self.targets[0] if band_split == "target" and len(self.targets) == 1 else "joint"
        self.stft_module = Stft(n_fft, hop)
        self.widths = band_widths(recipe, sample_rate, n_fft)
        self.stereo = stereo
        self.channels = channels
        self.checkpoint_blocks = checkpoint_blocks
        packed = channels if stereo == "naive" else 1
        self.band_split = BandSplit(self.widths, n, packed)
        self.blocks = nn.ModuleList([
            Block(n, len(self.widths), time_layer, band_layer, heads, tac_activation if stereo == "tac" else None,
                  attention_heads, attention_dim, conv_kernel, conv_dilations)
            for _ in range(r)
        ])
        self.maskers = nn.ModuleList([Masker(self.widths, n, mu, packed) for _ in self.targets])

    def stft(self, x: torch.Tensor) -> torch.Tensor:
        """(..., samples) -> complex (..., bins, frames)."""
        return self.stft_module(x)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """complex (..., bins, frames) -> (..., length)."""
        return self.stft_module.inverse(spec, length)

    def masks(self, spec: torch.Tensor) -> torch.Tensor:
        """Mixture STFT (batch, channels, bins, frames) -> complex masks (batch, targets, channels, bins, frames)."""
        batch, channels, bins, frames = spec.shape
        ri = torch.view_as_real(spec)
        if self.stereo == "naive":
            if channels != self.channels:
                raise ValueError(f"naive stereo model built for {self.channels} channels, got {channels}")
            rows, packed = batch, channels
        else:
            rows, packed = batch * channels, 1
        x = self.band_split(ri.reshape(rows, packed, bins, frames, 2))
        for i, block in enumerate(self.blocks):
            if i < self.checkpoint_blocks and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, channels, use_reentrant=False)
            else:
                x = block(x, channels)
        # each masker: (rows, packed, bins, frames, 2), i.e. (batch, channels, ...) in every stereo mode;
        # float() as autocast may have run it in bf16
        masks = [torch.view_as_complex(m(x).float()).view(batch, channels, bins, frames) for m in self.maskers]
        return torch.stack(masks, 1)

    def forward(self, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mixture (batch, channels, samples) -> (wave (batch, targets, channels, samples),
        spec_est complex (batch, targets, channels, bins, frames), the masked mixture STFT)."""
        spec = self.stft(mixture)
        spec_est = self.masks(spec) * spec.unsqueeze(1)
        return self.istft(spec_est, mixture.shape[-1]), spec_est
