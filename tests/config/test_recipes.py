"""A fair study: every variant trains on base's recipe except its declared change."""
from __future__ import annotations

import pytest
import yaml

from pipeline import config
from pipeline.config import recipes
from pipeline.config.variants import PAPER_VARIANTS
from tests.conftest import REPO

STUDIES = ["params.yaml", "configs/paper.yaml"]


@pytest.mark.parametrize("params", STUDIES)
def test_every_variant_differs_from_base_only_in_its_declared_change(params):
    cfg = config.load(REPO / params)
    assert cfg.variants["base"].keys() <= {"seeds"}, "base is the recipe: it overrides nothing"
    for name in cfg.variants:
        changed = {c.key for c in recipes.changes(cfg, name)}
        allowed = recipes.declared(PAPER_VARIANTS[name])
        assert changed <= allowed, f"{params}: {name} also changes {sorted(changed - allowed)}"
        assert recipes.declared(cfg.variants[name]) <= allowed, f"{params}: {name} overrides keys the paper does not"


def _stop_early_without_changing_the_rule(cfg) -> list[str]:
    early = {name for name in cfg.variants if config.resolve(cfg, name).train.can_stop_early()}
    return sorted(early - {name for name in cfg.variants if recipes.changes_stopping_rule(cfg, name)})


def test_in_the_pilot_only_the_rows_that_change_the_stopping_rule_can_stop_early():
    # at 8 epochs a patience that can act stops on a wobble of the validation score, and the verdict
    # would come from the stopping rule, not from the row's change
    cfg = config.load(REPO / "params.yaml")
    assert _stop_early_without_changing_the_rule(cfg) == []
    rule = {name for name in cfg.variants if recipes.changes_stopping_rule(cfg, name)}
    assert rule == {"monitor_loss", "large_patience30", "optimized_no_tac", "optimized_tac",
                    *(name for name in cfg.variants if name.startswith("umx"))}


@pytest.mark.parametrize("change, named", [
    (lambda p: p["train"].update(patience=1), {"base", "large", "loss_time"}),  # base's rule could act: every row
    (lambda p: p["variants"]["large"].update(train={"max_epochs": 40}), {"large"}),
])
def test_the_pilot_check_names_a_row_that_can_stop_early_without_changing_the_rule(tmp_path, change, named):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    change(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    early = _stop_early_without_changing_the_rule(config.load(path))
    assert named <= set(early) and not {"monitor_loss", "large_patience30", "umx"} & set(early)


def test_the_paper_stops_early_as_it_did():
    cfg = config.load(REPO / "configs/paper.yaml")
    assert all(config.resolve(cfg, name).train.can_stop_early() for name in cfg.variants)
    large, patient = (config.resolve(cfg, v).train for v in ("large", "large_patience30"))
    assert patient.patience == 3 * large.patience and patient.max_epochs == large.max_epochs


def test_the_default_study_repeats_base_over_seeds():
    cfg = config.load(REPO / "params.yaml")
    seeds = _seeds(cfg)
    assert seeds["base"] == [cfg.seed, cfg.seed + 1, cfg.seed + 2]
    assert all(len(s) >= 1 for s in seeds.values()) and list(seeds) == list(cfg.variants)
    paper = config.load(REPO / "configs/paper.yaml")
    assert {len(s) for s in _seeds(paper).values()} == {1}  # the replication trained each variant once


def _seeds(cfg):
    out = {}
    for variant, seed in config.runs(cfg):
        out.setdefault(variant, []).append(seed)
    return out


def test_changes_name_the_keys_and_both_values():
    cfg = config.load(REPO / "params.yaml")
    text = [str(c) for c in recipes.changes(cfg, "large")]
    assert text == [f"model.bsrnn.n {cfg.model.bsrnn.n} -> {2 * cfg.model.bsrnn.n}",
                    f"model.bsrnn.r {cfg.model.bsrnn.r} -> {config.resolve(cfg, 'large').model.bsrnn.r}"]
    assert recipes.changes(cfg, "base") == []
