"""Stage train@<variant>: train a variant's models with the replication's recipe.

A variant has one model per target (each with its own sampler, optimiser, early stopping and best
checkpoint, as the replication trains them) or one joint model with a mask head per target. The
models are trained side by side, epoch by epoch, so one validation pass per epoch serves them all;
a model that has early-stopped is skipped in later epochs.

Recipe: Adam at lr x global batch / lr_batch; x lr_decay every lr_decay_every epochs (or Open-
Unmix's ReduceLROnPlateau on the validation loss); gradient-norm clipping; gradient accumulation;
L1 loss on the waveform (t), on the real and imaginary STFT (tf) or both (t+tf), or MSE on
magnitudes (Open-Unmix); validation uSDR on whole validation tracks after each epoch; early
stopping on validation uSDR or loss with a patience, within max_epochs.

Outputs: models/<variant>/{last.pt, best.pt, energy.json}, metrics/train/<variant>.json and the
per-epoch history plots/train/<variant>.tsv. An interrupted training resumes from last.pt when run
again with the same config; energy.json keeps the energy of every execution of it.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model import build_separator, count_parameters
from pipeline import energy, paths, plan, tracking
from pipeline.audio import Manifest, load_manifest, load_stems, write_json
from pipeline.config import TARGETS, Config, TrainConfig
from pipeline.errors import UserError
from pipeline.metrics import usdr
from pipeline.sampler import TrackStore, TrainingSampler
from pipeline.separate import separate

CHECKPOINT_FORMAT = "sepcost-checkpoint/1"
UMX_STATS_ITEMS = 256  # training excerpts that initialise Open-Unmix's input scaling


# ----------------------------------------------------------------------------- pieces


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, full precision on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fingerprint(cfg: Config) -> str:
    """What decides a training's result: a checkpoint of another fingerprint is not resumed."""
    decisive = {k: v for k, v in cfg.as_dict().items() if k in ("seed", "targets", "data", "sad", "stft", "model", "train")}
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


def learning_rate(train: TrainConfig) -> float:
    """The recipe's lr, scaled linearly with the global batch (batch x accumulation steps)."""
    return train.lr * train.batch_size * train.accum_steps / train.lr_batch


