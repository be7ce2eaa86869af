"""The names the stages agree on: targets, stems, reference rows, metric and energy keys.

Training, evaluation, tracking and the report write and read results under these keys (metrics
files, MLflow metrics, table columns); a new metric or energy figure gets its name here, once.
Imports nothing.
"""
from __future__ import annotations

# ----------------------------------------------------------------------------- audio
TARGETS = ("vocals", "bass", "drums", "other")  # MUSDB's four sources, always in this order
STEMS = ("mixture", *TARGETS)  # the files of a track folder
SPLITS = ("train", "valid", "test")
CHANNELS = 2  # MUSDB18 is stereo; the synthetic songs too
AVG = "avg"  # the "target" of a figure averaged over targets


def run_key(variant: str, seed: int) -> str:
    """The name of one training of a variant with one seed: its DVC stage key, output folders and
    files, and MLflow run name, e.g. `base-seed42`."""
    return f"{variant}-seed{seed}"


def stage_name(kind: str, key: str = "") -> str:
    """A DVC stage's name: `kind@key` for a stage of a `foreach` (`train@base-seed42`), `kind` alone
    for a single one (`prepare`)."""
    return f"{kind}@{key}" if key else kind


def stage_parts(stage: str) -> tuple[str, str]:
    """`stage_name` read back: `train@base-seed42` -> ("train", "base-seed42"), `prepare` -> ("prepare", "")."""
    kind, _, key = stage.partition("@")
    return kind, key


# Rows of metrics/eval that no variant produces, computed once per study: the mixture as every
# target's estimate (a lower bound) and the oracle ideal ratio mask (an upper bound).
REFERENCE_ROWS = ("mixture", "oracle_irm")

# ----------------------------------------------------------------------------- separation scores
SCORES = ("usdr", "csdr", "sir", "sar", "isr")  # per target and on average: usdr_vocals, csdr_avg
BSSEVAL_SCORES = ("sdr", "isr", "sir", "sar")  # museval's framewise figures


def score_key(score: str, target: str = AVG) -> str:
    """e.g. `usdr_vocals`, `csdr_avg`; validation scores add the prefix `valid_`."""
    return f"{score}_{target}"


PARAMS_M = "params_m"  # parameters of a variant's models together, in millions
LR_EFFECTIVE = "lr_effective"  # the lr the optimiser starts from (train.lr scaled to the global batch)
TIME_SHARE = "time_share_"  # a target's model's share of a training's step time: time_share_vocals

# ----------------------------------------------------------------------------- energy
# Two methods price every interval, with the same PUE and carbon intensity: CodeCarbon (measured,
# or modelled where the machine has no counter) and Green Algorithms (estimated from TDPs).
METHODS = ("codecarbon", "green_algorithms")
METHOD_LABELS = {"codecarbon": "CodeCarbon (measured)", "green_algorithms": "Green Algorithms (estimated)"}
KWH_CODECARBON = "energy_kwh_codecarbon"
KWH_GREEN_ALGORITHMS = "energy_kwh_green_algorithms"
CO2 = "emissions_kg_co2e"  # CodeCarbon's kWh x carbon intensity
GA_CO2 = "ga_emissions_kg_co2e"  # Green Algorithms' kWh x the same intensity
DURATION = "duration_s"
PEAK_MEMORY = "peak_memory_gb"  # the peak resident memory of an execution's process tree (GiB)
PARTS = ("cpu", "gpu", "ram")


def kwh_key(method: str) -> str:
    """The total energy of a method: `energy_kwh_codecarbon` or `energy_kwh_green_algorithms`."""
    return f"energy_kwh_{method}"


def part_key(method: str, part: str) -> str:
    """One part of a method's energy: `cpu_kwh` (CodeCarbon) or `ga_cpu_kwh` (Green Algorithms)."""
    return f"{part}_kwh" if method == "codecarbon" else f"ga_{part}_kwh"


# Every figure an energy meter totals; each is additive over executions of the same work.
ENERGY_KEYS = (KWH_CODECARBON, KWH_GREEN_ALGORITHMS, CO2, GA_CO2, DURATION,
               *(part_key(m, p) for m in METHODS for p in PARTS))
# What a run logs for each execution (prefix RUN) and for all executions logged into it (LEDGER).
EXECUTION_KEYS = (KWH_CODECARBON, KWH_GREEN_ALGORITHMS, CO2, DURATION)
RUN = "run_"  # this execution alone (a resumed training counts its earlier executions in the totals)
LEDGER = "ledger_"  # every execution logged under one meter prefix of a run, for the study's ledger
EVAL = "eval_"  # the evaluation's meter, logged into the training's run
EPOCH = "epoch_"  # one training epoch
FORECAST = "forecast_"  # a training's forecast of its own cost, made after its first epoch
SAMPLE = "sample_"  # the running energy of an execution, every measure_power_s, as metric histories


def forecast_error_key(figure: str) -> str:
    """How far a training's forecast of `figure` was off what it measured: `forecast_error_duration_s_pct`."""
    return f"{FORECAST}error_{figure}_pct"


def forecast_within_key(figure: str) -> str:
    """1.0 when what a training measured of `figure` fell within its forecast range, else 0.0."""
    return f"{FORECAST}within_range_{figure}"


# What separating costs, from an evaluation: thread-seconds per second of test audio and the kWh of
# separating a minute of audio (`separation_energy_kwh_codecarbon_per_min`); and the streaming
# mode's figures (`streaming_latency_ms`, `streaming_usdr_vocals`, ...).
SEPARATION = "separation_"
SEPARATION_RTF = "separation_rtf"
STREAMING = "streaming_"
STREAMING_LATENCY_MS = "streaming_latency_ms"
STREAMING_RTF_MAX = "streaming_rtf_max"


def separation_kwh_key(method: str) -> str:
    return f"{SEPARATION}{kwh_key(method)}_per_min"


# The MLflow tag listing (JSON) the meter prefixes a run logged energy under, for the ledger.
ENERGY_PREFIXES_TAG = "energy.prefixes"
# An open run's tag, rewritten every HEARTBEAT_S seconds (unix seconds): a run left RUNNING without a
# recent one was lost (its process killed without warning).
HEARTBEAT_TAG = "heartbeat"
HEARTBEAT_S = 60.0
