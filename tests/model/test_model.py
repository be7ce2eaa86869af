"""The models: parameter counts at the paper's sizes, shapes, reconstruction, variants, Wiener filter."""
from __future__ import annotations

import json

import pytest
import torch

from model import band_widths, build_separator, count_parameters, input_statistics, wiener
from model.bsrnn import BandSplit, Masker
from pipeline import config
from pipeline.names import TARGETS
from pipeline.specs import separator_specs

PAPER = dict(n=64, r=8, mu=4)


def bsrnn_spec(targets=("vocals",), n_fft=2048, hop=512, sample_rate=44100, **bsrnn) -> dict:
    return {"arch": "bsrnn", "targets": list(targets), "sample_rate": sample_rate,
            "stft": {"n_fft": n_fft, "hop": hop}, "bsrnn": bsrnn, "umx": {}}


def umx_spec(targets=("vocals",), **umx) -> dict:
    return {"arch": "umx", "targets": list(targets), "sample_rate": 44100,
            "stft": {"n_fft": 4096, "hop": 1024}, "bsrnn": {}, "umx": umx}


def paper_total(stft=(2048, 512), **overrides) -> int:
    """Four per-target models at the paper's base size with `overrides`, counted on the meta device."""
    bsrnn = {**PAPER, **overrides}
    with torch.device("meta"):
        return sum(count_parameters(build_separator(bsrnn_spec([t], *stft, **bsrnn))) for t in TARGETS)


# ----------------------------------------------------------------------------- parameter counts

PUBLISHED_M = [
    ("base", {}, 32.33),
    ("large", dict(n=128, r=12), 146.66),
    ("attention_2_16", dict(attention_heads=2, attention_dim=16), 33.24),
    ("attention_1_8", dict(attention_heads=1, attention_dim=8), 33.01),
    ("tac_prelu", dict(stereo="tac", tac_activation="prelu"), 34.70),
    ("tac_tanh", dict(stereo="tac", tac_activation="tanh"), 34.70),
    ("stereo_naive", dict(stereo="naive"), 37.09),
    ("mask_mu2", dict(mu=2), 20.61),
    ("optimized_no_tac", dict(n=128, r=12, attention_heads=2, attention_dim=16), 149.92),
    ("optimized_tac", dict(n=128, r=12, attention_heads=2, attention_dim=16, stereo="tac"), 164.12),
    # informative figures of the replication
    ("mask_mu1", dict(mu=1), 16.80),
    ("stereo_naive_mu8", dict(stereo="naive", mu=8), 81.1),
    ("multihead_2", dict(heads=2), 22.0),
    ("bscnn", dict(time_layer="conv", band_layer="conv", band_split="joint"), 29.7),
]


@pytest.mark.parametrize("name,overrides,published", PUBLISHED_M, ids=[p[0] for p in PUBLISHED_M])
def test_paper_parameter_counts(name, overrides, published):
    total = paper_total(**overrides)
    assert abs(total / 1e6 - published) / published < 0.005, f"{name}: {total:,d} vs {published} M"


def test_paper_stft_4096_count():
    assert abs(paper_total(stft=(4096, 1024)) / 1e6 - 37.1) / 37.1 < 0.005


def test_paper_base_per_target_counts():
    with torch.device("meta"):
        counts = [count_parameters(build_separator(bsrnn_spec([t], **PAPER))) for t in TARGETS]
    assert counts == [8_020_296, 7_111_432, 9_177_032, 8_020_296]  # 8.02, 7.11, 9.18, 8.02 M


def test_umx_parameter_count():
    with torch.device("meta"):
        assert count_parameters(build_separator(umx_spec(hidden=512))) == 8_893_348


# ----------------------------------------------------------------------------- band split


def test_band_widths_at_44k_2048():
    assert band_widths("vocals", 44100, 2048) == [4] * 10 + [11] * 12 + [23] * 8 + [46] * 8 + [92] * 2 + [117]
    assert band_widths("bass", 44100, 2048) == [2] * 10 + [4] * 5 + [23] * 6 + [46] * 4 + [92] * 4 + [295]
    assert band_widths("drums", 44100, 2048) == [2] * 20 + [4] * 10 + [11] * 8 + [23] * 8 + [46] * 8 + [305]
    assert len(band_widths("joint", 44100, 2048)) == 57
    assert band_widths("other", 44100, 2048) == band_widths("vocals", 44100, 2048)


