"""Every MLflow call of a trial lives here: one experiment per study, one run per trial key.

The layout (DESIGN.md) that ``analysis`` reads:

- run name ``variant/dataset[/a0.30]/s1``; tags for every key field (``study``,
  ``dataset``, ``variant``, ``train_alpha``, ``seed``), ``skipsweep.kind=trial``,
  ``skipsweep.trial_id``, ``config_hash``, ``split_hash``, ``git_commit``,
  ``skipsweep.status``, ``skipsweep.compiled`` (whether ``torch.compile`` ran, when
  the study asks for it) and, on failure, ``error``;
- params: every training hyper-parameter;
- metrics: ``train_loss``, ``val_dice``, ``epoch_seconds`` at step = epoch;
  ``best_val_dice``, ``best_epoch``; ``test_dice.<condition>`` (and ``test_hd95``,
  ``test_asd``, ``test_nsd`` when the study asks); MLflow's system metrics
  (``system/cpu_utilization_percentage``, ``system/system_memory_usage_megabytes``,
  ``system/gpu_*`` with nvidia-ml-py) every ``tracking.system_metrics_seconds``;
- artifacts: ``checkpoints/best.pt``, ``checkpoints/last.pt``, ``per_image.parquet``,
  ``split_manifest.json``.

A trial is found again by its ``skipsweep.trial_id`` tag: a rerun of a finished
trial is skipped, an interrupted one continues in the same run, and an epoch that
was already logged is never logged again.

Epoch metrics leave the training loop through a queue: ``TrialRun.log_epoch`` returns
at once and one writer thread per run sends each epoch in one ``log_batch`` call
(epochs that queued up behind a slow call go out together), with retries. A write
that fails for good is raised in the training thread at the next ``log_epoch`` (or
at the end of the run), so the trial fails instead of training on without its
record. Everything queued is written before summary metrics, artifacts and the
run's final status.

Every call takes its ``RetryPolicy`` from its caller (the study's ``tracking.retries`` and
``tracking.retry_wait``); tag and metric names come from ``trainables.schema``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mlflow.entities import Metric, Param, RunTag
from mlflow.entities import Run as MlflowRun
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from trainables.config import TrackingConfig
from trainables.schema import (
    ALPHA_CONDITION_PREFIX,
    BEST_VAL_DICE,
    EPOCH_METRICS,
    ERROR_TAG,
    IN_DOMAIN,
    KIND_TAG,
    STATUS_TAG,
    STOP_REASON_TAG,
    STUDY_TAG,
    TRIAL_ID_TAG,
    TRIAL_KIND,
    condition_metric,
    kind_filter,
    search_all_runs,
)

log = logging.getLogger(__name__)

STALE_ON_SUCCESS = (ERROR_TAG, STOP_REASON_TAG)  # tags of an earlier failed or interrupted attempt
MAX_METRICS_PER_CALL = 1000  # MLflow's limit for one log_batch call
_STOP = object()  # tells a MetricWriter to end

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How long a tracking call keeps trying: ``attempts`` tries, waits doubling from ``first_wait`` to ``max_wait``."""

    attempts: int = 8
    first_wait: float = 0.5
    max_wait: float = 30.0

    @classmethod
    def from_config(cls, tracking: TrackingConfig) -> RetryPolicy:
        """The policy a study file asks for: ``tracking.retries`` attempts, waits from ``tracking.retry_wait``."""
        return cls(tracking.retries, tracking.retry_wait)

    @property
    def budget_seconds(self) -> float:
        """Total time spent waiting before the last attempt."""
        return sum(min(self.first_wait * 2**i, self.max_wait) for i in range(self.attempts - 1))


DEFAULT_RETRY_POLICY = RetryPolicy()  # the study file's defaults (tracking.retries, tracking.retry_wait)


def only_our_retries() -> None:
    """Make our back-off the one retry budget in force; call it where the work starts (a trial, the driver).

    MLflow's own HTTP retries (up to minutes against a server that is down) are turned
    off unless the user set ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` explicitly. MLflow reads
    the variable at each request, and has no other way to set it.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def with_retries(call: Callable[[], T], what: str, policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> T:
    """Run one tracking call, retrying with exponential back-off when the store does not answer.

    Raises the last error once the policy's attempts are used up, so a trial fails
    clearly instead of training on without its record.
    """
    wait = policy.first_wait
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except (MlflowException, OSError) as error:
            if attempt == policy.attempts:
                raise
            log.warning("MLflow %s failed (%s); retry %d/%d in %.1f s", what, error, attempt, policy.attempts - 1, wait)
            time.sleep(wait)
            wait = min(wait * 2, policy.max_wait)
    raise AssertionError("unreachable")


def ensure_experiment(tracking_uri: str, name: str) -> str:
    """Create the store (schema) and the experiment once, before any trial starts; return its id."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, tags={STUDY_TAG: name})
    except MlflowException:
        experiment = client.get_experiment_by_name(name)  # created by a concurrent process
        if experiment is None:
            raise
        return experiment.experiment_id


