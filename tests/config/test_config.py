import pytest
import yaml

from pipeline import config
from pipeline.cli import main
from pipeline.errors import ConfigError
from tests.conftest import REPO, error_line

PAPER_ROWS = [line.split(",")[0] for line in (REPO / "reports/reference/paper_validation.csv").read_text().splitlines()[1:]]


@pytest.mark.parametrize("params", ["params.yaml", "configs/paper.yaml"])
def test_every_variant_resolves(params):
    cfg = config.load(REPO / params)
    assert set(PAPER_ROWS) <= set(cfg.variants)
    assert {"umx", "umx_hidden256", "umx_unidirectional", "umx_batch32", "umx_samples_per_track32"} <= set(cfg.variants)
    for name in cfg.variants:
        assert config.resolve(cfg, name).variant == name


def test_default_variants_keep_the_papers_relative_changes():
    cpu, paper = config.load(REPO / "params.yaml"), config.load(REPO / "configs/paper.yaml")
    for cfg in (cpu, paper):
        base, large = config.resolve(cfg, "base").model.bsrnn, config.resolve(cfg, "large").model.bsrnn
        assert (large.n, large.r) == (2 * base.n, 1.5 * base.r)
        assert config.resolve(cfg, "large_patience30").train.patience == 3 * cfg.train.patience
        assert config.resolve(cfg, "stft_4096").stft.n_fft == 2 * config.resolve(cfg, "base").stft.n_fft
        assert config.resolve(cfg, "umx_hidden256").model.umx.hidden * 2 == config.resolve(cfg, "umx").model.umx.hidden
    assert config.resolve(paper, "base").model.bsrnn.n == 64 and config.resolve(paper, "base").model.bsrnn.r == 8
    assert config.resolve(paper, "umx").model.umx.hidden == 512
    assert paper.data.source == "musdb18hq"


def test_variant_deep_merges_without_touching_the_base():
    cfg = config.load(REPO / "params.yaml")
    tac = config.resolve(cfg, "tac_tanh")
    assert tac.model.bsrnn.stereo == "tac" and tac.model.bsrnn.tac_activation == "tanh"
    assert tac.model.bsrnn.n == cfg.model.bsrnn.n
    assert cfg.model.bsrnn.stereo == "mono"


def _params_with(tmp_path, edit):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["train"].update(bogus=1), "train.bogus: unknown key"),
        (lambda p: p["model"]["bsrnn"].update(n="wide"), "model.bsrnn.n: expected an integer, got 'wide'"),
        (lambda p: p["train"].update(lr=-1.0), "train.lr: expected a value > 0.0"),
        (lambda p: p.setdefault("sad", {}).update(quantile=1.5), "sad.quantile: expected a value <= 1.0"),
        (lambda p: p.setdefault("sad", {}).update(scope="song"), "sad.scope: expected one of window, track"),
        (lambda p: p["data"].update(source="musdb18hq"), "data.root: expected the folder"),
        (lambda p: p.setdefault("eval", {}).update(write_estimates="yes"), "eval.write_estimates: expected true or false"),
        (lambda p: p["variants"]["large"]["model"]["bsrnn"].update(depth=3), "variants.large.model.bsrnn.depth: unknown key"),
        (lambda p: p["variants"]["base"].update(sad={"floor": 0.1}), "variants.base.sad: a variant may override only"),
        (lambda p: p["variants"].update(odd={"model": {"bsrnn": {"heads": 3}}}), "variants.odd.model.bsrnn.heads: expected a divisor"),
        (lambda p: p.update(targets=["drums", "vocals"]), "targets: expected the order"),
    ],
)
def test_bad_params_name_the_key(tmp_path, capsys, edit, message):
    path = _params_with(tmp_path, edit)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        config.load(path)
    assert main(["prepare", "--params", str(path)]) == 2
    assert message in error_line(capsys)


def test_missing_and_malformed_files(tmp_path, capsys):
    assert main(["sad", "--params", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: params file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    assert main(["sad", "--params", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_unknown_variant_lists_the_known_ones():
    cfg = config.load(REPO / "params.yaml")
    with pytest.raises(ConfigError, match="variants.nope: no such variant"):
        config.resolve(cfg, "nope")
