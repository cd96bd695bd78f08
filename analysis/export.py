"""Export a study's MLflow runs into tidy Parquet files.

    python -m analysis export --study miccai2023 --tracking-uri sqlite:///mlflow.db --out results/miccai2023

Writes ``runs.parquet``, ``epochs.parquet``, ``per_image.parquet`` and ``export.json``
(study, counts and the runs left out) into the output folder. Only runs tagged
``skipsweep.kind=trial`` with MLflow status ``FINISHED`` enter the tables; the others are
named in a warning and in ``export.json``. Runs whose config hash differs, or whose split
hash differs within a data set, are refused. Every file is written to a temporary name and
renamed, so a crash never leaves half a table, and re-exporting unchanged runs rewrites
identical files.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from analysis.frames import (
    EPOCHS_FILE,
    JOURNAL_METRICS,
    MANIFEST_FILE,
    PER_IMAGE_FILE,
    RUNS_FILE,
    ExcludedRunsWarning,
    MissingDataWarning,
)
from trainables.schema import (
    CONFIG_HASH_TAG,
    EPOCH_METRICS,
    ERROR_TAG,
    KIND_TAG,
    PER_IMAGE_ARTIFACT,
    PROVENANCE_TAGS,
    SPLIT_HASH_TAG,
    STUDY_TAG,
    TRIAL_ID_TAG,
    TRIAL_KIND,
    resolve_tracking_uri,
    search_all_runs,
)
from trainables.schema import KEY_TAGS as TRIAL_KEY_TAGS

HISTORY_METRICS = EPOCH_METRICS  # per-epoch metrics: epochs.parquet, not runs.parquet
KEY_TAGS = TRIAL_KEY_TAGS + PROVENANCE_TAGS
PER_IMAGE_COLUMNS = {"condition": str, "test_alpha": "float64", "image_id": str, "dice": "float64", "ts": "float64"}
HEALTH_PROBE_SECONDS = 10.0  # a tracking server that does not answer /health in this time is reported, not waited on


class ExportError(ValueError):
    """The runs of a study cannot be exported as they are; the message says which and why."""


class StudyNotFoundError(ExportError):
    """No MLflow experiment belongs to the requested study."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        out_dir: Folder holding the Parquet files.
        n_runs: Finished trial runs in the tables.
        excluded: One dict per trial run left out (run_id, run_name, status, error).
        warnings: Messages about runs that are in the tables but incomplete (e.g. no per-image artifact).
    """

    out_dir: Path
    n_runs: int
    excluded: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _check_server_answers(uri: str, timeout: float = HEALTH_PROBE_SECONDS) -> None:
    """An ``http(s)://`` tracking server answers ``/health`` within ``timeout`` (MLflow alone retries for minutes)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):  # noqa: S310 - http(s) only
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


def check_out_dir(out_dir: str | Path) -> Path:
    """``out_dir`` is, or can be created as, a folder; nothing is created.

    Raises:
        ExportError: naming ``out_dir`` when it, or a folder above it, is a file.
    """
    out = Path(out_dir)
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "is a file" if folder == out else f"cannot be created: {folder} is a file"
                raise ExportError(f"--out {out} {where}, not a folder")
            return out
    return out


