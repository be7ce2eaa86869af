"""The params schema: one frozen dataclass per section, with the type, range and default of every key.

The defaults are the replication's paper study (MUSDB18-HQ, the paper's sizes and schedule): this
is their one home. `params.yaml` holds the CPU copy's overrides of them and `configs/paper.yaml`
only what the paper study needs from its user (where the data is); the paper's variants are in
`pipeline/config/variants.py`. Imports only `pipeline.names`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from pipeline.energy.green_algorithms import MEMORY_W_PER_GB
from pipeline.names import TARGETS, run_key


def num(default, lo=None, hi=None, lo_open=False):
    """A numeric field with the inclusive range [lo, hi] (or (lo, hi] when lo_open) it must lie in."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "lo_open": lo_open})


@dataclass(frozen=True)
class SyntheticConfig:
    """The built-in data set (data.source: synthetic), written to data/prepared/musdb."""

    train_songs: int = num(24, 1)
    valid_songs: int = num(8, 1)
    test_songs: int = num(8, 1)
    song_s: float = num(12.0, 6.0, 600.0)


@dataclass(frozen=True)
class DataConfig:
    source: Literal["synthetic", "musdb18hq", "musdb18"] = "musdb18hq"
    root: str | None = None  # the user's MUSDB18(-HQ) folder; unused for synthetic data
    sample_rate: int = num(44100, 8000, 192000)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass(frozen=True)
class SadConfig:
    """Source activity detection: windows whose chunks are mostly above an RMS threshold."""

    window_s: float = num(6.0, 0.0, lo_open=True)
    hop_s: float = num(3.0, 0.0, lo_open=True)
    chunks: int = num(10, 1)  # RMS chunks per window
    quantile: float = num(0.15, 0.0, 1.0)  # threshold = this quantile of the chunk RMS ...
    floor: float = num(1e-3, 0.0)  # ... floored at this value
    scope: Literal["window", "track"] = "window"  # the replication's code | closer to the original paper


@dataclass(frozen=True)
class StftConfig:
    n_fft: int = num(2048, 16)
    hop: int = num(512, 1)


@dataclass(frozen=True)
class BsrnnConfig:
    n: int = num(64, 1)  # feature dimension N
    r: int = num(8, 1)  # number of band-and-sequence blocks R
    mu: int = num(4, 1)  # masker hidden factor
    time_layer: Literal["lstm", "gru", "conv"] = "lstm"
    band_layer: Literal["lstm", "gru", "conv"] = "lstm"
    stereo: Literal["mono", "naive", "tac"] = "mono"  # channels as batch | stacked | TAC
    tac_activation: Literal["tanh", "prelu"] = "prelu"
    attention_heads: int = num(0, 0)  # Na; 0 disables full-band attention
    attention_dim: int = num(0, 0)  # Ea
    heads: int = num(1, 1)  # H of the multi-head module
    band_split: Literal["target", "joint"] = "target"  # per-target recipe or the joint 57 bands
    conv_kernel: int = num(3, 1)  # BSCNN's dilated convolutions
    conv_dilations: int = num(4, 1)
    # Training memory: the first `checkpoint_blocks` of the R blocks recompute their activations in
    # backward instead of storing them (0 = none, >= r = all); same results, more compute: 4 of 8
    # blocks take ~0.55x the memory for ~+10 % time at the paper's size.
    checkpoint_blocks: int = num(4, 0)


@dataclass(frozen=True)
class UmxConfig:
    hidden: int = num(512, 1)
    layers: int = num(3, 1)
    bidirectional: bool = True
    max_bin_hz: float = num(16000.0, 0.0, lo_open=True)


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["bsrnn", "umx"] = "bsrnn"
    joint: bool = False  # one model with a mask head per target instead of one model per target
    bsrnn: BsrnnConfig = field(default_factory=BsrnnConfig)
    umx: UmxConfig = field(default_factory=UmxConfig)


