"""Every MLflow call of a trial lives here: one experiment per study, one run per trial key.

The layout (DESIGN.md) that ``analysis`` reads:

- run name ``variant/dataset[/a0.30]/s1``; tags for every key field (``study``,
  ``dataset``, ``variant``, ``train_alpha``, ``seed``), ``skipsweep.kind=trial``,
  ``skipsweep.trial_id``, ``config_hash``, ``split_hash``, ``git_commit``,
  ``skipsweep.status`` and, on failure, ``error``;
- params: every training hyper-parameter;
- metrics: ``train_loss``, ``val_dice``, ``epoch_seconds`` at step = epoch;
  ``best_val_dice``, ``best_epoch``; ``test_dice.<condition>`` (and ``test_hd95``,
  ``test_asd``, ``test_nsd`` when the study asks);
- artifacts: ``checkpoints/best.pt``, ``checkpoints/last.pt``, ``per_image.parquet``,
  ``split_manifest.json``.

A trial is found again by its ``skipsweep.trial_id`` tag: a rerun of a finished
trial is skipped, an interrupted one continues in the same run, and an epoch that
was already logged is never logged again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mlflow.entities import Metric, Param, RunTag
from mlflow.entities import Run as MlflowRun
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

TRIAL_ID_TAG = "skipsweep.trial_id"
KIND_TAG = "skipsweep.kind"
STATUS_TAG = "skipsweep.status"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
EPOCH_METRICS = ("train_loss", "val_dice", "epoch_seconds")

T = TypeVar("T")


def resolve_tracking_uri(configured: str | None = None, base: str | Path | None = None) -> str:
    """The tracking URI to use, with a relative SQLite path made absolute.

    Order: ``configured`` (the study file), ``$MLFLOW_TRACKING_URI``, then
    ``sqlite:///mlflow.db`` in ``base`` (default: the working directory). Absolute,
    because Ray moves each trial into a folder of its own.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = Path(base or Path.cwd()) / uri[len(prefix) :]
        uri = prefix + str(path.resolve())
    return uri


def with_retries(call: Callable[[], T], what: str, attempts: int = 5, first_wait: float = 0.5) -> T:
    """Run one tracking call, retrying with exponential back-off when the store does not answer.

    Raises the last error once ``attempts`` are used up, so a trial fails clearly
    instead of training on without its record.
    """
    wait = first_wait
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except (MlflowException, OSError) as error:
            if attempt == attempts:
                raise
            log.warning("MLflow %s failed (%s); retry %d/%d in %.1f s", what, error, attempt, attempts - 1, wait)
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")


