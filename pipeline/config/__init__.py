"""The study's parameters: the schema and its defaults (the paper study), the paper's variants,
the loader that validates a params file into typed config objects, and the checks it runs.

A stage gets its config object (`load`, then `resolve` for a variant), never the raw dict.
Imports `pipeline.names`, `pipeline.errors` and the energy package's CodeCarbon adapter.
"""
from pipeline.config.loader import DEFAULT_PARAMS, build, load, merge, resolve, runs
from pipeline.config.schema import (
    RECIPE_SECTIONS,
    VARIANT_KEYS,
    BsrnnConfig,
    Config,
    DataConfig,
    EnergyConfig,
    EvalConfig,
    ModelConfig,
    RuntimeConfig,
    SadConfig,
    StftConfig,
    SyntheticConfig,
    TrackingConfig,
    TrainConfig,
    UmxConfig,
    to_dict,
)

__all__ = [
    "DEFAULT_PARAMS", "RECIPE_SECTIONS", "VARIANT_KEYS", "BsrnnConfig", "Config", "DataConfig", "EnergyConfig", "EvalConfig",
    "ModelConfig", "RuntimeConfig", "SadConfig", "StftConfig", "SyntheticConfig", "TrackingConfig", "TrainConfig",
    "UmxConfig", "build", "load", "merge", "resolve", "runs", "to_dict",
]