@dataclass(frozen=True)
class TrainConfig:
    chunk_s: float = num(3.0, 0.0, lo_open=True)
    batch_size: int = num(8, 1)
    accum_steps: int = num(1, 1)
    lr: float = num(1e-3, 0.0, lo_open=True)  # at a global batch of `lr_batch`; scaled linearly
    lr_batch: int = num(16, 1)
    lr_decay: float = num(0.98, 0.0, 1.0, lo_open=True)
    lr_decay_every: int = num(2, 1)  # epochs
    grad_clip: float = num(5.0, 0.0)  # 0 disables clipping
    loss: Literal["t", "tf", "t+tf", "mse_mag"] = "t+tf"  # waveform | STFT | both | Open-Unmix's
    epoch_items: int = num(10000, 1)
    max_epochs: int = num(200, 1)
    patience: int = num(10, 1)
    monitor: Literal["usdr", "loss"] = "usdr"
    sampler: Literal["sad", "random"] = "sad"  # SAD segments | Open-Unmix-like random excerpts
    silent_source_p: float = num(0.1, 0.0, 1.0)
    silent_target_p: float = num(0.0, 0.0, 1.0)
    gain_db: float = num(10.0, 0.0)  # SAD mode: gain U[-gain_db, gain_db]
    gain_lo: float = num(0.25, 0.0)  # random mode: linear gain U[gain_lo, gain_hi]
    gain_hi: float = num(1.25, 0.0)
    channel_swap_p: float = num(0.5, 0.0, 1.0)
    weight_decay: float = num(0.0, 0.0)
    scheduler: Literal["step", "plateau"] = "step"  # step: x lr_decay every lr_decay_every epochs
    plateau_factor: float = num(0.3, 0.0, 1.0, lo_open=True)  # Open-Unmix's ReduceLROnPlateau
    plateau_patience: int = num(80, 1)
    valid_tracks: int = num(0, 0)  # 0 = every validation track
    # the training steps' precision (pipeline/precision.py); the replication trained in fp32
    # (Lightning's default, on V100s, which have no native bf16)
    precision: Literal["fp32", "bf16"] = "fp32"

    def global_batch(self, ranks: int = 1) -> int:
        """Items per optimiser update: the batch of each of `ranks` data-parallel processes times
        the ranks and the accumulation steps."""
        return self.batch_size * ranks * self.accum_steps

    def effective_lr(self, ranks: int = 1) -> float:
        """The lr the optimiser starts from: `lr` scaled linearly from `lr_batch` to the global batch."""
        return self.lr * self.global_batch(ranks) / self.lr_batch

    def soonest_stop(self) -> int:
        """The fewest epochs the schedule allows: early stopping can end it after `patience` epochs
        without improvement, the first epoch always being the best so far."""
        return min(self.patience + 1, self.max_epochs)

    def can_stop_early(self) -> bool:
        """Whether early stopping can end the training before its last epoch."""
        return self.soonest_stop() < self.max_epochs

    def steps_per_epoch(self, ranks: int = 1) -> int:
        """Updates x accumulation steps per epoch: `epoch_items` in batches of batch x ranks."""
        return self.epoch_items // (self.batch_size * ranks)


@dataclass(frozen=True)
class EvalConfig:
    mode: Literal["crossfade", "ola"] = "crossfade"  # 10 s with a 10 % linear cross-fade | overlap-add
    segment_s: float = num(10.0, 0.0, lo_open=True)
    overlap: float = num(0.1, 0.0, 0.5)  # crossfade mode: fraction of a segment
    hop_s: float = num(5.0, 0.0, lo_open=True)  # ola mode
    batch_chunks: int = num(4, 1)
    bsseval: Literal["torch", "museval"] = "torch"  # fast and identical to museval | museval itself
    wiener_iterations: int = num(0, 0)  # Open-Unmix post-filter; 0 = off
    wiener_softmask: bool = False
    wiener_residual: bool = False
    test_tracks: int = num(0, 0)  # 0 = every test track
    write_estimates: bool = False
    stream_frames: int = num(4, 1)  # causal models also separate streaming, this many STFT frames a chunk
    precision: Literal["fp32", "bf16"] = "fp32"  # every separation's: validation, evaluation, `separate`