def loss_fn(kind: str, model, wave: torch.Tensor, spec: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Training loss between estimates and reference sources (batch, targets, channels, samples)."""
    loss = wave.new_zeros(())
    if kind in ("t", "t+tf"):
        loss = loss + (wave - reference).abs().mean()
    if kind in ("tf", "t+tf", "mse_mag"):
        ref_spec = model.stft(reference)
        if kind == "mse_mag":
            return (spec.abs() - ref_spec.abs()).square().mean()
        loss = loss + (spec.real - ref_spec.real).abs().mean() + (spec.imag - ref_spec.imag).abs().mean()
    return loss


@dataclass
class Slot:
    """One model being trained: a per-target model, or the joint model."""

    spec: dict
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    sampler: TrainingSampler
    best_score: float = -math.inf  # higher is better: uSDR, or minus the loss
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped: bool = False
    best_state: dict = field(default_factory=dict)

    @property
    def targets(self) -> list[str]:
        return self.spec["targets"]

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped": self.stopped,
            "best_state": self.best_state,
        }

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for key in ("best_score", "best_epoch", "bad_epochs", "stopped", "best_state"):
            setattr(self, key, state[key])


def make_slot(cfg: Config, spec: dict, manifest: Manifest, store: TrackStore, device: torch.device, index: int) -> Slot:
    torch.manual_seed(cfg.seed + index)
    model = build_separator(spec).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate(cfg.train), weight_decay=cfg.train.weight_decay)
    if cfg.train.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.train.plateau_factor, patience=cfg.train.plateau_patience
        )
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.train.lr_decay_every, gamma=cfg.train.lr_decay)
    target = spec["targets"][0] if len(spec["targets"]) == 1 else None
    sampler = TrainingSampler(cfg, manifest, target=target, store=store)
    return Slot(spec, model, optimizer, scheduler, sampler)


def _init_umx_stats(slot: Slot) -> None:
    """Open-Unmix scales its input by training-set statistics: take them from training excerpts."""
    from model.umx import input_statistics

    items = min(UMX_STATS_ITEMS, len(slot.sampler))
    batches = (slot.sampler[i][0][None] for i in range(items))
    mean, std = input_statistics(slot.model, batches)
    slot.model.set_input_stats(mean, std)


# ----------------------------------------------------------------------------- epochs


def train_step(slot: Slot, mixture: torch.Tensor, sources: torch.Tensor, cfg: Config, device, update: bool) -> float:
    """Forward and backward one batch; `update` applies the accumulated gradients (clipped)."""
    train = cfg.train
    mixture, sources = mixture.to(device), sources.to(device)
    reference = sources[:, [TARGETS.index(t) for t in slot.targets]]
    with autocast(device):
        wave, spec = slot.model(mixture)
    loss = loss_fn(train.loss, slot.model, wave.float(), spec, reference)
    (loss / train.accum_steps).backward()
    if update:
        if train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(slot.model.parameters(), train.grad_clip)
        slot.optimizer.step()
        slot.optimizer.zero_grad(set_to_none=True)
    return loss.item()


def batches(slot: Slot, cfg: Config, epoch: int):
    """The epoch's batches of a model's sampler."""
    slot.sampler.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(
        slot.sampler, batch_size=cfg.train.batch_size, drop_last=True, num_workers=cfg.train.num_workers
    )
    return iter(loader)


@contextlib.contextmanager
def side_by_side(count: int, device: torch.device):
    """A thread pool for `count` independent models on the CPU, one intra-op thread each.

    The models of a CPU-sized study are too small for torch's intra-op threads (a step takes as
    long on one thread as on two), so independent models trained or run side by side in threads,
    which torch's kernels let run in parallel, use the cores instead. On a GPU, one worker.
    Results do not depend on the number of workers.
    """
    cores = os.cpu_count() or 1
    workers = 1 if device.type != "cpu" else max(1, min(count, cores))
    threads = torch.get_num_threads()
    if workers > 1:
        torch.set_num_threads(max(1, cores // workers))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="sepcost")
    try:
        yield pool, workers
    finally:
        pool.shutdown()
        torch.set_num_threads(threads)


def _uses_dropout(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Dropout) or (isinstance(m, torch.nn.RNNBase) and m.dropout > 0)
               for m in model.modules())


def train_steps(active: list[Slot], cfg: Config, epoch: int, device: torch.device, steps: int, desc: str) -> dict[str, float]:
    """`steps` steps of each model on its epoch's batches, the models side by side.

    Returns the mean training loss of each model, by its name.
    """
    train = cfg.train
    bar = tqdm(total=steps * len(active), desc=desc, unit="step", leave=False)

    def run(slot: Slot) -> float:
        slot.model.train()
        loader = batches(slot, cfg, epoch)
        losses = []
        for step in range(steps):
            update = (step + 1) % train.accum_steps == 0 or step + 1 == steps
            losses.append(train_step(slot, *next(loader), cfg, device, update))
            bar.update()
        return float(np.mean(losses))

    # Dropout draws from torch's one global generator: models that use it run one after the
    # other, so that their draws (and results) do not depend on thread timing.
    parallel = 1 if any(_uses_dropout(s.model) for s in active) else len(active)
    with side_by_side(parallel, device) as (pool, _):
        losses = list(pool.map(run, active))
    bar.close()
    return {_slot_name(s): loss for s, loss in zip(active, losses)}


@torch.no_grad()
def validate(models: list, tracks: list[dict], cfg: Config, sample_rate: int, device, desc="validation") -> dict:
    """Whole-track separation of validation tracks: uSDR and loss per target, means over tracks.

    The loss is the training loss on whole tracks, with the STFT of the estimate standing for the
    masked STFT; `valid_loss` is its mean over targets.
    """
    targets = [t for m in models for t in m.spec["targets"]]
    owner = [m for m in models for _ in m.spec["targets"]]

    def score(track: dict) -> dict:
        estimates = separate(models, torch.from_numpy(track["mixture"]), cfg.eval, sample_rate, device)
        reference = torch.from_numpy(np.stack([track[t] for t in targets]))
        out = {}
        for i, (t, value) in enumerate(zip(targets, usdr(reference, estimates))):
            est, ref = estimates[None, i : i + 1], reference[None, i : i + 1]
            spec = owner[i].stft(est) if cfg.train.loss != "t" else None
            out[f"valid_usdr_{t}"] = float(value)
            out[f"valid_loss_{t}"] = float(loss_fn(cfg.train.loss, owner[i], est, spec, ref))
        return out

    with side_by_side(len(tracks), torch.device(device)) as (pool, _):
        per_track = list(tqdm(pool.map(score, tracks), total=len(tracks), desc=desc, unit="track", leave=False))
    scores = {k: [row[k] for row in per_track] for k in per_track[0]}
    result = {k: float(np.mean(v)) for k, v in scores.items()}
    result["valid_loss"] = float(np.mean([result[f"valid_loss_{t}"] for t in targets]))
    return result


def load_validation_tracks(cfg: Config, manifest: Manifest) -> list[dict]:
    tracks = manifest.split("valid")
    if cfg.train.valid_tracks:
        tracks = tracks[: cfg.train.valid_tracks]
    if not tracks:
        raise UserError(f"{paths.MANIFEST}: no validation tracks to validate on")
    return [load_stems(manifest, t, ("mixture", *cfg.targets)) for t in tqdm(tracks, desc="loading validation tracks", leave=False)]


def mixture_usdr(tracks: list[dict], targets) -> dict[str, float]:
    """Validation uSDR of the mixture itself as every target's estimate, mean over tracks.

    With silence (0 dB by definition) it is one of the trivial estimates that a model which learned
    must beat: the report's learning check compares every variant against the better of the two.
    """
    return {f"mixture_valid_usdr_{t}": float(np.mean([usdr(track[t], track["mixture"]) for track in tracks]))
            for t in targets}


# ----------------------------------------------------------------------------- checkpoints


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_best(path: Path, cfg: Config, slots: list[Slot]) -> None:
    """A self-describing checkpoint: each model's spec travels with its best weights."""
    _atomic_save(
        {
            "format": CHECKPOINT_FORMAT,
            "variant": cfg.variant,
            "config": cfg.as_dict(),
            "models": [
                {"spec": s.spec, "state_dict": s.best_state or s.model.state_dict(), "best_epoch": s.best_epoch}
                for s in slots
            ],
        },
        path,
    )


