"""`sepcost launch` with the real submitit: dry runs of the cluster scripts, and jobs on this machine
in a copy of the repository, recorded by DVC, one of them preempted and requeued."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient

from pipeline import config, paths
from pipeline.cli import main
from pipeline.config.schema import LaunchConfig
from pipeline.errors import UserError
from pipeline.jobs.executors import gpu_slots, make_executor
from pipeline.names import run_key
from pipeline.stages.launch import SUBMITIT_REQUEUES, jobs_at_once, requeue_limit
from tests.conftest import REPO, TINY, error_line, write_params
from tests.nvml import nvml  # noqa: F401 (a fixture)

RUNS = (("base", 42), ("base", 43), ("large", 42))


def test_dry_run_prints_the_slurm_array_with_its_resources_and_command(study, capsys):
    write_params(study, {**TINY, "variants": {"base": {"seeds": 2}}})
    assert main(["launch", "--executor", "slurm", "--dry-run", "--variant", "base", "--variant", "large",
                 "--partition", "gpu", "--gpus", "1", "--cpus", "8", "--time-min", "600", "--jobs", "2",
                 "--account", "lab", "--options=--qos=high"]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --array=0-2%2" in script  # three runs, two at a time
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --time=600", "#SBATCH --account=lab", "#SBATCH --qos=high", "#SBATCH --signal=USR2@120"):
        assert line in script, line
    assert "-m submitit.core._submit" in script and "srun" in script
    assert "3 jobs, base-seed42, base-seed43, large-seed42" in script


def test_the_array_runs_every_job_with_the_memory_its_forecast_measured(study, capsys):
    write_params(study, {**TINY, "variants": {"base": {"seeds": 2}}})
    for run, peak_gb in (("base-seed42", 3.0), ("large-seed42", 9.5)):
        paths.forecast_dir(run).mkdir(parents=True)
        (paths.forecast_dir(run) / "forecast.json").write_text(json.dumps({"forecast_duration_s": 3600,
                                                                          "peak_memory_gb": peak_gb}))
    assert main(["launch", "--executor", "slurm", "--dry-run", "--variant", "base", "--variant", "large"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --array=0-2%3" in out and "#SBATCH --mem=12GB" in out  # 9.5 GiB and a quarter more
    assert "3 of 3 jobs at once, 12 GB each (the largest forecast peak, 9.5 GiB, and a quarter more)" in out
    assert main(["launch", "--executor", "slurm", "--dry-run", "--variant", "base", "--variant", "large", "--jobs", "2",
                 "--mem-gb", "40"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --array=0-2%2" in out and "#SBATCH --mem=40GB" in out


def test_local_jobs_run_one_a_core_unless_told(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert jobs_at_once(LaunchConfig(), 8) == 3 and jobs_at_once(LaunchConfig(), 2) == 2
    assert jobs_at_once(LaunchConfig(jobs=5), 8) == 5 and jobs_at_once(LaunchConfig(executor="debug"), 8) == 1


def test_dry_run_prints_the_oar_array(study, capsys):
    write_params(study, TINY)
    assert main(["launch", "--executor", "oar", "--dry-run", "--variant", "large", "--gpus", "1", "--cpus", "4",
                 "--time-min", "90", "--partition", "production", "--options=-t besteffort -t idempotent"]) == 0
    script = capsys.readouterr().out
    for line in ("#OAR --array 1", "#OAR -l /gpu=1/core=4,walltime=01:30", "#OAR -q production",
                 "#OAR -t besteffort -t idempotent"):
        assert line in script, line
    assert "export SUBMITIT_EXECUTOR=oar" in script and "-m submitit.core._submit" in script


def test_a_cluster_launch_refuses_sqlite(study, capsys):
    write_params(study, TINY)
    assert main(["launch", "--executor", "slurm", "--variant", "base"]) == 1
    assert "tracking.uri: sqlite:///mlflow.db is one file on this machine" in error_line(capsys)


def test_bad_scheduler_options_name_the_key(study, capsys):
    write_params(study, TINY)
    assert main(["launch", "--executor", "slurm", "--dry-run", "--options", "qos=high"]) == 2
    assert "runtime.launch: expected options such as --qos=high" in error_line(capsys)


def test_the_requeue_limit_follows_the_longest_forecast_or_the_param(study):
    """A job requeued each time it reaches its limit needs as many pieces as its schedule holds."""
    launch = config.load("params.yaml").runtime.launch  # 1440 min a job
    chosen = [("base", 42), ("large", 42)]
    limit, why = requeue_limit(launch, chosen)
    assert limit == SUBMITIT_REQUEUES and "sepcost forecast" in why
    for run, hours in (("base-seed42", 30.0), ("large-seed42", 50.5)):
        paths.forecast_dir(run).mkdir(parents=True)
        (paths.forecast_dir(run) / "forecast.json").write_text(json.dumps({"forecast_duration_s": hours * 3600}))
    assert requeue_limit(launch, chosen)[0] == 3  # 50.5 h in pieces of 24 h
    assert requeue_limit(dataclasses.replace(launch, time_min=60), chosen)[0] == 51
    assert requeue_limit(dataclasses.replace(launch, requeues=7), chosen) == (7, "runtime.launch.requeues")


# ----------------------------------------------------------------------------- each local job's GPUs


def test_local_jobs_get_gpus_of_their_own_or_none(nvml, monkeypatch, tmp_path):
    # the simulated node's GPUs 1 and 0, in that order: one each for two jobs side by side
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-b2b2,0")
    where = "params.yaml: runtime.launch"
    assert gpu_slots(LaunchConfig(gpus_per_job=1), 2, where) == [(1,), (0,)]
    assert gpu_slots(LaunchConfig(gpus_per_job=2), 1, where) == [(1, 0)]
    assert gpu_slots(LaunchConfig(gpus_per_job=0), 2, where) == [(), ()]  # on the CPU: charged for no GPU
    # what submitit then gives a job (the real local executor, a job reading its environment)
    for cfg, slot, seen in ((LaunchConfig(gpus_per_job=1), (1,), "1"), (LaunchConfig(), (), "")):
        executor = make_executor(cfg, tmp_path / "%j", where)
        if slot:
            executor.update_parameters(visible_gpus=slot)
        assert executor.submit(os.getenv, "CUDA_VISIBLE_DEVICES").result() == seen


@pytest.mark.parametrize("visible, gpus, line", [
    ("0,1", 2, "params.yaml: runtime.launch: 2 jobs at once x gpus_per_job 2 need 4 GPUs, this process has 2 "
               "(GPU 0,1 of 3 (CUDA_VISIBLE_DEVICES='0,1')): lower jobs or gpus_per_job"),
    (None, 1, "params.yaml: runtime.launch: gpus_per_job 1: this machine's GPUs cannot be given one job each: "
              "MIG mode is on"),
])
def test_too_few_gpus_for_the_jobs_are_refused_in_one_line(nvml, monkeypatch, visible, gpus, line):
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with pytest.raises(UserError) as err:
        gpu_slots(LaunchConfig(gpus_per_job=gpus), 2, "params.yaml: runtime.launch")
    assert str(err.value).startswith(line)


# ----------------------------------------------------------------------------- jobs on this machine


def _copy_of_the_repository(folder: Path) -> Path:
    """The working tree as a fresh repository (tracked and new files, nothing ignored), with the
    tiny study prepared by `dvc repro sad`."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes((REPO / name).read_bytes())
    for argv in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(argv, cwd=folder, check=True)
    return folder


