"""Where every stage reads and writes, relative to the study's folder (the working directory).

A run's outputs are named by its run key (`names.run_key`: variant and seed, e.g. base-seed42).

dvc.yaml names the same paths; tests run stages in a temporary folder with the same layout.
"""
from pathlib import Path

DVC_LOCK = Path("dvc.lock")  # DVC's record of every stage's command, inputs and outputs
DATA = Path("data")
PREPARED = DATA / "prepared"  # output of `prepare`
MANIFEST = PREPARED / "manifest.json"
SYNTHETIC_ROOT = PREPARED / "musdb"  # the built-in data set, in the MUSDB18-HQ layout
SAD = DATA / "sad"  # output of `sad`
SAD_SUMMARY = SAD / "summary.json"
MODELS = Path("models")
METRICS = Path("metrics")
PLOTS = Path("plots")
REPORTS = Path("reports")
REFERENCE = REPORTS / "reference"  # published figures the report compares with


def sad_csv(target: str) -> Path:
    return SAD / f"{target}.csv"


def model_dir(run: str) -> Path:
    return MODELS / run


def train_metrics(run: str) -> Path:
    return METRICS / "train" / f"{run}.json"


def train_history(run: str) -> Path:
    return PLOTS / "train" / f"{run}.tsv"


def eval_metrics(run: str) -> Path:
    """A run's test scores, or a reference row's (its name is its key)."""
    return METRICS / "eval" / f"{run}.json"


def eval_tracks(run: str) -> Path:
    """Per-track scores in museval's JSON schema, one file per track."""
    return METRICS / "eval" / run


def forecast_dir(run: str) -> Path:
    """`sepcost forecast` output: its prediction and the energy it measured (not a DVC stage)."""
    return Path("forecasts") / run


def energy_dir(stage: str) -> Path:
    """CodeCarbon's CSV of a stage with no output folder of its own (it also goes to its MLflow run)."""
    return Path("energy") / stage


def estimates_dir(run: str) -> Path:
    return DATA / "estimates" / run
