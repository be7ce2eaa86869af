"""What every stage runs inside: an MLflow run with an energy meter around it, both from outside.

    with metered(cfg, "train@base-seed42", out_dir) as (mlrun, meter):
        ...  # the stage's work, set-up included

The meter's energy is logged into the run when it closes, whatever the outcome (see `run`).
Imports the tracking run and the energy meter.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from pipeline.config.schema import Config
from pipeline.energy.meter import EnergyMeter
from pipeline.tracking.run import TrackedRun, run
from pipeline.tracking.store import configure


@contextmanager
def metered(cfg: Config, stage: str, out_dir: Path, *, run_name: str | None = None, parent: str | None = None,
            prefix: str = "", previous: Mapping[str, float] | None = None,
            process_root: int | None = None, ranks: int = 1,
            gpus: tuple[int, ...] = ()) -> Iterator[tuple[TrackedRun, EnergyMeter]]:
    """A new MLflow run of `stage` (a child of run `parent` if given) and a running meter whose
    CodeCarbon CSV goes to `out_dir`; `previous` is the energy earlier executions spent;
    `process_root` the process whose tree the meter prices (default: this process); `ranks` the
    data-parallel processes of a training (its global batch and lr depend on them); `gpus` the CUDA
    ordinals the stage runs on (`runtime.gpu_ordinals`), the only GPUs charged to it (none: a CPU
    stage)."""
    configure(cfg.tracking)
    with run(cfg, stage, run_name=run_name, parent=parent, ranks=ranks) as mlrun:
        meter = EnergyMeter(cfg.energy, out_dir=out_dir, project_name=stage, previous=previous,
                            process_root=process_root, gpus=gpus)
        mlrun.watch_energy(meter, prefix=prefix)
        with meter:
            yield mlrun, meter