def find_trial_run(client: MlflowClient, experiment_id: str, trial_id: str) -> MlflowRun | None:
    """The run of one trial key (the most recent if a store somehow holds several)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TRIAL_ID_TAG}` = '{trial_id}'",
        order_by=["attributes.start_time DESC"],
        max_results=5,
    )
    return runs[0] if runs else None


def finished_trial_ids(tracking_uri: str, experiment: str, policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> set[str]:
    """Trial ids whose run is FINISHED in the experiment (empty if it does not exist)."""
    client = MlflowClient(tracking_uri)

    def search() -> list:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        status = f"{kind_filter(TRIAL_KIND)} and attributes.status = 'FINISHED'"
        return search_all_runs(client, found.experiment_id, status)

    runs = with_retries(search, "finished runs", policy)
    return {run.data.tags[TRIAL_ID_TAG] for run in runs if TRIAL_ID_TAG in run.data.tags}


class MetricWriter:
    """One background thread that sends queued metric batches of one run, in order, with retries.

    Batches that wait in the queue while a call is under way (a slow server) go out
    together in the next call, up to ``MAX_METRICS_PER_CALL``, so the writer keeps up
    however short the epochs. Each batch's timestamps are fixed when it is queued, so
    a retried call whose first attempt did reach the store writes rows identical to
    the ones already there, which the store drops as duplicates (MLflow's SQL store
    keys a metric on run, key, step, timestamp and value).
    """

    def __init__(self, client: MlflowClient, run_id: str, policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> None:
        self.client = client
        self.run_id = run_id
        self.policy = policy
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name=f"mlflow-writer-{run_id[:8]}", daemon=True)
        self._thread.start()

    def submit(self, what: str, batch: list[Metric]) -> None:
        """Queue one batch; raise first if an earlier batch could not be written."""
        self.check()
        self._queue.put((what, batch))

    def flush(self) -> None:
        """Wait until every queued batch is written; raise if one could not be."""
        self._queue.join()
        self.check()

    def close(self) -> None:
        """Write what is queued, then stop the thread (raises nothing: call ``flush`` first to see errors)."""
        self._queue.put(_STOP)
        self._thread.join()

    def check(self) -> None:
        if self.error is not None:
            raise MetricsNotLoggedError(f"MLflow run {self.run_id}: {self.error}") from self.error

    def _work(self) -> None:
        waiting = None  # an item taken from the queue that did not fit into the last call
        while True:
            item, waiting = (waiting if waiting is not None else self._queue.get()), None
            if item is _STOP:
                self._queue.task_done()
                return
            names, metrics = [item[0]], list(item[1])
            while True:
                try:
                    extra = self._queue.get_nowait()
                except queue.Empty:
                    break
                if extra is _STOP or len(metrics) + len(extra[1]) > MAX_METRICS_PER_CALL:
                    waiting = extra
                    break
                names.append(extra[0])
                metrics += extra[1]
            try:
                if self.error is None:  # after a failure the rest is dropped: the trial is failing anyway
                    self._write(names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}", metrics)
            except BaseException as error:  # handed to the training thread, never lost in this one
                self.error = error
            finally:
                for _ in names:
                    self._queue.task_done()

    def _write(self, what: str, batch: list[Metric]) -> None:
        with_retries(lambda: self.client.log_batch(self.run_id, metrics=batch), what, self.policy)


class MetricsNotLoggedError(RuntimeError):
    """The background writer could not log a batch of metrics, even after its retries."""


class TrialRun:
    """The MLflow run of one trial, as a context manager that ends it FINISHED or FAILED.

    Args:
        tracking_uri: where the store is.
        experiment: the study's experiment name.
        trial_id: the stable id of the trial key.
        run_name: the readable run name.
        tags: key fields and provenance.
        params: hyper-parameters (strings).
        background: log epochs from a writer thread (default); False writes them in the caller's thread.
        system_metrics_seconds: sample MLflow's system metrics (``system/...``: CPU, memory, GPU) every
            this many seconds while the run trains; 0 = none.
        retry_policy: how long each tracking call keeps trying (the study's ``tracking.retries`` / ``retry_wait``).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        trial_id: str,
        run_name: str,
        tags: dict[str, str],
        params: dict,
        background: bool = True,
        system_metrics_seconds: float = 0.0,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    ) -> None:
        self.client = MlflowClient(tracking_uri)
        self.retry_policy = retry_policy
        self.experiment = experiment
        self.trial_id = trial_id
        self.run_name = run_name
        self.tags = {**tags, KIND_TAG: TRIAL_KIND, TRIAL_ID_TAG: trial_id}
        self.params = {key: str(value) for key, value in params.items()}
        self.run_id: str | None = None
        self.already_finished = False
        self.resumed = False
        self._logged: dict[str, set[int]] = {}
        self._background = background
        self._writer: MetricWriter | None = None
        self._stale_tags: list[str] = []
        self._system_metrics_seconds = system_metrics_seconds
        self._monitor = None

    def __enter__(self) -> TrialRun:
        experiment_id = self._retry(lambda: ensure_experiment(self.client.tracking_uri, self.experiment), "experiment")
        existing = self._retry(lambda: find_trial_run(self.client, experiment_id, self.trial_id), "search")
        if existing is not None and existing.info.status == "FINISHED":
            self.run_id = existing.info.run_id
            self.already_finished = True
            return self
        if existing is None:
            run = self._retry(
                lambda: self.client.create_run(experiment_id, tags=self.tags, run_name=self.run_name), "create run"
            )
            self.run_id = run.info.run_id
            params = [Param(key, value) for key, value in self.params.items()]
            self._retry(lambda: self.client.log_batch(self.run_id, params=params), "log params")
        else:
            self.run_id = existing.info.run_id
            self.resumed = True
            self._stale_tags = [key for key in STALE_ON_SUCCESS if key in existing.data.tags]
            self._retry(lambda: self.client.update_run(self.run_id, status="RUNNING"), "reopen run")
            self._logged = {key: self._logged_steps(key) for key in EPOCH_METRICS}
            self.set_tags(self.tags)  # the node and commit that continue the trial replace the first ones
        self.set_tags({STATUS_TAG: "running"})
        if self._background:
            self._writer = MetricWriter(self.client, self.run_id, self.retry_policy)
        self._start_system_metrics()
        return self

    def _retry(self, call: Callable[[], T], what: str) -> T:
        return with_retries(call, what, self.retry_policy)

    def _logged_steps(self, key: str) -> set[int]:
        history = self._retry(lambda: self.client.get_metric_history(self.run_id, key), "metric history")
        return {metric.step for metric in history}

    def set_tags(self, tags: dict[str, Any]) -> None:
        batch = [RunTag(key, str(value)) for key, value in tags.items()]
        self._retry(lambda: self.client.log_batch(self.run_id, tags=batch), "set tags")

    def log_epoch(self, epoch: int, metrics: dict[str, float | None]) -> None:
        """Log one epoch's metrics in one batch, skipping any already logged at this step.

        With the background writer this only queues the batch (timestamped now) and
        returns; it raises ``MetricsNotLoggedError`` when an earlier batch failed for good.
        """
        now = int(time.time() * 1000)
        batch = []
        for key, value in metrics.items():
            if value is None or epoch in self._logged.get(key, ()):
                continue
            batch.append(Metric(key, float(value), now, epoch))
            self._logged.setdefault(key, set()).add(epoch)
        if self._writer is not None:
            if batch:
                self._writer.submit(f"log epoch {epoch}", batch)
            else:
                self._writer.check()
        elif batch:
            self._retry(lambda: self.client.log_batch(self.run_id, metrics=batch), f"log epoch {epoch}")

    def flush(self) -> None:
        """Wait until every queued epoch is in the store; raise if one could not be written."""
        if self._writer is not None:
            self._writer.flush()

    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Summary metrics (step 0), in one call, after the queued epochs."""
        self.flush()
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, 0) for key, value in metrics.items()]
        self._retry(lambda: self.client.log_batch(self.run_id, metrics=batch), "log metrics")

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.flush()
        self._retry(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path), f"artifact {path}")

    def __exit__(self, kind, error, traceback) -> bool:
        if self.already_finished:
            return False
        if error is None:
            try:
                self.flush()  # every epoch is in the store before the run says FINISHED
            except MetricsNotLoggedError as flush_error:
                self._close_writer()
                self._mark_failed(MetricsNotLoggedError, flush_error)
                raise
            self._close_writer()
            self._stop_system_metrics()
            for key in self._stale_tags:  # a finished run carries no error of an earlier attempt
                self._retry(lambda key=key: self.client.delete_tag(self.run_id, key), f"delete tag {key}")
            self.set_tags({STATUS_TAG: "finished"})
            self._retry(lambda: self.client.set_terminated(self.run_id, "FINISHED"), "finish run")
            return False
        self._close_writer()  # the epochs done so far are still worth having
        self._stop_system_metrics()
        self._mark_failed(kind, error)
        return False

    def _start_system_metrics(self) -> None:
        """MLflow's own monitor thread: CPU and memory (GPU where nvidia-ml-py finds one), a resumed run continuing."""
        if self._system_metrics_seconds <= 0:
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # four INFO lines a run otherwise
            self._monitor = SystemMetricsMonitor(
                self.run_id,
                sampling_interval=self._system_metrics_seconds,
                resume_logging=self.resumed,
                tracking_uri=self.client.tracking_uri,
            )
            self._monitor.start()
        except Exception as error:  # resource figures are worth having, not worth failing a trial for
            log.warning("%s: no system metrics: %s: %s", self.run_name, type(error).__name__, error)
            self._monitor = None

    def _stop_system_metrics(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return
        monitor.finish()  # logs what it sampled; before the run ends, while it is still RUNNING
        try:  # a run shorter than the monitor's first round (or its first store read) gets one closing sample
            metrics = self.client.get_run(self.run_id).data.metrics
            if not any(key.startswith("system/") for key in metrics):
                monitor.collect_metrics()
                monitor.publish_metrics(monitor.aggregate_metrics())
                monitor.mlflow_logger.flush()
        except Exception as error:
            log.warning("%s: no closing system metrics: %s: %s", self.run_name, type(error).__name__, error)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _mark_failed(self, kind: type, error: BaseException) -> None:
        try:
            message = f"{kind.__name__}: {error}"[:5000]
            self.set_tags({STATUS_TAG: "failed", ERROR_TAG: message})
            self.client.set_terminated(self.run_id, "FAILED")
        except Exception as tracking_error:  # the trial's own error is the one to raise
            log.error("could not mark run %s FAILED: %s", self.run_id, tracking_error)


def mark_interrupted(
    tracking_uri: str, experiment: str, reason: str, since_ms: int, policy: RetryPolicy = DEFAULT_RETRY_POLICY
) -> list[str]:
    """End the trial runs a stopped driver leaves unfinished as KILLED, tagged with ``reason``; return their names.

    Those are the RUNNING runs (one driver per study: every one is this driver's) and the
    runs that ended FAILED at or after ``since_ms`` (trials that saw the signal too). A
    rerun continues them like any unfinished run.
    """
    client = MlflowClient(tracking_uri)
    found = with_retries(lambda: client.get_experiment_by_name(experiment), "experiment", policy)
    if found is None:
        return []
    unfinished = with_retries(
        lambda: search_all_runs(
            client, found.experiment_id, f"{kind_filter(TRIAL_KIND)} and attributes.status != 'FINISHED'"
        ),
        "search unfinished runs",
        policy,
    )
    stopped = [
        run
        for run in unfinished
        if run.info.status == "RUNNING" or (run.info.status == "FAILED" and (run.info.end_time or 0) >= since_ms)
    ]
    tags = [RunTag(STATUS_TAG, "killed"), RunTag(STOP_REASON_TAG, reason)]
    for run in stopped:
        with_retries(lambda run=run: client.log_batch(run.info.run_id, tags=tags), "set tags", policy)
        with_retries(lambda run=run: client.set_terminated(run.info.run_id, "KILLED"), "kill run", policy)
    return sorted(run.info.run_name for run in stopped)


def trial_summaries(tracking_uri: str, experiment: str, policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> list[dict]:
    """One row per trial run of the experiment: run name, status, best val Dice, in-domain test Dice."""
    client = MlflowClient(tracking_uri)

    def search() -> list:
        found = client.get_experiment_by_name(experiment)
        return [] if found is None else search_all_runs(client, found.experiment_id, kind_filter(TRIAL_KIND))

    rows = []
    for run in with_retries(search, "summary", policy):
        metrics, train_alpha = run.data.metrics, run.data.tags.get("train_alpha")
        in_domain = metrics.get(condition_metric("dice", IN_DOMAIN))
        if in_domain is None and train_alpha:  # the tag is the formatted alpha of the condition's name
            in_domain = metrics.get(condition_metric("dice", f"{ALPHA_CONDITION_PREFIX}{train_alpha}"))
        rows.append(
            {
                "run_name": run.info.run_name,
                "status": run.info.status,
                "best_val_dice": metrics.get(BEST_VAL_DICE),
                "test_dice_in_domain": in_domain,
                "run_id": run.info.run_id,
            }
        )
    return sorted(rows, key=lambda row: row["run_name"])
