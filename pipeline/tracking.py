"""MLflow tracking: one experiment per study, one run per variant execution, failed ones included.

    with tracking.run(cfg, "train@base") as tracked, EnergyMeter(cfg.energy, ...) as meter:
        tracked.watch_energy(meter)                  # logged at close, success or failure
        for epoch in ...:
            tracked.log_epoch(epoch, {"train_loss": ..., "valid_usdr_avg": ...})
        tracked.log_metrics({"params_m": ...})

    run_id = tracking.find_run(cfg.tracking, "base")             # the variant's latest training
    with tracking.run(cfg, "evaluate@base", run_id=run_id) as tracked, EnergyMeter(...) as meter:
        tracked.watch_energy(meter, prefix="eval_")

Where things go: the tracking URI comes from params (default `sqlite:///mlflow.db`, a file in the
study folder, so `mlflow ui` there shows it); relative paths in it and in `tracking.artifacts` are
resolved against the study folder (the working directory when `configure` is first called, or the
`root` it is given) and stay fixed if the working directory changes later. The experiment's
artifact location is set when it is created; an experiment that already exists keeps its own. With
a tracking server (http[s]://) the server decides where artifacts go unless `tracking.artifacts` is
itself a URI.

Energy: `watch_energy` logs, when the run closes, the meter's totals (`energy_kwh_codecarbon`,
`energy_kwh_green_algorithms`, `emissions_kg_co2e`, `duration_s` and the CPU/GPU/RAM split;
including energy of earlier executions when resuming) and this execution's own part as
`run_energy_kwh_codecarbon`, `run_energy_kwh_green_algorithms`, `run_emissions_kg_co2e`,
`run_duration_s`, and as `ledger_*` the same summed over every execution logged under that prefix
in this run (an evaluation repeated into the same training run). Each epoch logged with `log_epoch`
also carries `run_energy_*` and `ledger_energy_*` so far, so a run killed without warning still
tells what it spent. The whole-study ledger (`runs_table`) adds up the `ledger_*` metrics of every
run, whatever its status.

Status: FINISHED; FAILED on an exception; KILLED on Ctrl-C or SIGTERM (a handler that raises
`Terminated` is installed for the duration of the run, in the main thread). A tag
`status.<stage kind>` (e.g. `status.train`, `status.evaluate`) keeps each stage's own outcome, since
evaluation reopens the training's run.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import re
import signal
import socket
import subprocess
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from pipeline import paths
from pipeline.config import Config, TrackingConfig

PACKAGES = ("torch", "mlflow", "codecarbon", "dvc", "musdb", "museval", "numpy")
# MLflow's limits per log_batch call and per value.
_MAX_PARAMS_TAGS = 100
_MAX_METRICS = 1000
_MAX_PARAM_LEN = 6000
_MAX_TAG_LEN = 5000
# The energy keys logged at close (from pipeline.energy.ENERGY_KEYS) and this execution's own part.
_RUN_KEYS = ("energy_kwh_codecarbon", "energy_kwh_green_algorithms", "emissions_kg_co2e", "duration_s")
# The metric prefixes under which meters were watched in a run (JSON list), for the ledger.
ENERGY_PREFIXES_TAG = "energy.prefixes"


class Terminated(SystemExit):
    """Raised by the SIGTERM handler `run` installs; exits with 128 + the signal number if uncaught."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(128 + int(signum))
        self.signum = int(signum)


