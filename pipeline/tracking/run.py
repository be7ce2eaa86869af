"""The life cycle of an MLflow run: one per execution of a stage, failed and killed ones included.

    with tracking.run(cfg, "train@base") as tracked, EnergyMeter(cfg.energy, ...) as meter:
        tracked.watch_energy(meter)                  # logged at close, success or failure
        for epoch in ...:
            tracked.log_epoch(epoch, {"train_loss": ..., "valid_usdr_avg": ...})
        tracked.log_metrics({"params_m": ...})

    with tracking.run(cfg, "evaluate@base", run_id=training_run_id) as tracked, EnergyMeter(...) as meter:
        tracked.watch_energy(meter, prefix="eval_")

Energy: `watch_energy` logs, when the run closes, the meter's totals (`energy_kwh_codecarbon`,
`energy_kwh_green_algorithms`, `emissions_kg_co2e`, `duration_s` and the CPU/GPU/RAM split;
including energy of earlier executions when resuming) and this execution's own part as
`run_energy_kwh_codecarbon`, `run_energy_kwh_green_algorithms`, `run_emissions_kg_co2e`,
`run_duration_s`, and as `ledger_*` the same summed over every execution logged under that prefix
in this run (an evaluation repeated into the same training run). Each epoch logged with `log_epoch`
also carries `run_energy_*` and `ledger_energy_*` so far, so a run killed without warning still
tells what it spent. The report's ledger adds up the `ledger_*` metrics of every run, whatever its
status.

Status: FINISHED; FAILED on an exception; KILLED on Ctrl-C or SIGTERM (a handler that raises
`Terminated` is installed for the duration of the run, in the main thread). A tag
`status.<stage kind>` (e.g. `status.train`, `status.evaluate`) keeps each stage's own outcome, since
evaluation reopens the training's run. Imports the tracking store and provenance, `pipeline.names`.
"""
from __future__ import annotations

import json
import math
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from pipeline.config.schema import Config, TrackingConfig
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
from pipeline.tracking import provenance
from pipeline.tracking.store import client, experiment_id, mlflow_key

# MLflow's limits per log_batch call and per value.
_MAX_PARAMS_TAGS = 100
_MAX_METRICS = 1000
_MAX_TAG_LEN = 5000


