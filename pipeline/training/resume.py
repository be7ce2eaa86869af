"""What decides a training's result, and the state an interrupted training resumes from.

A models/<variant>/last.pt is resumed only when its fingerprint is this one: the config sections
that decide the result (`RESULT_SECTIONS`: validation picks the best epoch, so `eval` counts), the
data set's content (the manifest digest and the SAD segments) and the code of every project module
the stage imports, tracking and energy bookkeeping aside. Machine knobs (`runtime`) never enter
it. Imports the config schema, the data package's manifest, `pipeline.paths`, `pipeline.sources`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline import paths, sources
from pipeline.checkpoint import load_state
from pipeline.config.schema import Config
from pipeline.data.manifest import Manifest

# The params sections a training's result depends on: DVC's params of train@<variant> are these.
RESULT_SECTIONS = ("seed", "targets", "data", "sad", "stft", "model", "train", "eval")
# Modules the training stage imports that only record what happened, never decide the result.
BOOKKEEPING = ("pipeline.tracking", "pipeline.energy")
STAGE = "pipeline.stages.train"


def result_code() -> list[str]:
    """The project modules whose code decides a training's result."""
    return [m for m in sources.closure(STAGE) if not any(m == b or m.startswith(b + ".") for b in BOOKKEEPING)]


def _sad_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(paths.SAD.glob("*.csv")) if paths.SAD.is_dir() else []:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def fingerprint(cfg: Config, manifest: Manifest) -> str:
    """What decides a training's result; a checkpoint of another fingerprint is not resumed."""
    decisive = {k: v for k, v in cfg.as_dict().items() if k in RESULT_SECTIONS}
    decisive["data_digest"] = manifest.digest
    decisive["sad_digest"] = _sad_digest()
    decisive["code_digest"] = sources.digest(result_code())
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


def resumable(last_path: Path, energy_path: Path, fp: str) -> tuple[dict | None, dict]:
    """The unfinished state of a training of this fingerprint, if any, and the energy its earlier
    executions spent (empty when starting afresh)."""
    saved = load_state(last_path)
    if saved is None or saved.get("fingerprint") != fp or saved.get("complete"):
        return None, {}
    spent = {}
    if energy_path.exists():
        recorded = json.loads(energy_path.read_text())
        if recorded.get("fingerprint") == fp:
            spent = recorded["totals"]
    return saved, spent
