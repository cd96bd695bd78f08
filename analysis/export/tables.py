"""Turn a study's MLflow runs into typed, ordered tables, refusing runs that cannot be compared.

Pure pandas over run objects already read (:mod:`analysis.export.runs` reads them): one row per
run, the ``runs``/``epochs``/``per_image`` columns and their dtypes, and the checks that every
finished run shares one config hash, one split hash per data set and a trial key of its own.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from analysis.frames import JOURNAL_METRICS, SWEEP_PREFIX, TUNED_PREFIX, TUNING_PREFIX
from trainables.schema import (
    CONFIG_HASH_TAG,
    EPOCH_METRICS,
    ERROR_TAG,
    PARAMS_CHANGED_TAG,
    PROVENANCE_TAGS,
    SPLIT_HASH_TAG,
    SWEEP_TAG,
    TRIAL_ID_TAG,
    TUNED_TAG,
    format_alpha,
)
from trainables.schema import KEY_TAGS as TRIAL_KEY_TAGS

HISTORY_METRICS = EPOCH_METRICS  # per-epoch metrics: epochs.parquet, not runs.parquet
KEY_TAGS = TRIAL_KEY_TAGS + PROVENANCE_TAGS
PER_IMAGE_COLUMNS = {"condition": str, "test_alpha": "float64", "image_id": str, "dice": "float64", "ts": "float64"}
EPOCH_COLUMNS = {
    "run_id": str,
    "epoch": "int64",
    "train_loss": "float64",
    "val_dice": "float64",
    "epoch_seconds": "float64",
}


class ExportError(ValueError):
    """The runs of a study cannot be exported as they are; the message says which and why."""


def excluded_entry(run) -> dict[str, str]:
    """The ``export.json`` entry of a trial run left out: run_id, run_name, status, error."""
    tags = run.data.tags
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name or "",
        "status": run.info.status,
        "error": tags.get(ERROR_TAG, ""),
    }


def run_row(run) -> dict:
    """One ``runs.parquet`` row of a finished run: ids, key and provenance tags, times, params, final metrics.

    Raises:
        ExportError: The run lacks a dataset, variant or seed tag, or its train_alpha or seed does not parse.
    """
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
    row["params_changed"] = tags.get(PARAMS_CHANGED_TAG, "")  # what a resumed attempt ran with, when it differed
    row["start_time"] = run.info.start_time
    row["end_time"] = run.info.end_time
    row.update({f"{SWEEP_PREFIX}{key}": value for key, value in sweep_values(run, name).items()})
    row.update(tuned_columns(run, name))
    row.update({f"param.{key}": value for key, value in run.data.params.items()})
    row.update({key: value for key, value in run.data.metrics.items() if key not in HISTORY_METRICS})
    return row


def _json_object_tag(run, tag: str, name: str) -> dict | None:
    """A run tag that holds a JSON object, parsed (None when the run has no such tag).

    Raises:
        ExportError: The tag is not a JSON object.
    """
    text = run.data.tags.get(tag)
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise ExportError(f"run {name} ({run.info.run_id}): tag {tag} is not a JSON object: {text!r}")
    return value


def sweep_values(run, name: str) -> dict[str, object]:
    """A run's sweep values by dotted key, from its ``skipsweep.sweep`` tag ({} for a run without a sweep).

    Raises:
        ExportError: The tag is not a JSON object.
    """
    values = _json_object_tag(run, SWEEP_TAG, name) or {}
    return {key: json.dumps(value) if isinstance(value, list) else value for key, value in values.items()}


def tuned_columns(run, name: str) -> dict[str, object]:
    """A tuned run's ``tuned.<key>`` values and ``tuning.*`` provenance, from its ``skipsweep.tuned`` tag ({} if none).

    Raises:
        ExportError: The tag is not the JSON object the trial wrote.
    """
    entry = _json_object_tag(run, TUNED_TAG, name)
    if entry is None:
        return {}
    if not isinstance(entry.get("values"), dict):
        raise ExportError(f"run {name} ({run.info.run_id}): tag {TUNED_TAG} has no 'values' object: {entry!r}")
    columns = {
        f"{TUNED_PREFIX}{key}": json.dumps(value) if isinstance(value, list) else value
        for key, value in entry["values"].items()
    }
    provenance = {"run": entry.get("tuning_run"), "val_dice": entry.get("val_dice")}
    provenance |= {"default_val_dice": entry.get("default_val_dice"), "epochs": entry.get("epochs")}
    provenance |= {"train_alpha": entry.get("train_alpha")}
    return columns | {f"{TUNING_PREFIX}{key}": value for key, value in provenance.items()}


def sweep_columns(rows: list[dict]) -> list[str]:
    """The ``sweep.<key>`` columns of ``rows``, sorted."""
    return sorted({key for row in rows for key in row if key.startswith(SWEEP_PREFIX)})


def row_order(row: dict) -> tuple:
    """Sort key of a run row: dataset, variant, train_alpha (NaN last), seed, sweep values, run id."""
    alpha = row["train_alpha"]
    return (
        row["dataset"],
        row["variant"],
        np.isnan(alpha),
        0.0 if np.isnan(alpha) else alpha,
        row["seed"],
        tuple(str(row[key]) for key in sorted(row) if key.startswith(SWEEP_PREFIX)),
        row["run_id"],
    )


def refuse_mixed(rows: list[dict]) -> None:
    """Refuse rows whose config hashes differ, whose split hashes differ within a data set, or that share a key.

    Raises:
        ExportError: Naming every such group of runs.
    """
    problems = []
    problems += _mixed(rows, CONFIG_HASH_TAG, scope="the study")
    for dataset in sorted({row["dataset"] for row in rows}):
        problems += _mixed([r for r in rows if r["dataset"] == dataset], SPLIT_HASH_TAG, scope=f"data set {dataset}")
    keys: dict[tuple, list[str]] = {}
    axes = sweep_columns(rows)
    for row in rows:
        key = (row["dataset"], row["variant"], row["train_alpha"], row["seed"], *(str(row.get(a)) for a in axes))
        keys.setdefault(key, []).append(row["run_name"])
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


def runs_table(rows: list[dict]) -> pd.DataFrame:
    """``runs.parquet``: fixed columns, then params, then metrics, each typed (params by :func:`typed_param`)."""
    fixed = ["run_id", "run_name", "trial_id", *TRIAL_KEY_TAGS, "status", *PROVENANCE_TAGS, "params_changed"]
    fixed += ["start_time", "end_time"]
    axes = sweep_columns(rows)
    tuned = sorted({key for row in rows for key in row if key.startswith((TUNED_PREFIX, TUNING_PREFIX))})
    params = sorted({key for row in rows for key in row if key.startswith("param.")})
    metrics = sorted({key for row in rows for key in row} - set(fixed) - set(axes) - set(tuned) - set(params))
    frame = pd.DataFrame(rows, columns=fixed + axes + tuned + params + metrics)
    for column in fixed:
        if column not in ("train_alpha", "seed", "start_time", "end_time"):  # typed below
            frame[column] = frame[column].astype(str)
    frame["train_alpha"] = frame["train_alpha"].astype("float64")
    frame["seed"] = frame["seed"].astype("int64")
    for column in ("start_time", "end_time"):
        frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True).astype("datetime64[ms, UTC]")
    for column in axes + tuned + params:
        frame[column] = typed_param(frame[column])
    for column in metrics:
        frame[column] = frame[column].astype("float64")
    if "best_epoch" in frame and frame["best_epoch"].notna().all():
        frame["best_epoch"] = frame["best_epoch"].astype("int64")
    return frame


def typed_param(values: pd.Series) -> pd.Series:
    """Params are strings in MLflow: a column becomes int64 or float64 when every value parses as one."""
    present = values.dropna().astype(str)
    numbers = pd.to_numeric(present, errors="coerce")
    if present.empty or numbers.isna().any():
        return values.astype(object).astype(str)
    if len(present) == len(values) and present.str.fullmatch(r"[+-]?\d+").all():
        return numbers.astype("int64")
    return pd.to_numeric(values, errors="coerce").astype("float64")


def per_image_columns(frames: list[pd.DataFrame]) -> dict[str, object]:
    """``per_image.parquet``'s columns and dtypes: the fixed ones, then each journal metric some run has."""
    columns: dict[str, object] = {"run_id": str, **PER_IMAGE_COLUMNS}
    columns.update({metric: "float64" for metric in JOURNAL_METRICS if any(metric in frame for frame in frames)})
    return columns