# ----------------------------------------------------------------------------- configuration


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

    `run`, `find_run` and `runs_table` call it on first use of a config; call it explicitly to fix
    the study folder before changing directory, or to resolve again."""
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


def _client(state: _Resolved):
    from mlflow.tracking import MlflowClient

    if state.uri not in _CLIENTS:
        with warnings.catch_warnings():
            # MLflow's SQL store uses a loader SQLAlchemy 2.1 deprecates; said once, on import.
            warnings.filterwarnings("ignore", message=".*``noload`` loader strategy", category=DeprecationWarning)
            _CLIENTS[state.uri] = MlflowClient(tracking_uri=state.uri)
    return _CLIENTS[state.uri]


def _experiment_id(client, state: _Resolved, create: bool = True) -> str | None:
    from mlflow.exceptions import MlflowException

    name = state.cfg.experiment
    exp = client.get_experiment_by_name(name)
    if exp is None:
        if not create:
            return None
        try:
            return client.create_experiment(name, artifact_location=state.artifact_location)
        except MlflowException:  # created meanwhile by a parallel stage
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        if not create:
            return None
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


# ----------------------------------------------------------------------------- what a run records


def _key(name: str) -> str:
    """An MLflow-valid key: alphanumerics, _ - . space / and : only."""
    return re.sub(r"[^/\w.\- :]", "_", str(name))


def flatten_params(config: Config) -> dict[str, str]:
    """Dotted keys of the resolved config (the variants mapping excluded), values as strings."""
    out: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (list, tuple)):
            out[prefix] = json.dumps(list(value))
        else:
            out[prefix] = "null" if value is None else str(value)

    data = config.as_dict()
    data.pop("variants", None)
    walk("", data)
    return {_key(k): v[:_MAX_PARAM_LEN] for k, v in out.items()}


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_info() -> dict[str, str]:
    """The commit of the working directory's repository and whether tracked files differ from it."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    status = _git("status", "--porcelain", "--untracked-files=no")
    dirty = "unknown" if status is None else ("true" if status.strip() else "false")
    return {"git.commit": commit.strip(), "git.dirty": dirty}


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[f"version.{name}"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[f"version.{name}"] = "not installed"
    out["version.python"] = platform.python_version()
    return out


def _stage_kind(stage: str) -> str:
    return _key(stage.split("@", 1)[0])


def _upstream(stage: str) -> dict[str, str]:
    """The DVC stages whose outputs a stage's result is built from, by role."""
    kind, _, variant = stage.partition("@")
    if kind in ("train", "forecast"):
        return {"prepare": "prepare", "sad": "sad"}
    if kind == "evaluate":
        return {"prepare": "prepare", "train": f"train@{variant}"}
    return {}


def dvc_lock_tags(stage: str) -> dict[str, str]:
    """Provenance from DVC: the md5 of the dvc.lock entry (command, hashes of every dependency and
    output, params) of each stage this one builds on, as recorded when this one starts, as
    `dvc.lock.<role>`; and `dvc.running_stage`, the stage `dvc repro` says it is running (absent
    when a command is run by hand). Stages without an entry yet are left out."""
    tags = {"dvc.running_stage": os.environ["DVC_STAGE"]} if os.environ.get("DVC_STAGE") else {}
    try:
        entries = (yaml.safe_load(paths.DVC_LOCK.read_text()) or {}).get("stages", {})
    except (OSError, yaml.YAMLError, AttributeError):  # no lock file yet, or not one DVC wrote
        return tags
    for role, name in _upstream(stage).items():
        if isinstance(entries.get(name), dict):
            canonical = json.dumps(entries[name], sort_keys=True, separators=(",", ":"))
            tags[f"dvc.lock.{role}"] = hashlib.md5(canonical.encode()).hexdigest()
    return tags


def _run_tags(config: Config, stage: str, name: str) -> dict[str, str]:
    from pipeline.energy import detect_hardware

    git = git_info()
    tags = {
        "variant": config.variant or name,
        "dvc.stage": stage,
        "dvc.stages": stage,
        "seed": str(config.seed),
        "host": socket.gethostname(),
        "params_file": config.params_file,
        **git,
        **package_versions(),
        **{f"hardware.{k}": str(v) for k, v in detect_hardware().items()},
        **dvc_lock_tags(stage),
    }
    if git["git.commit"] != "unknown":
        tags["mlflow.source.git.commit"] = git["git.commit"]  # shown by the MLflow UI
    return tags


# ----------------------------------------------------------------------------- the run


class TrackedRun:
    """One MLflow run, open for the duration of `run(...)`. Every write is one batched call."""

    def __init__(self, client, run_id: str, stage: str, existing_metrics: set[str] = frozenset()):
        self.client = client
        self.run_id = run_id
        self.stage = stage
        self._meters: list[tuple[Any, str, dict[str, float]]] = []  # meter, prefix, earlier executions
        self._max_step = 0
        self._existing = set(existing_metrics)  # metric keys logged before a reopen
        self._prior: dict[str, tuple[int, int]] = {}  # key -> largest step and time before the reopen
        self._last_ms = 0
        self._pending: list = []  # epoch writes in the background, waited for at close
        # One writer thread of our own rather than MLflow's asynchronous logging, whose queue
        # costs a full second at every run's end (its worker polls with a 1 s timeout).
        self._writer: ThreadPoolExecutor | None = None

    @property
    def artifact_uri(self) -> str:
        return self.client.get_run(self.run_id).info.artifact_uri

    # -- writes --------------------------------------------------------------------------------

    def _batch(self, metrics=(), params=(), tags=(), synchronous: bool = True) -> None:
        metrics, params, tags = list(metrics), list(params), list(tags)
        while metrics or params or tags:
            m, metrics = metrics[:_MAX_METRICS], metrics[_MAX_METRICS:]
            p, params = params[:_MAX_PARAMS_TAGS], params[_MAX_PARAMS_TAGS:]
            room = _MAX_PARAMS_TAGS - len(p)
            t, tags = tags[:room], tags[room:]
            if synchronous:
                self.flush()  # one writer at a time, in order
                self.client.log_batch(self.run_id, metrics=m, params=p, tags=t)
            else:
                if self._writer is None:
                    self._writer = ThreadPoolExecutor(1, thread_name_prefix="sepcost-mlflow")
                self._pending.append(self._writer.submit(self.client.log_batch, self.run_id,
                                                         metrics=m, params=p, tags=t))

    def flush(self) -> None:
        """Wait until every epoch logged so far is in the store."""
        pending, self._pending = self._pending, []
        for write in pending:
            write.result()

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._batch(tags=[RunTag(_key(k), str(v)[:_MAX_TAG_LEN]) for k, v in tags.items()])

    def _metric_objs(self, metrics: Mapping[str, float], step: int | None) -> list:
        """Metrics at `step`, or each at its final place (step None). Timestamps strictly increase
        within the run, so a final value logged in the same millisecond as an epoch's still wins."""
        from mlflow.entities import Metric

        now = max(int(time.time() * 1000), self._last_ms + 1)
        out = []
        for k, v in metrics.items():
            key = _key(k)
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise TypeError(f"metric {k!r}: expected a number, got {v!r}") from None
            if step is None:
                key_step, key_ms = self._final_place(key)
                out.append(Metric(key, float(v), max(now, key_ms + 1), key_step))
            else:
                out.append(Metric(key, float(v), now, step))
        self._last_ms = max([now] + [m.timestamp for m in out])
        return out

    def _final_place(self, key: str) -> tuple[int, int]:
        """The step and time a final value must exceed-or-match: MLflow's "latest" value of a key is
        the one with the largest step, then the latest timestamp, then the largest value."""
        step, ms = self._max_step, self._last_ms
        if key in self._existing:  # logged before this run was reopened
            if key not in self._prior:
                history = self.client.get_metric_history(self.run_id, key)
                self._prior[key] = (max((m.step for m in history), default=0),
                                    max((m.timestamp for m in history), default=0))
            step, ms = max(step, self._prior[key][0]), max(ms, self._prior[key][1])
        return step, ms

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Per-epoch metrics at step `epoch`, with the watched meters' energy of this execution so
        far, in one log_batch call, written in the background (a SQLite commit takes ~10-30 ms)
        and waited for when the run closes or on `flush()`."""
        values = dict(metrics)
        for meter, prefix, before in self._meters:
            try:
                own = meter.run_totals()
            except Exception:
                continue
            for k in ("energy_kwh_codecarbon", "energy_kwh_green_algorithms"):
                values.setdefault(f"{prefix}run_{k}", own[k])
                values.setdefault(f"{prefix}ledger_{k}", before[k] + own[k])
        self._max_step = max(self._max_step, int(epoch))
        self._batch(metrics=self._metric_objs(values, int(epoch)), synchronous=False)

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Final metrics, in one batched call; each at its key's latest step, so it is the value the
        MLflow UI and `run.data.metrics` show."""
        self._batch(metrics=self._metric_objs(metrics, None))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    # -- energy --------------------------------------------------------------------------------

    def watch_energy(self, meter, prefix: str = "") -> None:
        """Log `meter`'s energy when the run closes, success or failure: its totals as final metrics
        (with `prefix`, e.g. "eval_"; one meter per prefix), this execution's part as
        `<prefix>run_*`, the part of every execution logged under this prefix in this run (a run
        reopened twice for evaluation) as `<prefix>ledger_*`, its methods and hardware as tags, and
        CodeCarbon's CSVs as artifacts under `<prefix>energy/`."""
        data = self.client.get_run(self.run_id).data
        before = {k: data.metrics.get(f"{prefix}ledger_{k}", 0.0) for k in _RUN_KEYS}
        self._meters.append((meter, prefix, before))
        tags = data.tags
        prefixes = json.loads(tags.get(ENERGY_PREFIXES_TAG, "[]"))
        if prefix not in prefixes:
            prefixes.append(prefix)
        self.set_tags({ENERGY_PREFIXES_TAG: json.dumps(prefixes),
                       **{f"{prefix}hardware.{k}": v for k, v in meter.hardware.items()}})

    def _log_energy(self) -> None:
        for meter, prefix, before in self._meters:
            total, own = meter.totals(), meter.run_totals()
            metrics = {f"{prefix}{k}": v for k, v in total.items()}
            metrics.update({f"{prefix}run_{k}": own[k] for k in _RUN_KEYS})
            metrics.update({f"{prefix}ledger_{k}": before[k] + own[k] for k in _RUN_KEYS})
            self.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
            tags = {f"{prefix}energy.method.{k}": v for k, v in meter.methods.items()}
            tags.update({f"{prefix}hardware.{k}": v for k, v in meter.hardware.items()})
            tags.update({f"{prefix}energy.ga.{k}": f"{v:.6g}" if isinstance(v, float) else v
                         for k, v in meter.ga_inputs().items()})
            self.set_tags(tags)
            for path in meter.files():
                self.log_artifact(path, f"{prefix}energy")

    def _close(self, status: str, error: BaseException | None) -> None:
        problems = []
        try:
            self.flush()
        except Exception as err:
            problems.append(f"epoch metrics not all logged: {type(err).__name__}: {err}")
        finally:
            if self._writer is not None:
                self._writer.shutdown()
        try:
            self._log_energy()
        except Exception as err:  # never hide the stage's own outcome behind a logging problem
            problems.append(f"energy not logged: {type(err).__name__}: {err}")
        tags = {f"status.{_stage_kind(self.stage)}": status}
        if error is not None:
            tags[f"error.{_stage_kind(self.stage)}"] = f"{type(error).__name__}: {error}"[:1000]
        if problems:
            tags["tracking.problems"] = " | ".join(problems)
        try:
            self.set_tags(tags)
        finally:
            self.client.set_terminated(self.run_id, status=status)


def _open(config: Config, stage: str, run_id: str | None, run_name: str | None) -> TrackedRun:
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException

    state = _state(config.tracking)
    client = _client(state)
    params = flatten_params(config)
    previous = None
    if run_id is not None:
        try:
            previous = client.get_run(run_id)
        except MlflowException:  # e.g. a store made anew since: log into a new run and say so
            previous = None
    if previous is None:
        name = run_name or config.variant or _stage_kind(stage)
        tags = _run_tags(config, stage, name)
        if run_id is not None:
            tags["reopen_failed"] = run_id
        created = client.create_run(_experiment_id(client, state), run_name=name, tags=tags)
        tracked = TrackedRun(client, created.info.run_id, stage)
        tracked._batch(params=[Param(k, v) for k, v in params.items()])
        return tracked

    client.update_run(run_id, status="RUNNING")
    tracked = TrackedRun(client, run_id, stage, set(previous.data.metrics))
    logged = previous.data.params
    kind = _stage_kind(stage)
    stages = previous.data.tags.get("dvc.stages", "")
    git = git_info()
    tags = {
        "dvc.stages": ",".join([s for s in stages.split(",") if s] + [stage]),
        f"{kind}.git.commit": git["git.commit"],
        f"{kind}.git.dirty": git["git.dirty"],
        f"{kind}.host": socket.gethostname(),
        **{f"{kind}.{k}": v for k, v in dvc_lock_tags(stage).items()},
    }
    # MLflow params cannot change: a value that differs from the training's is kept as a tag.
    tags.update({f"param_changed.{kind}.{k}": v for k, v in params.items() if k in logged and logged[k] != v})
    tracked.set_tags(tags)
    tracked._batch(params=[Param(k, v) for k, v in params.items() if k not in logged])
    return tracked


@contextmanager
def run(config: Config, stage: str, run_id: str | None = None,
        run_name: str | None = None) -> Iterator[TrackedRun]:
    """An MLflow run around one execution of `stage` (e.g. "train@base") of `config.variant`.

    A new run named after the variant (or `run_name`, e.g. "mixture" for a reference row of the
    base study) with the flattened params and the provenance tags; or, with `run_id`, that run
    reopened (evaluation logs into its training's run; a run id the store does not know gets a new
    run tagged `reopen_failed`). Ends FINISHED, FAILED on an exception, KILLED on
    KeyboardInterrupt or SIGTERM; the watched energy is logged in every case and the exception is
    re-raised."""
    tracked = _open(config, stage, run_id, run_name)
    in_main = threading.current_thread() is threading.main_thread()
    previous_handler = None
    if in_main:
        def _on_sigterm(signum, frame):
            raise Terminated(signum)

        previous_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    status, error = "FINISHED", None
    try:
        yield tracked
    except (KeyboardInterrupt, Terminated) as err:
        status, error = "KILLED", err
        raise
    except SystemExit as err:
        if err.code not in (0, None):
            status, error = "FAILED", err
        raise
    except BaseException as err:
        status, error = "FAILED", err
        raise
    finally:
        # A second SIGTERM while closing is held back until the run is closed, then delivered
        # to whatever handled SIGTERM before.
        deferred: list[int] = []
        if in_main:
            signal.signal(signal.SIGTERM, lambda signum, frame: deferred.append(signum))
        try:
            tracked._close(status, error)
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous_handler if previous_handler is not None else signal.SIG_DFL)
                if deferred:
                    signal.raise_signal(signal.SIGTERM)


