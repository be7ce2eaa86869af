import dataclasses
import gc
import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import config
from pipeline.data.manifest import load_manifest
from pipeline.data.sad import load_segments
from pipeline.data.sampler import TrainingSampler, read_odds, training_store
from pipeline.names import TARGETS
from pipeline.training.loop import loader
from tests.conftest import REPO


def _config(study, **train):
    cfg = config.load(study / "params.yaml")
    train = {"chunk_s": 0.5, "epoch_items": 16, **train}
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


def _sampler(study, target="vocals", store=None, **train):
    return TrainingSampler(_config(study, **train), load_manifest(), target=target, store=store)


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


def _store(study, cache_gb, **train):
    cfg = _config(study, **train)
    return training_store(dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, cache_gb=cache_gb)),
                          load_manifest())


def _stems_gb(stems: int) -> float:
    """The cache_gb that holds `stems` training stems (the synthetic songs are all as long)."""
    manifest = load_manifest()
    assert len({t.frames for t in manifest.split("train")}) == 1
    return (stems * manifest.split("train")[0].frames * manifest.channels * 2 + 1) / 1e9


@pytest.mark.parametrize("mode", ["sad", "random"])
def test_an_item_is_the_same_to_the_bit_from_memory_or_disk_whatever_the_cache(study, mode):
    stems = 4 * len(load_manifest().split("train"))
    with _store(study, 4.0, sampler=mode) as full, _store(study, 0.0, sampler=mode) as disk, \
            _store(study, _stems_gb(stems // 3), sampler=mode) as partial:
        assert full.memory_share == 1.0 and disk.memory_share == 0.0 and 0.0 < partial.memory_share < 1.0
        samplers = [_sampler(study, sampler=mode, store=store) for store in (full, partial, disk)]
        for epoch in (0, 1):
            for sampler in samplers:
                sampler.set_epoch(epoch)
            for i in range(8):
                items = [sampler[i] for sampler in samplers]
                assert all(torch.equal(a, b) for item in items[1:] for a, b in zip(items[0], item))


def test_the_cache_holds_the_stems_read_most_per_byte(study):
    manifest = load_manifest()
    cfg = _config(study)
    odds = read_odds(cfg, manifest)
    assert sum(odds.values()) == pytest.approx(len(TARGETS))  # each source: one read an item
    with _store(study, _stems_gb(10)) as store:
        cached = set(store._cache)
        assert len(cached) == 10
        assert store.memory_share == pytest.approx(sum(odds[k] for k in cached) / len(TARGETS))
        # the synthetic songs are all as long: the most read stems, whatever their source
        assert min(odds[k] for k in cached) >= max(odds[k] for k in odds.keys() - cached)


def test_loader_workers_give_the_same_items_with_the_shared_cache(study):
    cfg = _config(study, batch_size=4)
    workers = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, num_workers=2))
    with _store(study, _stems_gb(len(TARGETS) * len(load_manifest().split('train')) // 2)) as store:
        sampler = _sampler(study, store=store)
        sampler.set_epoch(1)
        serial = list(loader(sampler, list(range(16)), cfg, torch.device("cpu")))
        made = loader(sampler, list(range(16)), workers, torch.device("cpu"))
        assert made.num_workers == 2 and made.multiprocessing_context.get_start_method() == "forkserver"
        assert not made.pin_memory
        parallel = list(made)
    assert len(serial) == len(parallel) == 4
    assert all(torch.equal(x, y) for a, b in zip(serial, parallel) for x, y in zip(a, b))
    # pinned memory for a model on a GPU (the loader is only made here, not run)
    assert loader(sampler, [0], cfg, torch.device("cuda")).pin_memory


def test_a_worker_maps_the_shared_stems_rather_than_getting_a_copy(study):
    with _store(study, 4.0) as store:
        files = {key: Path(a.filename) for key, a in store._cache.items()}
        assert files and all(f.parent == store._shared.folder for f in files.values())
        sent = pickle.dumps(store)
        assert len(sent) < sum(f.stat().st_size for f in files.values()) / 100
        copy = pickle.loads(sent)
        assert {key: Path(a.filename) for key, a in copy._cache.items()} == files
        assert all(np.array_equal(a, store._cache[key]) for key, a in copy._cache.items())


def test_a_second_process_maps_the_same_copy_and_reads_the_same_items(study):
    script = """
import hashlib, os, sys, dataclasses
from pipeline import config
from pipeline.data.manifest import load_manifest
from pipeline.data.sampler import TrainingSampler, training_store
cfg = config.load("params.yaml")
cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, chunk_s=0.5))
with training_store(cfg, load_manifest()) as store:
    sampler = TrainingSampler(cfg, load_manifest(), target="vocals", store=store)
    h = hashlib.sha256()
    for i in range(8):
        h.update(sampler[i][1].numpy().tobytes())
    print(sorted(os.stat(a.filename).st_ino for a in store._cache.values()), h.hexdigest())
"""
    with _store(study, 4.0) as store:
        inodes = sorted(os.stat(a.filename).st_ino for a in store._cache.values())
        sampler = _sampler(study, store=store)
        ours = hashlib.sha256()
        for i in range(8):
            ours.update(sampler[i][1].numpy().tobytes())
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.split("] ")[1].strip() == ours.hexdigest()
        assert out.stdout.split("] ")[0] + "]" == str(inodes)  # the same files: none written again
        folder = store._shared.folder
    gc.collect()  # no other store left open in this process
    assert not folder.exists()  # the last user removed it


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
