"""The one place that reads a params file and turns it into typed, validated config objects.

A params file has base sections (data, sad, stft, model, train, eval, energy, tracking) and a
`variants` mapping; a variant is a set of overrides of the base sections it may change (stft,
model, train, eval). Every error names the key path and what was expected, and ends the command
with status 2 (see `ConfigError`).
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.errors import ConfigError

TARGETS = ("vocals", "bass", "drums", "other")
DEFAULT_PARAMS = Path("params.yaml")
# Sections a variant may override; the others describe the study, not a model.
VARIANT_SECTIONS = ("stft", "model", "train", "eval")


def _range(lo=None, hi=None, lo_open=False):
    """Field metadata: the inclusive range [lo, hi] (or (lo, hi] when lo_open) a number must lie in."""
    return {"lo": lo, "hi": hi, "lo_open": lo_open}


def num(default, lo=None, hi=None, lo_open=False):
    return field(default=default, metadata=_range(lo, hi, lo_open))


# ----------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class SyntheticConfig:
    train_songs: int = num(24, 1)
    valid_songs: int = num(8, 1)
    test_songs: int = num(8, 1)
    song_s: float = num(12.0, 6.0, 600.0)


@dataclass(frozen=True)
class DataConfig:
    source: Literal["synthetic", "musdb18hq", "musdb18"] = "synthetic"
    root: str | None = None  # the user's MUSDB18(-HQ) folder; unused for synthetic data
    sample_rate: int = num(44100, 8000, 192000)
    cache_gb: float = num(4.0, 0.0)  # training audio held in memory up to this size, else read from disk
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass(frozen=True)
class SadConfig:
    window_s: float = num(6.0, 0.0, lo_open=True)
    hop_s: float = num(3.0, 0.0, lo_open=True)
    chunks: int = num(10, 1)
    quantile: float = num(0.15, 0.0, 1.0)
    floor: float = num(1e-3, 0.0)
    scope: Literal["window", "track"] = "window"


@dataclass(frozen=True)
class StftConfig:
    n_fft: int = num(2048, 16)
    hop: int = num(512, 1)


@dataclass(frozen=True)
class BsrnnConfig:
    n: int = num(64, 1)  # feature dimension N
    r: int = num(8, 1)  # number of band-and-sequence blocks R
    mu: int = num(4, 1)  # masker hidden factor
    time_layer: Literal["lstm", "gru", "conv"] = "lstm"
    band_layer: Literal["lstm", "gru", "conv"] = "lstm"
    stereo: Literal["mono", "naive", "tac"] = "mono"
    tac_activation: Literal["tanh", "prelu"] = "prelu"
    attention_heads: int = num(0, 0)  # Na; 0 disables full-band attention
    attention_dim: int = num(0, 0)  # Ea
    heads: int = num(1, 1)  # H of the multi-head module
    band_split: Literal["target", "joint"] = "target"  # per-target recipe or the joint 57 bands
    conv_kernel: int = num(3, 1)  # BSCNN's dilated convolutions
    conv_dilations: int = num(4, 1)
    # Training memory: the first `checkpoint_blocks` of the R blocks recompute their activations in
    # backward instead of storing them (0 = none, >= r = all); same results, more compute.
    checkpoint_blocks: int = num(0, 0)


@dataclass(frozen=True)
class UmxConfig:
    hidden: int = num(512, 1)
    layers: int = num(3, 1)
    bidirectional: bool = True
    max_bin_hz: float = num(16000.0, 0.0, lo_open=True)


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["bsrnn", "umx"] = "bsrnn"
    joint: bool = False  # one model with a mask head per target instead of one model per target
    bsrnn: BsrnnConfig = field(default_factory=BsrnnConfig)
    umx: UmxConfig = field(default_factory=UmxConfig)


@dataclass(frozen=True)
class TrainConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    chunk_s: float = num(3.0, 0.0, lo_open=True)
    batch_size: int = num(2, 1)
    accum_steps: int = num(1, 1)
    lr: float = num(1e-3, 0.0, lo_open=True)  # at a global batch of `lr_batch`; scaled linearly
    lr_batch: int = num(16, 1)
    lr_decay: float = num(0.98, 0.0, 1.0, lo_open=True)
    lr_decay_every: int = num(2, 1)  # epochs
    grad_clip: float = num(5.0, 0.0)  # 0 disables clipping
    loss: Literal["t", "tf", "t+tf", "mse_mag"] = "t+tf"
    epoch_items: int = num(10000, 1)
    max_epochs: int = num(100, 1)
    patience: int = num(10, 1)
    monitor: Literal["usdr", "loss"] = "usdr"
    sampler: Literal["sad", "random"] = "sad"
    silent_source_p: float = num(0.1, 0.0, 1.0)
    silent_target_p: float = num(0.0, 0.0, 1.0)
    gain_db: float = num(10.0, 0.0)  # SAD mode: gain U[-gain_db, gain_db]
    gain_lo: float = num(0.25, 0.0)  # random mode: linear gain U[gain_lo, gain_hi]
    gain_hi: float = num(1.25, 0.0)
    channel_swap_p: float = num(0.5, 0.0, 1.0)
    weight_decay: float = num(0.0, 0.0)
    scheduler: Literal["step", "plateau"] = "step"  # step: x lr_decay every lr_decay_every epochs
    plateau_factor: float = num(0.3, 0.0, 1.0, lo_open=True)  # Open-Unmix's ReduceLROnPlateau
    plateau_patience: int = num(80, 1)
    valid_tracks: int = num(0, 0)  # 0 = every validation track
    num_workers: int = num(0, 0)


@dataclass(frozen=True)
class EvalConfig:
    mode: Literal["crossfade", "ola"] = "crossfade"
    segment_s: float = num(10.0, 0.0, lo_open=True)
    overlap: float = num(0.1, 0.0, 0.5)  # crossfade mode: fraction of a segment
    hop_s: float = num(5.0, 0.0, lo_open=True)  # ola mode
    batch_chunks: int = num(4, 1)
    bsseval: Literal["torch", "museval"] = "torch"
    wiener_iterations: int = num(0, 0)  # Open-Unmix post-filter; 0 = off
    wiener_softmask: bool = False
    wiener_residual: bool = False
    test_tracks: int = num(0, 0)  # 0 = every test track
    write_estimates: bool = False


@dataclass(frozen=True)
class EnergyConfig:
    country_iso: str = "FRA"
    pue: float = num(1.0, 1.0, 5.0)
    carbon_intensity_g_per_kwh: float = num(0.0, 0.0)  # 0 = CodeCarbon's figure for the country
    measure_power_s: float = num(15.0, 0.1)
    tdp_per_core_w: float = num(0.0, 0.0)  # 0 = from the TDP table for the detected CPU
    gpu_tdp_w: float = num(0.0, 0.0)  # 0 = from the TDP table for the detected GPU
    memory_w_per_gb: float = num(0.3725, 0.0)


@dataclass(frozen=True)
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"
    artifacts: str = "mlartifacts"
    experiment: str = "sepcost"


@dataclass(frozen=True)
class Config:
    seed: int = num(42, 0)
    targets: tuple[str, ...] = TARGETS
    data: DataConfig = field(default_factory=DataConfig)
    sad: SadConfig = field(default_factory=SadConfig)
    stft: StftConfig = field(default_factory=StftConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    variants: dict[str, dict] = field(default_factory=dict)
    variant: str | None = None  # set on a resolved variant, None on the base study
    params_file: str = "params.yaml"  # the file it was read from, for messages

    def resolve(self, name: str) -> "Config":
        """The config of variant `name`: the base sections deep-merged with its overrides."""
        if name not in self.variants:
            known = ", ".join(sorted(self.variants)) or "none"
            raise ConfigError(f"{self.params_file}: variants.{name}: no such variant (known: {known})")
        merged = merge(to_dict(self), self.variants[name])
        merged["variant"] = name
        # The base is valid, so an error here comes from the variant's overrides: name it so.
        return build(merged, self.params_file, prefix=f"variants.{name}")

    def as_dict(self) -> dict:
        return to_dict(self)


# ----------------------------------------------------------------------------- loading


def merge(base: dict, overrides: dict) -> dict:
    """Deep-merge `overrides` into a copy of `base` (mappings merge, anything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def to_dict(obj) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def load(path: str | Path = DEFAULT_PARAMS) -> Config:
    """Read and validate a params file; every variant is resolved once so errors surface early."""
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
    for key in ("variant", "params_file"):
        if key in raw:
            raise ConfigError(f"{path}: {key}: unknown key (set by sepcost, not in a params file)")
    config = build(raw, str(path))
    for name, overrides in config.variants.items():
        if not isinstance(overrides, dict):
            raise ConfigError(f"{path}: variants.{name}: expected a mapping of overrides, got {_kind(overrides)}")
        for section in overrides:
            if section not in VARIANT_SECTIONS:
                raise ConfigError(
                    f"{path}: variants.{name}.{section}: a variant may override only "
                    f"{', '.join(VARIANT_SECTIONS)}"
                )
        config.resolve(name)
    return config


def build(raw: dict, source: str, prefix: str = "") -> Config:
    config = dataclasses.replace(_convert(Config, raw, prefix, source), params_file=source)
    _check_cross_fields(config)
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
            expected = ", ".join(n for n in fields if n not in ("variant", "params_file"))
            raise ConfigError(f"{source}: {where}: unknown key (expected one of: {expected})")
        kwargs[key] = _value(hints[key], value, where, source, fields[key].metadata)
    return cls(**kwargs)


def _value(hint, value, where: str, source: str, meta):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _convert(hint, value, where, source)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
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
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {where}: expected an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {where}: expected a number, got {value!r}")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {where}: expected a string, got {value!r}")
        return value
    lo, hi, lo_open = meta.get("lo"), meta.get("hi"), meta.get("lo_open", False)
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(f"{source}: {where}: expected a value {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{source}: {where}: expected a value <= {hi}, got {value!r}")
    return value


