"""What a run records about where its result comes from: its params (a variant's recipe, seed and
declared change; the study's settings as the experiment's tags), git, packages, hardware, DVC.

Imports the config schema, `pipeline.paths`, the tracking store (for MLflow's key rules) and the
energy package's hardware detection.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess

import yaml

from pipeline import paths
from pipeline.config.schema import Config
from pipeline.energy.hardware import detect_hardware
from pipeline.names import stage_name, stage_parts
from pipeline.tracking.store import mlflow_key

PACKAGES = ("torch", "mlflow", "codecarbon", "dvc", "musdb", "museval", "numpy")
_MAX_PARAM_LEN = 6000  # MLflow's limit per param value


# What a run of a variant logs as params: the settings that decide its result (the recipe, the
# seed, the declared change). The study's settings are tags of the experiment (`study_tags`), the
# resolved config whole is each training's config.json artifact.
VARIANT_SECTIONS = ("stft", "model", "train", "eval")
NOT_DECISIVE = ("eval.batch_chunks", "eval.write_estimates")  # speed and extra outputs, not scores
STAGE_SECTIONS = {"prepare": ("seed", "data"), "sad": ("targets", "sad"), "evaluate": ("targets", "stft", "eval")}
STUDY_SECTIONS = ("targets", "seeds", "data", "sad", "energy", "tracking", "params_file")


def _flatten(data: dict, sections) -> dict[str, str]:
    """Dotted keys of `sections` of a config's dict, values as strings (lists as JSON)."""
    out: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (list, tuple)):
            out[prefix] = json.dumps(list(value))
        else:
            out[prefix] = "null" if value is None else str(value)

    for section in sections:
        walk(section, data[section])
    return {mlflow_key(k): v[:_MAX_PARAM_LEN] for k, v in out.items()}


def declared_change(config: Config) -> str:
    """A variant's declared change in one line, e.g. "model.bsrnn.n=128, train.patience=30"."""
    overrides = {k: v for k, v in config.variants.get(config.variant, {}).items() if k != "seeds"}
    flat = _flatten(overrides, overrides)
    return ", ".join(f"{k}={v}" for k, v in flat.items()) or "none (the base recipe)"


def run_params(config: Config, stage: str, ranks: int = 1) -> dict[str, str]:
    """The params of a run: for a variant's run its recipe (the model's own architecture only), the
    optimiser's effective lr and global batch (on `ranks` data-parallel processes), its seed and
    declared change; for a study stage the
    sections it reads (`STAGE_SECTIONS`); none for the others (report, score)."""
    data = config.as_dict()
    if not config.variant:
        return {k: v for k, v in _flatten(data, STAGE_SECTIONS.get(stage_kind(stage), ())).items()
                if k not in NOT_DECISIVE}
    arch = config.model.arch
    data["model"] = {k: v for k, v in data["model"].items() if not isinstance(v, dict) or k == arch}
    data["train"].update(lr_effective=config.train.effective_lr(ranks), global_batch=config.train.global_batch(ranks))
    params = {k: v for k, v in _flatten(data, VARIANT_SECTIONS).items() if k not in NOT_DECISIVE}
    return {**params, "seed": str(config.seed), "variant": config.variant, "change": declared_change(config)}


def study_tags(config: Config) -> dict[str, str]:
    """The study's settings, as tags of its experiment: `study.data.source`, `study.energy.pue`, ..."""
    return {f"study.{k}": v for k, v in _flatten(config.as_dict(), STUDY_SECTIONS).items()}


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_info() -> dict[str, str]:
    """The commit of the working directory's repository and whether tracked files differ from it."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    status = _git("status", "--porcelain", "--untracked-files=no")
    dirty = "unknown" if status is None else ("true" if status.strip() else "false")
    return {"git.commit": commit.strip(), "git.dirty": dirty}


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[f"version.{name}"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[f"version.{name}"] = "not installed"
    out["version.python"] = platform.python_version()
    return out


def stage_kind(stage: str) -> str:
    """`train` of `train@base`: the kind of stage, as MLflow tag names use it."""
    return mlflow_key(stage_parts(stage)[0])


def _upstream(stage: str) -> dict[str, str]:
    """The DVC stages whose outputs a stage's result is built from, by role."""
    kind, run = stage_parts(stage)
    if kind in ("train", "forecast"):
        return {"prepare": "prepare", "sad": "sad"}
    if kind == "evaluate":
        return {"prepare": "prepare", "train": stage_name("train", run)}
    return {}


def dvc_lock_entries() -> dict:
    """dvc.lock's entry of every stage DVC has recorded; empty when there is no lock file yet (or
    not one DVC wrote). Read with libyaml where PyYAML has it: a study's lock file is ~200 kB, 3 s
    in pure Python at every stage's start."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        entries = (yaml.load(paths.DVC_LOCK.read_text(), Loader=loader) or {}).get("stages", {})
    except (OSError, yaml.YAMLError, AttributeError):
        return {}
    return entries if isinstance(entries, dict) else {}


def dvc_lock_tags(stage: str) -> dict[str, str]:
    """Provenance from DVC: the md5 of the dvc.lock entry (command, hashes of every dependency and
    output, params) of each stage this one builds on, as recorded when this one starts, as
    `dvc.lock.<role>`; and `dvc.running_stage`, the stage `dvc repro` says it is running (absent
    when a command is run by hand). Stages without an entry yet are left out."""
    tags = {"dvc.running_stage": os.environ["DVC_STAGE"]} if os.environ.get("DVC_STAGE") else {}
    entries = dvc_lock_entries()
    for role, name in _upstream(stage).items():
        if isinstance(entries.get(name), dict):
            canonical = json.dumps(entries[name], sort_keys=True, separators=(",", ":"))
            tags[f"dvc.lock.{role}"] = hashlib.md5(canonical.encode()).hexdigest()
    return tags


def run_tags(config: Config, stage: str, name: str) -> dict[str, str]:
    """The tags of a new run: variant, stage, seed, host, params file, git, packages, hardware, DVC."""
    git = git_info()
    tags = {
        "variant": config.variant or name,
        "dvc.stage": stage,
        "seed": str(config.seed),
        "host": socket.gethostname(),
        "params_file": config.params_file,
        **git,
        **package_versions(),
        **{f"hardware.{k}": str(v) for k, v in detect_hardware().items()},
        **dvc_lock_tags(stage),
    }
    if git["git.commit"] != "unknown":
        tags["mlflow.source.git.commit"] = git["git.commit"]  # shown by the MLflow UI
    return tags
