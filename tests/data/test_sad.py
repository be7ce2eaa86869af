import csv
import json

import numpy as np

from pipeline import paths
from pipeline.data.manifest import load_manifest
from pipeline.cli import main
from pipeline.config import SadConfig
from pipeline.data.sad import active_windows
from tests.conftest import write_params

SR = 1000  # a low rate keeps the arrays small; the detector works in samples


def _source(pattern, seconds_each=3.0, channels=2, seed=0):
    """Noise at the given RMS levels, one level per `seconds_each` block."""
    rng = np.random.default_rng(seed)
    n = int(seconds_each * SR)
    blocks = [rng.standard_normal((channels, n)) * level for level in pattern]
    return np.concatenate(blocks, axis=1).astype(np.float32)


def test_silence_is_dropped_and_activity_kept():
    audio = _source([0.1, 0.1, 0.0, 0.0, 0.1, 0.1])  # 18 s: windows at 0, 3, 6, 9, 12 s
    kept, total = active_windows(audio, SR, SadConfig())
    assert total == 5
    # window [6, 12) is all silence; [3, 9) and [9, 15) are half silent: not more than half active
    assert kept == [(0, 6000), (12000, 18000)]


def test_every_channel_must_be_active():
    audio = _source([0.1, 0.1, 0.1, 0.1])
    audio[1, :] = 0.0  # right channel silent
    assert active_windows(audio, SR, SadConfig())[0] == []


def test_floor_applies_to_quiet_sources():
    audio = _source([5e-4] * 4)  # a window's own quantile is ~5e-4, under the 1e-3 floor
    assert active_windows(audio, SR, SadConfig())[0] == []
    assert len(active_windows(audio, SR, SadConfig(floor=1e-4))[0]) == 3


def test_track_scope_drops_quiet_passages_that_pass_their_own_quantile():
    audio = _source([0.3, 0.3, 0.3, 0.3, 0.01, 0.01, 0.3, 0.3], seed=1)
    per_window, _ = active_windows(audio, SR, SadConfig(scope="window"))
    per_track, _ = active_windows(audio, SR, SadConfig(scope="track", quantile=0.5))
    assert (12000, 18000) in per_window  # quiet but steady: passes its own quantile
    assert (12000, 18000) not in per_track


def test_short_track_has_no_window():
    assert active_windows(_source([0.1]), SR, SadConfig()) == ([], 0)


def test_stage_writes_segments_of_training_tracks_only(study):
    manifest = load_manifest()
    train = {t.name for t in manifest.split("train")}
    summary = json.loads(paths.SAD_SUMMARY.read_text())
    for target in ("vocals", "bass", "drums", "other"):
        with open(paths.sad_csv(target)) as f:
            rows = list(csv.DictReader(f))
        assert rows and {r["track"] for r in rows} <= train
        assert all(int(r["end"]) - int(r["start"]) == 6 * manifest.sample_rate for r in rows)
        counts = summary["targets"][target]
        assert counts["kept"] == len(rows) <= counts["total"]


def test_nothing_kept_is_an_error_naming_the_target(study, capsys):
    write_params(study, {"sad": {"floor": 10.0}})
    assert main(["sad"]) == 1
    err = capsys.readouterr().err
    assert "no segment kept for target 'vocals'" in err and "floored at 10.0" in err
    assert not paths.SAD.exists()
