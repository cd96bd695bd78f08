"""Queries and updates over a study's experiment, not one run: create it, find a trial's run, list and stop runs.

The driver calls these (``open_experiment`` before any trial starts, inside the study
lock and the retries, so trials never race on a fresh store's schema; ``finished_trial_ids`` to skip finished trials;
``mark_interrupted`` when it is stopped; ``trial_summaries`` for its closing table),
and ``TrialRun`` finds its run again with ``find_trial_run``. Every call but
``ensure_experiment`` and ``find_trial_run`` (which their callers retry) goes through
``with_retries`` with the caller's policy.
"""

from __future__ import annotations

import shlex
import sqlite3
from pathlib import Path

import mlflow
import sqlalchemy.exc
from alembic.script import ScriptDirectory  # MLflow's schema migrations are alembic's
from alembic.util import CommandError as MigrationError
from mlflow.entities import Run as MlflowRun
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from trainables.config import StudyConfigError
from trainables.schema import (
    ALPHA_CONDITION_PREFIX,
    BEST_VAL_DICE,
    ERROR_TAG,
    IN_DOMAIN,
    STATUS_TAG,
    STOP_REASON_TAG,
    STUDY_TAG,
    TRIAL_ID_TAG,
    TRIAL_KIND,
    condition_metric,
    kind_filter,
    search_all_runs,
)
from trainables.tracking.retry import DEFAULT_RETRY_POLICY, RetryPolicy, with_retries


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


class StoreBusyError(OSError):
    """The store is locked by another writer (SQLite ``database is locked``): retried like a store that is down."""


class UnusableStoreError(StudyConfigError):
    """The tracking URI names something MLflow cannot use as it is: a file that is not a database, an old schema."""


def upgrade_command(tracking_uri: str) -> str:
    """The command that migrates an older MLflow store (take a backup first)."""
    return f"mlflow db upgrade {shlex.quote(tracking_uri)}"


def open_experiment(tracking_uri: str, name: str) -> str:
    """``ensure_experiment`` with the store's faults told apart, for the driver's first call to the store.

    Opening a store creates or checks its schema. A store another process holds locked
    raises ``StoreBusyError`` (an ``OSError``: ``with_retries`` waits for it); a file that
    is not a database, another program's database or a store of another MLflow version
    raises ``UnusableStoreError`` with one line (for an older schema: the exact
    ``mlflow db upgrade`` command), which no retry mends. Nothing is written to a store
    that is refused.
    """
    if tracking_uri.startswith("sqlite:///"):
        check_sqlite_store(Path(tracking_uri.removeprefix("sqlite:///")), tracking_uri)
    try:
        return ensure_experiment(tracking_uri, name)
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
        raise UnusableStoreError(
            f"tracking URI {tracking_uri}: the store was made by an older MLflow; back it up, then run: "
            f"{upgrade_command(tracking_uri)}"
        ) from None


def check_sqlite_store(database: Path, uri: str) -> None:
    """An SQLite file is absent, empty, or an MLflow store of this MLflow's schema; it is only read.

    A database another process holds locked is not checked: opening it waits for the lock, and this check runs again.
    """
    if not database.exists():
        return
    try:
        connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            known = "alembic_version" in tables  # the schema revision MLflow's migrations keep
            rows = connection.execute("SELECT version_num FROM alembic_version").fetchall() if known else []
        finally:
            connection.close()
    except sqlite3.OperationalError as error:
        if "locked" in str(error):
            return
        raise UnusableStoreError(f"tracking URI {uri}: not an MLflow store ({error})") from None
    except sqlite3.DatabaseError as error:  # "file is not a database"
        raise UnusableStoreError(f"tracking URI {uri}: not an MLflow store ({error})") from None
    if not tables:
        return  # a new database: MLflow makes the store in it
    if len(rows) != 1:
        raise UnusableStoreError(f"tracking URI {uri}: {database} is an SQLite database but not an MLflow store")
    check_schema(rows[0][0], uri)


def check_schema(revision: str, uri: str) -> None:
    """The store's schema revision is the one this MLflow writes; else one line saying what to do."""
    scripts = ScriptDirectory(str(Path(mlflow.__file__).parent / "store" / "db_migrations"))
    head = scripts.get_current_head()
    if revision == head:
        return
    try:
        scripts.get_revision(revision)
    except MigrationError:  # a revision this MLflow does not know: a newer MLflow made the store
        raise UnusableStoreError(
            f"tracking URI {uri}: the store's schema ({revision}) is newer than MLflow {mlflow.__version__} knows; "
            "use the MLflow version that made it"
        ) from None
    raise UnusableStoreError(
        f"tracking URI {uri}: the store was made by an older MLflow (schema {revision}, this MLflow writes {head}); "
        f"back it up, then run: {upgrade_command(uri)}"
    )


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
    """One row per trial run of the experiment: run name, status, best val Dice, in-domain test Dice, error tag."""
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
                "error": run.data.tags.get(ERROR_TAG),
            }
        )
    return sorted(rows, key=lambda row: row["run_name"])
