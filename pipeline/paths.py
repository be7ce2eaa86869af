"""Where every stage reads and writes, relative to the study's folder (the working directory).

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


def model_dir(variant: str) -> Path:
    return MODELS / variant


def train_metrics(variant: str) -> Path:
    return METRICS / "train" / f"{variant}.json"


def train_history(variant: str) -> Path:
    return PLOTS / "train" / f"{variant}.tsv"


def eval_metrics(variant: str) -> Path:
    return METRICS / "eval" / f"{variant}.json"


def eval_tracks(variant: str) -> Path:
    """Per-track scores in museval's JSON schema, one file per track."""
    return METRICS / "eval" / variant


def forecast_dir(variant: str) -> Path:
    """`sepcost forecast` output: its prediction and the energy it measured (not a DVC stage)."""
    return Path("forecasts") / variant


def estimates_dir(variant: str) -> Path:
    return DATA / "estimates" / variant
