"""Where the runs go: the tracking URI, the artifact store, the MLflow client and the experiment.

The tracking URI comes from params (default `sqlite:///mlflow.db`, a file in the study folder, so
`mlflow ui` there shows it); relative paths in it and in `tracking.artifacts` are resolved against
the study folder (the working directory when `configure` is first called, or the `root` it is
given) and stay fixed if the working directory changes later. The experiment's artifact location
is set when it is created; an experiment that already exists keeps its own. With a tracking server
(http[s]://) the server decides where artifacts go unless `tracking.artifacts` is itself a URI.
Imports MLflow (lazily) and the config schema.
"""
from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pipeline.config.schema import TrackingConfig


@dataclass(frozen=True)
class _Resolved:
    cfg: TrackingConfig
    uri: str
    artifact_location: str | None
    root: Path


_RESOLVED: dict[TrackingConfig, _Resolved] = {}  # first resolution of each config wins
_CLIENTS: dict[str, Any] = {}


def _resolve_uri(uri: str, root: Path) -> str:
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path and path != ":memory:" and not path.startswith("/"):
            full = (root / path).resolve()
            full.parent.mkdir(parents=True, exist_ok=True)
            return "sqlite:///" + str(full)
        if path.startswith("/"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return uri
    if uri.startswith("file:"):
        return uri
    if "://" not in uri:  # a plain folder: MLflow's file store
        return (root / uri).resolve().as_uri()
    return uri


def _resolve_artifacts(artifacts: str, uri: str, root: Path) -> str | None:
    if "://" in artifacts or artifacts.startswith("mlflow-artifacts:"):
        return artifacts
    if uri.split(":", 1)[0] in ("http", "https", "databricks"):
        return None  # a path on this machine means nothing to a server
    return (root / artifacts).resolve().as_uri()


def _quiet_mlflow() -> None:
    # "Creating initial MLflow database tables..." and alembic's migration steps on a new store.
    for name in ("mlflow.store.db.utils", "mlflow.store.sql_store", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def configure(cfg: TrackingConfig, root: str | Path | None = None) -> None:
    """Resolve the tracking URI and the artifact folder against `root` (default: the working
    directory, i.e. the study folder) and make them this process's MLflow settings.

    Every function here calls it on first use of a config; call it explicitly to fix the study
    folder before changing directory, or to resolve again."""
    import mlflow

    base = Path(root) if root is not None else Path.cwd()
    base = base.resolve()
    uri = _resolve_uri(cfg.uri, base)
    _RESOLVED[cfg] = _Resolved(cfg, uri, _resolve_artifacts(cfg.artifacts, uri, base), base)
    _quiet_mlflow()
    mlflow.set_tracking_uri(uri)


def _state(cfg: TrackingConfig) -> _Resolved:
    if cfg not in _RESOLVED:
        configure(cfg)
    else:
        import mlflow

        mlflow.set_tracking_uri(_RESOLVED[cfg].uri)
    return _RESOLVED[cfg]


def resolved(cfg: TrackingConfig) -> tuple[str, str | None]:
    """The tracking URI and the experiment artifact location this process uses for `cfg`."""
    state = _state(cfg)
    return state.uri, state.artifact_location


def client(cfg: TrackingConfig):
    """The MLflow client of `cfg`'s store (one per store and process)."""
    from mlflow.tracking import MlflowClient

    state = _state(cfg)
    if state.uri not in _CLIENTS:
        with warnings.catch_warnings():
            # MLflow's SQL store uses a loader SQLAlchemy 2.1 deprecates; said once, on import.
            warnings.filterwarnings("ignore", message=".*``noload`` loader strategy", category=DeprecationWarning)
            _CLIENTS[state.uri] = MlflowClient(tracking_uri=state.uri)
    return _CLIENTS[state.uri]


# MLflow 3's UI opens an experiment without this tag on its GenAI overview (traces, tokens); this
# value opens it on the training runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
_TAGGED: dict[tuple[str, str], dict[str, str]] = {}  # (store, experiment id) -> tags set by this process


def experiment_id(cfg: TrackingConfig, create: bool = True) -> str | None:
    """The id of the study's experiment, created (or restored) if `create`, else None if absent."""
    from mlflow.exceptions import MlflowException

    state, mlflow_client = _state(cfg), client(cfg)
    name = cfg.experiment
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is None:
        if not create:
            return None
        try:
            return mlflow_client.create_experiment(name, artifact_location=state.artifact_location,
                                                   tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException:  # created meanwhile by a parallel stage
            exp = mlflow_client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        if not create:
            return None
        mlflow_client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def tag_experiment(cfg: TrackingConfig, tags: dict[str, str]) -> None:
    """Set the experiment's tags that differ from `tags` (its kind always), once per process.
    Parallel jobs may set the same tag at once: a server on PostgreSQL then refuses the second
    insert, which is fine when the value is the one wanted."""
    from mlflow.exceptions import MlflowException

    state, mlflow_client = _state(cfg), client(cfg)
    study = experiment_id(cfg)
    wanted = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, **tags}
    if _TAGGED.get((state.uri, study)) == wanted:
        return
    current = mlflow_client.get_experiment(study).tags
    for key, value in wanted.items():
        if current.get(key) != value:
            try:
                mlflow_client.set_experiment_tag(study, key, value)
            except MlflowException:
                if mlflow_client.get_experiment(study).tags.get(key) != value:
                    mlflow_client.set_experiment_tag(study, key, value)
    _TAGGED[(state.uri, study)] = wanted


def mlflow_key(name: str) -> str:
    """An MLflow-valid key: alphanumerics, _ - . space / and : only."""
    return re.sub(r"[^/\w.\- :]", "_", str(name))


def every_run(cfg: TrackingConfig) -> Iterator:
    """Every run of the study's experiment, deleted ones included, oldest first."""
    from mlflow.entities import ViewType

    study = experiment_id(cfg, create=False)
    if study is None:
        return
    token = None
    while True:
        page = client(cfg).search_runs([study], "", run_view_type=ViewType.ALL, max_results=1000,
                                       order_by=["attributes.start_time ASC"], page_token=token)
        yield from page
        token = page.token
        if not token:
            break
