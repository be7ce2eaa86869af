"""`sepcost forecast` works for every variant of both params files, and says what it assumes."""
from __future__ import annotations

import copy
import json

import pytest
import yaml

from pipeline import config, paths
from pipeline.cli import main
from pipeline.config.variants import PAPER_VARIANTS
from pipeline.names import run_key
from tests.conftest import REPO, SMALL_DATA

pytestmark = pytest.mark.slow
# Shrunk so that the CPU builds and steps them in seconds (models and chunks); every other key of a
# variant (its schedule: batch, epoch items, accumulation, sampler, loss) is kept.
SMALL_MODELS = {"n": 4, "r": 1}
SMALL_UMX = {"hidden": 8}
SMALL_CHUNK_S = 0.5


def _shrunk(variants: dict) -> dict:
    out = copy.deepcopy(variants)
    for overrides in out.values():
        model = overrides.get("model", {})
        if "bsrnn" in model:
            model["bsrnn"].update({k: v for k, v in SMALL_MODELS.items() if k in model["bsrnn"]})
            if model["bsrnn"].get("stereo") == "naive" or model["bsrnn"].get("mu", 4) > 4:
                model["bsrnn"]["mu"] = min(model["bsrnn"].get("mu", 4), 2)
        if "umx" in model:
            model["umx"].update({k: v for k, v in SMALL_UMX.items() if k in model["umx"]})
        if "chunk_s" in overrides.get("train", {}):
            overrides["train"]["chunk_s"] = SMALL_CHUNK_S
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module: creating a store's tables takes seconds."""
    return tmp_path_factory.mktemp("forecasts") / "mlflow.db"


def _study(params: str, store) -> dict:
    """The params file on the prepared small synthetic set, its models shrunk, its schedules kept."""
    raw = yaml.safe_load((REPO / params).read_text()) or {}
    study = config.merge(raw, {
        "tracking": {"uri": f"sqlite:///{store}"},
        "data": {"source": "synthetic", "root": None, **SMALL_DATA},
        "model": {"bsrnn": {**SMALL_MODELS, "checkpoint_blocks": 0}, "umx": SMALL_UMX},
        "train": {"valid_tracks": 1, "chunk_s": SMALL_CHUNK_S},
        "eval": {"segment_s": 4.0},
    })
    study["variants"] = _shrunk(raw.get("variants", PAPER_VARIANTS))
    return study


@pytest.mark.parametrize("params, variant", [(p, v) for p in ("params.yaml", "configs/paper.yaml")
                                             for v in config.load(REPO / p).variants])
def test_forecast_runs_for_every_variant(study, store, capsys, params, variant):
    (study / "params.yaml").write_text(yaml.safe_dump(_study(params, store), sort_keys=False))
    assert main(["forecast", "--variant", variant, "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "full schedule" in out and "assuming every epoch costs" in out
    result = json.loads((paths.forecast_dir(run_key(variant, 42)) / "forecast.json").read_text())
    assert 0 < result["forecast_min_duration_s"] <= result["forecast_duration_s"]
    assert result["measured_steps"] <= result["steps_per_epoch"]
