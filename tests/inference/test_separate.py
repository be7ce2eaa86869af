import pytest
import torch

from model import build_separator
from pipeline.config import EvalConfig
from pipeline.inference.separate import chunk_weights, estimate, separate
from pipeline.inference.streaming import is_causal, separate_streaming


class Gain(torch.nn.Module):
    """A separator whose targets are the mixture times fixed gains: overlap-add must be exact."""

    def __init__(self, gains):
        super().__init__()
        self.gains = torch.tensor(gains)
        self.spec = {"targets": [f"t{i}" for i in range(len(gains))]}
        self.calls = []

    def forward(self, mixture):
        self.calls.append(mixture.shape)
        return self.gains[None, :, None, None] * mixture[:, None], None


@pytest.mark.parametrize("mode", ["crossfade", "ola"])
@pytest.mark.parametrize("length", [1, 999, 1000, 1001, 4321, 10_000])
def test_overlap_add_returns_the_track(mode, length):
    cfg = EvalConfig(mode=mode, segment_s=1.0, overlap=0.1, hop_s=0.4, batch_chunks=3)
    mixture = torch.randn(2, length)
    models = [Gain([1.0]), Gain([0.5, 2.0])]
    out = separate(models, mixture, cfg, sample_rate=1000)
    assert out.shape == (3, 2, length)
    torch.testing.assert_close(out[0], mixture, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[2], 2 * mixture, atol=1e-5, rtol=1e-5)
    sizes = [shape[-1] for shape in models[0].calls]
    assert all(shape[0] <= 3 for shape in models[0].calls)
    assert all(size <= 1000 for size in sizes) and sum(size < 1000 for size in sizes) <= 1  # only the last is short


def test_crossfade_weights_sum_to_one_across_the_overlap():
    weights, hop, pad = chunk_weights(EvalConfig(mode="crossfade", segment_s=1.0, overlap=0.1), 1000)
    assert (hop, pad) == (900, 100)
    overlap = weights[-100:] + weights[:100]
    torch.testing.assert_close(overlap, torch.ones(100))
    assert torch.all(weights[100:900] == 1)


def test_replication_defaults_are_ten_second_segments_with_one_second_fades():
    weights, hop, pad = chunk_weights(EvalConfig(), 44100)
    assert weights.numel() == 441_000 and hop == 396_900 and pad == 44_100


def _umx(target: str, bidirectional: bool = False) -> torch.nn.Module:
    torch.manual_seed(len(target))
    spec = {"arch": "umx", "targets": [target], "sample_rate": 8000, "stft": {"n_fft": 256, "hop": 64},
            "umx": {"hidden": 8, "layers": 2, "bidirectional": bidirectional}}
    return build_separator(spec).eval()


@pytest.mark.parametrize("frames", [1, 4, 7])
def test_causal_models_per_target_stream_what_they_separate_offline(frames):
    """One unidirectional Open-Unmix per target, fed the track chunk by chunk, gives the masks of
    the whole track: the stream's estimates are the models' own, in the models' order."""
    models = [_umx(t) for t in ("vocals", "bass", "drums", "other")]
    mixture = torch.randn(2, 8000 + 123)
    streamed, seconds = separate_streaming(models, mixture, frames)
    with torch.no_grad():
        offline = torch.cat([m(mixture[None])[0][0] for m in models])
    assert streamed.shape == (4, 2, mixture.shape[-1]) and streamed.device.type == "cpu"
    torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=1e-4)
    assert len(seconds) == -(-(mixture.shape[-1] // 64 + 1) // frames) and min(seconds) > 0


def test_only_unidirectional_open_unmix_streams():
    assert is_causal([_umx("vocals"), _umx("bass")])
    assert not is_causal([_umx("vocals"), _umx("bass", bidirectional=True)])
    assert not is_causal([])
    with pytest.raises(ValueError, match="unidirectional"):
        separate_streaming([_umx("vocals", bidirectional=True)], torch.randn(2, 1000), 4)


def test_the_wiener_filter_of_one_target_keeps_the_rest_of_the_mixture_out():
    # vocals alone (the pilot's study): without the residual source a lone target's mask is 1
    mixture = torch.randn(2, 8000)
    cfg = EvalConfig(wiener_iterations=1)
    filtered = estimate([_umx("vocals", bidirectional=True)], mixture, cfg, sample_rate=8000)
    plain = separate([_umx("vocals", bidirectional=True)], mixture, cfg, sample_rate=8000)
    assert filtered.shape == plain.shape == (1, 2, 8000)
    assert (filtered[0] - mixture).abs().max() > 1e-2  # the mixture would be exact to the STFT's rounding