def load_models(path: Path, device="cpu") -> list[torch.nn.Module]:
    """The models of a best.pt checkpoint, ready for inference; no params file needed."""
    ckpt = torch.load(path, map_location=device, weights_only=False)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a sepcost checkpoint (expected models/<variant>/best.pt)")
    models = []
    for entry in ckpt["models"]:
        model = build_separator(entry["spec"])
        model.load_state_dict(entry["state_dict"])
        models.append(model.to(device).eval())
    return models


# ----------------------------------------------------------------------------- the stage


def run(study: Config, variant: str) -> dict:
    cfg = study.resolve(variant)
    device = pick_device(cfg.train.device)
    manifest = load_manifest()
    out = paths.model_dir(variant)
    out.mkdir(parents=True, exist_ok=True)
    last_path, energy_path = out / "last.pt", out / "energy.json"
    fp = fingerprint(cfg)

    resume = None
    if last_path.exists():
        saved = torch.load(last_path, map_location="cpu", weights_only=False)
        if saved.get("fingerprint") == fp and not saved.get("complete"):
            resume = saved
    spent = {}
    if resume and energy_path.exists():
        recorded = json.loads(energy_path.read_text())
        if recorded.get("fingerprint") == fp:
            spent = recorded["totals"]

    store = TrackStore(manifest, manifest.split("train"), cfg.data.cache_gb)
    slots = [make_slot(cfg, spec, manifest, store, device, i) for i, spec in enumerate(plan.separator_specs(cfg))]
    history: list[dict] = []
    start_epoch = 0
    if resume:
        for slot, state in zip(slots, resume["slots"]):
            slot.restore(state)
        history, start_epoch = resume["history"], resume["epoch"]
        print(f"train: resuming {variant} after epoch {start_epoch} from {last_path}")
    elif cfg.model.arch == "umx":
        for slot in slots:
            _init_umx_stats(slot)
    valid = load_validation_tracks(cfg, manifest)
    params = sum(count_parameters(s.model) for s in slots)

    tracking.configure(cfg.tracking)
    with tracking.run(cfg, stage=f"train@{variant}") as mlrun:
        if resume:
            mlrun.set_tags({"resumed_from": resume.get("mlflow_run_id", ""), "resumed_after_epoch": str(start_epoch)})
        meter = energy.EnergyMeter(cfg.energy, out_dir=out, project_name=f"train@{variant}", previous=spent)
        mlrun.watch_energy(meter)
        try:
            with meter:
                for epoch in range(start_epoch, cfg.train.max_epochs):
                    if all(s.stopped for s in slots):
                        break
                    row = _epoch(slots, cfg, epoch, device, valid, manifest.sample_rate, meter, history)
                    history.append(row)
                    mlrun.log_epoch(epoch, row)
                    _atomic_save(
                        {"fingerprint": fp, "epoch": epoch + 1, "slots": [s.state() for s in slots], "history": history,
                         "complete": False, "mlflow_run_id": mlrun.run_id},
                        last_path,
                    )
                    save_best(out / "best.pt", cfg, slots)
                    write_json(energy_path, {"fingerprint": fp, "totals": meter.totals()})
        finally:
            write_json(energy_path, {"fingerprint": fp, "totals": meter.totals()})

        _atomic_save(
            {"fingerprint": fp, "epoch": len(history), "slots": [s.state() for s in slots], "history": history,
             "complete": True, "mlflow_run_id": mlrun.run_id},
            last_path,
        )
        totals = meter.totals()
        result = _summary(cfg, slots, history, totals, params, mlrun.run_id, meter)
        result.update(mixture_usdr(valid, cfg.targets))
        # The per-epoch curves keep their names; the scores of the best epochs are best_valid_*.
        mlrun.log_metrics({
            (f"best_{k}" if k.startswith("valid_") else k): v for k, v in result.items() if isinstance(v, (int, float))
        })
        write_json(paths.train_metrics(variant), result)
        _write_history(paths.train_history(variant), history)
        mlrun.log_artifact(paths.train_history(variant))
        mlrun.log_artifact(paths.train_metrics(variant))
        config_path = out / "config.json"
        write_json(config_path, cfg.as_dict())
        mlrun.log_artifact(config_path)
    print(
        f"train: {variant}: valid uSDR {result['valid_usdr_avg']:.2f} dB after {result['epochs']} epochs, "
        f"{result['energy_kwh_codecarbon'] * 1000:.2f} Wh (CodeCarbon), {result['energy_kwh_green_algorithms'] * 1000:.2f} Wh (Green Algorithms)"
    )
    return result