# ----------------------------------------------------------------------------- reading the store


def find_run(cfg: TrackingConfig, variant: str, stage_prefix: str = "train",
             finished_only: bool = True) -> str | None:
    """The id of the variant's latest run created by a `stage_prefix` stage (e.g. "train@base"),
    by default only one whose own stage finished (tag `status.<stage kind>`); None if there is none."""
    state = _state(cfg)
    client = _client(state)
    experiment_id = _experiment_id(client, state, create=False)
    if experiment_id is None:
        return None
    if "'" in variant or "'" in stage_prefix:
        raise ValueError("find_run: variant and stage names cannot contain quotes")
    query = f"tags.variant = '{variant}' AND tags.`dvc.stage` LIKE '{stage_prefix}%'"
    runs = client.search_runs([experiment_id], query, max_results=200,
                              order_by=["attributes.start_time DESC"])
    for r in runs:
        kind = _stage_kind(r.data.tags.get("dvc.stage", ""))
        if not finished_only or r.data.tags.get(f"status.{kind}") == "FINISHED":
            return r.info.run_id
    return None


RUNS_COLUMNS = [
    "run_id", "run_name", "variant", "stage", "stages", "status", "deleted", "start_time", "end_time",
    "kwh_codecarbon", "kwh_green_algorithms", "kg_co2e", "duration_s",
    "run_energy_kwh_codecarbon", "run_energy_kwh_green_algorithms",
    "eval_run_energy_kwh_codecarbon", "eval_run_energy_kwh_green_algorithms",
    "energy_kwh_codecarbon", "energy_kwh_green_algorithms",
    "git_commit", "git_dirty", "host",
]


