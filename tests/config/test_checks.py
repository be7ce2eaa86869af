"""Every constraint a model or a stage checks is checked by the loader first: one line naming the
key and exit status 2, before any data is read, never a traceback from a constructor."""
from __future__ import annotations

import pytest
import torch
import yaml

from model import build_separator
from pipeline import config
from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.specs import separator_specs
from tests.conftest import REPO, error_line

# (params override, the key the error line names, the spec change that makes the model's own
# constructor raise ValueError for the same value)
CONSTRUCTOR_CASES = {
    "hop over half the window": ({"stft": {"n_fft": 2048, "hop": 1536}}, "stft.hop",
                                 {"stft": {"n_fft": 2048, "hop": 1536}}),
    "odd n_fft": ({"stft": {"n_fft": 2047, "hop": 512}}, "stft.n_fft", {"stft": {"n_fft": 2047, "hop": 512}}),
    "heads not dividing N": ({"model": {"bsrnn": {"n": 8, "heads": 3}}}, "model.bsrnn.heads",
                             {"bsrnn": {"n": 8, "heads": 3}}),
    "attention heads not dividing N": ({"model": {"bsrnn": {"n": 8, "attention_heads": 3, "attention_dim": 4}}},
                                       "model.bsrnn.attention_heads",
                                       {"bsrnn": {"n": 8, "attention_heads": 3, "attention_dim": 4}}),
    "attention without a dimension": ({"model": {"bsrnn": {"attention_heads": 1, "attention_dim": 0}}},
                                      "model.bsrnn.attention_dim", {"bsrnn": {"attention_heads": 1, "attention_dim": 0}}),
    "unknown stereo mode": ({"model": {"bsrnn": {"stereo": "quad"}}}, "model.bsrnn.stereo",
                            {"bsrnn": {"stereo": "quad"}}),
    "unknown layer": ({"model": {"bsrnn": {"time_layer": "mamba"}}}, "model.bsrnn.time_layer",
                      {"bsrnn": {"time_layer": "mamba"}}),
    "unknown TAC activation": ({"model": {"bsrnn": {"tac_activation": "relu"}}}, "model.bsrnn.tac_activation",
                               {"bsrnn": {"stereo": "tac", "tac_activation": "relu"}}),
    "unknown band split": ({"model": {"bsrnn": {"band_split": "mel"}}}, "model.bsrnn.band_split",
                           {"bsrnn": {"band_split": "mel"}}),
    "unknown target": ({"targets": ["vocals", "piano"]}, "targets", {"targets": ["piano"]}),
}


def _spec(change: dict) -> dict:
    spec = {"arch": "bsrnn", "targets": ["vocals"], "sample_rate": 44100, "stft": {"n_fft": 2048, "hop": 512},
            "bsrnn": {"n": 8, "r": 1}, "umx": {}}
    for key, value in change.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) else value
    return spec


def _write(tmp_path, overrides: dict, variants: dict | None = None):
    raw = config.merge(yaml.safe_load((REPO / "params.yaml").read_text()), overrides)
    if variants is not None:
        raw["variants"] = variants
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("case", list(CONSTRUCTOR_CASES))
def test_each_constructor_error_is_a_config_error_first(tmp_path, capsys, case):
    overrides, key, spec_change = CONSTRUCTOR_CASES[case]
    with pytest.raises(ValueError), torch.device("meta"):
        build_separator(_spec(spec_change))  # the model would refuse it, late
    path = _write(tmp_path, overrides)
    assert main(["train", "--variant", "base", "--params", str(path)]) == 2
    line = error_line(capsys)
    assert f"params.yaml: {key}: " in line, line


def test_a_variants_constructor_error_names_the_variant(tmp_path, capsys):
    path = _write(tmp_path, {"variants": {"wide": {"model": {"bsrnn": {"n": 10, "attention_heads": 4,
                                                                       "attention_dim": 8}}}}})
    assert main(["plan", "--params", str(path)]) == 2
    assert "variants.wide.model.bsrnn.attention_heads: expected a divisor of model.bsrnn.n (10), got 4" \
        in error_line(capsys)


@pytest.mark.parametrize("params", ["params.yaml", "configs/paper.yaml"])
def test_every_variant_the_loader_accepts_builds(params):
    cfg = config.load(REPO / params)
    with torch.device("meta"):
        for name in cfg.variants:
            for spec in separator_specs(config.resolve(cfg, name)):
                build_separator(spec)


def test_unknown_country_is_refused_before_any_work(tmp_path, capsys):
    path = _write(tmp_path, {"energy": {"country_iso": "XYZ"}})
    assert main(["train", "--variant", "base", "--params", str(path)]) == 2  # no data here: the check comes first
    assert "energy.country_iso: CodeCarbon has no carbon intensity for 'XYZ'" in error_line(capsys)
    with pytest.raises(ConfigError, match="energy.country_iso"):
        config.load(path)


def test_paper_values_have_one_home():
    # configs/paper.yaml adds only the data's location and the experiment's name to the defaults
    paper = yaml.safe_load((REPO / "configs/paper.yaml").read_text())
    assert paper == {"data": {"root": "~/data/musdb18hq"}, "tracking": {"experiment": "sepcost-paper"}}
    cfg = config.load(REPO / "configs/paper.yaml")
    assert cfg.train == config.TrainConfig() and cfg.model == config.ModelConfig()
    assert (cfg.train.lr, cfg.train.lr_batch, cfg.train.batch_size) == (1e-3, 16, 8)
    assert cfg.train.effective_lr() == pytest.approx(5e-4)  # 1e-3 at 16, linearly to the global batch of 8
    assert list(cfg.variants) == list(config.variants.PAPER_VARIANTS)


def test_machine_knobs_are_not_in_the_results_sections():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert "runtime" not in raw or set(raw["runtime"]) <= {"device", "threads", "cache_gb", "num_workers"}
    for section in ("data", "train"):
        assert not {"cache_gb", "device", "num_workers"} & set(getattr(config, f"{section.title()}Config")
                                                                .__dataclass_fields__)