def _slot_name(slot: Slot) -> str:
    return slot.targets[0] if len(slot.targets) == 1 else "joint"


def _epoch(slots, cfg, epoch, device, valid, sample_rate, meter, history) -> dict:
    """Train and validate every active model for one epoch; update early stopping and the lr."""
    started = time.perf_counter()
    active = [s for s in slots if not s.stopped]
    with meter.task(f"epoch {epoch + 1}") as task:
        steps = cfg.train.epoch_items // cfg.train.batch_size
        losses = train_steps(active, cfg, epoch, device, steps, desc=f"epoch {epoch + 1}/{cfg.train.max_epochs}")
        scores = validate([s.model for s in active], valid, cfg, sample_rate, device)
    row = {"epoch": epoch + 1, "train_loss": float(np.mean(list(losses.values())))}
    row.update({f"train_loss_{name}": value for name, value in losses.items()})
    for slot in active:
        usdr_score = float(np.mean([scores[f"valid_usdr_{t}"] for t in slot.targets]))
        loss = float(np.mean([scores[f"valid_loss_{t}"] for t in slot.targets]))
        monitored = usdr_score if cfg.train.monitor == "usdr" else -loss
        if monitored > slot.best_score:
            slot.best_score, slot.best_epoch, slot.bad_epochs = monitored, epoch + 1, 0
            slot.best_state = {k: v.detach().cpu().clone() for k, v in slot.model.state_dict().items()}
        else:
            slot.bad_epochs += 1
            slot.stopped = slot.bad_epochs >= cfg.train.patience
        if cfg.train.scheduler == "plateau":
            slot.scheduler.step(loss)
        else:
            slot.scheduler.step()
    # A model that stopped earlier keeps the scores of its best epoch in the history.
    for slot in slots:
        if slot not in active:
            best = history[slot.best_epoch - 1]
            scores.update({k: best[k] for t in slot.targets for k in (f"valid_usdr_{t}", f"valid_loss_{t}")})
    scores["valid_loss"] = float(np.mean([scores[f"valid_loss_{t}"] for t in cfg.targets]))
    row.update(scores)
    row["valid_usdr_avg"] = float(np.mean([row[f"valid_usdr_{t}"] for t in cfg.targets]))
    row["lr"] = float(np.mean([s.optimizer.param_groups[0]["lr"] for s in slots]))
    row["epoch_s"] = time.perf_counter() - started
    row["epoch_energy_kwh_codecarbon"] = task.energy_kwh_codecarbon
    row["epoch_energy_kwh_green_algorithms"] = task.energy_kwh_green_algorithms
    return row


def _summary(cfg, slots, history, totals, params, run_id, meter) -> dict:
    result = {"variant": cfg.variant, "epochs": len(history), "params": int(params), "params_m": params / 1e6}
    for slot in slots:
        best = history[slot.best_epoch - 1] if slot.best_epoch > 0 else history[-1]
        for t in slot.targets:
            result[f"best_epoch_{t}"] = best["epoch"]
            result[f"valid_usdr_{t}"] = best[f"valid_usdr_{t}"]
    result["best_epoch"] = max(result[f"best_epoch_{t}"] for t in cfg.targets)
    result["valid_usdr_avg"] = float(np.mean([result[f"valid_usdr_{t}"] for t in cfg.targets]))
    result.update(totals)  # both methods' totals and their CPU / GPU / RAM parts
    result["energy_methods"] = meter.methods
    result["mlflow_run_id"] = run_id
    return result


def _write_history(path: Path, history: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in history for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, delimiter="\t")
        writer.writeheader()
        writer.writerows(history)
