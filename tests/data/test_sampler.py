import dataclasses

import numpy as np
import pytest
import torch

from pipeline import config
from pipeline.data.manifest import load_manifest
from pipeline.data.sad import load_segments
from pipeline.data.sampler import TrackStore, TrainingSampler
from pipeline.names import TARGETS


def _sampler(study, target="vocals", store=None, **train):
    cfg = config.load(study / "params.yaml")
    train = {"chunk_s": 0.5, "epoch_items": 16, **train}
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))
    return TrainingSampler(cfg, load_manifest(), target=target, store=store)


@pytest.mark.parametrize("mode", ["sad", "random"])
def test_items_are_remixes_with_the_mixture_as_sum(study, mode):
    sampler = _sampler(study, sampler=mode)
    assert len(sampler) == 16
    mixture, sources = sampler[3]
    assert mixture.shape == (2, 22050) and sources.shape == (4, 2, 22050)
    assert mixture.dtype == sources.dtype == torch.float32
    torch.testing.assert_close(mixture, sources.sum(0))


@pytest.mark.parametrize("mode", ["sad", "random"])
def test_the_same_seed_gives_the_same_epoch(study, mode):
    a, b = _sampler(study, sampler=mode), _sampler(study, sampler=mode)
    first = [a[i][1] for i in range(4)]
    assert all(torch.equal(x, b[i][1]) for i, x in enumerate(first))
    a.set_epoch(1)
    assert not torch.equal(a[0][1], first[0])
    a.set_epoch(0)
    assert torch.equal(a[0][1], first[0])


def test_worker_processes_give_the_same_items(study):
    sampler = _sampler(study)
    serial = [s for _, s in torch.utils.data.DataLoader(sampler, batch_size=4)]
    parallel = [s for _, s in torch.utils.data.DataLoader(sampler, batch_size=4, num_workers=2)]
    assert all(torch.equal(x, y) for x, y in zip(serial, parallel))


def test_disk_reads_equal_the_memory_cache(study):
    manifest = load_manifest()
    disk = TrackStore(manifest, manifest.split("train"), cache_gb=0.0)
    assert not disk.in_memory
    memory = _sampler(study)
    assert memory.store.in_memory
    from_disk = _sampler(study, store=disk)
    for i in range(4):
        torch.testing.assert_close(memory[i][1], from_disk[i][1])


def test_sad_mode_draws_from_active_segments_and_normalises_peaks(study):
    # Excerpts as long as a SAD window: each is a whole active window, never silent.
    sampler = _sampler(study, silent_source_p=0.0, gain_db=20.0, chunk_s=6.0)
    train_tracks = {t.name for t in load_manifest().split("train")}
    for source in TARGETS:
        assert {track for track, _, _ in load_segments(source)} <= train_tracks
    peaks = []
    for i in range(16):
        mixture, sources = sampler[i]
        peaks.append(max(mixture.abs().max(), sources.abs().max()))
        assert all(s.abs().max() > 0 for s in sources)  # active segments, none silenced
    assert max(peaks) <= 1.0 + 1e-6


def test_silence_augmentations(study):
    all_silent = _sampler(study, silent_source_p=1.0)
    assert all_silent[0][1].abs().max() == 0
    target_only = _sampler(study, target="drums", silent_source_p=0.0, silent_target_p=1.0, chunk_s=6.0)
    _, sources = target_only[0]
    assert sources[TARGETS.index("drums")].abs().max() == 0
    assert all(sources[TARGETS.index(s)].abs().max() > 0 for s in TARGETS if s != "drums")


def test_random_mode_gains_and_channel_swap(study):
    manifest = load_manifest()
    plain = _sampler(study, sampler="random", gain_lo=1.0, gain_hi=1.0, channel_swap_p=0.0)
    swapped = _sampler(study, sampler="random", gain_lo=1.0, gain_hi=1.0, channel_swap_p=1.0)
    # Same draws of track and offset; only the channel order differs.
    np.testing.assert_array_equal(plain[5][1].numpy(), swapped[5][1].flip(1).numpy())
    louder = _sampler(study, sampler="random", gain_lo=1.25, gain_hi=1.25, channel_swap_p=0.0)
    torch.testing.assert_close(louder[5][1], 1.25 * plain[5][1])
    assert manifest.sample_rate == 44100
