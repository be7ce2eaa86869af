"""What a training will cost, scaled from what its first part cost: one model for `sepcost
forecast` (a few timed steps and a validation pass) and for every training (its first epoch).

A training runs `max_epochs` epochs unless early stopping ends it, at the soonest after
`patience + 1` epochs; a forecast is therefore a range, one epoch's cost times the shortest and the
longest schedule. Its assumptions: every epoch costs what the measured one did (same steps, same
validation), and nothing else runs on the machine. Imports `pipeline.names` and the schema.
"""
from __future__ import annotations

from pipeline.config.schema import TrainConfig
from pipeline.names import (
    DURATION,
    FORECAST,
    KWH_CODECARBON,
    KWH_GREEN_ALGORITHMS,
    forecast_error_key,
    forecast_within_key,
)
FIGURES = (DURATION, KWH_CODECARBON, KWH_GREEN_ALGORITHMS)  # what is forecast
ASSUMPTIONS = ("every epoch costs what the measured one did (the same steps and validation pass), "
               "on an otherwise idle machine; early stopping may end the training after patience + 1 epochs")


def epochs_range(train: TrainConfig) -> tuple[int, int]:
    """The fewest and the most epochs the schedule allows."""
    return train.soonest_stop(), train.max_epochs


def forecast(per_epoch: dict[str, float], train: TrainConfig) -> dict[str, float]:
    """`forecast_<figure>` for the full schedule and `forecast_min_<figure>` for the shortest one,
    with the epochs of each, from one epoch's `per_epoch` cost (duration and both kWh)."""
    shortest, longest = epochs_range(train)
    out = {f"{FORECAST}epochs": longest, f"{FORECAST}min_epochs": shortest}
    for key in FIGURES:
        out[f"{FORECAST}{key}"] = longest * per_epoch[key]
        out[f"{FORECAST}min_{key}"] = shortest * per_epoch[key]
    return out


def errors(per_epoch: dict[str, float], epochs: int, measured: dict[str, float], predicted: dict) -> dict[str, float]:
    """How the forecast did: for each figure, the error in % of the per-epoch cost times the epochs
    that ran, against what was measured, and whether the measurement fell within the range."""
    out = {}
    for key in FIGURES:
        if measured[key] > 0:
            out[forecast_error_key(key)] = 100.0 * (epochs * per_epoch[key] - measured[key]) / measured[key]
        low, high = predicted[f"{FORECAST}min_{key}"], predicted[f"{FORECAST}{key}"]
        out[forecast_within_key(key)] = float(0.9 * low <= measured[key] <= 1.1 * high)
    return out
