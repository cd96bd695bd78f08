"""Whether a SQLite file can be an MLflow store for this MLflow, read without MLflow (standard library and alembic).

The driver's preflight asks before it prepares any data, and the first store call asks
again under the study's lock (``trainables.tracking.open_experiment``); neither writes.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shlex
import sqlite3
from pathlib import Path

from alembic.script import ScriptDirectory  # MLflow's schema migrations are alembic's
from alembic.util import CommandError as MigrationError

from trainables.config import StudyConfigError


class UnusableStoreError(StudyConfigError):
    """The tracking URI names something MLflow cannot use as it is: a file that is not a database, an old schema."""


def upgrade_command(tracking_uri: str) -> str:
    """The command that migrates an older MLflow store (take a backup first)."""
    return f"mlflow db upgrade {shlex.quote(tracking_uri)}"


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
    scripts = ScriptDirectory(str(_mlflow_folder() / "store" / "db_migrations"))
    head = scripts.get_current_head()
    if revision == head:
        return
    try:
        scripts.get_revision(revision)
    except MigrationError:  # a revision this MLflow does not know: a newer MLflow made the store
        version = importlib.metadata.version("mlflow")
        raise UnusableStoreError(
            f"tracking URI {uri}: the store's schema ({revision}) is newer than MLflow {version} knows; "
            "use the MLflow version that made it"
        ) from None
    raise UnusableStoreError(
        f"tracking URI {uri}: the store was made by an older MLflow (schema {revision}, this MLflow writes {head}); "
        f"back it up, then run: {upgrade_command(uri)}"
    )


def _mlflow_folder() -> Path:
    """Where MLflow is installed, found without importing it (a second at the driver's start)."""
    return Path(importlib.util.find_spec("mlflow").origin).parent
