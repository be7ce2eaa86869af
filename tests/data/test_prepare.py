import hashlib
import shutil
from pathlib import Path

import musdb
import numpy as np
import pytest
import soundfile as sf

from pipeline import paths
from pipeline.data.manifest import load_manifest
from pipeline.cli import main
from pipeline.data.sad import load_segments
from pipeline.names import STEMS
from tests.conftest import error_line, write_params

SR = 44100
# Two of musdb's real validation tracks, two training tracks and a test track.
VALID_NAMES = ["Actions - One Minute Smile", "Leaf - Summerghost"]
TRAIN_NAMES = ["Nobody - Rehearsal Tape", "Somebody Else - Demo Two"]
TEST_NAMES = ["Third Party - Live Take"]


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_set_loads_with_musdb_and_honours_its_validation_split(prepared_study):
    manifest = load_manifest(prepared_study / paths.MANIFEST)
    root = prepared_study / manifest.root
    assert (len(manifest.split("train")), len(manifest.split("valid")), len(manifest.split("test"))) == (4, 2, 2)
    db = musdb.DB(root=str(root), is_wav=True, setup_file="setup.yaml")
    assert len(db) == 8
    valid = musdb.DB(root=str(root), is_wav=True, setup_file="setup.yaml", subsets="train", split="valid")
    train = musdb.DB(root=str(root), is_wav=True, setup_file="setup.yaml", subsets="train", split="train")
    assert sorted(t.name for t in valid) == sorted(t.name for t in manifest.split("valid"))
    assert sorted(t.name for t in train) == sorted(t.name for t in manifest.split("train"))
    assert not set(t.name for t in valid) & set(musdb.DB(root=str(root), is_wav=True, subsets="train").setup["validation_tracks"])
    track = valid[0]
    assert track.rate == SR and track.audio.shape[1] == 2
    np.testing.assert_allclose(track.audio, sum(track.sources[s].audio for s in ("vocals", "bass", "drums", "other")), atol=1e-6)


def test_synthetic_mixture_is_exactly_the_sum_of_the_16_bit_stems(prepared_study):
    manifest = load_manifest(prepared_study / paths.MANIFEST)
    track = manifest.split("test")[0]
    folder = prepared_study / manifest.root / track.folder
    stems = {s: sf.read(folder / f"{s}.wav", dtype="int16")[0].astype(np.int32) for s in STEMS}
    assert sf.info(str(folder / "mixture.wav")).subtype == "PCM_16"
    np.testing.assert_array_equal(stems["mixture"], stems["vocals"] + stems["bass"] + stems["drums"] + stems["other"])


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.wav")):
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_synthetic_set_is_deterministic(prepared_study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    assert main(["prepare"]) == 0
    assert _digest(tmp_path / paths.SYNTHETIC_ROOT) == _digest(prepared_study / paths.SYNTHETIC_ROOT)
    write_params(tmp_path, {"seed": 7})
    assert main(["prepare"]) == 0
    assert _digest(tmp_path / paths.SYNTHETIC_ROOT) != _digest(prepared_study / paths.SYNTHETIC_ROOT)


# ----------------------------------------------------------------------------- real layout


def _write_track(folder: Path, seed: int, seconds=7.0, rate=SR, channels=2):
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    envelope = 0.5 + 0.5 * np.sin(np.linspace(0, 6 * np.pi, n))
    stems = {s: (0.1 * rng.standard_normal((n, channels)) * envelope[:, None]).astype(np.float32) for s in STEMS[1:]}
    stems["mixture"] = sum(stems.values())
    folder.mkdir(parents=True)
    for stem, audio in stems.items():
        sf.write(folder / f"{stem}.wav", audio, rate, subtype="PCM_16")


@pytest.fixture
def musdb_root(tmp_path):
    root = tmp_path / "musdb18hq"
    for i, name in enumerate(VALID_NAMES + TRAIN_NAMES):
        _write_track(root / "train" / name, i)
    for i, name in enumerate(TEST_NAMES):
        _write_track(root / "test" / name, 100 + i)
    return root


@pytest.fixture
def real_study(tmp_path, musdb_root, monkeypatch):
    folder = tmp_path / "study"
    folder.mkdir()
    monkeypatch.chdir(folder)
    write_params(folder, {"data": {"source": "musdb18hq", "root": str(musdb_root)}})
    return folder


def test_musdb18hq_uses_musdbs_split_and_sad_skips_validation_tracks(real_study, musdb_root):
    assert main(["prepare"]) == 0
    manifest = load_manifest()
    assert manifest.root == musdb_root
    assert sorted(t.name for t in manifest.split("valid")) == sorted(VALID_NAMES)
    assert sorted(t.name for t in manifest.split("train")) == sorted(TRAIN_NAMES)
    assert [t.name for t in manifest.split("test")] == TEST_NAMES
    assert not (real_study / paths.SYNTHETIC_ROOT).exists()  # the user's audio stays where it is
    assert main(["sad"]) == 0
    for target in ("vocals", "bass", "drums", "other"):
        assert {track for track, _, _ in load_segments(target)} <= set(TRAIN_NAMES)


def _corrupt(path: Path):
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)


