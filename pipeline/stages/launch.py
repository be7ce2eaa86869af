"""Command `sepcost launch`: a study's trainings and evaluations as independent jobs, through submitit.

Each (variant, seed) chosen is one job (`pipeline.jobs.job.RunJob`): its training, its evaluation
and the `dvc commit` of both stages, so that afterwards `dvc status` shows them up to date and
`dvc repro` has only the report left to render. On this machine (`local`) the jobs run `jobs` at
a time; on a cluster (`slurm`, `oar`) they are one job array, and the command returns once it is
submitted: `sepcost launch --status` watches it. The study must be prepared (`dvc repro sad`)
first. SQLite is one file on one machine: a launch on a cluster needs a tracking server.

Every launch is recorded in `<launch folder>/<time>/launch.json` (its executor, params, runs and
job ids); `--status` reads the latest, asks the scheduler (or submitit's result files) for each
job's state and MLflow for its progress (epoch, ETA from the training's forecast, kWh so far) and
shows a failed job's last error line. Imports the config, `pipeline.jobs`, the tracking store and provenance.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

from tqdm import tqdm

from pipeline import paths
from pipeline.atomic import write_json
from pipeline.config import Config, runs as study_runs
from pipeline.energy.codecarbon_adapter import NODE_JOBS_ENV
from pipeline.energy.hardware import visible_gpus
from pipeline.errors import UserError
from pipeline.jobs.executors import CLUSTERS, dry_run_script, gpu_slots, make_executor
from pipeline.jobs.job import RunJob
from pipeline.names import DURATION, EPOCH, FORECAST, KWH_CODECARBON, PEAK_MEMORY, RUN, run_key, stage_name
from pipeline.runtime import cores
from pipeline.tracking.provenance import dvc_lock_entries

RECORD = "launch.json"
POLL_S = 2.0
SUBMITIT_REQUEUES = 3  # submitit's own limit, for runs that have no forecast
MEMORY_MARGIN = 1.25  # a job's memory request over its forecast's peak


def chosen_runs(cfg: Config, variants: list[str] | None, seed: int | None) -> list[tuple[str, int]]:
    """The study's (variant, seed) runs, limited to `variants` and `seed` when given."""
    every = study_runs(cfg)
    for v in variants or ():
        if v not in cfg.variants:
            raise UserError(f"{cfg.params_file}: variants.{v}: no such variant (known: {', '.join(cfg.variants)})")
    chosen = [(v, s) for v, s in every if (not variants or v in variants) and (seed is None or s == seed)]
    if not chosen:
        raise UserError(f"{cfg.params_file}: no run of the study matches --variant {variants} --seed {seed}")
    return chosen


def _forecasts(chosen: list[tuple[str, int]]) -> list[dict]:
    """The forecasts (`sepcost forecast`) of the chosen runs that have one."""
    files = [paths.forecast_dir(run_key(variant, seed)) / "forecast.json" for variant, seed in chosen]
    return [json.loads(f.read_text()) for f in files if f.exists()]


def requeue_limit(launch, chosen: list[tuple[str, int]]) -> tuple[int, str]:
    """How often a job may reach its time limit and be requeued (submitit does not count
    preemptions), and why: `runtime.launch.requeues` when set, else as often as the longest of the
    chosen runs' forecast schedules needs (`sepcost forecast`), else submitit's own limit."""
    if launch.requeues:
        return launch.requeues, "runtime.launch.requeues"
    hours = [f[f"{FORECAST}{DURATION}"] / 3600 for f in _forecasts(chosen)]
    if not hours:
        return SUBMITIT_REQUEUES, "no run has a forecast: `sepcost forecast --variant NAME` sets the limit from one"
    # each time limit holds that much of the schedule; one more for the time every restart repeats
    limit = math.ceil(max(hours) * 60 / launch.time_min)
    return limit, f"the longest forecast schedule, {max(hours):.1f} h, in {launch.time_min} min pieces, and one more"


def memory_request(launch, chosen: list[tuple[str, int]]) -> tuple[float, str]:
    """A job's memory in GB (0: the scheduler's default), and why: `runtime.launch.mem_gb` when set,
    else the largest peak the chosen runs' forecasts measured (the training cache, the models, a
    validation pass) and a quarter more. The evaluation that follows in the job fits itself to
    what is granted (it scores as many tracks at once as the job's memory holds)."""
    if launch.mem_gb:
        return launch.mem_gb, "runtime.launch.mem_gb"
    peaks = [f[PEAK_MEMORY] for f in _forecasts(chosen) if PEAK_MEMORY in f]
    if not peaks:
        return 0.0, "no run has a forecast: the scheduler's default (`sepcost forecast` or --mem-gb sets it)"
    return math.ceil(max(peaks) * MEMORY_MARGIN), f"the largest forecast peak, {max(peaks):.1f} GiB, and a quarter more"


