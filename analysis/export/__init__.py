"""Export a study's MLflow runs into tidy Parquet files.

    python -m analysis export --study miccai2023 --tracking-uri sqlite:///mlflow.db --out results/miccai2023

Writes ``runs.parquet``, ``epochs.parquet``, ``per_image.parquet`` and ``export.json``
(study, counts, the runs left out, and the size and SHA-256 of each Parquet file) into the
output folder, and ``predictions/``: the ``predictions.png`` of a few runs (per data set and variant,
the lowest seed at the lowest and highest training alpha; recorded in ``export.json`` with their
hashes) for the report to show. Only runs tagged ``skipsweep.kind=trial`` with MLflow status ``FINISHED`` enter
the tables; the others are named in a warning and in ``export.json``. Runs whose config hash
differs, or whose split hash differs within a data set, are refused. Every file is written to a
temporary name and renamed, so a crash never leaves half a table, and re-exporting unchanged
runs rewrites identical files.

The files are one unit: the old ``export.json`` is removed before the first table is replaced
and the new one is written last, so a folder whose export was interrupted (Ctrl-C, a crash, a
full disk) has no ``export.json``, or one whose hashes its tables do not match, and
``analysis report`` refuses it. The export holds the folder's lock while it writes.

This module runs the export and writes its files; :mod:`analysis.export.runs` reads the runs
from MLflow and :mod:`analysis.export.tables` builds and checks the tables.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from analysis.export.runs import (
    HEALTH_PROBE_SECONDS,
    StudyNotFoundError,
    epochs_frame,
    open_study_experiment,
    per_image_frame,
    predictions_picture,
    study_tag_filter,
    trial_runs,
)
from analysis.export.tables import (
    EPOCH_COLUMNS,
    HISTORY_METRICS,
    KEY_TAGS,
    PER_IMAGE_COLUMNS,
    ExportError,
    concat_in_run_order,
    excluded_entry,
    per_image_columns,
    picture_name,
    picture_rows,
    refuse_mixed,
    row_order,
    run_row,
    runs_table,
    sweep_values,
)
from analysis.frames import (
    EPOCHS_FILE,
    MANIFEST_FILE,
    PER_IMAGE_FILE,
    PREDICTIONS_FOLDER,
    RUNS_FILE,
    ExcludedRunsWarning,
    MissingDataWarning,
    file_record,
    folder_lock,
)
from trainables.files import replacing
from trainables.schema import FORECAST_TAG, resolve_tracking_uri

__all__ = [
    "HEALTH_PROBE_SECONDS",
    "HISTORY_METRICS",
    "KEY_TAGS",
    "PER_IMAGE_COLUMNS",
    "ExportError",
    "ExportResult",
    "StudyNotFoundError",
    "check_out_dir",
    "export_study",
    "open_study_experiment",
    "resolve_tracking_uri",
    "study_tag_filter",
]


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
    where: dict[str, Any] | None = None,
    pictures: bool = True,
) -> ExportResult:
    """Pull every finished trial run of a study into ``runs``/``epochs``/``per_image`` Parquet files.

    Args:
        study: Study name (the MLflow experiment name).
        out_dir: Output folder, created if needed.
        tracking_uri: MLflow tracking URI (see :func:`resolve_tracking_uri`).
        progress: Called as ``progress(done, total)`` after each run is read.
        where: Sweep values the runs must have, by dotted key (``{"training.learning_rate": 0.001}``): one
            slice of a swept study, which a report can compare variants in.
        pictures: Keep the chosen runs' ``predictions.png`` (False: none, e.g. for an export to publish
            without images of the data).

    Returns:
        An :class:`ExportResult`.

    Raises:
        StudyNotFoundError: Unknown study.
        ExportError: Mixed config or split hashes, duplicate trial keys, malformed tags or artifacts.
    """
    check_out_dir(out_dir)
    client, experiment_id = open_study_experiment(study, tracking_uri)
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(out, "analysis export"):
            return _export_locked(client, experiment_id, study, out, progress, where or {}, pictures)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # a refused or interrupted first export leaves no empty folder behind
        raise


def _export_locked(
    client: MlflowClient,
    experiment_id: str,
    study: str,
    out: Path,
    progress: Callable[[int, int], None] | None,
    where: dict[str, Any],
    pictures: bool = True,
) -> ExportResult:
    """:func:`export_study` once ``out`` is locked: read the runs, then write the tables and ``export.json`` last."""
    trials = _in_slice(trial_runs(client, experiment_id), where, study)
    finished = [run for run in trials if run.info.status == "FINISHED"]
    excluded = [excluded_entry(run) for run in trials if run.info.status != "FINISHED"]
    excluded.sort(key=lambda entry: (entry["run_name"], entry["run_id"]))
    if excluded:
        names = ", ".join(f"{e['run_name']} ({e['status']}{': ' + e['error'] if e['error'] else ''})" for e in excluded)
        message = f"left out {len(excluded)} run(s) that did not finish: {names}"
        warnings.warn(message, ExcludedRunsWarning, stacklevel=3)

    rows = sorted((run_row(run) for run in finished), key=row_order)
    refuse_mixed(rows)
    run_order = [row["run_id"] for row in rows]
    epochs, images, notes = [], [], []
    for done, row in enumerate(rows, start=1):
        epochs.append(epochs_frame(client, row["run_id"]))
        per_image = per_image_frame(client, row["run_id"], row["run_name"])
        if per_image is None:
            notes.append(f"run {row['run_name']} ({row['run_id']}) has no per_image.parquet artifact")
        else:
            images.append(per_image)
        if progress is not None:
            progress(done, len(rows))
    for note in notes:
        warnings.warn(note, MissingDataWarning, stacklevel=3)
    chosen = picture_rows(rows) if pictures else []
    kept = {picture_name(row): (row, predictions_picture(client, row["run_id"])) for row in chosen}

    (out / MANIFEST_FILE).unlink(missing_ok=True)  # from here until the new one is written, report refuses the folder
    files = {
        RUNS_FILE: _write_parquet(runs_table(rows), out / RUNS_FILE),
        EPOCHS_FILE: _write_parquet(concat_in_run_order(epochs, EPOCH_COLUMNS, run_order), out / EPOCHS_FILE),
        PER_IMAGE_FILE: _write_parquet(
            concat_in_run_order(images, per_image_columns(images), run_order), out / PER_IMAGE_FILE
        ),
    }
    manifest = {"study": study, "n_runs": len(rows), "excluded": excluded, "warnings": notes, "files": files}
    manifest["where"] = where
    forecast = study_forecast(client, experiment_id)
    if forecast is not None:
        manifest["forecast"] = forecast
    manifest["predictions"] = _write_pictures(kept, out / PREDICTIONS_FOLDER)
    _write_atomic(out / MANIFEST_FILE, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return ExportResult(out_dir=out, n_runs=len(rows), excluded=excluded, warnings=notes)


def study_forecast(client: MlflowClient, experiment_id: str) -> dict | None:
    """The ``--dry-run --calibrate`` forecast a run of the study recorded on its experiment; None without one.

    A tag that is not a JSON object is named in a warning and left out: the forecast is an aside, not data.
    """
    text = client.get_experiment(experiment_id).tags.get(FORECAST_TAG)
    if text is None:
        return None
    try:
        forecast = json.loads(text)
    except ValueError:
        forecast = None
    if not isinstance(forecast, dict):
        warnings.warn(f"experiment tag {FORECAST_TAG} is not a JSON object: forecast left out", MissingDataWarning, 3)
        return None
    return forecast


def _write_parquet(frame: pd.DataFrame, path: Path) -> dict:
    """Replace ``path`` with ``frame``; returns what ``export.json`` records of the file written."""
    with replacing(path) as temporary:
        frame.to_parquet(temporary, index=False, engine="pyarrow")
        return file_record(temporary)


def _in_slice(runs: list, where: dict[str, Any], study: str) -> list:
    """The runs whose sweep values match ``where`` (all of them without it).

    Raises:
        ExportError: A key no run has as a sweep axis, or no run with these values.
    """
    if not where:
        return runs
    values = [sweep_values(run, run.info.run_name or run.info.run_id) for run in runs]
    known = sorted({key for found in values for key in found})
    unknown = [key for key in where if key not in known]
    if unknown:
        axes = ", ".join(known) or "none"
        raise ExportError(f"--where {unknown[0]}: not a sweep axis of study {study} (its axes: {axes})")
    wanted = {key: _comparable(value) for key, value in where.items()}
    chosen = [
        run
        for run, found in zip(runs, values, strict=True)
        if all(_comparable(found.get(key)) == value for key, value in wanted.items())
    ]
    if not chosen:
        described = ", ".join(f"{key}={value}" for key, value in wanted.items())
        raise ExportError(f"--where {described}: no trial run of study {study} has these sweep values")
    return chosen


def _comparable(value: Any) -> str:
    """A sweep value as text that matches however it was written (0.001 and 1e-3; a list and its JSON)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, list | tuple):
        return json.dumps([float(v) if isinstance(v, int | float) else v for v in value])
    return repr(float(value)) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _write_pictures(pictures: dict[str, tuple[dict, bytes | None]], folder: Path) -> dict[str, dict]:
    """Write each run's ``predictions.png`` into ``folder`` (pictures of earlier exports removed); returns what
    ``export.json`` records of each: the run it shows, its size and SHA-256.
    """
    records = {}
    for name, (row, payload) in pictures.items():
        if payload is None:
            continue  # a run made before the pictures, or with tracking.prediction_examples: 0
        folder.mkdir(exist_ok=True)
        _write_atomic(folder / name, payload)
        run = {key: row[key] for key in ("run_id", "run_name", "dataset", "variant", "seed")}
        run["train_alpha"] = None if np.isnan(row["train_alpha"]) else row["train_alpha"]
        records[name] = run | file_record(folder / name)
    if folder.is_dir():
        for stale in folder.glob("*.png"):
            if stale.name not in records:
                stale.unlink()
    return records


def _write_atomic(path: Path, payload: bytes) -> None:
    with replacing(path) as temporary:
        temporary.write_bytes(payload)
