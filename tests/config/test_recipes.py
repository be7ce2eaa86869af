"""A fair study: every variant trains on base's recipe except its declared change."""
from __future__ import annotations

import pytest

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


@pytest.mark.parametrize("params", STUDIES)
def test_early_stopping_can_act(params):
    cfg = config.load(REPO / params)
    for name in cfg.variants:
        train = config.resolve(cfg, name).train
        assert train.patience < train.max_epochs, f"{params}: {name}: patience {train.patience} of {train.max_epochs} epochs"
    large, patient = (config.resolve(cfg, v).train for v in ("large", "large_patience30"))
    assert patient.patience > large.patience and patient.max_epochs == large.max_epochs


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