def _env(folder: Path) -> dict:
    """The copy's code first, and `sepcost` (which dvc.yaml's commands call) on the PATH."""
    return {**os.environ, "PYTHONPATH": str(folder),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _sepcost(folder: Path, *argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], cwd=folder, capture_output=True,
                          text=True, env=_env(folder), **kw)


def _dvc(folder: Path, *argv: str) -> str:
    done = subprocess.run([sys.executable, "-m", "dvc", *argv], cwd=folder, capture_output=True, text=True,
                          env=_env(folder))
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    folder = _copy_of_the_repository(tmp_path_factory.mktemp("launch") / "repo")
    write_params(folder, {**TINY, "variants": {"base": {"seeds": 2}}})
    assert _sepcost(folder, "resolve").returncode == 0
    _dvc(folder, "repro", "--quiet", "sad")
    return folder


def _training_runs(folder: Path, run: str):
    cfg = config.load(folder / "params.yaml")
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    return client.search_runs([experiment.experiment_id], f"tags.`dvc.stage` = 'train@{run}'",
                              run_view_type=3, order_by=["attributes.start_time ASC"])


@pytest.mark.slow
def test_local_jobs_two_at_a_time_are_recorded_by_dvc(repository):
    done = _sepcost(repository, "launch", "--executor", "local", "--jobs", "2",
                    "--variant", "base", "--variant", "large")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 of 3 jobs done" in done.stdout
    stages = [f"{kind}@{run_key(v, s)}" for v, s in RUNS for kind in ("train", "evaluate")]
    status = _dvc(repository, "status", *stages)
    assert "up to date" in status.lower() or status.strip() == "", status  # DVC has each stage recorded
    dry = _dvc(repository, "repro", "--dry", *stages)
    assert "Running stage" not in dry, dry  # nothing to retrain
    for v, s in RUNS:
        (training,) = _training_runs(repository, run_key(v, s))
        assert training.info.status == "FINISHED" and "usdr_avg" in training.data.metrics
    record = json.loads(sorted((repository / "launches").glob("*/launch.json"))[-1].read_text())
    assert [j["run"] for j in record["jobs"]] == [run_key(v, s) for v, s in RUNS]
    status = _sepcost(repository, "launch", "--status")
    assert status.returncode == 0 and status.stdout.count(" DONE ") == 3, status.stdout + status.stderr