def concat_in_run_order(frames: list[pd.DataFrame], columns: dict[str, object], run_order: list[str]) -> pd.DataFrame:
    """The frames stacked with exactly ``columns`` (typed), rows ordered by ``run_order`` and stable within a run."""
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns))
    frame = frame.reindex(columns=list(columns))
    for column, dtype in columns.items():
        frame[column] = frame[column].astype(dtype)
    order = {run_id: position for position, run_id in enumerate(run_order)}
    rank = frame["run_id"].map(order)
    return frame.iloc[np.argsort(rank.to_numpy(), kind="stable")].reset_index(drop=True)


def picture_rows(rows: list[dict]) -> list[dict]:
    """The runs whose ``predictions.png`` an export keeps: per data set and variant, the lowest seed's model at
    the lowest and the highest training alpha (the hardest and the easiest task), or its one model on medical data.
    """
    chosen: dict[tuple, dict] = {}

    def group(row: dict) -> tuple:  # one set of pictures per slice of a sweep too
        return (row["dataset"], row["variant"], *(str(row[k]) for k in sorted(row) if k.startswith(SWEEP_PREFIX)))

    for row in sorted(rows, key=lambda r: (r["seed"], r["run_id"])):
        known = [r["train_alpha"] for r in rows if group(r) == group(row) and not np.isnan(r["train_alpha"])]
        ends = {min(known), max(known)} if known else set()
        alpha = row["train_alpha"]
        if (known and alpha in ends) or (not known and np.isnan(alpha)):
            chosen.setdefault((*group(row), None if np.isnan(alpha) else alpha), row)
    return sorted(chosen.values(), key=row_order)


def picture_name(row: dict) -> str:
    """The file name of a run's picture in an export's ``predictions/`` folder."""
    alpha = "" if np.isnan(row["train_alpha"]) else f"_a{format_alpha(row['train_alpha'])}"
    axes = "".join(f"_{key.rpartition('.')[2]}={row[key]}" for key in sorted(row) if key.startswith(SWEEP_PREFIX))
    name = f"{row['dataset']}_{row['variant']}{alpha}_s{row['seed']}{axes}.png"
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)