class Terminated(SystemExit):
    """Raised by the SIGTERM handler `run` installs; exits with 128 + the signal number if uncaught."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(128 + int(signum))
        self.signum = int(signum)


class TrackedRun:
    """One MLflow run, open for the duration of `run(...)`. Every write is one batched call."""

    def __init__(self, mlflow_client, run_id: str, stage: str, existing_metrics: set[str] = frozenset()):
        self.client = mlflow_client
        self.run_id = run_id
        self.stage = stage
        self._meters: list[tuple[Any, str, dict[str, float]]] = []  # meter, prefix, earlier executions
        self._samples_logged: list[int] = []  # per meter, its energy samples already logged
        self._max_step = 0
        self._existing = set(existing_metrics)  # metric keys logged before a reopen
        self._prior: dict[str, tuple[int, int]] = {}  # key -> largest step and time before the reopen
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
        from mlflow.entities import RunTag

        self._batch(tags=[RunTag(mlflow_key(k), str(v)[:_MAX_TAG_LEN]) for k, v in tags.items()])

    def _metric_objs(self, metrics: Mapping[str, float], step: int | None) -> list:
        """Metrics at `step`, or each at its final place (step None). Timestamps strictly increase
        within the run, so a final value logged in the same millisecond as an epoch's still wins."""
        from mlflow.entities import Metric

        now = max(int(time.time() * 1000), self._last_ms + 1)
        out = []
        for k, v in metrics.items():
            key = mlflow_key(k)
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
            for k in (KWH_CODECARBON, KWH_GREEN_ALGORITHMS):
                values.setdefault(f"{prefix}{RUN}{k}", own[k])
                values.setdefault(f"{prefix}{LEDGER}{k}", before[k] + own[k])
        self._max_step = max(self._max_step, int(epoch))
        objs = [m for m in self._metric_objs(values, int(epoch)) if math.isfinite(m.value)]
        self._batch(metrics=objs + self._new_samples(), synchronous=False)

    def _new_samples(self) -> list:
        """The energy samples each watched meter took since the last call, as metric histories
        (`<prefix>sample_energy_kwh_*`, one point a sample at its own time and index)."""
        from mlflow.entities import Metric

        out = []
        for i, (meter, prefix, _) in enumerate(self._meters):
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

    # -- energy --------------------------------------------------------------------------------

    def watch_energy(self, meter, prefix: str = "") -> None:
        """Log `meter`'s energy when the run closes, success or failure: its totals as final metrics
        (with `prefix`, e.g. "eval_"; one meter per prefix), this execution's part as
        `<prefix>run_*`, the part of every execution logged under this prefix in this run (a run
        reopened twice for evaluation) as `<prefix>ledger_*`, its methods and hardware as tags, and
        CodeCarbon's CSVs as artifacts under `<prefix>energy/`."""
        data = self.client.get_run(self.run_id).data
        before = {k: data.metrics.get(f"{prefix}{LEDGER}{k}", 0.0) for k in EXECUTION_KEYS}
        self._meters.append((meter, prefix, before))
        self._samples_logged.append(0)
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
            metrics.update({f"{prefix}{RUN}{k}": own[k] for k in EXECUTION_KEYS})
            metrics.update({f"{prefix}{LEDGER}{k}": before[k] + own[k] for k in EXECUTION_KEYS})
            self.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
            self._batch(metrics=self._new_samples())
            tags = {f"{prefix}energy.method.{k}": v for k, v in meter.methods.items()}
            tags.update({f"{prefix}hardware.{k}": v for k, v in meter.hardware.items()})
            tags.update({f"{prefix}energy.ga.{k}": f"{v:.6g}" if isinstance(v, float) else v
                         for k, v in meter.ga_inputs().items()})
            self.set_tags(tags)
            for path in meter.files():
                self.log_artifact(path, f"{prefix}energy")

    def _close(self, status: str, error: BaseException | None) -> None:
        self._alive.set()
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
        tags = {f"status.{provenance.stage_kind(self.stage)}": status}
        if error is not None:
            tags[f"error.{provenance.stage_kind(self.stage)}"] = f"{type(error).__name__}: {error}"[:1000]
        if problems:
            tags["tracking.problems"] = " | ".join(problems)
        try:
            self.set_tags(tags)
        finally:
            self.client.set_terminated(self.run_id, status=status)


def _open(config: Config, stage: str, run_id: str | None, run_name: str | None) -> TrackedRun:
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException

    mlflow_client = client(config.tracking)
    params = provenance.flatten_params(config)
    previous = None
    if run_id is not None:
        try:
            previous = mlflow_client.get_run(run_id)
        except MlflowException:  # e.g. a store made anew since: log into a new run and say so
            previous = None
    if previous is None:
        name = run_name or (config.run if config.variant else provenance.stage_kind(stage))
        tags = provenance.run_tags(config, stage, name)
        if run_id is not None:
            tags["reopen_failed"] = run_id
        created = mlflow_client.create_run(experiment_id(config.tracking), run_name=name, tags=tags)
        tracked = TrackedRun(mlflow_client, created.info.run_id, stage)
        tracked._batch(params=[Param(k, v) for k, v in params.items()])
        return tracked

    mlflow_client.update_run(run_id, status="RUNNING")
    tracked = TrackedRun(mlflow_client, run_id, stage, set(previous.data.metrics))
    logged = previous.data.params
    kind = provenance.stage_kind(stage)
    stages = previous.data.tags.get("dvc.stages", "")
    git = provenance.git_info()
    tags = {
        "dvc.stages": ",".join([s for s in stages.split(",") if s] + [stage]),
        f"{kind}.git.commit": git["git.commit"],
        f"{kind}.git.dirty": git["git.dirty"],
        f"{kind}.host": socket.gethostname(),
        **{f"{kind}.{k}": v for k, v in provenance.dvc_lock_tags(stage).items()},
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
        kind = provenance.stage_kind(previous.data.tags.get("dvc.stage", ""))
        mlflow_client.set_tag(run_id, f"status.{kind}", "KILLED")
        mlflow_client.set_tag(run_id, "closed_by", closed_by)
        mlflow_client.set_terminated(run_id, status="KILLED")
