"""The resolved study that DVC reads: study.yaml, written by `sepcost resolve` from a params file.

DVC sees params only in files, and the defaults (schema.py) and the paper's variants (variants.py)
are not in params.yaml: dvc.yaml therefore reads each stage's params, and the runs it trains, from
this file, where every section of the study and every run's recipe is written out in full. A
change of params.yaml or of a default changes what DVC sees, stage by stage. Machine knobs
(`runtime`) are left out. Every stage command checks that the file is current with its params
file (`check`), so an edit of params.yaml never goes unnoticed. Imports the schema and the loader.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.atomic import replacing
from pipeline.config.loader import resolve
from pipeline.config.schema import VARIANT_SECTIONS, Config
from pipeline.errors import ConfigError

STUDY_FILE = Path("study.yaml")
# The study-level sections DVC may track (the variants' sections are in each run).
STUDY_SECTIONS = ("seed", "targets", "data", "sad", "stft", "model", "train", "eval", "energy", "tracking")
HEADER = """\
# The resolved study, written by `sepcost resolve` from {source} and the defaults of
# pipeline/config/ (do not edit: edit {source}, then run `sepcost resolve`). dvc.yaml reads every
# stage's params and the runs it trains from here; `runtime` (machine knobs) is left out.
"""


def resolved(cfg: Config) -> dict:
    """The study's sections and, for each run, its variant, seed and resolved recipe."""
    study = {k: v for k, v in cfg.as_dict().items() if k in STUDY_SECTIONS}
    runs = {}
    for name in cfg.variants:
        recipe = resolve(cfg, name).as_dict()
        runs[name] = {"variant": name, "seed": recipe["seed"], **{s: recipe[s] for s in VARIANT_SECTIONS}}
    return {"source": cfg.params_file, "study": study, "runs": runs}


def _text(cfg: Config) -> str:
    return HEADER.format(source=cfg.params_file) + yaml.safe_dump(resolved(cfg), sort_keys=False)


def write(cfg: Config, path: Path = STUDY_FILE) -> Path:
    with replacing(path) as tmp:
        tmp.write_text(_text(cfg))
    return path


def check(cfg: Config, path: Path = STUDY_FILE) -> None:
    """Raise ConfigError when `path` was resolved from this params file and no longer matches it."""
    if not path.is_file():
        return
    try:
        written = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise ConfigError(f"{path}: not valid YAML; run `sepcost resolve` to write it again") from None
    source = written.get("source") if isinstance(written, dict) else None
    if source is None or Path(source).resolve() != Path(cfg.params_file).resolve():
        return  # the study file describes another params file: nothing to compare
    if written != yaml.safe_load(yaml.safe_dump(resolved(cfg), sort_keys=False)):
        raise ConfigError(f"{path}: out of date with {cfg.params_file} (dvc.yaml reads the params of every stage "
                          "from it); run `sepcost resolve`, then `dvc repro`")
