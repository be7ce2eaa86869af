"""The life cycle of an MLflow run: one per execution of a stage, failed and killed ones included.

    with tracking.run(cfg, "train@base-seed42") as tracked, EnergyMeter(cfg.energy, ...) as meter:
        tracked.watch_energy(meter)                  # logged at close, success or failure
        for epoch in ...:
            tracked.log_epoch(epoch, {"train_loss": ..., "valid_usdr_avg": ...})
        tracked.log_metrics({"params_m": ...})

    with tracking.run(cfg, "evaluate@base-seed42", parent=training_run_id) as tracked, ...:
        tracked.watch_energy(meter, prefix="eval_")

A run is never reopened, so its Duration in the MLflow UI is its execution's: an evaluation is a
child run of its training's run (the UI nests it there), and `log_to` copies its scores into the
training's run, which stays closed.

Energy: `watch_energy` logs, when the run closes, the meter's totals (`energy_kwh_codecarbon`,
`energy_kwh_green_algorithms`, `emissions_kg_co2e`, `duration_s` and the CPU/GPU/RAM split;
including energy of earlier executions when resuming) and this execution's own part as
`run_energy_kwh_codecarbon`, `run_energy_kwh_green_algorithms`, `run_emissions_kg_co2e`,
`run_duration_s`, and the same as `ledger_*`, what the report's ledger adds up whatever the run's
status. Each epoch logged with `log_epoch` also carries `run_energy_*` and `ledger_energy_*` so
far, so a run killed without warning still tells what it spent.

Status: FINISHED; FAILED on an exception (its message in the tag `error`); KILLED on Ctrl-C or
SIGTERM (a handler that raises `Terminated` is installed for the duration of the run, in the main
thread). Imports the tracking store and provenance, `pipeline.names`.
"""
from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from pipeline.config.schema import Config, TrackingConfig
from pipeline.errors import Terminated
from pipeline.names import (
    ENERGY_PREFIXES_TAG,
    EXECUTION_KEYS,
    HEARTBEAT_S,
    HEARTBEAT_TAG,
    KWH_CODECARBON,
    KWH_GREEN_ALGORITHMS,
    LEDGER,
    RUN,
    SAMPLE,
)
from pipeline.tracking import provenance, ui
from pipeline.tracking import store
from pipeline.tracking.store import client, mlflow_key

# MLflow's limits per log_batch call and per value.
_MAX_PARAMS_TAGS = 100
_MAX_METRICS = 1000
_MAX_TAG_LEN = 5000
_MAX_DIGEST = 36
PARENT_TAG = "mlflow.parentRunId"  # the MLflow UI nests a run under this one