def _check_cross_fields(config: Config) -> None:
    """Constraints between keys, each reported with the key it concerns."""
    src = config.params_file
    name = f"variants.{config.variant}." if config.variant else ""
    for t in config.targets:
        if t not in TARGETS:
            raise ConfigError(f"{src}: targets: expected targets among {', '.join(TARGETS)}, got {t!r}")
    if list(config.targets) != [t for t in TARGETS if t in config.targets]:
        raise ConfigError(f"{src}: targets: expected the order {', '.join(TARGETS)}")
    if config.data.source != "synthetic" and not config.data.root:
        raise ConfigError(f"{src}: data.root: expected the folder of the {config.data.source} data set")
    if config.sad.hop_s > config.sad.window_s:
        raise ConfigError(f"{src}: sad.hop_s: expected a value <= sad.window_s ({config.sad.window_s})")
    if config.stft.hop > config.stft.n_fft:
        raise ConfigError(f"{src}: {name}stft.hop: expected a value <= stft.n_fft ({config.stft.n_fft})")
    if config.stft.n_fft % 2:
        raise ConfigError(f"{src}: {name}stft.n_fft: expected an even number, got {config.stft.n_fft}")
    b = config.model.bsrnn
    if b.n % b.heads:
        raise ConfigError(f"{src}: {name}model.bsrnn.heads: expected a divisor of model.bsrnn.n ({b.n}), got {b.heads}")
    if b.attention_heads and b.attention_dim < 1:
        raise ConfigError(f"{src}: {name}model.bsrnn.attention_dim: expected a value >= 1 when attention_heads > 0")
    if config.train.epoch_items < config.train.batch_size:
        raise ConfigError(f"{src}: {name}train.epoch_items: expected at least train.batch_size ({config.train.batch_size}) items")
    if config.train.gain_lo > config.train.gain_hi:
        raise ConfigError(f"{src}: {name}train.gain_lo: expected a value <= train.gain_hi ({config.train.gain_hi})")