def ensure_experiment(tracking_uri: str, name: str) -> str:
    """Create the store (schema) and the experiment once, before any trial starts; return its id."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, tags={"skipsweep.study": name})
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


def finished_trial_ids(tracking_uri: str, experiment: str) -> set[str]:
    """Trial ids whose run is FINISHED in the experiment (empty if it does not exist)."""
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return set()
    finished: set[str] = set()
    token = None
    while True:
        page = client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`{KIND_TAG}` = 'trial' and attributes.status = 'FINISHED'",
            max_results=1000,
            page_token=token,
        )
        finished.update(run.data.tags[TRIAL_ID_TAG] for run in page if TRIAL_ID_TAG in run.data.tags)
        token = page.token
        if not token:
            return finished


class TrialRun:
    """The MLflow run of one trial, as a context manager that ends it FINISHED or FAILED.

    Args:
        tracking_uri: where the store is.
        experiment: the study's experiment name.
        trial_id: the stable id of the trial key.
        run_name: the readable run name.
        tags: key fields and provenance.
        params: hyper-parameters (strings).
    """

    def __init__(
        self, tracking_uri: str, experiment: str, trial_id: str, run_name: str, tags: dict[str, str], params: dict
    ) -> None:
        self.client = MlflowClient(tracking_uri)
        self.experiment = experiment
        self.trial_id = trial_id
        self.run_name = run_name
        self.tags = {**tags, KIND_TAG: "trial", TRIAL_ID_TAG: trial_id}
        self.params = {key: str(value) for key, value in params.items()}
        self.run_id: str | None = None
        self.already_finished = False
        self.resumed = False
        self._logged: dict[str, set[int]] = {}

    def __enter__(self) -> TrialRun:
        experiment_id = with_retries(lambda: ensure_experiment(self.client.tracking_uri, self.experiment), "experiment")
        existing = with_retries(lambda: find_trial_run(self.client, experiment_id, self.trial_id), "search")
        if existing is not None and existing.info.status == "FINISHED":
            self.run_id = existing.info.run_id
            self.already_finished = True
            return self
        if existing is None:
            run = with_retries(
                lambda: self.client.create_run(experiment_id, tags=self.tags, run_name=self.run_name), "create run"
            )
            self.run_id = run.info.run_id
            params = [Param(key, value) for key, value in self.params.items()]
            with_retries(lambda: self.client.log_batch(self.run_id, params=params), "log params")
        else:
            self.run_id = existing.info.run_id
            self.resumed = True
            with_retries(lambda: self.client.update_run(self.run_id, status="RUNNING"), "reopen run")
            self._logged = {key: self._logged_steps(key) for key in EPOCH_METRICS}
            self.set_tags(self.tags)  # the node and commit that continue the trial replace the first ones
        self.set_tags({STATUS_TAG: "running"})
        return self

    def _logged_steps(self, key: str) -> set[int]:
        history = with_retries(lambda: self.client.get_metric_history(self.run_id, key), "metric history")
        return {metric.step for metric in history}

    def set_tags(self, tags: dict[str, Any]) -> None:
        batch = [RunTag(key, str(value)) for key, value in tags.items()]
        with_retries(lambda: self.client.log_batch(self.run_id, tags=batch), "set tags")

    def log_epoch(self, epoch: int, metrics: dict[str, float | None]) -> None:
        """Log one epoch's metrics in one call, skipping any already logged at this step."""
        now = int(time.time() * 1000)
        batch = []
        for key, value in metrics.items():
            if value is None or epoch in self._logged.get(key, ()):
                continue
            batch.append(Metric(key, float(value), now, epoch))
            self._logged.setdefault(key, set()).add(epoch)
        if batch:
            with_retries(lambda: self.client.log_batch(self.run_id, metrics=batch), f"log epoch {epoch}")

    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Summary metrics (step 0), in one call."""
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, 0) for key, value in metrics.items()]
        with_retries(lambda: self.client.log_batch(self.run_id, metrics=batch), "log metrics")

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        with_retries(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path), f"artifact {path}")

    def __exit__(self, kind, error, traceback) -> bool:
        if self.already_finished:
            return False
        if error is None:
            self.set_tags({STATUS_TAG: "finished"})
            with_retries(lambda: self.client.set_terminated(self.run_id, "FINISHED"), "finish run")
            return False
        try:
            message = f"{kind.__name__}: {error}"[:5000]
            self.set_tags({STATUS_TAG: "failed", "error": message})
            self.client.set_terminated(self.run_id, "FAILED")
        except Exception as tracking_error:  # the trial's own error is the one to raise
            log.error("could not mark run %s FAILED: %s", self.run_id, tracking_error)
        return False


def trial_summaries(tracking_uri: str, experiment: str) -> list[dict]:
    """One row per trial run of the experiment: run name, status, best val Dice, in-domain test Dice."""
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    rows, token = [], None
    while True:
        page = client.search_runs(
            [found.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'trial'", max_results=1000, page_token=token
        )
        for run in page:
            metrics = run.data.metrics
            in_domain = metrics.get("test_dice.in_domain")
            if in_domain is None and run.data.tags.get("train_alpha"):
                in_domain = metrics.get(f"test_dice.alpha_{run.data.tags['train_alpha']}")
            rows.append(
                {
                    "run_name": run.info.run_name,
                    "status": run.info.status,
                    "best_val_dice": metrics.get("best_val_dice"),
                    "test_dice_in_domain": in_domain,
                    "run_id": run.info.run_id,
                }
            )
        token = page.token
        if not token:
            return sorted(rows, key=lambda row: row["run_name"])