class TrackedRun:
    """One MLflow run, open for the duration of `run(...)`. Every write is one batched call."""

    def __init__(self, mlflow_client, run_id: str):
        self.client = mlflow_client
        self.run_id = run_id
        self._meters: list[tuple[Any, str]] = []  # meter, prefix
        self._samples_logged: list[int] = []  # per meter, its energy samples already logged
        self._max_step = 0
        self._last_ms = 0
        self._pending: list = []  # epoch writes in the background, waited for at close
        # One writer thread of our own rather than MLflow's asynchronous logging, whose queue
        # costs a full second at every run's end (its worker polls with a 1 s timeout).
        self._writer: ThreadPoolExecutor | None = None
        self._alive = threading.Event()  # set when the run closes: the heartbeat stops

    def start_heartbeat(self) -> None:
        """Tag the run `heartbeat` (unix seconds) every HEARTBEAT_S while it is open: a run still
        RUNNING without a recent heartbeat was lost (its process killed without warning)."""
        from mlflow.entities import RunTag

        def beat() -> None:
            while not self._alive.is_set():
                try:
                    self._batch(tags=[RunTag(HEARTBEAT_TAG, str(int(time.time())))], synchronous=False)
                except RuntimeError:  # the writer shut down: the run is closing
                    return
                self._alive.wait(HEARTBEAT_S)

        self._writer = self._writer or ThreadPoolExecutor(1, thread_name_prefix="sepcost-mlflow")
        threading.Thread(target=beat, name="sepcost-heartbeat", daemon=True).start()

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
        self._batch(tags=self._tag_objs(tags))

    @staticmethod
    def _tag_objs(tags: Mapping[str, Any]) -> list:
        from mlflow.entities import RunTag

        return [RunTag(mlflow_key(k), str(v)[:_MAX_TAG_LEN]) for k, v in tags.items()]

    def _metric_objs(self, metrics: Mapping[str, float], step: int | None) -> list:
        """Metrics at `step`, or each at the run's latest step (step None), so that it is the value
        MLflow shows (its "latest" is the largest step, then the latest time). Timestamps strictly
        increase within the run, so a final value logged in the same millisecond as an epoch's still wins."""
        from mlflow.entities import Metric

        now = max(int(time.time() * 1000), self._last_ms + 1)
        out = []
        for k, v in metrics.items():
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise TypeError(f"metric {k!r}: expected a number, got {v!r}") from None
            out.append(Metric(mlflow_key(k), v, now, self._max_step if step is None else step))
        self._last_ms = now
        return out

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Per-epoch metrics at step `epoch`, with the watched meters' energy of this execution so
        far, in one log_batch call, written in the background (a SQLite commit takes ~10-30 ms)
        and waited for when the run closes or on `flush()`."""
        values = dict(metrics)
        for meter, prefix in self._meters:
            try:
                own = meter.run_totals()
            except Exception:
                continue
            for k in (KWH_CODECARBON, KWH_GREEN_ALGORITHMS):
                values.setdefault(f"{prefix}{RUN}{k}", own[k])
                values.setdefault(f"{prefix}{LEDGER}{k}", own[k])
        self._max_step = max(self._max_step, int(epoch))
        objs = [m for m in self._metric_objs(values, int(epoch)) if math.isfinite(m.value)]
        self._batch(metrics=objs + self._new_samples(), synchronous=False)

    def _new_samples(self) -> list:
        """The energy samples each watched meter took since the last call, as metric histories
        (`<prefix>sample_energy_kwh_*`, one point a sample at its own time and index)."""
        from mlflow.entities import Metric

        out = []
        for i, (meter, prefix) in enumerate(self._meters):
            new = meter.samples[self._samples_logged[i]:]
            for k, (ms, totals) in enumerate(new, start=self._samples_logged[i]):
                out += [Metric(mlflow_key(f"{prefix}{SAMPLE}{key}"), totals[key], ms, k)
                        for key in (KWH_CODECARBON, KWH_GREEN_ALGORITHMS) if math.isfinite(totals[key])]
            self._samples_logged[i] += len(new)
        return out

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

    def log_dataset(self, name: str, digest: str, source: str, profile: Mapping[str, Any], context: str) -> None:
        """The data the run used, for the MLflow UI's Datasets column: `name`, a digest of its
        content (MLflow keeps 36 characters), where it is, what it holds, and what for
        ("training", "evaluation")."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.exceptions import MlflowException

        dataset = Dataset(name=name, digest=digest[:_MAX_DIGEST], source_type="local",
                          source=json.dumps({"uri": source}), profile=json.dumps(dict(profile)))
        inputs = [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])]
        try:
            self.client.log_inputs(self.run_id, inputs)
        except MlflowException:
            # parallel jobs may insert the same data set at once: a server on PostgreSQL refuses the
            # second insert; once one landed, logging again links this run to that row
            self.client.log_inputs(self.run_id, inputs)

    def log_pytorch_model(self, module, name: str, code_paths: list[str]) -> str:
        """`module` as an MLflow model of this run (the UI's Models column), pickled with the
        packages at `code_paths` beside it so that `mlflow.pytorch.load_model(uri)` rebuilds it
        anywhere with torch; returns that URI (also the run's tag `model_uri`). Pickled, not
        MLflow's default torch.export graph, which fixes the input's length and cannot trace the
        models' custom autograd functions; loading a pickle runs code: load from stores you trust."""
        import mlflow
        import mlflow.pytorch
        import torch

        # MLflow files a logged model under the process's active experiment, not its run's
        mlflow.set_experiment(experiment_id=self.client.get_run(self.run_id).info.experiment_id)
        quiet = logging.getLogger("mlflow.models.model")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # "logged without a signature": a waveform in, waveforms out
        try:
            info = mlflow.pytorch.log_model(module, name=name, run_id=self.run_id, code_paths=code_paths,
                                            serialization_format="pickle",
                                            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        finally:
            quiet.setLevel(level)
        self.set_tags({"model_uri": info.model_uri})
        return info.model_uri

    # -- energy --------------------------------------------------------------------------------

    def watch_energy(self, meter, prefix: str = "") -> None:
        """Log `meter`'s energy when the run closes, success or failure: its totals as final metrics
        (with `prefix`, e.g. "eval_"; one meter per prefix), this execution's part as
        `<prefix>run_*` and `<prefix>ledger_*` (what the report's ledger adds up: the two agree
        since a run is never reopened; stores written when evaluation reopened its training's run
        summed both executions there), its methods and hardware as tags, and CodeCarbon's CSV as an
        artifact under `<prefix>energy/`."""
        self._meters.append((meter, prefix))
        self._samples_logged.append(0)
        prefixes = [p for _, p in self._meters]
        self.set_tags({ENERGY_PREFIXES_TAG: json.dumps(prefixes),
                       **{f"{prefix}hardware.{k}": v for k, v in meter.hardware.items()}})

    def _final_energy(self) -> tuple[list, dict[str, str], list[tuple[Path, str]]]:
        """What the watched meters add at close: final metrics with the samples not yet logged,
        method and hardware tags, and (file, artifact folder) pairs."""
        metrics, tags, files = [], {}, []
        for meter, prefix in self._meters:
            total, own = meter.totals(), meter.run_totals()
            values = {f"{prefix}{k}": v for k, v in total.items()}
            values.update({f"{prefix}{part}{k}": own[k] for k in EXECUTION_KEYS for part in (RUN, LEDGER)})
            metrics += self._metric_objs({k: v for k, v in values.items() if math.isfinite(v)}, None)
            tags.update({f"{prefix}energy.method.{k}": v for k, v in meter.methods.items()})
            tags.update({f"{prefix}hardware.{k}": v for k, v in meter.hardware.items()})
            tags.update({f"{prefix}energy.ga.{k}": f"{v:.6g}" if isinstance(v, float) else v
                         for k, v in meter.ga_inputs().items()})
            files += [(path, f"{prefix}energy") for path in meter.files()]
        return metrics + self._new_samples(), tags, files

    def _close(self, status: str, error: BaseException | None) -> None:
        """The run's last writes, as few as the store allows (a stopped training's exit waits for
        them): the energy and the outcome's tags in one batch, the meters' files, the status."""
        self._alive.set()
        problems = []
        try:
            self.flush()
        except Exception as err:
            problems.append(f"epoch metrics not all logged: {type(err).__name__}: {err}")
        finally:
            if self._writer is not None:
                self._writer.shutdown()
        metrics, tags, files = [], {}, []
        try:
            metrics, tags, files = self._final_energy()
        except Exception as err:  # never hide the stage's own outcome behind a logging problem
            problems.append(f"energy not logged: {type(err).__name__}: {err}")
        outcome = {}
        if error is not None:
            outcome["error"] = f"{type(error).__name__}: {error}"[:1000]
        try:
            try:
                self._batch(metrics=metrics, tags=self._tag_objs({**tags, **outcome,
                                                                  **_problems_tag(problems)}))
                for path, artifact_path in files:
                    self.log_artifact(path, artifact_path)
            except Exception as err:
                problems.append(f"energy not logged: {type(err).__name__}: {err}")
                self._batch(tags=self._tag_objs({**outcome, **_problems_tag(problems)}))
        finally:
            self.client.set_terminated(self.run_id, status=status)


def _problems_tag(problems: list[str]) -> dict[str, str]:
    return {"tracking.problems": " | ".join(problems)} if problems else {}


def _open(config: Config, stage: str, run_name: str | None, parent: str | None, ranks: int) -> TrackedRun:
    from mlflow.entities import Param

    mlflow_client = client(config.tracking)
    store.tag_experiment(config.tracking, {**provenance.study_tags(config), **ui.experiment_tags()})
    name = run_name or (config.run if config.variant else provenance.stage_kind(stage))
    tags = provenance.run_tags(config, stage, name)
    if parent:
        tags[PARENT_TAG] = parent
    created = mlflow_client.create_run(store.experiment_id(config.tracking), run_name=name, tags=tags)
    tracked = TrackedRun(mlflow_client, created.info.run_id)
    tracked._batch(params=[Param(k, v) for k, v in provenance.run_params(config, stage, ranks).items()])
    return tracked


@contextmanager
def run(config: Config, stage: str, run_name: str | None = None,
        parent: str | None = None, ranks: int = 1) -> Iterator[TrackedRun]:
    """A new MLflow run around one execution of `stage` (e.g. "train@base-seed42") of
    `config.variant`, named after the run (or `run_name`, e.g. "mixture" for a reference row), with
    its params (of a training on `ranks` data-parallel processes) and provenance tags, a child of
    run `parent` if given (an evaluation of its training's run). Ends FINISHED, FAILED on an exception, KILLED on KeyboardInterrupt or SIGTERM;
    the watched energy is logged in every case and the exception is re-raised."""
    tracked = _open(config, stage, run_name, parent, ranks)
    tracked.start_heartbeat()
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


def close_lost(cfg: TrackingConfig, run_id: str | None, closed_by: str) -> None:
    """End as KILLED a run its process left RUNNING (killed without warning, e.g. `kill -9`): a
    resumed training closes the run it resumes from. Its energy is what its epochs logged."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return
    mlflow_client = client(cfg)
    try:
        previous = mlflow_client.get_run(run_id)
    except MlflowException:
        return
    if previous.info.status == "RUNNING":
        mlflow_client.set_tag(run_id, "closed_by", closed_by)
        mlflow_client.set_terminated(run_id, status="KILLED")


def log_to(cfg: TrackingConfig, run_id: str | None, metrics: Mapping[str, float], tags: Mapping[str, str]) -> None:
    """Add final metrics and tags to a closed run without reopening it (its status and Duration
    stay): an evaluation's scores into its training's run, where the runs table shows them."""
    from mlflow.entities import Metric, RunTag
    from mlflow.exceptions import MlflowException

    if not run_id:
        return
    now = int(time.time() * 1000)
    try:
        client(cfg).log_batch(run_id, metrics=[Metric(mlflow_key(k), float(v), now, 0) for k, v in metrics.items()
                                               if math.isfinite(float(v))],
                              tags=[RunTag(mlflow_key(k), str(v)[:_MAX_TAG_LEN]) for k, v in tags.items()])
    except MlflowException:  # the store was made anew since the training: nothing to add to
        pass