@pytest.mark.slow
def test_a_preempted_job_is_requeued_and_resumes_from_its_checkpoint(repository, tmp_path):
    write_params(repository, {**TINY, "variants": {"base": {"seeds": 2}},
                              "train": {**TINY["train"], "epoch_items": 64, "max_epochs": 3}})
    assert _sepcost(repository, "resolve").returncode == 0
    run = run_key("base", 42)
    last = repository / "models" / run / "last.pt"
    last.unlink(missing_ok=True)
    launch = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "launch", "--executor", "local",
                               "--variant", "base", "--seed", "42"], cwd=repository, env=_env(repository),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not last.exists():  # the first epoch's checkpoint
        assert launch.poll() is None, launch.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # submitit's warning signal (USR2) as SLURM sends it: to every process of the job, the task
    # (whose handler checkpoints the job, stopping the training with SIGTERM) and the training
    tasks = [p for p in psutil.Process(launch.pid).children(recursive=True)
             if "submitit.core._submit" in " ".join(p.cmdline())]
    assert len(tasks) == 1, [p.cmdline() for p in psutil.Process(launch.pid).children(recursive=True)]
    for process in [tasks[0], *tasks[0].children(recursive=True)]:
        process.send_signal(signal.SIGUSR2)
    out, err = launch.communicate(timeout=600)
    assert launch.returncode == 0, err[-3000:]
    # the training took USR2 as a stop and the forwarded SIGTERM as its repeat: it checkpointed and
    # closed its run KILLED with its energy itself (killed by USR2, it would have left the run to be
    # closed by its resumption, `closed_by`)
    killed, finished = _training_runs(repository, run)[-2:]
    assert killed.info.status == "KILLED" and killed.data.metrics["run_energy_kwh_codecarbon"] > 0
    assert "closed_by" not in killed.data.tags, killed.data.tags
    assert finished.info.status == "FINISHED" and finished.data.tags["resumed_from"] == killed.info.run_id
    assert int(finished.data.tags["resumed_after_epoch"]) >= 1
    result = json.loads((repository / "metrics" / "train" / f"{run}.json").read_text())
    assert result["epochs"] == 3
    # the same training never stopped ends with the same weights, bit for bit
    uninterrupted = tmp_path / "uninterrupted"
    shutil.copytree(repository, uninterrupted, ignore=shutil.ignore_patterns("models", "launches", "mlflow.db"))
    assert _sepcost(uninterrupted, "train", "--variant", "base", "--seed", "42").returncode == 0
    ours, theirs = (torch.load(f / "models" / run / "best.pt", weights_only=False)["models"]
                    for f in (repository, uninterrupted))
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k])
               for a, b in zip(ours, theirs) for k in a["state_dict"])