def jobs_at_once(launch, count: int) -> int:
    """How many of `count` jobs run at once: `runtime.launch.jobs` when set, else every one on a
    cluster, and here one a core, or one per `gpus_per_job` GPUs of this process."""
    if launch.jobs:
        return min(launch.jobs, count)
    if launch.executor in CLUSTERS:
        return count
    if launch.executor == "debug":
        return 1
    slots = len(visible_gpus().devices) // launch.gpus_per_job if launch.gpus_per_job else cores()
    return max(1, min(count, slots))


def _check_ready(cfg: Config) -> None:
    """A launch trains from a prepared study and logs where every job can reach."""
    launch = cfg.runtime.launch
    if launch.executor in CLUSTERS and cfg.tracking.uri.startswith("sqlite:"):
        raise UserError(f"{cfg.params_file}: tracking.uri: {cfg.tracking.uri} is one file on this machine; jobs on "
                        "a cluster need a tracking server (http://...): see the README's team mode")
    if not {"prepare", "sad"} <= set(dvc_lock_entries()):
        raise UserError(f"{paths.DVC_LOCK}: no prepare and sad stages recorded: run `dvc repro sad` first")


def run(cfg: Config, variants: list[str] | None = None, seed: int | None = None, dry_run: bool = False,
        **overrides) -> list[dict]:
    """Launch the chosen runs with `cfg.runtime.launch` (fields overridden by `overrides`);
    returns each job's {run, job_id, state}."""
    launch = dataclasses.replace(cfg.runtime.launch, **{k: v for k, v in overrides.items() if v is not None})
    cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, launch=launch))
    chosen = chosen_runs(cfg, variants, seed)
    where = f"{cfg.params_file}: runtime.launch"
    folder = (Path(launch.folder) / time.strftime("%Y%m%d-%H%M%S")).resolve()
    (mem_gb, mem_why), jobs = memory_request(launch, chosen), jobs_at_once(launch, len(chosen))
    launch = dataclasses.replace(launch, jobs=jobs, mem_gb=mem_gb)
    memory = f"{mem_gb:g} GB each ({mem_why})" if mem_gb else f"memory: {mem_why}"
    print(f"launch: {jobs} of {len(chosen)} jobs at once" + (f", {memory}" if launch.executor == "slurm" else ""))
    if dry_run:
        print(dry_run_script(launch, folder / "%j", len(chosen), where))
        print(f"launch: dry run: {len(chosen)} jobs, {', '.join(run_key(v, s) for v, s in chosen)}")
        return []
    _check_ready(cfg)
    executor = make_executor(launch, folder / "%j", where)
    executor.max_num_timeout, why = requeue_limit(launch, chosen)
    print(f"launch: a job that reaches its {launch.time_min} min limit is checkpointed and requeued, at most "
          f"{executor.max_num_timeout} times ({why}); a preempted one always")
    jobs = [RunJob(str(Path.cwd()), cfg.params_file, v, s) for v, s in chosen]
    if launch.executor in CLUSTERS:
        with executor.batch():
            submitted = [executor.submit(job) for job in jobs]
        _record(folder, launch, cfg, jobs, submitted)
        print(f"launch: {len(submitted)} jobs submitted to {launch.executor} "
              f"({', '.join(j.job_id for j in submitted)}); watch them with `sepcost launch --status`")
        return [{"run": job.run, "job_id": sub.job_id, "state": "SUBMITTED"} for job, sub in zip(jobs, submitted)]
    return _run_here(folder, launch, cfg, jobs, executor, where)


