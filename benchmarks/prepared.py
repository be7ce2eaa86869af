"""The prepared data set a benchmark runs on: the study's in the working directory (`dvc repro
prepare sad`), or one built from a params file in a temporary folder, removed afterwards."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from pipeline import paths
from pipeline.cli import main as sepcost


@contextlib.contextmanager
def prepared_data(params: str):
    """Runs the body where data/prepared and data/sad exist."""
    if paths.MANIFEST.exists() and paths.SAD_SUMMARY.exists():
        yield
        return
    here, workdir = Path.cwd(), tempfile.mkdtemp(prefix="sepcost-bench-")
    shutil.copy(params, Path(workdir) / "params.yaml")
    os.chdir(workdir)
    print(f"no prepared data here: building it in {workdir}")
    try:
        assert sepcost(["prepare"]) == 0 and sepcost(["sad"]) == 0
        yield
    finally:
        os.chdir(here)
        shutil.rmtree(workdir, ignore_errors=True)
