"""Constraints between keys, and every constraint a model or a stage would otherwise find late.

Each error names the key it concerns; a variant's error names the variant's key path. The checks
mirror the models' constructors (`model/`), so that a bad value ends the command here with one
line instead of in a traceback minutes later; `tests/config/test_checks.py` drives each
constructor's error through the loader. Imports the CodeCarbon adapter for the country codes.
"""
from __future__ import annotations

from pipeline.config.schema import Config
from pipeline.energy.codecarbon_adapter import known_country
from pipeline.errors import ConfigError
from pipeline.names import TARGETS


def check(config: Config, prefix: str = "") -> None:
    """Raise ConfigError for the first broken constraint; `prefix` is e.g. "variants.large"."""
    src = config.params_file
    at = f"{prefix}." if prefix else ""

    def fail(key: str, expected: str) -> None:
        raise ConfigError(f"{src}: {key}: {expected}")

    for t in config.targets:
        if t not in TARGETS:
            fail("targets", f"expected targets among {', '.join(TARGETS)}, got {t!r}")
    if list(config.targets) != [t for t in TARGETS if t in config.targets]:
        fail("targets", f"expected the order {', '.join(TARGETS)}")
    if len(set(config.targets)) != len(config.targets):
        fail("targets", "expected each target once")
    if config.data.source != "synthetic" and not config.data.root:
        fail("data.root", f"expected the folder of the {config.data.source} data set")
    if config.sad.hop_s > config.sad.window_s:
        fail("sad.hop_s", f"expected a value <= sad.window_s ({config.sad.window_s})")
    if not known_country(config.energy.country_iso):
        fail("energy.country_iso", f"CodeCarbon has no carbon intensity for {config.energy.country_iso!r} "
             "(expected a 3-letter ISO country code such as FRA, DEU or USA)")

    stft = config.stft
    if stft.n_fft % 2:
        fail(f"{at}stft.n_fft", f"expected an even number, got {stft.n_fft}")
    if stft.hop > stft.n_fft // 2:
        fail(f"{at}stft.hop", f"expected a value <= stft.n_fft / 2 ({stft.n_fft // 2}), got {stft.hop}")

    b = config.model.bsrnn
    if b.n % b.heads:
        fail(f"{at}model.bsrnn.heads", f"expected a divisor of model.bsrnn.n ({b.n}), got {b.heads}")
    if b.attention_heads and b.n % b.attention_heads:
        fail(f"{at}model.bsrnn.attention_heads", f"expected a divisor of model.bsrnn.n ({b.n}), got {b.attention_heads}")
    if b.attention_heads and b.attention_dim < 1:
        fail(f"{at}model.bsrnn.attention_dim", "expected a value >= 1 when attention_heads > 0")

    train = config.train
    if train.epoch_items < train.batch_size:
        fail(f"{at}train.epoch_items", f"expected at least train.batch_size ({train.batch_size}) items")
    if train.gain_lo > train.gain_hi:
        fail(f"{at}train.gain_lo", f"expected a value <= train.gain_hi ({train.gain_hi})")