def _every_run(cfg: TrackingConfig):
    """Every run of the study's experiment, deleted ones included, oldest first."""
    from mlflow.entities import ViewType

    state = _state(cfg)
    client = _client(state)
    experiment_id = _experiment_id(client, state, create=False)
    if experiment_id is None:
        return
    token = None
    while True:
        page = client.search_runs([experiment_id], "", run_view_type=ViewType.ALL, max_results=1000,
                                  order_by=["attributes.start_time ASC"], page_token=token)
        yield from page
        token = page.token
        if not token:
            break


def _energy_prefixes(run) -> list[str]:
    return json.loads(run.data.tags.get(ENERGY_PREFIXES_TAG, '["", "eval_"]'))


TIMELINE_COLUMNS = ["time", "run_id", "status", "kwh_codecarbon", "kwh_green_algorithms"]


def energy_timeline(cfg: TrackingConfig):
    """When the study's energy was spent: one row per logged step of a run's `<prefix>ledger_*`
    energy (after every training epoch, at the end of every execution), with the energy spent since
    the previous step by both methods. Summed over a run, the rows give its runs_table energy; in
    time order they give the study's cumulative energy, a run reopened for evaluation hours after
    its training included."""
    import pandas as pd

    client = _client(_state(cfg))
    rows = []
    for r in _every_run(cfg):
        steps: dict[int, dict[str, float]] = {}
        for prefix in _energy_prefixes(r):
            for method in ("codecarbon", "green_algorithms"):
                key = f"{prefix}ledger_energy_kwh_{method}"
                if key not in r.data.metrics:
                    key = f"{prefix}run_energy_kwh_{method}"
                if key not in r.data.metrics:
                    continue
                spent = 0.0
                history = client.get_metric_history(r.info.run_id, key)
                for point in sorted(history, key=lambda p: (p.timestamp, p.step)):
                    if math.isfinite(point.value) and point.value > spent:
                        step = steps.setdefault(point.timestamp, {"codecarbon": 0.0, "green_algorithms": 0.0})
                        step[method] += point.value - spent
                        spent = point.value
        rows += [{"time": pd.to_datetime(ms, unit="ms", utc=True), "run_id": r.info.run_id,
                  "status": r.info.status, "kwh_codecarbon": kwh["codecarbon"],
                  "kwh_green_algorithms": kwh["green_algorithms"]} for ms, kwh in sorted(steps.items())]
    table = pd.DataFrame(rows, columns=TIMELINE_COLUMNS)
    return table.sort_values("time", kind="stable", ignore_index=True)


