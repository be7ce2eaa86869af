"""What makes a variant a variant: how its resolved recipe differs from base's.

A fair study compares like with like: every variant trains on base's recipe except its declared
change (its overrides; the paper's declaration is `variants.PAPER_VARIANTS`). `changes` lists the
keys where a variant's resolved recipe differs from base's, with both values; the report prints
them, and a test checks that no variant differs from base outside what the paper declares.
`changes_stopping_rule` names the rows whose change is when training stops: only they may stop
early in a study whose base cannot (the default pilot). Imports the loader, the schema and the
paper's variants.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.config.loader import resolve
from pipeline.config.schema import RECIPE_SECTIONS, Config
from pipeline.config.variants import PAPER_VARIANTS

BASE = "base"  # the variant every other one is compared with
STOPPING_RULE = ("train.monitor", "train.patience")  # what decides when a training stops early


@dataclass(frozen=True)
class Change:
    key: str  # dotted, e.g. model.bsrnn.n
    base: object
    value: object

    def __str__(self) -> str:
        return f"{self.key} {self.base} -> {self.value}"


def flatten(mapping: dict, prefix: str = "") -> dict[str, object]:
    """Dotted keys of nested mappings: {"model": {"bsrnn": {"n": 8}}} -> {"model.bsrnn.n": 8}."""
    out = {}
    for key, value in mapping.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def recipe(cfg: Config) -> dict[str, object]:
    """A resolved config's recipe (its stft, model, train and eval sections), flattened."""
    data = cfg.as_dict()
    return flatten({section: data[section] for section in RECIPE_SECTIONS})


def changes(study: Config, variant: str) -> list[Change]:
    """Where `variant`'s resolved recipe differs from base's, in recipe order."""
    ours, base = recipe(resolve(study, variant)), recipe(resolve(study, BASE))
    return [Change(k, base[k], v) for k, v in ours.items() if v != base[k]]


def changes_stopping_rule(study: Config, variant: str) -> bool:
    """Whether `variant`'s declared change is (or includes) the stopping rule: the paper's
    declaration where it has the variant (Open-Unmix's recipe brings its own patience), else the
    params file's."""
    overrides = PAPER_VARIANTS.get(variant, study.variants.get(variant, {}))
    return bool(declared(overrides) & set(STOPPING_RULE))


def declared(overrides: dict) -> set[str]:
    """The recipe keys a variant's overrides set (its number of seeds aside)."""
    return {k for k in flatten({s: overrides[s] for s in RECIPE_SECTIONS if s in overrides})}
