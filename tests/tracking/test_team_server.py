"""Team mode: a real PostgreSQL server (Debian's `postgresql`, which `setup.sh --tests` installs), an
`mlflow server` on it with its own artifact store, and four trainings logging to it at once."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, TINY, write_params
from tests.servers import mlflow_server, postgres_database

pytestmark = pytest.mark.slow

RUNS = (("base", 42), ("base", 43), ("base", 44), ("large", 42))


def test_four_trainings_at_once_against_a_postgresql_backed_server(prepared_study, tmp_path):
    artifacts = Path(tempfile.mkdtemp(prefix="sepcost-artifacts-"))
    try:
        with postgres_database() as database, \
                mlflow_server(database, ["--artifacts-destination", str(artifacts)], tmp_path / "mlflow.log") as server:
            folder = tmp_path / "study"
            shutil.copytree(prepared_study, folder)
            write_params(folder, {**TINY, "variants": {"base": {"seeds": 3}},
                                  "tracking": {"uri": server, "experiment": "team"}})
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            assert subprocess.run([sys.executable, "-m", "pipeline.cli", "resolve"], cwd=folder, env=env).returncode == 0
            trainings = [subprocess.Popen([sys.executable, "-m", "pipeline.cli", "train", "--variant", v,
                                           "--seed", str(s)], cwd=folder, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True) for v, s in RUNS]
            try:
                for proc in trainings:
                    out, err = proc.communicate(timeout=900)
                    assert proc.returncode == 0, err[-3000:]
            finally:  # none left behind, logging to a server that is going away
                for proc in trainings:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()

            client = MlflowClient(server)
            experiment = client.get_experiment_by_name("team")
            runs = client.search_runs([experiment.experiment_id], "tags.`dvc.stage` LIKE 'train@%'", run_view_type=3)
            assert sorted(r.info.run_name for r in runs) == sorted(f"{v}-seed{s}" for v, s in RUNS)  # none lost, none twice
            for r in runs:
                assert r.info.status == "FINISHED"
                assert r.data.params["seed"] == r.data.tags["seed"] and "train.lr_effective" in r.data.params
                assert "best_valid_usdr_avg" in r.data.metrics and r.data.metrics["params_m"] > 0
                assert r.data.metrics["energy_kwh_codecarbon"] > 0 and r.data.metrics["energy_kwh_green_algorithms"] > 0
                assert r.data.tags["energy.method.cpu"]
                assert len(client.get_metric_history(r.info.run_id, "valid_usdr_avg")) == TINY["train"]["max_epochs"]
                names = {a.path for a in client.list_artifacts(r.info.run_id)}
                assert "config.json" in names  # through the server's artifact store
            stored = list(artifacts.rglob("config.json"))
            assert len(stored) == len(RUNS)
    finally:
        shutil.rmtree(artifacts, ignore_errors=True)
