"""Stage train@<variant>: train a variant's models with the replication's recipe.

A variant has one model per target (each with its own sampler, optimiser, early stopping and best
checkpoint, as the replication trains them) or one joint model with a mask head per target. The
models are trained side by side, epoch by epoch, so one validation pass per epoch serves them all;
a model that has early-stopped is skipped in later epochs (`pipeline.training`).

Outputs: models/<variant>/{last.pt, best.pt, energy.json, config.json}, metrics/train/<variant>.json
and the per-epoch history plots/train/<variant>.tsv. An interrupted training resumes from last.pt
when run again with the same fingerprint (`training.resume`); energy.json keeps the energy of
every execution of it. `run_ranks` runs the command as data-parallel ranks under torchrun's agent.
"""
from __future__ import annotations

import csv
import math
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

import model
from model import VariantSeparator, count_parameters
from pipeline import checkpoint, paths, tracking
from pipeline.atomic import replacing, write_json
from pipeline.config import Config, resolve
from pipeline.data.manifest import load_manifest
from pipeline.data.sampler import training_store
from pipeline.energy.meter import EnergyMeter
from pipeline.errors import Terminated, UserError
from pipeline.names import (
    ENERGY_KEYS,
    KWH_CODECARBON,
    KWH_GREEN_ALGORITHMS,
    LR_EFFECTIVE,
    PARAMS_M,
    TIME_SHARE,
    stage_name,
)
from pipeline.runtime import gpu_ordinals, pick_device
from pipeline.specs import separator_specs
from pipeline.training import forecast, recipe
from pipeline.training.distributed import World, random_state, restore_random_state
from pipeline.training.loop import STEPS_S, Stopper, run_epoch
from pipeline.training.preemption import SIGNALS, TORCHRUN_SHUTDOWN_S, StopSignals
from pipeline.training.resume import fingerprint, resumable
from pipeline.training.slot import Slot, init_umx_stats, make_slot
from pipeline.training.validation import VALID, load_validation_tracks, mixture_usdr


def run(study: Config, variant: str, seed: int | None = None) -> dict:
    """Train the run (variant, seed) on this process, or as one rank of a torchrun training."""
    cfg = resolve(study, variant, seed)
    world = World.from_env(pick_device(cfg.runtime.device))
    try:
        return _train(cfg, world)
    finally:
        world.close()


