"""`sepcost plan`: one row per variant, counts of all the models, the published counts beside them."""
from __future__ import annotations

import json
import pytest

from pipeline import config
from pipeline.specs import separator_specs
from pipeline.cli import main
from tests.conftest import REPO as ROOT

PAPER = ROOT / "configs" / "paper.yaml"


def test_separator_specs_per_target_and_joint():
    cfg = config.load(PAPER)
    specs = separator_specs(config.resolve(cfg, "base"))
    assert [s["targets"] for s in specs] == [["vocals"], ["bass"], ["drums"], ["other"]]
    assert specs[0]["stft"] == {"n_fft": cfg.stft.n_fft, "hop": cfg.stft.hop}
    assert specs[0]["bsrnn"]["n"] == cfg.model.bsrnn.n and specs[0]["sample_rate"] == cfg.data.sample_rate
    joint = config.build(config.merge(cfg.as_dict(), {"model": {"joint": True}, "variants": {}}), "x")
    (spec,) = separator_specs(joint)
    assert spec["targets"] == ["vocals", "bass", "drums", "other"]


def test_plan_json_lists_every_variant(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["plan", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    cfg = config.load(ROOT / "params.yaml")
    assert [r["variant"] for r in rows] == list(cfg.variants)
    assert all(isinstance(r["params"], int) and r["params"] > 0 for r in rows)
    by_name = {r["variant"]: r for r in rows}
    assert by_name["large"]["params"] > by_name["base"]["params"] > by_name["mask_mu2"]["params"]
    assert by_name["accum_grad"]["params_published_m"] == by_name["base"]["params_published_m"]  # blank cell
    assert by_name["umx"]["params_published_m"] is None


@pytest.mark.skipif(not PAPER.exists(), reason="configs/paper.yaml not present")
def test_plan_at_paper_sizes_matches_the_published_counts(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["plan", "--params", str(PAPER), "--json"]) == 0
    rows = {r["variant"]: r for r in json.loads(capsys.readouterr().out)}
    for name, row in rows.items():
        if row["params_published_m"] is not None:  # the CSV rounds to 0.1 M
            assert abs(row["diff_percent"]) < 0.5, (name, row)
    assert rows["large_patience30"]["params_published_m"] == rows["large"]["params_published_m"]
    assert rows["umx"]["params"] == 4 * 8_893_348


def test_plan_table(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["variant", "architecture"]
    assert "attn=2/16" in out and "stereo=tac(prelu)" in out
