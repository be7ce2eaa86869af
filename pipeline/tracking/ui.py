"""How the MLflow UI shows a study: the experiment's description, the comparison view, its address.

MLflow 3.17's UI chooses between its GenAI pages (Overview, traces) and its model-training pages
(the runs table) from a switch of its own, remembered by each browser and set by the address's
`workflowType`; earlier 3.x UIs read the experiment's `mlflow.experimentKind` tag (which
`store.experiment_id` sets). The runs table shows no metric by default: the comparison view, a
"shared view" kept as an experiment tag and named by the address's `viewStateShareKey`, selects the
columns a researcher compares variants by. `experiment_url` gives the address that opens both.
Imports `pipeline.names`.
"""
from __future__ import annotations

import json

from pipeline.names import KWH_CODECARBON, KWH_GREEN_ALGORITHMS, PARAMS_M, score_key

NOTE_TAG = "mlflow.note.content"  # the experiment's description, shown above its runs
VIEW_KEY = "sepcost"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
# the columns of the comparison view: test uSDR and cSDR, validation uSDR, energy by both methods,
# size, and the variant's declared change
METRIC_COLUMNS = (score_key("usdr"), score_key("csdr"), f"best_{score_key('valid_usdr')}",
                  KWH_CODECARBON, KWH_GREEN_ALGORITHMS, PARAMS_M)
PARAM_COLUMNS = ("change",)

NOTE = """\
One training run per variant and seed (tags `variant`, `seed`), its evaluation nested under it as a
child run; `prepare`, `sad`, `evaluate@mixture`, `evaluate@oracle_irm`, `forecast@...` and `report`
are runs of their own, so the experiment's energy is the study's. The report run holds the study's
page, tables and figures.

To compare variants: the *sepcost* view (the address `sepcost report` prints) shows test `usdr_avg`
and `csdr_avg`, `best_valid_usdr_avg`, `energy_kwh_codecarbon`, `energy_kwh_green_algorithms`,
`params_m` and the param `change`; *Columns* adds others. Select runs and *Compare* for their
params side by side and the parallel-coordinates and scatter plots (e.g. `energy_kwh_codecarbon`
against `usdr_avg`); the chart view plots a metric for every run. The study's settings are this
experiment's `study.*` tags."""


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # how the runs table names a column


def experiment_tags() -> dict[str, str]:
    """The description and the comparison view, as tags of the study's experiment."""
    view = {
        "selectedColumns": [_column("attributes", "Dataset"), _column("attributes", "Models"),
                            *(_column("params", k) for k in PARAM_COLUMNS),
                            *(_column("metrics", k) for k in METRIC_COLUMNS)],
        "orderByKey": "attributes.start_time", "orderByAsc": False, "searchFilter": "",
        "lifecycleFilter": "Active", "startTime": "ALL", "modelVersionFilter": "All Runs", "datasetsFilter": [],
    }
    return {NOTE_TAG: NOTE, VIEW_TAG: json.dumps(view)}


def experiment_url(server: str, experiment_id: str) -> str:
    """The address of the study's runs in the comparison view on an MLflow server (or `mlflow ui`)."""
    return (f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}")