def _sum_executions(metrics: Mapping[str, float], prefixes: list[str], key: str) -> float:
    values = [metrics.get(f"{p}ledger_{key}", metrics.get(f"{p}run_{key}", math.nan)) for p in prefixes]
    return float(sum(v for v in values if math.isfinite(v)))


def runs_table(cfg: TrackingConfig):
    """Every run of the study's experiment, whatever its status (deleted ones flagged), one row each:
    times, status, variant, stage, and the energy each execution spent by both methods.

    `kwh_codecarbon` / `kwh_green_algorithms` / `kg_co2e` / `duration_s` add up every execution
    logged into the run (training and evaluation: `<prefix>ledger_*` for each prefix in the run's
    `energy.prefixes` tag), so summing a column over the table gives the whole study without
    counting resumed work twice nor forgetting a repeated evaluation."""
    import pandas as pd

    rows = []
    for r in _every_run(cfg):
        m, t = r.data.metrics, r.data.tags
        prefixes = _energy_prefixes(r)
        rows.append({
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "variant": t.get("variant", ""),
            "stage": t.get("dvc.stage", ""),
            "stages": t.get("dvc.stages", ""),
            "status": r.info.status,
            "deleted": r.info.lifecycle_stage == "deleted",
            "start_time": pd.to_datetime(r.info.start_time, unit="ms", utc=True),
            "end_time": (pd.to_datetime(r.info.end_time, unit="ms", utc=True)
                         if r.info.end_time else pd.NaT),
            "kwh_codecarbon": _sum_executions(m, prefixes, "energy_kwh_codecarbon"),
            "kwh_green_algorithms": _sum_executions(m, prefixes, "energy_kwh_green_algorithms"),
            "kg_co2e": _sum_executions(m, prefixes, "emissions_kg_co2e"),
            "duration_s": _sum_executions(m, prefixes, "duration_s"),
            "run_energy_kwh_codecarbon": m.get("run_energy_kwh_codecarbon", math.nan),
            "run_energy_kwh_green_algorithms": m.get("run_energy_kwh_green_algorithms", math.nan),
            "eval_run_energy_kwh_codecarbon": m.get("eval_run_energy_kwh_codecarbon", math.nan),
            "eval_run_energy_kwh_green_algorithms": m.get("eval_run_energy_kwh_green_algorithms", math.nan),
            "energy_kwh_codecarbon": m.get("energy_kwh_codecarbon", math.nan),
            "energy_kwh_green_algorithms": m.get("energy_kwh_green_algorithms", math.nan),
            "git_commit": t.get("git.commit", ""),
            "git_dirty": t.get("git.dirty", ""),
            "host": t.get("host", ""),
        })
    return pd.DataFrame(rows, columns=RUNS_COLUMNS)
