"""The background thread that sends one run's epoch metrics to the store, so training never waits on it.

``TrialRun.log_epoch`` only queues a batch; one ``MetricWriter`` per run sends the batches
in order, each in one ``log_batch`` call (batches that queued up behind a slow call go
out together), with retries. A write that fails for good is kept and raised in the
training thread at its next ``submit`` or ``flush``, so the trial fails instead of
training on without its record.

This thread is kept rather than MLflow's own ``log_batch(..., synchronous=False)`` /
``MLFLOW_ENABLE_ASYNC_LOGGING`` (checked against MLflow 3.17): that queue does merge batches up
to 1000 items, but it sends them from a pool of threads (``MLFLOW_ASYNC_LOGGING_THREADPOOL_SIZE``,
10 by default) with no retry, and a failed write is only logged and kept on the returned
future, so an epoch could be lost or arrive out of order unless every future were kept and waited on.
Here one thread writes in order, retries with timestamps fixed at queue time (a retried row
duplicates the stored one exactly and is dropped, so a retry or resume never doubles an epoch),
and a write that fails for good is raised in the training thread at its next ``submit`` or ``flush``.
"""

from __future__ import annotations

import queue
import threading
import time

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from trainables.tracking.retry import DEFAULT_RETRY_POLICY, RetryPolicy, with_retries

MAX_METRICS_PER_CALL = 1000  # MLflow's limit for one log_batch call
_STOP = object()  # tells a MetricWriter to end


class MetricsNotLoggedError(RuntimeError):
    """The background writer could not log a batch of metrics, even after its retries."""


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
        self.write_seconds: list[float] = []  # each call's wall time, retries included (what the store costs)
        self.backlog_max = 0  # the most batches ever waiting behind a call (0: the writer kept up)
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
        """Raise ``MetricsNotLoggedError`` if a batch could not be written."""
        if self.error is not None:
            raise MetricsNotLoggedError(f"MLflow run {self.run_id}: {self.error}") from self.error

    def _work(self) -> None:
        waiting = None  # an item taken from the queue that did not fit into the last call
        while True:
            item, waiting = (waiting if waiting is not None else self._queue.get()), None
            self.backlog_max = max(self.backlog_max, self._queue.qsize())
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
        started = time.perf_counter()
        with_retries(lambda: self.client.log_batch(self.run_id, metrics=batch), what, self.policy)
        self.write_seconds.append(time.perf_counter() - started)
