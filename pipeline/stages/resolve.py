"""`sepcost resolve`: write study.json, the resolved study dvc.yaml reads, from the params file.

Run it after editing params.yaml (or copying configs/paper.yaml over it), before `dvc repro`.
"""
from __future__ import annotations

from pipeline.config import Config, runs, study_file


def run(cfg: Config) -> None:
    path = study_file.write(cfg)
    print(f"resolve: {path} from {cfg.params_file}: {len(runs(cfg))} runs of {len(cfg.variants)} variants")