@pytest.mark.parametrize("sr,n_fft", [(44100, 4096), (48000, 2048), (16000, 512), (8000, 256)])
def test_band_widths_cover_every_bin(sr, n_fft):
    for recipe in ("vocals", "bass", "drums", "joint"):
        widths = band_widths(recipe, sr, n_fft)
        assert sum(widths) == n_fft // 2 + 1 and min(widths) >= 1


def test_grouped_band_split_and_masker_equal_per_band_layers():
    """The batched implementation computes exactly the per-band GroupNorm + Linear formulation."""
    torch.manual_seed(0)
    widths = band_widths("vocals", 44100, 512)
    n, mu, rows, frames = 8, 2, 3, 7
    split, masker = BandSplit(widths, n), Masker(widths, n, mu)
    for p in list(split.parameters()) + list(masker.parameters()):  # non-trivial affine parameters
        p.data.normal_()
    spec = torch.randn(rows, 1, sum(widths), frames, 2)
    feats = split(spec)
    mask = masker(feats)
    start = 0
    band = 0
    for r, (_, w, count) in enumerate(split.runs):
        for j in range(count):
            x = spec[:, 0, start:start + w].permute(0, 2, 1, 3).reshape(rows, frames, 2 * w)
            gn = torch.nn.functional.group_norm(x.transpose(1, 2), 1, split.norm_weight[r][j], split.norm_bias[r][j], 1e-7)
            y = gn.transpose(1, 2) @ split.weight[r][j] + split.bias[r][j]
            torch.testing.assert_close(feats[band], y, rtol=1e-4, atol=1e-4)
            h = torch.nn.functional.group_norm(feats[band].transpose(1, 2), 1, masker.norm_weight[band],
                                               masker.norm_bias[band], 1e-7).transpose(1, 2)
            h = torch.tanh(h @ masker.w1[band] + masker.b1[band])
            h = torch.tanh(h @ masker.w2[band] + masker.b2[band])
            o = (h @ masker.w3[r][j] + masker.b3[r][j]).view(rows, frames, 2, w, 2)
            m = o[:, :, 0] * torch.sigmoid(o[:, :, 1])  # (rows, frames, w, 2)
            torch.testing.assert_close(mask[:, 0, start:start + w], m.transpose(1, 2), rtol=1e-4, atol=1e-4)
            start += w
            band += 1


