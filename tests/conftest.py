"""Shared fixtures: a small study folder (params + prepared synthetic data) built once per session."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")

REPO = Path(__file__).resolve().parents[1]
BASE = "base-seed42"  # the run key (names.run_key) of base with the study's first seed
ARTIFACTS = REPO / ".test-artifacts"  # what a person should look at after the tests (screenshots)
_STARTED = time.time()

# A synthetic data set small enough for tests: every split present, songs long enough for SAD.
SMALL_DATA = {"synthetic": {"train_songs": 4, "valid_songs": 2, "test_songs": 2, "song_s": 8.0}}


def write_params(folder: Path, overrides: dict | None = None) -> Path:
    """params.yaml of the repository on every target (the pilot's trains vocals alone), deep-merged
    with `overrides`, written into `folder`."""
    from pipeline.config import merge
    from pipeline.names import TARGETS

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params = merge(params, {"data": SMALL_DATA, "targets": list(TARGETS), **(overrides or {})})
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def error_line(capsys) -> str:
    """The one error line a failed command printed (progress bars may precede it on stderr)."""
    lines = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("sepcost ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    return errors[0]


@pytest.fixture(scope="session")
def prepared_study(tmp_path_factory) -> Path:
    """A study folder after `sepcost prepare` and `sepcost sad` on the small synthetic set."""
    from pipeline.cli import main

    folder = tmp_path_factory.mktemp("prepared")
    write_params(folder)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["prepare"]) == 0
        assert main(["sad"]) == 0
    finally:
        os.chdir(cwd)
    return folder


def _working_copy(folder: Path, tmp_path: Path, monkeypatch) -> Path:
    copy = tmp_path / "study"
    shutil.copytree(folder, copy)
    monkeypatch.chdir(copy)
    return copy


@pytest.fixture
def study(prepared_study, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the prepared study folder as the working directory."""
    return _working_copy(prepared_study, tmp_path, monkeypatch)


# A study small enough to train in seconds: tiny models, short epochs, one validation/test track.
TINY = {
    "model": {"bsrnn": {"n": 4, "r": 1}, "umx": {"hidden": 8}},
    "train": {"chunk_s": 0.5, "epoch_items": 32, "max_epochs": 2, "patience": 5, "valid_tracks": 1},
    "eval": {"segment_s": 4.0, "test_tracks": 1},
}


def run_in(folder: Path, argv: list[str]) -> int:
    """`sepcost` in-process with `folder` as the working directory."""
    from pipeline.cli import main

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return main(argv)
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="session")
def trained_study(prepared_study, tmp_path_factory) -> Path:
    """The prepared study with the tiny params and `base` trained."""
    folder = tmp_path_factory.mktemp("trained") / "study"
    shutil.copytree(prepared_study, folder)
    write_params(folder, TINY)
    assert run_in(folder, ["train", "--variant", "base"]) == 0
    return folder


@pytest.fixture
def trained(trained_study, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the trained study as the working directory (its MLflow store included)."""
    return _working_copy(trained_study, tmp_path, monkeypatch)


def pytest_terminal_summary(terminalreporter):
    """Name the artifacts this test session wrote, so that someone looks at them."""
    written = sorted(p for p in ARTIFACTS.glob("*") if p.stat().st_mtime >= _STARTED) if ARTIFACTS.is_dir() else []
    for path in written:
        terminalreporter.write_line(f"test artifact (look at it): {path}")
        if path.suffix == ".txt":  # a figure a test measured
            for line in path.read_text().splitlines():
                terminalreporter.write_line(f"  {line}")