def _run_here(folder: Path, launch, cfg: Config, jobs: list[RunJob], executor, where: str) -> list[dict]:
    """Local and debug jobs: `launch.jobs` at a time, until every one has ended. Jobs side by side
    share the machine's CPUs and RAM: each measures its own share of them
    (`energy.codecarbon_adapter.shared_node`); each local job has GPUs of its own (`gpu_slots`),
    handed to the next job when it ends."""
    side_by_side = launch.jobs if launch.executor == "local" else 1
    slots = gpu_slots(launch, side_by_side, where) if launch.executor == "local" else [()]
    # the jobs inherit this process's environment
    os.environ.update({NODE_JOBS_ENV: str(side_by_side), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    waiting, running, ended = list(jobs), [], []
    free, submitted = list(range(side_by_side)), []
    with tqdm(total=len(jobs), desc="launch", unit="job") as bar:
        while waiting or running:
            while waiting and free:
                job, slot = waiting.pop(0), free.pop(0)
                if launch.gpus_per_job and launch.executor == "local":
                    executor.update_parameters(visible_gpus=slots[slot])
                running.append((job, executor.submit(job), slot))
                submitted.append(running[-1])
                _record(folder, launch, cfg, [j for j, _, _ in submitted], [s for _, s, _ in submitted])
            for job, handle, slot in list(running):
                if launch.executor == "debug" or handle.done():
                    running.remove((job, handle, slot))
                    free.append(slot)
                    ended.append(_outcome(job, handle))
                    bar.update()
            time.sleep(0 if launch.executor == "debug" else POLL_S)
    failed = [e for e in ended if e["state"] != "DONE"]
    for e in ended:
        print(f"launch: {e['run']}: {e['state']}" + (f": {e['error']}" if e.get("error") else ""))
    print(f"launch: {len(ended) - len(failed)} of {len(ended)} jobs done; `dvc status` shows them recorded")
    if failed:
        raise UserError(f"{len(failed)} of {len(ended)} jobs failed: {', '.join(e['run'] for e in failed)}")
    return ended


def _outcome(job: RunJob, handle) -> dict:
    try:
        handle.result()
    except Exception as err:  # submitit re-raises the job's error with its traceback
        lines = [line for line in str(err).splitlines() if line.strip()]
        return {"run": job.run, "job_id": handle.job_id, "state": "FAILED", "error": lines[-1] if lines else ""}
    return {"run": job.run, "job_id": handle.job_id, "state": "DONE"}


def _record(folder: Path, launch, cfg: Config, jobs: list[RunJob], submitted) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / RECORD, {
        "executor": launch.executor, "params": cfg.params_file, "folder": str(folder), "started": time.time(),
        "jobs": [{"run": j.run, "variant": j.variant, "seed": j.seed, "job_id": s.job_id}
                 for j, s in zip(jobs, submitted)],
    })


# ----------------------------------------------------------------------------- status


def latest_record(cfg: Config) -> dict:
    records = sorted(Path(cfg.runtime.launch.folder).glob(f"*/{RECORD}"))
    if not records:
        raise UserError(f"{cfg.runtime.launch.folder}: no launch recorded yet (`sepcost launch` first)")
    return json.loads(records[-1].read_text())


def _job_state(record: dict, job: dict) -> tuple[str, str]:
    """The scheduler's state of a job (or, once ended, submitit's result file) and a failed job's
    last error line."""
    import pickle

    import submitit

    job_dir = Path(record["folder"]) / job["job_id"]
    paths_ = submitit.core.utils.JobPaths(job_dir, job["job_id"])
    if paths_.result_pickle.exists():
        with open(paths_.result_pickle, "rb") as f:
            outcome, value = pickle.load(f)
        if outcome == "success":
            return "DONE", ""
        lines = [line for line in str(value).splitlines() if line.strip()]
        return "FAILED", lines[-1] if lines else ""
    if record["executor"] == "slurm":
        return submitit.SlurmJob(job_dir, job["job_id"]).state, ""
    if record["executor"] == "oar":
        from submitit_oar.oar import OarJob

        return OarJob(job_dir, job["job_id"]).state, ""
    return "RUNNING", ""


def status(cfg: Config) -> list[dict]:
    """Each job of the latest launch: its state, its training's epoch, ETA and kWh so far."""
    from pipeline.tracking import store

    record = latest_record(cfg)
    client, study = store.client(cfg.tracking), store.experiment_id(cfg.tracking, create=False)
    rows = []
    for job in record["jobs"]:
        state, error = _job_state(record, job)
        row = {"run": job["run"], "job_id": job["job_id"], "state": state, "epoch": "", "eta_min": "", "kwh": "",
               "error": error}
        found = client.search_runs([study], f"tags.`dvc.stage` = '{stage_name('train', job['run'])}'",
                                   order_by=["attributes.start_time DESC"], max_results=1) if study else []
        if found:
            m = found[0].data.metrics
            row["epoch"] = int(m["epoch"]) if "epoch" in m else ""
            row["kwh"] = m.get(f"{RUN}{KWH_CODECARBON}", "")
            if row["kwh"] == "" and found[0].info.status == "RUNNING":  # its epochs so far
                history = client.get_metric_history(found[0].info.run_id, f"{EPOCH}{KWH_CODECARBON}")
                row["kwh"] = sum(point.value for point in history) if history else ""
            if "forecast_duration_s" in m and found[0].info.status == "RUNNING":
                spent = time.time() - found[0].info.start_time / 1000
                row["eta_min"] = max(0.0, (m["forecast_duration_s"] - spent) / 60)
        rows.append(row)
    print(f"launch {record['folder']} ({record['executor']}, {len(rows)} jobs):")
    for r in rows:
        kwh = f"{r['kwh'] * 1000:.2f} Wh" if r["kwh"] != "" else "-"
        eta = f"{r['eta_min']:.0f} min" if r["eta_min"] != "" else "-"
        print(f"  {r['run']:<28} job {r['job_id']:<10} {r['state']:<10} epoch {r['epoch'] or '-':<4} "
              f"ETA {eta:<8} {kwh} (CodeCarbon)" + (f"  last error: {r['error']}" if r["error"] else ""))
    return rows
