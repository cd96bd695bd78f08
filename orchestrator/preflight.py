"""Checks that run before a study touches MLflow, a cache or Ray: refuse now, not a GPU-hour later.

Each check raises ``StudyConfigError`` with one line naming the file, key or path,
and none of them creates anything: no store, no experiment, no folder.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from trainables.config import BUILTIN_TEXTURES, StudyConfig, StudyConfigError

PROBE_SECONDS = 5.0


def check_tracking_uri(uri: str, timeout: float = PROBE_SECONDS) -> None:
    """The tracking store answers (a server) or can be created (a SQLite file); nothing is created."""
    if uri.startswith(("http://", "https://")):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=timeout) as answer:  # noqa: S310 - http(s) only
                if answer.status != 200:
                    raise StudyConfigError(f"tracking URI {uri}: {health} answered HTTP {answer.status}")
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise StudyConfigError(
                f"tracking URI {uri} does not answer ({reason}); is `mlflow server` running there?"
            ) from None
        return
    if uri.startswith("sqlite:///"):
        database = Path(uri[len("sqlite:///") :])
        if database.is_dir():
            raise StudyConfigError(f"tracking URI {uri}: {database} is a folder, not a database file")
        if database.exists():
            if not os.access(database, os.R_OK | os.W_OK):
                raise StudyConfigError(f"tracking URI {uri}: {database} is not readable and writable")
            return
        check_writable_folder(database.parent, f"tracking URI {uri}: folder")
        return
    if uri.startswith("file:") or "://" not in uri:
        raise StudyConfigError(
            f"tracking URI {uri}: MLflow 3 refuses file stores; use sqlite:///PATH/mlflow.db or an http:// server"
        )
    # Other back-ends (postgresql://, databricks, ...) are MLflow's to check.


def check_writable_folder(path: str | Path, what: str) -> None:
    """``path`` is, or could be created as, a writable folder; nothing is created.

    Walks up to the nearest existing ancestor: it must be a folder (not a file) that
    this user may write to.
    """
    path = Path(path).expanduser().absolute()
    if path.exists():
        if not path.is_dir():
            raise StudyConfigError(f"{what} {path} is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise StudyConfigError(f"{what} {path} is not writable")
        return
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise StudyConfigError(f"{what} {path} cannot be created: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise StudyConfigError(f"{what} {path} cannot be created: {ancestor} is not writable")


def check_textures(study: StudyConfig, source: str) -> None:
    """Texture files of the synthetic data set open as 2D images."""
    synthetic = study.datasets.synthetic
    if synthetic is None:
        return
    from trainables.synthetic import load_texture

    for key in ("background", "foreground"):
        name = getattr(synthetic, key)
        if name in BUILTIN_TEXTURES:
            continue
        try:
            load_texture(name)
        except ValueError as error:
            raise StudyConfigError(f"{source}: datasets.synthetic.{key}: {error}") from None


def preflight(study: StudyConfig, source: str, tracking_uri: str, storage: str, cache: str) -> None:
    """Every check, cheapest first; raises ``StudyConfigError`` on the first problem."""
    if "://" not in storage:
        check_writable_folder(storage, "storage path")
    check_writable_folder(cache, "cache folder")
    check_textures(study, source)
    check_tracking_uri(tracking_uri)
