"""The MLflow run of one trial, from creation (or resumption) to FINISHED or FAILED: ``TrialRun``.

A trial is found again by its ``skipsweep.trial_id`` tag: a finished run is left as it
is (``already_finished``), an interrupted one continues in the same run, and an epoch
that was already logged is never logged again.

Epoch metrics leave the training loop through a queue: ``TrialRun.log_epoch`` returns
at once and the run's ``MetricWriter`` thread sends them (``writer``). Everything queued
is written before summary metrics, artifacts and the run's final status.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from trainables.files import disk_full
from trainables.schema import (
    EPOCH_METRICS,
    EPOCH_SECONDS,
    ERROR_TAG,
    KIND_TAG,
    PARAMS_CHANGED_TAG,
    STATUS_TAG,
    STOP_REASON_TAG,
    TRIAL_ID_TAG,
    TRIAL_KIND,
)
from trainables.tracking.retry import DEFAULT_RETRY_POLICY, RetryPolicy, with_retries
from trainables.tracking.store import ensure_experiment, find_trial_run
from trainables.tracking.system_metrics import pace, start_system_metrics, stop_system_metrics
from trainables.tracking.writer import MetricsNotLoggedError, MetricWriter

log = logging.getLogger(__name__)

FAILED_ATTEMPTS = "failed_attempts"  # artifact folder: each failed attempt's whole traceback, <UTC time>.txt
STALE_ON_SUCCESS = (ERROR_TAG, STOP_REASON_TAG)  # tags of an earlier failed or interrupted attempt

T = TypeVar("T")


def params_changed(first: dict[str, str], now: dict[str, str], recorded: str | None) -> str:
    """What a resumed attempt runs with that differs from the run's params, added to what earlier attempts recorded.

    MLflow keeps a param's first value for good, so a trial resumed on another kind of device
    (``precision``), with another CPU share (``torch_threads``) or after a throughput setting
    changed says so in a tag instead: ``"precision=bf16; torch_threads=1"`` (the values the
    later attempts used; the params keep the first). Empty when nothing differs.
    """
    entries = [entry for entry in (recorded or "").split("; ") if entry]
    for key, value in sorted(now.items()):
        entry = f"{key}={value}"
        if key in first and first[key] != value and entry not in entries:
            entries.append(entry)
    return "; ".join(entries)


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
        system_metrics_seconds: sample the system metrics (``system/...``: CPU, memory, GPU, the process's own)
            every this many seconds while the run trains; 0 = none; ``"auto"``: paced to the trial's length.
        retry_policy: how long each tracking call keeps trying (the study's ``tracking.retries`` / ``retry_wait``).
        write_paths: the folders the trial writes to (and a SQLite store's): a failure while one of them is full
            is tagged ``no space left on device: <path> has N MB free``, not with the error it caused.
        epochs: the trial's epochs, from which an ``"auto"`` sampling interval is paced.
        kind: the run's ``skipsweep.kind``: a trial of the grid, or a configuration tried while tuning.
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
        system_metrics_seconds: float | str = 0.0,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        write_paths: tuple[str | Path, ...] = (),
        epochs: int = 0,
        kind: str = TRIAL_KIND,
    ) -> None:
        self.client = MlflowClient(tracking_uri)
        store = [Path(tracking_uri.removeprefix("sqlite:///")).parent] if tracking_uri.startswith("sqlite:///") else []
        self.write_paths = [*write_paths, *store]  # where the trial writes: a failure there may be a full disk
        self.retry_policy = retry_policy
        self.experiment = experiment
        self.trial_id = trial_id
        self.run_name = run_name
        self.tags = {**tags, KIND_TAG: kind, TRIAL_ID_TAG: trial_id}
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
        self._epochs = epochs
        self._started = time.monotonic()

    def __enter__(self) -> TrialRun:
        self._started = time.monotonic()
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
            recorded = existing.data.tags.get(PARAMS_CHANGED_TAG, "")
            changed = params_changed(existing.data.params, self.params, recorded)
            extra = {}
            if changed != recorded:  # e.g. resumed on a node without bf16, or with another CPU share
                log.warning("run %s resumes with other params than it started with: %s", self.run_name, changed)
                extra[PARAMS_CHANGED_TAG] = changed
            self.set_tags({**self.tags, **extra})  # the node and commit that continue the trial replace the first ones
            new = [Param(key, value) for key, value in self.params.items() if key not in existing.data.params]
            if new:  # a run an older version started: params it did not log yet (MLflow keeps logged ones as they are)
                self._retry(lambda: self.client.log_batch(self.run_id, params=new), "log new params")
        self.set_tags({STATUS_TAG: "running"})
        if self._background:
            self._writer = MetricWriter(self.client, self.run_id, self.retry_policy)
        self._monitor = start_system_metrics(
            self.client, self.run_id, self.run_name, self._system_metrics_seconds, self.resumed
        )
        return self

    @property
    def writer(self) -> MetricWriter | None:
        """The run's background metric writer (its ``write_seconds`` and ``backlog_max``); None when writing in the
        caller's thread or once the run has ended."""
        return self._writer

    def _retry(self, call: Callable[[], T], what: str) -> T:
        return with_retries(call, what, self.retry_policy)

    def _logged_steps(self, key: str) -> set[int]:
        history = self._retry(lambda: self.client.get_metric_history(self.run_id, key), "metric history")
        return {metric.step for metric in history}

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set tags in one call (values as strings)."""
        batch = [RunTag(key, str(value)) for key, value in tags.items()]
        self._retry(lambda: self.client.log_batch(self.run_id, tags=batch), "set tags")

    def log_epoch(self, epoch: int, metrics: dict[str, float | None]) -> None:
        """Log one epoch's metrics in one batch, skipping any already logged at this step.

        With the background writer this only queues the batch (timestamped now) and
        returns; it raises ``MetricsNotLoggedError`` when an earlier batch failed for good.
        """
        seconds = metrics.get(EPOCH_SECONDS)
        if self._system_metrics_seconds == "auto" and seconds is not None:
            pace(self._monitor, time.monotonic() - self._started + max(self._epochs - epoch - 1, 0) * seconds)
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
        """Upload one file (under ``artifact_path``), after the queued epochs."""
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
                self._stop_system_metrics()  # no monitor thread outlives its run
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

    def _stop_system_metrics(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            stop_system_metrics(monitor, self.client, self.run_id, self.run_name)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _mark_failed(self, kind: type, error: BaseException) -> None:
        try:
            full = disk_full(error, self.write_paths)
            if full:
                log.error("%s: %s", self.run_name, full)
            message = (full or f"{kind.__name__}: {error}")[:5000]
            self.set_tags({STATUS_TAG: "failed", ERROR_TAG: message})
            self.client.set_terminated(self.run_id, "FAILED")
        except Exception as tracking_error:  # the trial's own error is the one to raise
            log.error("could not mark run %s FAILED: %s", self.run_id, tracking_error)
        try:  # the whole traceback beside the one-line tag: the driver's log shows one line per failure
            text = "".join(traceback.format_exception(kind, error, error.__traceback__))
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            self.client.log_text(self.run_id, text, f"{FAILED_ATTEMPTS}/{stamp}.txt")
        except Exception as tracking_error:  # a full disk, a store that is down: the tag above says what failed
            log.warning("could not keep the traceback of run %s: %s", self.run_id, tracking_error)
