"""Queries and updates over a study's experiment, not one run: create it, find a trial's run, list and stop runs.

The driver calls these (``open_experiment`` before any trial starts, inside the study
lock and the retries, so trials never race on a fresh store's schema; ``finished_trial_ids`` to skip finished trials;
``mark_interrupted`` when it is stopped; ``trial_summaries`` for its closing table),
and ``TrialRun`` finds its run again with ``find_trial_run``. Every call but
``ensure_experiment`` and ``find_trial_run`` (which their callers retry) goes through
``with_retries`` with the caller's policy.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import filelock
import sqlalchemy.exc
from alembic.util import CommandError as MigrationError
from mlflow.entities import Run as MlflowRun
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from trainables.schema import (
    ALPHA_CONDITION_PREFIX,
    BEST_VAL_DICE,
    DICE_IN_DOMAIN,
    ERROR_TAG,
    EXPERIMENT_KIND_TAG,
    IN_DOMAIN,
    KIND_TAG,
    MODEL_TRAINING_KIND,
    STATUS_TAG,
    STOP_REASON_TAG,
    STUDY_TAG,
    TRIAL_ID_TAG,
    TRIAL_KIND,
    TUNING_KIND,
    TUNING_TRIAL_KIND,
    condition_metric,
    kind_filter,
    search_all_runs,
)
from trainables.store_schema import UnusableStoreError, check_sqlite_store
from trainables.tracking.retry import DEFAULT_RETRY_POLICY, RetryPolicy, with_retries


def ensure_experiment(tracking_uri: str, name: str, ui_tags: Mapping[str, str] | None = None) -> str:
    """Create the store (schema) and the experiment once, before any trial starts; return its id.

    The experiment is tagged as skipsweep's and as model training (MLflow's UI otherwise opens it
    as a GenAI experiment), on creation and, for an experiment an older skipsweep made, when it is
    found; ``ui_tags`` (the driver's: the description, ``NOTE_TAG``, and the study's view,
    ``trainables.tracking.view``) are set as given. An experiment of that name
    that holds runs, none of them skipsweep's, was made by another tool: ``ForeignExperimentError``.
    """
    client = MlflowClient(tracking_uri)
    tags = {STUDY_TAG: name, EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND} | dict(ui_tags or {})
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags=tags)
        except MlflowException:
            experiment = client.get_experiment_by_name(name)  # created by a concurrent process
            if experiment is None:
                raise
    if STUDY_TAG not in experiment.tags:
        _refuse_foreign(client, experiment, tracking_uri)
    for key, value in tags.items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


class ForeignExperimentError(ValueError):
    """The experiment of the study's name holds runs and none of them is skipsweep's."""


def _refuse_foreign(client: MlflowClient, experiment, tracking_uri: str) -> None:
    """Raise ``ForeignExperimentError`` if ``experiment`` (no skipsweep tag on it) holds only other tools' runs."""
    runs = client.search_runs([experiment.experiment_id], max_results=1)
    if not runs:
        return  # an empty experiment (e.g. made with `mlflow experiments create`): nothing to mix up
    ours = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND_TAG}` != ''", max_results=1)
    if not ours:
        raise ForeignExperimentError(
            f"tracking URI {tracking_uri}: experiment '{experiment.name}' holds runs that skipsweep did not make; "
            "name another experiment (tracking.experiment) or another store"
        )


class StoreBusyError(OSError):
    """The store is locked by another writer (SQLite ``database is locked``): retried like a store that is down."""


def open_experiment(tracking_uri: str, name: str, ui_tags: Mapping[str, str] | None = None) -> str:
    """``ensure_experiment`` with the store's faults told apart, for the driver's first call to the store.

    Opening a store creates or checks its schema. A store another process holds locked, or
    is creating right now (its schema half-way through MLflow's migrations), raises
    ``StoreBusyError`` (an ``OSError``: ``with_retries`` waits for it); a file that is not a
    database raises ``UnusableStoreError``, which no retry mends. A schema that stays behind
    once the retries are spent is an older MLflow's: ``check_sqlite_store`` then says so.
    """
    try:
        with _creation_lock(tracking_uri):
            return ensure_experiment(tracking_uri, name, ui_tags)
    except filelock.Timeout as error:
        raise StoreBusyError(f"{tracking_uri}: another process has been creating the store for minutes") from error
    except sqlalchemy.exc.OperationalError as error:  # locked, or a concurrent creation of the schema
        raise StoreBusyError(f"{tracking_uri}: {_first_line(error.orig or error)}") from error
    except MigrationError as error:  # another process created the schema while this one did
        raise StoreBusyError(f"{tracking_uri}: the schema changed under us ({_first_line(error)})") from error
    except sqlalchemy.exc.DatabaseError as error:  # "file is not a database"
        raise UnusableStoreError(
            f"tracking URI {tracking_uri}: not an MLflow store ({_first_line(error.orig or error)})"
        ) from None
    except MlflowException as error:
        if "out-of-date database schema" not in error.message:
            raise
        raise StoreBusyError(f"{tracking_uri}: the schema is not this MLflow's (yet): {_first_line(error)}") from error


def _creation_lock(tracking_uri: str):
    """One process at a time opens a SQLite store on this machine: MLflow 3 creates a new store's schema
    without a lock, and two processes migrating it at once leave it stuck half-way (seen: revision 4465047574b1).

    The lock file sits in the temporary folder, named after the database's real path (as MLflow names its own).
    """
    if not tracking_uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    database = os.path.realpath(tracking_uri.removeprefix("sqlite:///"))
    digest = hashlib.sha256(database.encode()).hexdigest()[:16]
    return filelock.FileLock(os.path.join(tempfile.gettempdir(), f"skipsweep-store-{digest}.lock"), timeout=120)


def explain_unusable(tracking_uri: str) -> None:
    """Raise ``UnusableStoreError`` saying what is wrong with a SQLite store that stayed unusable; else return."""
    if tracking_uri.startswith("sqlite:///"):
        check_sqlite_store(Path(tracking_uri.removeprefix("sqlite:///")), tracking_uri)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


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


def mark_interrupted(
    tracking_uri: str, experiment: str, reason: str, since_ms: int, policy: RetryPolicy = DEFAULT_RETRY_POLICY
) -> list[str]:
    """End the trial runs a stopped driver leaves unfinished as KILLED, tagged with ``reason``; return their names.

    Trial runs of the grid, and of the tuning stage (its tunings and their configurations). Those are the
    RUNNING runs (one driver per study: every one is this driver's) and the runs that ended FAILED at or
    after ``since_ms`` (trials that saw the signal too). A rerun continues them like any unfinished run.
    """
    client = MlflowClient(tracking_uri)
    found = with_retries(lambda: client.get_experiment_by_name(experiment), "experiment", policy)
    if found is None:
        return []
    unfinished = [
        run
        for kind in (TRIAL_KIND, TUNING_KIND, TUNING_TRIAL_KIND)
        for run in with_retries(
            lambda kind=kind: search_all_runs(
                client, found.experiment_id, f"{kind_filter(kind)} and attributes.status != 'FINISHED'"
            ),
            "search unfinished runs",
            policy,
        )
    ]
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
    """One row per trial run of the experiment: run name, status, best val Dice, in-domain test Dice, error tag."""
    client = MlflowClient(tracking_uri)

    def search() -> list:
        found = client.get_experiment_by_name(experiment)
        return [] if found is None else search_all_runs(client, found.experiment_id, kind_filter(TRIAL_KIND))

    rows = []
    for run in with_retries(search, "summary", policy):
        metrics, train_alpha = run.data.metrics, run.data.tags.get("train_alpha")
        in_domain = metrics.get(DICE_IN_DOMAIN, metrics.get(condition_metric("dice", IN_DOMAIN)))
        if in_domain is None and train_alpha:  # the tag is the formatted alpha of the condition's name
            in_domain = metrics.get(condition_metric("dice", f"{ALPHA_CONDITION_PREFIX}{train_alpha}"))
        rows.append(
            {
                "run_name": run.info.run_name,
                "status": run.info.status,
                "best_val_dice": metrics.get(BEST_VAL_DICE),
                "test_dice_in_domain": in_domain,
                "run_id": run.info.run_id,
                "experiment_id": run.info.experiment_id,
                "error": run.data.tags.get(ERROR_TAG),
            }
        )
    return sorted(rows, key=lambda row: row["run_name"])
