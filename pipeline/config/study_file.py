"""The resolved study that DVC reads: study.json, written by `sepcost resolve` from a params file.

DVC sees params only in files, and the defaults (schema.py) and the paper's variants (variants.py)
are not in params.yaml: dvc.yaml therefore reads each stage's params, and the runs it trains, from
this file, where every section of the study and every run's recipe is written out in full. A
change of params.yaml or of a default changes what DVC sees, stage by stage. Machine knobs
(`runtime`) are left out. Every stage command checks that the file is current with its params
file (`check`), so an edit of params.yaml never goes unnoticed. JSON, not YAML: DVC reads the file
again for every stage it checks, and parses JSON a hundred times faster. Imports the schema and
the loader.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.atomic import replacing
from pipeline.config.loader import resolve, runs
from pipeline.config.schema import RECIPE_SECTIONS, Config
from pipeline.errors import ConfigError

STUDY_FILE = Path("study.json")
# The study-level sections DVC may track (the variants' sections are in each run).
STUDY_SECTIONS = ("seed", "seeds", "targets", "data", "sad", "stft", "model", "train", "eval", "energy",
                  "tracking")
ABOUT = ("The resolved study, written by `sepcost resolve` from {source} and the defaults of pipeline/config/ "
         "(do not edit: edit {source}, then run `sepcost resolve`). dvc.yaml reads every stage's params and the "
         "runs it trains from here; `runtime` (machine knobs) is left out.")


def resolved(cfg: Config) -> dict:
    """The study's sections and, for each (variant, seed) run, its variant, seed and resolved recipe."""
    study = {k: v for k, v in cfg.as_dict().items() if k in STUDY_SECTIONS}
    grid = {}
    for name, seed in runs(cfg):
        run = resolve(cfg, name, seed)
        recipe = run.as_dict()
        grid[run.run] = {"variant": name, "seed": seed, **{s: recipe[s] for s in RECIPE_SECTIONS}}
    return {"about": ABOUT.format(source=cfg.params_file), "source": cfg.params_file, "study": study, "runs": grid}


def write(cfg: Config, path: Path = STUDY_FILE) -> Path:
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(resolved(cfg), indent=1) + "\n")
    return path


def check(cfg: Config, path: Path = STUDY_FILE) -> None:
    """Raise ConfigError when `path` was resolved from this params file and no longer matches it."""
    if not path.is_file():
        return
    try:
        written = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ConfigError(f"{path}: not valid JSON; run `sepcost resolve` to write it again") from None
    source = written.get("source") if isinstance(written, dict) else None
    if source is None or Path(source).resolve() != Path(cfg.params_file).resolve():
        return  # the study file describes another params file: nothing to compare
    if written != json.loads(json.dumps(resolved(cfg))):
        raise ConfigError(f"{path}: out of date with {cfg.params_file} (dvc.yaml reads the params of every stage "
                          "from it); run `sepcost resolve`, then `dvc repro`")