def test_band_mlp_backward_matches_autograd():
    """The masker's hand-written CPU backward equals autograd's on the batched-matmul formulation."""
    from model.bsrnn import _BandMLP, _band_mlp

    torch.manual_seed(0)
    k, m, n, h = 3, 5, 4, 6
    inputs = [torch.randn(k, m, n), torch.randn(k, n, h) * 0.5, torch.randn(k, h), torch.randn(k, h, h) * 0.5,
              torch.randn(k, h), torch.randn(2, h, 8), torch.randn(2, 8), torch.randn(1, h, 12), torch.randn(1, 12)]
    grads = [torch.randn(2, m, 8), torch.randn(1, m, 12)]

    def run(fn):
        args = [t.clone().requires_grad_() for t in inputs]
        outs = fn(*args)
        values = [o.detach().clone() for o in outs]
        sum((o * g).sum() for o, g in zip(outs, grads)).backward()
        return values + [a.grad for a in args]

    def reference(x, w1, b1, w2, b2, w3a, b3a, w3b, b3b):
        return _band_mlp(x, w1, b1, w2, b2, [w3a, w3b], [b3a, b3b], fused=False)  # batched matmuls, autograd

    for a, b in zip(run(_BandMLP.apply), run(reference)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- every variant runs


def _variant_specs() -> list[tuple[str, dict]]:
    """Every distinct model of the default study's variants, on every target (each has its bands)."""
    pilot = config.load("params.yaml")
    cfg = config.build(config.merge(pilot.as_dict(), {"targets": list(TARGETS)}), pilot.params_file)
    seen, out = set(), []
    for name in cfg.variants:
        for spec in separator_specs(config.resolve(cfg, name)):
            key = json.dumps(spec, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append((f"{name}-{'+'.join(spec['targets'])}", spec))
    return out


VARIANT_SPECS = _variant_specs()


@pytest.mark.parametrize("name,spec", VARIANT_SPECS, ids=[v[0] for v in VARIANT_SPECS])
def test_every_variant_forward_backward(name, spec):
    torch.manual_seed(0)
    sep = build_separator(spec).train()
    batch = 2 if spec["arch"] == "bsrnn" else 3  # BatchNorm needs more than one row
    mixture = torch.randn(batch, 2, 11025)
    wave, spec_est = sep(mixture)
    n = len(spec["targets"])
    assert wave.shape == (batch, n, 2, 11025)
    assert spec_est.shape[:3] == (batch, n, 2) and spec_est.is_complex()
    assert spec_est.shape[3] == spec["stft"]["n_fft"] // 2 + 1
    (wave.abs().mean() + spec_est.abs().mean()).backward()
    missing = [k for k, p in sep.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert sep.spec == spec


# ----------------------------------------------------------------------------- shapes and reconstruction


@pytest.mark.parametrize("length", [4097, 10001, 22050])
def test_output_length_equals_input_length(length):
    sep = build_separator(bsrnn_spec(n=8, r=1, mu=1)).eval()
    with torch.no_grad():
        wave, _ = sep(torch.randn(1, 2, length))
    assert wave.shape == (1, 1, 2, length)


@pytest.mark.parametrize("spec", [bsrnn_spec(n=8, r=1, mu=1), bsrnn_spec(n=8, r=1, stereo="naive"),
                                  umx_spec(hidden=16)], ids=["bsrnn", "naive", "umx"])
def test_all_ones_mask_reconstructs_the_mixture(spec):
    sep = build_separator(spec).eval()
    sep.masks = lambda s: torch.ones_like(s).unsqueeze(1)  # (batch, 1, channels, bins, frames)
    mixture = torch.rand(2, 2, 12347) * 2 - 1
    with torch.no_grad():
        wave, spec_est = sep(mixture)
    assert (wave[:, 0] - mixture).abs().max() < 1e-5
    torch.testing.assert_close(sep.istft(sep.stft(mixture), 12347), mixture, atol=1e-5, rtol=0)


@pytest.mark.parametrize("stereo", ["mono", "naive", "tac"])
def test_stereo_modes_take_batch_of_stereo(stereo):
    sep = build_separator(bsrnn_spec(n=8, r=1, mu=1, stereo=stereo)).eval()
    with torch.no_grad():
        wave, spec_est = sep(torch.randn(3, 2, 6000))
    assert wave.shape == (3, 1, 2, 6000) and spec_est.shape[:3] == (3, 1, 2)


def test_channels_are_independent_in_mono_mode_and_mixed_with_tac():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 6000)
    y = x.clone()
    y[:, 1] = torch.randn(6000)  # change the right channel only
    for stereo, independent in (("mono", True), ("tac", False)):
        sep = build_separator(bsrnn_spec(n=8, r=1, mu=1, stereo=stereo)).eval()
        with torch.no_grad():
            same = torch.allclose(sep(x)[0][:, :, 0], sep(y)[0][:, :, 0], atol=1e-6)
        assert same == independent, stereo


def test_joint_model_returns_four_targets():
    sep = build_separator(bsrnn_spec(TARGETS, n=8, r=1, mu=1))
    assert len(sep.widths) == 57 and len(sep.maskers) == 4
    with torch.no_grad():
        wave, spec_est = sep(torch.randn(2, 2, 8000))
    assert wave.shape == (2, 4, 2, 8000) and spec_est.shape[:3] == (2, 4, 2)


def test_checkpointed_blocks_give_the_same_gradients():
    spec = bsrnn_spec(n=8, r=2, mu=1, attention_heads=1, attention_dim=2, stereo="tac")
    x = torch.randn(2, 2, 5000)
    grads = []
    for blocks in (0, 2):
        torch.manual_seed(0)
        sep = build_separator({**spec, "bsrnn": {**spec["bsrnn"], "checkpoint_blocks": blocks}}).train()
        sep(x)[0].abs().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in sep.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_spec_rebuilds_the_same_model():
    sep = build_separator(bsrnn_spec(["drums"], n=8, r=1, heads=2))
    again = build_separator(json.loads(json.dumps(sep.spec)))
    again.load_state_dict(sep.state_dict())
    x = torch.randn(1, 2, 4000)
    with torch.no_grad():
        torch.testing.assert_close(sep.eval()(x)[0], again.eval()(x)[0])


def test_bad_specs_are_errors():
    with pytest.raises(ValueError, match="arch"):
        build_separator({"arch": "demucs", "targets": ["vocals"]})
    with pytest.raises(ValueError, match="unknown keys"):
        build_separator(bsrnn_spec(n=8, dropout=0.1))
    with pytest.raises(ValueError, match="targets"):
        build_separator(bsrnn_spec(["piano"]))


def test_cpu_bf16_autocast_runs():
    sep = build_separator(bsrnn_spec(n=8, r=1, mu=1, attention_heads=1, attention_dim=2)).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        wave, spec_est = sep(torch.randn(1, 2, 4000))
    assert wave.dtype == torch.float32 and spec_est.dtype == torch.complex64


# ----------------------------------------------------------------------------- Open-Unmix


def test_umx_input_statistics_normalise_the_features():
    torch.manual_seed(0)
    sep = build_separator(umx_spec(hidden=16))
    batches = [torch.randn(2, 2, 20000) * (i + 1) for i in range(3)]
    mean, std = input_statistics(sep, batches)
    assert mean.shape == (1487,) and std.shape == (1487,)
    sep.set_input_stats(mean, std)
    core = sep.cores[0]
    feats = torch.cat([((sep.stft(b).abs()[..., :1487, :].transpose(-1, -2) + core.input_mean) * core.input_scale)
                       .reshape(-1, 1487) for b in batches])
    assert feats.mean(0).abs().max() < 1e-3
    assert (feats.std(0, unbiased=False) - 1).abs().max() < 1e-2


def test_umx_mask_is_non_negative_and_spec_est_has_the_mixture_phase():
    sep = build_separator(umx_spec(hidden=16)).eval()
    mixture = torch.randn(1, 2, 20000)
    with torch.no_grad():
        _, spec_est = sep(mixture)
        mix = sep.stft(mixture)
    ratio = spec_est[:, 0] / (mix + 1e-12)
    assert ratio.real.min() >= -1e-4 and ratio.imag.abs().max() < 1e-3


# ----------------------------------------------------------------------------- Wiener filter


@pytest.mark.parametrize("iterations,softmask", [(0, False), (1, False), (2, True)])
def test_wiener_with_residual_sums_to_the_mixture(iterations, softmask):
    torch.manual_seed(0)
    mix = torch.randn(2, 2, 65, 30, dtype=torch.complex64)
    mags = torch.rand(2, 3, 2, 65, 30)
    out = wiener(mags, mix, iterations=iterations, softmask=softmask, residual=True)
    assert out.shape == (2, 4, 2, 65, 30)
    assert (out.sum(1) - mix).abs().max() < 1e-5 * mix.abs().max()


def test_wiener_without_residual_and_without_batch_axis():
    torch.manual_seed(0)
    mix = torch.randn(2, 65, 30, dtype=torch.complex64)
    mags = torch.rand(4, 2, 65, 30)
    out = wiener(mags, mix, iterations=1)
    assert out.shape == (4, 2, 65, 30) and out.is_complex()
    # one dominant source takes nearly the whole mixture
    mags = torch.cat([mix.abs()[None] * 1e3, torch.full((1, 2, 65, 30), 1e-3)])
    out = wiener(mags, mix, iterations=1)
    assert ((out[0] - mix).abs().max() / mix.abs().max()) < 1e-2