def _truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _resample(path: Path):
    audio, _ = sf.read(path)
    sf.write(path, audio[::2], SR // 2)


def _shorten(path: Path):
    audio, rate = sf.read(path)
    sf.write(path, audio[:-100], rate)


def _mono(path: Path):
    audio, rate = sf.read(path)
    sf.write(path, audio[:, 0], rate)


BAD_CASES = {
    "missing stem": ("train", TRAIN_NAMES[0], "bass.wav", Path.unlink, "missing stem 'bass'"),
    "corrupt file": ("train", TRAIN_NAMES[1], "drums.wav", _corrupt, "unreadable or corrupt audio"),
    "truncated file": ("test", TEST_NAMES[0], "vocals.wav", _truncate, "samples where the other stems have"),
    "wrong sample rate": ("train", VALID_NAMES[0], "other.wav", _resample, "sample rate 22050 Hz, expected 44100 Hz"),
    "mismatched lengths": ("train", TRAIN_NAMES[0], "other.wav", _shorten, "308600 samples where the other stems have 308700"),
    "mono": ("test", TEST_NAMES[0], "mixture.wav", _mono, "mono, expected stereo"),
}


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_data_names_the_file_and_writes_no_manifest(real_study, musdb_root, capsys, case):
    subset, track, stem, damage, message = BAD_CASES[case]
    path = musdb_root / subset / track / stem
    damage(path)
    assert main(["prepare"]) == 1
    err = error_line(capsys)
    assert message in err and str(path) in err, err
    assert not paths.PREPARED.exists()


def test_empty_split_is_an_error(real_study, musdb_root, capsys):
    shutil.rmtree(musdb_root / "test")
    (musdb_root / "test").mkdir()
    assert main(["prepare"]) == 1
    assert "empty split 'test'" in capsys.readouterr().err
    assert not paths.MANIFEST.exists()


def test_missing_root_is_an_error(real_study, tmp_path, capsys):
    write_params(real_study, {"data": {"source": "musdb18hq", "root": str(tmp_path / "nowhere")}})
    assert main(["prepare"]) == 1
    assert "nowhere: data.root is not a folder" in capsys.readouterr().err


def test_a_failed_check_removes_the_previous_manifest(real_study, musdb_root):
    assert main(["prepare"]) == 0 and paths.MANIFEST.exists()
    (musdb_root / "train" / TRAIN_NAMES[0] / "vocals.wav").unlink()
    assert main(["prepare"]) == 1
    assert not paths.MANIFEST.exists()


@pytest.mark.slow
def test_musdb18_stem_files_are_checked_and_decoded_to_wav(tmp_path, monkeypatch, capsys):
    import stempeg

    root = tmp_path / "musdb18"
    rng = np.random.default_rng(0)
    for subset, name in [("train", VALID_NAMES[0]), ("train", TRAIN_NAMES[0]), ("train", TRAIN_NAMES[1]), ("test", TEST_NAMES[0])]:
        (root / subset).mkdir(parents=True, exist_ok=True)
        sources = (0.1 * rng.standard_normal((4, 7 * SR, 2))).astype(np.float32)
        streams = np.concatenate([sources.sum(axis=0, keepdims=True), sources])  # mixture, drums, bass, other, vocals
        stempeg.write_stems(str(root / subset / f"{name}.stem.mp4"), streams, sample_rate=SR,
                            writer=stempeg.StreamsWriter(codec="aac", output_sample_rate=SR))
    (root / "test" / "Broken - File.stem.mp4").write_bytes(b"not an mp4 at all")
    folder = tmp_path / "study"
    folder.mkdir()
    monkeypatch.chdir(folder)
    write_params(folder, {"data": {"source": "musdb18", "root": str(root)}})
    assert main(["prepare"]) == 1
    assert "Broken - File.stem.mp4: unreadable or corrupt stem file" in error_line(capsys)
    assert not paths.MANIFEST.exists()
    (root / "test" / "Broken - File.stem.mp4").unlink()
    assert main(["prepare"]) == 0
    manifest = load_manifest()
    assert [t.name for t in manifest.split("valid")] == [VALID_NAMES[0]]
    assert manifest.root == paths.SYNTHETIC_ROOT  # decoded into the prepared folder
    track = manifest.split("test")[0]
    for stem in STEMS:
        info = sf.info(str(manifest.stem_path(track, stem)))
        assert (info.frames, info.channels, info.samplerate) == (track.frames, 2, SR)
    assert main(["sad"]) == 0