@dataclass(frozen=True)
class EnergyConfig:
    country_iso: str = "FRA"  # 3-letter ISO code CodeCarbon knows
    pue: float = num(1.0, 1.0, 5.0)
    carbon_intensity_g_per_kwh: float = num(0.0, 0.0)  # 0 = CodeCarbon's figure for the country
    measure_power_s: float = num(15.0, 0.1)
    tdp_per_core_w: float = num(0.0, 0.0)  # 0 = from the TDP table for the detected CPU
    gpu_tdp_w: float = num(0.0, 0.0)  # 0 = from the TDP table for the detected GPU
    memory_w_per_gb: float = num(MEMORY_W_PER_GB, 0.0)  # Green Algorithms' memory power
    rapl_dir: str | None = None  # where the RAPL counters are, if not CodeCarbon's /sys/class/powercap/...


@dataclass(frozen=True)
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"
    artifacts: str = "mlartifacts"
    experiment: str = "sepcost"


@dataclass(frozen=True)
class LaunchConfig:
    """How `sepcost launch` runs a study's trainings as jobs (`--executor` and the other flags
    override each): on this machine, or on a SLURM or OAR cluster through submitit."""

    executor: Literal["local", "slurm", "oar", "debug"] = "local"
    jobs: int = num(0, 0)  # jobs at once; 0 = all of a cluster's array, here one a core (or a GPU set)
    partition: str = ""  # SLURM partition or OAR queue; "" = the scheduler's default
    account: str = ""  # SLURM account to charge; "" = none
    gpus_per_job: int = num(0, 0)
    cpus_per_job: int = num(0, 0)  # 0 = the scheduler's default
    mem_gb: float = num(0.0, 0.0)  # a job's memory; 0 = its forecast's peak and a quarter more (SLURM)
    time_min: int = num(1440, 1)  # a job's time limit; one that reaches it is checkpointed and requeued
    requeues: int = num(0, 0)  # how often a job may reach its time limit; 0 = as its forecast needs
    options: str = ""  # more scheduler options, e.g. "--qos=high --constraint=a100" or "-t besteffort"
    folder: str = "launches"  # submitit's scripts, pickles and job logs


@dataclass(frozen=True)
class RuntimeConfig:
    """Machine knobs: how fast and where, never what. They enter no fingerprint and no DVC params."""

    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: the GPU if there is one
    threads: int = num(0, 0)  # CPU threads; 0 = every core this process may use (its CPU affinity)
    cache_gb: float = num(4.0, 0.0)  # training stems held in memory (shared by a node's processes), the rest on disk
    num_workers: int = num(0, 0)  # DataLoader worker processes (started by a fork server); 0 = the training's threads
    launch: LaunchConfig = field(default_factory=LaunchConfig)


@dataclass(frozen=True)
class Config:
    seed: int = num(42, 0)  # the first seed; a variant of `seeds` seeds runs seed, seed + 1, ...
    seeds: int = num(1, 1)  # trainings per variant, each its own run (the replication trained each once)
    targets: tuple[str, ...] = TARGETS
    data: DataConfig = field(default_factory=DataConfig)
    sad: SadConfig = field(default_factory=SadConfig)
    stft: StftConfig = field(default_factory=StftConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    variants: dict[str, dict] = field(default_factory=dict)
    variant: str | None = None  # set on a resolved variant, None on the base study
    params_file: str = "params.yaml"  # the file it was read from, for messages

    def as_dict(self) -> dict:
        return to_dict(self)

    @property
    def run(self) -> str:
        """The run key of a resolved variant and seed (`names.run_key`)."""
        return run_key(self.variant, self.seed)


# The sections of a variant's recipe; a variant may override them and its number of seeds. The
# other sections describe the study or the machine, not a model.
RECIPE_SECTIONS = ("stft", "model", "train", "eval")
VARIANT_KEYS = ("seeds", *RECIPE_SECTIONS)
# Keys a params file may not set: sepcost sets them.
INTERNAL_KEYS = ("variant", "params_file")


def to_dict(obj):
    """Plain dicts and lists of a config (or of any of its sections)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
