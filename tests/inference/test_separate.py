import pytest
import torch

from pipeline.config import EvalConfig
from pipeline.inference.separate import chunk_weights, separate


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
