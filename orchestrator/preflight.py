"""Checks that run before a study touches MLflow, a cache or Ray: refuse now, not a GPU-hour later.

Each check raises ``StudyConfigError`` with one line naming the file, key or path,
and none of them creates anything: no store, no experiment, no folder.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from importlib.metadata import entry_points
from pathlib import Path

from orchestrator.preflight_model import check_models
from orchestrator.preflight_sizes import check_memory
from trainables.config import StudyConfig, StudyConfigError
from trainables.datasets.registry import check_data
from trainables.guard import DRIVER_LOCK, lock_held
from trainables.store_schema import check_sqlite_store

PROBE_SECONDS = 5.0
TRACKING_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")
SQLITE_HEADER = b"SQLite format 3\x00"
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")  # pyarrow.fs.FileSystem.from_uri


def check_tracking_uri(uri: str, timeout: float = PROBE_SECONDS) -> None:
    """The tracking store is MLflow and answers (a server), or can be created (a SQLite file); nothing is created."""
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        _probe_mlflow_server(uri, timeout)
        return
    if uri.startswith("sqlite:") and not uri.startswith("sqlite:///"):
        raise StudyConfigError(
            f"tracking URI {uri}: a SQLite URI is sqlite:/// followed by the path: sqlite:///mlflow.db (relative) "
            "or sqlite:////absolute/path/mlflow.db"
        )
    if uri.startswith("sqlite:///"):
        database = Path(uri[len("sqlite:///") :])
        if database.is_dir():
            raise StudyConfigError(f"tracking URI {uri}: {database} is a folder, not a database file")
        if database.exists():
            if not os.access(database, os.R_OK | os.W_OK):
                raise StudyConfigError(f"tracking URI {uri}: {database} is not readable and writable")
            check_sqlite_file(database, uri)
            return
        check_writable_folder(database.parent, f"tracking URI {uri}: folder")
        return
    if uri == "databricks":  # the workspace of the default Databricks profile
        return
    if scheme == "file" or "://" not in uri:
        raise StudyConfigError(
            f"tracking URI {uri}: MLflow 3 refuses file stores; use sqlite:///PATH/mlflow.db or an http:// server"
        )
    known = TRACKING_SCHEMES + tuple(entry.name for entry in entry_points(group="mlflow.tracking_store"))
    if scheme.split("+")[0] not in known:  # postgresql+psycopg2://: a database and its driver
        raise StudyConfigError(f"tracking URI {uri}: unknown scheme '{scheme}'; MLflow knows {', '.join(known)}")
    # A database server (postgresql://, ...) or databricks is MLflow's to check.


def check_sqlite_file(database: Path, uri: str) -> None:
    """An existing file under a SQLite URI is empty or an SQLite database; it is only read.

    Whether the database is an MLflow store of this MLflow's schema is checked when the
    driver opens it, under the study's lock (``trainables.tracking.open_experiment``): a
    store that another driver is creating right now is not mistaken for an old one.
    """
    with database.open("rb") as file:
        header = file.read(len(SQLITE_HEADER))
    if header and header != SQLITE_HEADER:
        raise StudyConfigError(f"tracking URI {uri}: {database} is not an SQLite database, so not an MLflow store")


def check_store(uri: str, storage: str, study: str) -> None:
    """An existing SQLite store is one this MLflow can use (not another program's database, not an older schema).

    Skipped while another driver of the study holds its storage lock: that driver may be
    creating the store right now (its schema half-way through its migrations), and this
    driver will be refused by the lock anyway. The first store call checks again, under the lock.
    """
    if not uri.startswith("sqlite:///"):
        return
    if "://" not in storage and lock_held(Path(storage) / study / DRIVER_LOCK):
        return
    check_sqlite_store(Path(uri.removeprefix("sqlite:///")), uri)


def _probe_mlflow_server(uri: str, timeout: float) -> None:
    """One MLflow REST call (search one experiment): it answers, with MLflow's JSON, and lets us in."""
    probe = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    request = urllib.request.Request(probe, headers=_mlflow_auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=_tls_context()) as answer:
            body = answer.read(1_000_000)
        if not isinstance(json.loads(body), dict):
            raise ValueError("not a JSON object")
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise StudyConfigError(
                f"tracking URI {uri}: the server refuses access (HTTP {error.code}); set MLFLOW_TRACKING_USERNAME "
                "and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"
            ) from None
        raise StudyConfigError(
            f"tracking URI {uri}: not a working MLflow tracking server ({probe} answered HTTP {error.code})"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise StudyConfigError(
            f"tracking URI {uri} does not answer ({reason}); is `mlflow server` running there?"
        ) from None
    except ValueError:
        raise StudyConfigError(
            f"tracking URI {uri}: not an MLflow tracking server ({probe} did not answer with MLflow's JSON)"
        ) from None


def _tls_context() -> ssl.SSLContext | None:
    """TLS as MLflow's client does it: its CA bundle, or no verification where the user turned it off."""
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        return ssl._create_unverified_context()  # the user's explicit choice, as in MLflow
    bundle = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
    return ssl.create_default_context(cafile=bundle) if bundle else None


def _mlflow_auth_headers() -> dict[str, str]:
    """The credentials MLflow's client would send, from its environment variables."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def check_storage(storage: str) -> None:
    """Ray Tune's storage: a folder we may write, a ``file://`` URI of one, or a URI of a file system pyarrow knows."""
    if "://" not in storage:
        check_writable_folder(storage, "storage path")
        return
    parts = urllib.parse.urlsplit(storage)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StudyConfigError(f"--storage {storage}: a file URI is file:// plus an absolute path (file:///...)")
        check_writable_folder(urllib.parse.unquote(parts.path), "storage path")
        return
    if parts.scheme not in STORAGE_SCHEMES:
        raise StudyConfigError(
            f"--storage {storage}: unknown scheme '{parts.scheme}'; Ray Tune's storage is a folder or a URI of "
            f"{', '.join(STORAGE_SCHEMES)}"
        )


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


def trial_device(study: StudyConfig, address: str | None = None) -> tuple[str, str]:
    """Where the study's trials will run, ``cpu`` or ``cuda``, and why; ``cuda`` when it cannot be known here.

    No GPU share (``resources.gpu: 0``) means the CPU; so does a local cluster on a
    machine without CUDA (the GPU share then becomes 0). A remote cluster
    (``address`` or ``$RAY_ADDRESS``) may have GPUs this machine lacks.
    """
    if study.resources.gpu == 0:
        return "cpu", "resources.gpu is 0"
    if address or os.environ.get("RAY_ADDRESS"):
        return "cuda", "a remote cluster"
    import torch  # only when it matters: loading torch takes seconds

    return ("cuda", "this machine has CUDA") if torch.cuda.is_available() else ("cpu", "this machine has no CUDA GPU")


def check_precision(study: StudyConfig, source: str, address: str | None = None) -> None:
    """fp16 is refused where the trials will run on a CPU (``training.mixed_precision``, per data set too)."""
    wanted = {name: study.for_dataset(name).training.mixed_precision for name in study.datasets.names}
    if "fp16" not in wanted.values():
        return
    from trainables.precision import PrecisionError, check_precision_fits  # imports torch: only when it matters

    device, reason = trial_device(study, address)
    for name, precision in wanted.items():
        try:
            check_precision_fits(precision, device, reason)
        except PrecisionError as error:
            overridden = precision != study.training.mixed_precision
            raise StudyConfigError(f"{source}: {'datasets.' + name + '.' if overridden else ''}{error}") from None


def preflight(
    study: StudyConfig, source: str, tracking_uri: str, storage: str, cache: str, address: str | None = None
) -> None:
    """Every check, the study's own files first; raises ``StudyConfigError`` on the first problem.

    ``address`` is ``--address``. The data files come first: the memory estimate counts the medical cases.
    """
    check_data(study, source)
    check_precision(study, source, address)
    check_storage(storage)
    check_writable_folder(cache, "cache folder")
    check_memory(study, source)
    check_tracking_uri(tracking_uri)
    check_store(tracking_uri, storage, study.study)
    check_models(study, source)