def export_study(
    study: str,
    out_dir: str | Path,
    tracking_uri: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Pull every finished trial run of a study into ``runs``/``epochs``/``per_image`` Parquet files.

    Args:
        study: Study name (the MLflow experiment name).
        out_dir: Output folder, created if needed.
        tracking_uri: MLflow tracking URI (see :func:`resolve_tracking_uri`).
        progress: Called as ``progress(done, total)`` after each run is read.

    Returns:
        An :class:`ExportResult`.

    Raises:
        StudyNotFoundError: Unknown study.
        ExportError: Mixed config or split hashes, duplicate trial keys, malformed tags or artifacts.
    """
    check_out_dir(out_dir)
    client, experiment_id = open_study_experiment(study, tracking_uri)
    trials = [run for run in search_all_runs(client, experiment_id) if run.data.tags.get(KIND_TAG) == TRIAL_KIND]
    finished = [run for run in trials if run.info.status == "FINISHED"]
    excluded = [_excluded_entry(run) for run in trials if run.info.status != "FINISHED"]
    excluded.sort(key=lambda entry: (entry["run_name"], entry["run_id"]))
    if excluded:
        names = ", ".join(f"{e['run_name']} ({e['status']}{': ' + e['error'] if e['error'] else ''})" for e in excluded)
        message = f"left out {len(excluded)} run(s) that did not finish: {names}"
        warnings.warn(message, ExcludedRunsWarning, stacklevel=2)

    rows = sorted((_run_row(run) for run in finished), key=_sort_key)
    _refuse_mixed(rows)
    run_order = [row["run_id"] for row in rows]
    epochs, images, notes = [], [], []
    for done, row in enumerate(rows, start=1):
        epochs.append(_epochs_frame(client, row["run_id"]))
        per_image = _per_image_frame(client, row["run_id"], row["run_name"])
        if per_image is None:
            notes.append(f"run {row['run_name']} ({row['run_id']}) has no per_image.parquet artifact")
        else:
            images.append(per_image)
        if progress is not None:
            progress(done, len(rows))
    for note in notes:
        warnings.warn(note, MissingDataWarning, stacklevel=2)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_parquet(_runs_table(rows), out / RUNS_FILE)
    _write_parquet(_concat(epochs, _EPOCH_COLUMNS, run_order), out / EPOCHS_FILE)
    _write_parquet(_concat(images, _per_image_columns(images), run_order), out / PER_IMAGE_FILE)
    manifest = {"study": study, "n_runs": len(rows), "excluded": excluded, "warnings": notes}
    _write_atomic(out / MANIFEST_FILE, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return ExportResult(out_dir=out, n_runs=len(rows), excluded=excluded, warnings=notes)


def _excluded_entry(run) -> dict[str, str]:
    tags = run.data.tags
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name or "",
        "status": run.info.status,
        "error": tags.get(ERROR_TAG, ""),
    }


def _run_row(run) -> dict:
    tags, name = run.data.tags, run.info.run_name or run.info.run_id
    missing = [key for key in ("dataset", "variant", "seed") if not tags.get(key)]
    if missing:
        raise ExportError(f"run {name} ({run.info.run_id}) lacks the tag(s) {missing}")
    row = {"run_id": run.info.run_id, "run_name": name, "trial_id": tags.get(TRIAL_ID_TAG, "")}
    row.update({key: tags.get(key, "") for key in KEY_TAGS})
    try:
        row["train_alpha"] = float(row["train_alpha"]) if row["train_alpha"] else np.nan
        row["seed"] = int(row["seed"])
    except ValueError as err:
        raise ExportError(f"run {name} ({run.info.run_id}): bad train_alpha or seed tag ({err})") from err
    row["status"] = run.info.status
    row["start_time"] = run.info.start_time
    row["end_time"] = run.info.end_time
    row.update({f"param.{key}": value for key, value in run.data.params.items()})
    row.update({key: value for key, value in run.data.metrics.items() if key not in HISTORY_METRICS})
    return row


def _sort_key(row: dict) -> tuple:
    alpha = row["train_alpha"]
    return (
        row["dataset"],
        row["variant"],
        np.isnan(alpha),
        0.0 if np.isnan(alpha) else alpha,
        row["seed"],
        row["run_id"],
    )


def _refuse_mixed(rows: list[dict]) -> None:
    problems = []
    problems += _mixed(rows, CONFIG_HASH_TAG, scope="the study")
    for dataset in sorted({row["dataset"] for row in rows}):
        problems += _mixed([r for r in rows if r["dataset"] == dataset], SPLIT_HASH_TAG, scope=f"data set {dataset}")
    keys: dict[tuple, list[str]] = {}
    for row in rows:
        keys.setdefault((row["dataset"], row["variant"], row["train_alpha"], row["seed"]), []).append(row["run_name"])
    duplicates = {key: names for key, names in keys.items() if len(names) > 1}
    if duplicates:
        listed = "; ".join(f"{', '.join(names)}" for names in duplicates.values())
        problems.append(f"several finished runs share a trial key (delete the extra ones in MLflow): {listed}")
    if problems:
        raise ExportError("refusing to export: " + " | ".join(problems))


def _mixed(rows: list[dict], key: str, scope: str) -> list[str]:
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(f"{row['run_name']} ({row['run_id']})")
    if len(groups) < 2:
        return []
    listed = "; ".join(f"{key}={value or '<empty>'}: {', '.join(names)}" for value, names in sorted(groups.items()))
    return [f"runs of {scope} have different {key.replace('_', ' ')}es, so their results cannot be compared: {listed}"]


def _runs_table(rows: list[dict]) -> pd.DataFrame:
    fixed = ["run_id", "run_name", "trial_id", *TRIAL_KEY_TAGS, "status", *PROVENANCE_TAGS, "start_time", "end_time"]
    params = sorted({key for row in rows for key in row if key.startswith("param.")})
    metrics = sorted({key for row in rows for key in row} - set(fixed) - set(params))
    frame = pd.DataFrame(rows, columns=fixed + params + metrics)
    for column in fixed:
        if column not in ("train_alpha", "seed", "start_time", "end_time"):  # typed below
            frame[column] = frame[column].astype(str)
    frame["train_alpha"] = frame["train_alpha"].astype("float64")
    frame["seed"] = frame["seed"].astype("int64")
    for column in ("start_time", "end_time"):
        frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True).astype("datetime64[ms, UTC]")
    for column in params:
        frame[column] = _typed_param(frame[column])
    for column in metrics:
        frame[column] = frame[column].astype("float64")
    if "best_epoch" in frame and frame["best_epoch"].notna().all():
        frame["best_epoch"] = frame["best_epoch"].astype("int64")
    return frame


def _typed_param(values: pd.Series) -> pd.Series:
    """Params are strings in MLflow: a column becomes int64 or float64 when every value parses as one."""
    present = values.dropna().astype(str)
    numbers = pd.to_numeric(present, errors="coerce")
    if present.empty or numbers.isna().any():
        return values.astype(object).astype(str)
    if len(present) == len(values) and present.str.fullmatch(r"[+-]?\d+").all():
        return numbers.astype("int64")
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _metric_history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    history = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return {int(metric.step): float(metric.value) for metric in history}  # the latest value wins per step


_EPOCH_COLUMNS = {
    "run_id": str,
    "epoch": "int64",
    "train_loss": "float64",
    "val_dice": "float64",
    "epoch_seconds": "float64",
}


def _epochs_frame(client: MlflowClient, run_id: str) -> pd.DataFrame:
    histories = {key: _metric_history(client, run_id, key) for key in HISTORY_METRICS}
    steps = sorted(set().union(*histories.values()))
    data = {"run_id": [run_id] * len(steps), "epoch": steps}
    data.update({key: [histories[key].get(step, np.nan) for step in steps] for key in HISTORY_METRICS})
    return pd.DataFrame(data)


def _per_image_frame(client: MlflowClient, run_id: str, run_name: str) -> pd.DataFrame | None:
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


def _per_image_columns(frames: list[pd.DataFrame]) -> dict[str, object]:
    columns: dict[str, object] = {"run_id": str, **PER_IMAGE_COLUMNS}
    columns.update({metric: "float64" for metric in JOURNAL_METRICS if any(metric in frame for frame in frames)})
    return columns


def _concat(frames: list[pd.DataFrame], columns: dict[str, object], run_order: list[str]) -> pd.DataFrame:
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))
    frame = frame.reindex(columns=list(columns))
    for column, dtype in columns.items():
        frame[column] = frame[column].astype(dtype)
    order = {run_id: position for position, run_id in enumerate(run_order)}
    rank = frame["run_id"].map(order)
    return frame.iloc[np.argsort(rank.to_numpy(), kind="stable")].reset_index(drop=True)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        temporary = Path(handle.name)
    try:
        frame.to_parquet(temporary, index=False, engine="pyarrow")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_atomic(path: Path, payload: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(payload)
        temporary = Path(handle.name)
    os.replace(temporary, path)
