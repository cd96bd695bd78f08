"""Read a study's trial runs from MLflow: find its experiment, list its runs, fetch their histories and artifacts.

The one module of the export that talks to MLflow; it creates nothing in the store.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run

from analysis.export.tables import HISTORY_METRICS, PER_IMAGE_COLUMNS, ExportError
from analysis.frames import JOURNAL_METRICS
from trainables.schema import (
    KIND_TAG,
    PER_IMAGE_ARTIFACT,
    PREDICTIONS_ARTIFACT,
    STUDY_TAG,
    TRIAL_KIND,
    resolve_tracking_uri,
    search_all_runs,
)

# One progress bar per downloaded artifact (MLflow draws them once tqdm is installed, as optuna brings it): an
# export of hundreds of runs would print hundreds; it prints its own progress ("read N/M runs").
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
HEALTH_PROBE_SECONDS = 10.0  # a tracking server that does not answer /health in this time is reported, not waited on


class StudyNotFoundError(ExportError):
    """No MLflow experiment belongs to the requested study."""


def _check_server_answers(uri: str, timeout: float = HEALTH_PROBE_SECONDS) -> None:
    """An ``http(s)://`` tracking server answers ``/health`` within ``timeout`` (MLflow alone retries for minutes)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):  # http(s) only (checked above)
            return
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise StudyNotFoundError(f"tracking URI {uri} does not answer ({reason}); is `mlflow server` up?") from None


def open_study_experiment(study: str, tracking_uri: str | None = None) -> tuple[MlflowClient, str]:
    """Find the MLflow experiment of a study without creating anything.

    The experiment is the one named after the study, else the only one tagged
    ``skipsweep.study=<study>``.

    Args:
        study: Study name.
        tracking_uri: MLflow tracking URI (see :func:`resolve_tracking_uri`).

    Returns:
        The client and the experiment id.

    Raises:
        StudyNotFoundError: The store does not exist or holds no experiment for the study.
    """
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise StudyNotFoundError(f"no MLflow store at {uri} (give --tracking-uri or set MLFLOW_TRACKING_URI)")
    _check_server_answers(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        tag_filter = study_tag_filter(study)
        tagged = client.search_experiments(filter_string=tag_filter) if tag_filter else []
        if len(tagged) != 1:
            known = sorted(e.name for e in client.search_experiments())
            raise StudyNotFoundError(f"no MLflow experiment for study {study!r} at {uri}; experiments there: {known}")
        experiment = tagged[0]
    if experiment.lifecycle_stage != "active":
        raise StudyNotFoundError(f"the MLflow experiment of study {study!r} at {uri} is deleted")
    return client, experiment.experiment_id


def study_tag_filter(study: str) -> str | None:
    """MLflow's filter for experiments tagged with ``study``; None when no quoting can hold it.

    MLflow's filter strings have no escape character: a value is quoted with the quote it
    does not contain (``"it's"``), and a name holding both quotes cannot be searched for
    (no study name can: they are letters, digits, ``_``, ``.`` and ``-``).
    """
    quote = next((mark for mark in ("'", '"') if mark not in study), None)
    return None if quote is None else f"tags.`{STUDY_TAG}` = {quote}{study}{quote}"


def trial_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    """Every run of the experiment tagged ``skipsweep.kind=trial``, whatever its status."""
    return [run for run in search_all_runs(client, experiment_id) if run.data.tags.get(KIND_TAG) == TRIAL_KIND]


def _metric_history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    history = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return {int(metric.step): float(metric.value) for metric in history}  # the latest value wins per step


def epochs_frame(client: MlflowClient, run_id: str) -> pd.DataFrame:
    """One row per logged step of the run, a column per epoch metric; a step a metric skipped is NaN."""
    histories = {key: _metric_history(client, run_id, key) for key in HISTORY_METRICS}
    steps = sorted(set().union(*histories.values()))
    data = {"run_id": [run_id] * len(steps), "epoch": steps}
    data.update({key: [histories[key].get(step, np.nan) for step in steps] for key in HISTORY_METRICS})
    return pd.DataFrame(data)


def per_image_frame(client: MlflowClient, run_id: str, run_name: str) -> pd.DataFrame | None:
    """The run's ``per_image.parquet`` artifact with a ``run_id`` column first; None when the run has none.

    Raises:
        ExportError: The artifact lacks one of :data:`PER_IMAGE_COLUMNS`.
    """
    if PER_IMAGE_ARTIFACT not in {info.path for info in client.list_artifacts(run_id)}:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        frame = pd.read_parquet(client.download_artifacts(run_id, PER_IMAGE_ARTIFACT, scratch))
    missing = [column for column in PER_IMAGE_COLUMNS if column not in frame]
    if missing:
        raise ExportError(f"run {run_name} ({run_id}): per_image.parquet lacks the column(s) {missing}")
    columns = list(PER_IMAGE_COLUMNS) + [metric for metric in JOURNAL_METRICS if metric in frame]
    frame = frame[columns].copy()
    frame.insert(0, "run_id", run_id)
    return frame


def predictions_picture(client: MlflowClient, run_id: str) -> bytes | None:
    """The run's ``predictions.png`` artifact; None when the run has none (made before them, or turned off)."""
    if PREDICTIONS_ARTIFACT not in {info.path for info in client.list_artifacts(run_id)}:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        return Path(client.download_artifacts(run_id, PREDICTIONS_ARTIFACT, scratch)).read_bytes()
