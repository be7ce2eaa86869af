"""Read a params file and turn it into a validated `Config`; resolve a variant from it.

A params file overrides the defaults of `schema.py` section by section; its `variants` mapping,
when given, replaces the paper's table (`variants.py`). Every error names the file, the key path
and what was expected, and ends the command with status 2 (`ConfigError`).
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Literal

import yaml

from pipeline.config import checks
from pipeline.config.schema import INTERNAL_KEYS, VARIANT_KEYS, Config, to_dict
from pipeline.config.variants import PAPER_VARIANTS
from pipeline.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")


def load(path: str | Path = DEFAULT_PARAMS) -> Config:
    """Read and validate a params file; every variant is resolved once, so its errors surface now."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for key in INTERNAL_KEYS:
        if key in raw:
            raise ConfigError(f"{path}: {key}: unknown key (set by sepcost, not in a params file)")
    raw = {"variants": copy.deepcopy(PAPER_VARIANTS), **raw}
    config = build(raw, str(path))
    for name, overrides in config.variants.items():
        if not isinstance(overrides, dict):
            raise ConfigError(f"{path}: variants.{name}: expected a mapping of overrides, got {_kind(overrides)}")
        for section in overrides:
            if section not in VARIANT_KEYS:
                raise ConfigError(
                    f"{path}: variants.{name}.{section}: a variant may override only {', '.join(VARIANT_KEYS)}"
                )
    for name in config.variants:
        resolve(config, name)  # each variant's overrides checked now, before any work
    return config


def resolve(study: Config, name: str, seed: int | None = None) -> Config:
    """The config of variant `name` trained with `seed` (default: the study's first seed): the
    study's sections deep-merged with the variant's overrides."""
    if name not in study.variants:
        known = ", ".join(sorted(study.variants)) or "none"
        raise ConfigError(f"{study.params_file}: variants.{name}: no such variant (known: {known})")
    merged = merge(to_dict(study), study.variants[name])
    merged["variant"] = name
    if seed is not None:
        merged["seed"] = seed
    # The study is valid, so an error here comes from the variant's overrides: name it so.
    return build(merged, study.params_file, prefix=f"variants.{name}")


def runs(study: Config) -> list[tuple[str, int]]:
    """Every (variant, seed) of the study, variants in params order: seed, seed + 1, ... as many as
    the variant's `seeds`."""
    out = []
    for name in study.variants:
        variant = resolve(study, name)
        out += [(name, study.seed + i) for i in range(variant.seeds)]
    return out


def merge(base: dict, overrides: dict) -> dict:
    """Deep-merge `overrides` into a copy of `base` (mappings merge, anything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def build(raw: dict, source: str, prefix: str = "") -> Config:
    """A `Config` from a mapping of sections (missing keys take their defaults), fully checked."""
    config = dataclasses.replace(_convert(Config, raw, prefix, source), params_file=source)
    checks.check(config, prefix)
    return config


def _kind(value) -> str:
    return "nothing" if value is None else type(value).__name__


def _convert(cls, raw, path: str, source: str):
    """Build dataclass `cls` from mapping `raw`, checking keys, types and ranges."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {path or 'top level'}: expected a mapping, got {_kind(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            expected = ", ".join(n for n in fields if n not in INTERNAL_KEYS)
            raise ConfigError(f"{source}: {where}: unknown key (expected one of: {expected})")
        kwargs[key] = _value(hints[key], value, where, source, fields[key].metadata)
    return cls(**kwargs)


def _value(hint, value, where: str, source: str, meta):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _convert(hint, value, where, source)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _value(inner, value, where, source, meta)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {where}: expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{source}: {where}: expected a non-empty list, got {_kind(value)}")
        return tuple(_value(args[0], v, f"{where}[{i}]", source, meta) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {where}: expected a mapping, got {_kind(value)}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {where}: expected a string, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {where}: expected an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {where}: expected a number, got {value!r}")
        value = float(value)
    lo, hi, lo_open = meta.get("lo"), meta.get("hi"), meta.get("lo_open", False)
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(f"{source}: {where}: expected a value {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{source}: {where}: expected a value <= {hi}, got {value!r}")
    return value