def run_ranks(params: str, variant: str, seed: int | None, nproc: int) -> None:
    """`train --nproc N`: this command again as N data-parallel ranks on this machine, under
    torchrun's agent in this process. Every stop signal of a training (`training.preemption`),
    SLURM's USR1 and USR2 included, reaches every rank through the agent, which waits for them to
    checkpoint (the ranks take the agent's copy and the scheduler's own as one stop); the command
    then exits as a rank does (128 + the signal's number), and a failed rank is named."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run as torchrun

    argv = ["--standalone", f"--nproc-per-node={nproc}",
            f"--signals-to-handle={','.join(signal.Signals(s).name for s in SIGNALS)}",
            f"--shutdown-timeout={TORCHRUN_SHUTDOWN_S}",
            "-m", "pipeline.cli", "train", "--variant", variant, "--params", params]
    if seed is not None:
        argv += ["--seed", str(seed)]
    try:
        torchrun(parse_args(argv))
    except SignalException as err:
        raise Terminated(err.sigval) from None
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        if failure.exitcode - 128 in SIGNALS:  # the ranks were stopped by a signal the agent did not get
            raise Terminated(failure.exitcode - 128) from None
        raise UserError(f"rank {rank} of {nproc} failed with exit code {failure.exitcode} "
                        "(its error is printed above)") from None


@contextmanager
def _metered(cfg: Config, world: World, device: torch.device, out: Path, spent: dict):
    """Rank 0's MLflow run and meter; a meter without a run on the first rank of every other node
    (their energy is gathered into rank 0's); nothing on the other ranks. A node's meter covers its
    CPU and RAM once, the GPUs of its ranks (not every GPU of the node), and for Green Algorithms
    the process tree of all its ranks (their parent, torchrun's agent)."""
    root = os.getppid() if world.distributed else None
    gpus = gpu_ordinals(device, per_node=world.local_size)
    if world.main:
        with tracking.metered(cfg, stage_name("train", cfg.run), out, previous=spent, process_root=root,
                              ranks=world.size, gpus=gpus) as (mlrun, meter):
            meter.methods.update(world_size=world.size, nodes=world.nodes,
                                 ranks=("one meter per node: its CPU and RAM once, the GPUs of its ranks"
                                        if world.distributed else "one process"))
            yield mlrun, meter
    elif world.node_leader:
        with EnergyMeter(cfg.energy, out_dir=out / f"rank{world.rank}", project_name=stage_name("train", cfg.run),
                         process_root=root, gpus=gpus) as meter:
            yield None, meter
    else:
        yield None, None


def _train(cfg: Config, world: World) -> dict:
    device = world.device(pick_device(cfg.runtime.device))
    recipe.require_precisions(cfg, device)
    manifest = load_manifest()
    out = paths.model_dir(cfg.run)
    out.mkdir(parents=True, exist_ok=True)
    last_path, energy_path = out / "last.pt", out / "energy.json"
    fp = fingerprint(cfg, manifest)
    resume, spent = resumable(last_path, energy_path, fp)
    if resume and resume.get("world_size", 1) != world.size:
        raise UserError(f"{last_path}: written by a training on {resume.get('world_size', 1)} ranks, resumed on "
                        f"{world.size}: resume it on as many (the items of each rank depend on it), or delete it")

    # set-up included; a stop signal from here on ends the training at its next update (no step begins after it);
    # the store's copy of the stems in shared memory is let go at the end
    with _metered(cfg, world, device, out, spent) as (mlrun, meter), StopSignals() as signals, \
            training_store(cfg, manifest) as store, checkpoint.Writer() as writer:
        if resume and mlrun:
            mlrun.set_tags({"resumed_from": resume.get("mlflow_run_id", ""), "resumed_after_epoch": str(resume["epoch"])})
            tracking.close_lost(cfg.tracking, resume.get("mlflow_run_id"), closed_by=mlrun.run_id)
        if mlrun:
            mlrun.log_dataset(**manifest.dataset(), context="training")
        slots = [make_slot(cfg, spec, manifest, store, device, i, ranks=world.size)
                 for i, spec in enumerate(separator_specs(cfg))]
        history: list[dict] = []
        start_epoch = 0
        per_epoch: dict = {}  # the first epoch's cost, from which the forecast is scaled
        progress: dict = {}  # how far each model got in an epoch a stop signal interrupted
        if resume:
            for slot, state in zip(slots, resume["slots"]):
                slot.restore(state)
            history, start_epoch, per_epoch = resume["history"], resume["epoch"], resume.get("per_epoch", {})
            progress = resume.get("progress", {})
            restore_random_state(resume["random"][world.rank], device)
            where = f"in epoch {start_epoch + 1}" if progress else f"after epoch {start_epoch}"
            if world.main:
                print(f"train: resuming {cfg.run} {where} from {last_path}")
        elif cfg.model.arch == "umx":
            for slot in slots:
                init_umx_stats(slot)
        valid = load_validation_tracks(cfg, manifest) if world.main else []
        params = sum(count_parameters(s.model) for s in slots)
        stopper = Stopper(signals, world)

        def save_state(complete: bool, best: bool = False) -> None:
            """last.pt, with every rank's random generators (and with `best` best.pt), queued for
            the writer once the previous epoch's are written; the energy first: a checkpoint on
            disk always has its execution's energy recorded."""
            # the other nodes' energy so far, into rank 0's meter
            elsewhere = world.sum_over_nodes(meter.run_totals() if meter and not world.main else {}, ENERGY_KEYS)
            if world.main:
                meter.include(elsewhere)
            randomness = world.gather(random_state(device))
            if world.main:
                writer.wait()
                write_json(energy_path, {"fingerprint": fp, "totals": meter.totals()})
                state = {"fingerprint": fp, "epoch": len(history), "slots": [s.state() for s in slots],
                         "history": history, "per_epoch": per_epoch, "complete": complete, "progress": progress,
                         "random": randomness, "world_size": world.size, "mlflow_run_id": mlrun.run_id}
                writer.save({last_path: state, **({out / "best.pt": _best(cfg, slots)} if best else {})})

        try:
            for epoch in range(start_epoch, cfg.train.max_epochs):
                if all(s.stopped for s in slots):
                    break
                row, progress = run_epoch(slots, cfg, epoch, device, valid, manifest.sample_rate, meter, history,
                                          world, stopper, progress)
                if row is None:
                    started = time.perf_counter()
                    save_state(complete=False)
                    writer.wait()
                    if world.main:
                        print(f"train: {cfg.run} stopped in epoch {epoch + 1} (checkpoint written in "
                              f"{time.perf_counter() - started:.2f} s); `sepcost train` resumes it there")
                    raise Terminated(stopper.signum)
                history.append(row)
                if mlrun and not per_epoch:  # the first epoch, with its bookkeeping: what the forecast scales
                    per_epoch = {k: meter.totals()[k] for k in forecast.FIGURES}
                    mlrun.log_epoch(epoch, {**history[-1], **forecast.forecast(per_epoch, cfg.train)})
                elif mlrun:
                    mlrun.log_epoch(epoch, history[-1])
                save_state(complete=False, best=True)
        finally:
            if world.main:
                write_json(energy_path, {"fingerprint": fp, "totals": meter.totals()})

        save_state(complete=True)
        writer.wait()
        if not world.main:
            return {}
        result = _summary(cfg, slots, history, params, world)
        result.update(meter.totals())  # both methods' totals and their CPU / GPU / RAM parts
        if per_epoch:
            predicted = forecast.forecast(per_epoch, cfg.train)
            result.update(predicted)
            result.update(forecast.errors(per_epoch, len(history), result, predicted))
        result["energy_methods"] = meter.methods
        result["energy_inputs"] = meter.ga_inputs()  # Green Algorithms' runtime, cores, TDPs, usages, memory
        result["mlflow_run_id"] = mlrun.run_id
        result.update(mixture_usdr(valid, cfg.targets))
        # The per-epoch curves keep their names; the scores of the best epochs are best_valid_*.
        mlrun.log_metrics({
            (f"best_{k}" if k.startswith(VALID) else k): v for k, v in result.items() if isinstance(v, (int, float))
        })
        write_json(paths.train_metrics(cfg.run), result)
        _write_history(paths.train_history(cfg.run), history)
        mlrun.log_artifact(paths.train_history(cfg.run))
        mlrun.log_artifact(paths.train_metrics(cfg.run))
        config_path = out / "config.json"
        write_json(config_path, cfg.as_dict())
        mlrun.log_artifact(config_path)
        # the best checkpoint, loadable by mlflow.pytorch.load_model with no project code installed
        mlrun.log_pytorch_model(VariantSeparator(checkpoint.load_models(out / "best.pt")), "separator",
                                code_paths=[str(Path(model.__file__).parent)])
    print(
        f"train: {cfg.run}: valid uSDR {result[f'{VALID}usdr_avg']:.2f} dB after {result['epochs']} epochs, "
        f"{result[KWH_CODECARBON] * 1000:.2f} Wh (CodeCarbon), {result[KWH_GREEN_ALGORITHMS] * 1000:.2f} Wh (Green Algorithms)"
    )
    return result


def _best(cfg: Config, slots: list[Slot]) -> dict:
    """best.pt's content: each model's spec with its best weights (its current ones before a best epoch)."""
    return checkpoint.models_file(cfg.variant, cfg.as_dict(), [
        {"spec": s.spec, "state_dict": s.best_state or s.model.state_dict(), "best_epoch": s.best_epoch}
        for s in slots
    ])


def _summary(cfg: Config, slots: list[Slot], history: list[dict], params: int, world: World) -> dict:
    """The training's figures: epochs, parameters, lr, ranks, and each target's best validation uSDR."""
    result = {"variant": cfg.variant, "seed": cfg.seed, "run": cfg.run, "epochs": len(history), "params": int(params),
              PARAMS_M: params / 1e6, LR_EFFECTIVE: cfg.train.effective_lr(world.size),
              "global_batch": cfg.train.global_batch(world.size), "world_size": world.size}
    for slot in slots:
        best = history[slot.best_epoch - 1] if slot.best_epoch > 0 else history[-1]
        for t in slot.targets:
            result[f"best_epoch_{t}"] = best["epoch"]
            result[f"{VALID}usdr_{t}"] = best[f"{VALID}usdr_{t}"]
    result["best_epoch"] = max(result[f"best_epoch_{t}"] for t in cfg.targets)
    # each model's share of the step time, by which the report splits the training's energy
    seconds = {s.name: sum(row.get(f"{STEPS_S}{s.name}", 0.0) for row in history) for s in slots}
    total = sum(seconds.values())
    result.update({f"{TIME_SHARE}{name}": (t / total if total > 0 else math.nan) for name, t in seconds.items()})
    result[f"{VALID}usdr_avg"] = float(np.mean([result[f"{VALID}usdr_{t}"] for t in cfg.targets]))
    return result


def _write_history(path: Path, history: list[dict]) -> None:
    columns = list(dict.fromkeys(k for row in history for k in row))
    with replacing(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, delimiter="\t")
        writer.writeheader()
        writer.writerows(history)
