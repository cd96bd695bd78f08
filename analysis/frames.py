"""The exported Parquet files, their names and vocabulary, and the joined per-image frame.

Everything after the export reads the study through :func:`load_export`, so tables and
figures can be rebuilt offline from the Parquet files alone. ``export.json`` is written last
and records the SHA-256 of each Parquet file: :func:`load_export` refuses files that do not
match it (an export interrupted half-way, or another export's file). Both commands write into
a folder only while holding its :func:`folder_lock`.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trainables.files import plain_mode
from trainables.schema import ALPHA_CONDITION_PREFIX, SKIP_SUBSET_PREFIX, is_skip_subset
from trainables.schema import VARIANT_ORDER as VARIANT_ORDER  # the papers' order, shared with the trials
from trainables.schema import format_alpha as format_alpha  # alphas print as the run names and tags write them

RUNS_FILE = "runs.parquet"
EPOCHS_FILE = "epochs.parquet"
PER_IMAGE_FILE = "per_image.parquet"
MANIFEST_FILE = "export.json"
SWEEP_PREFIX = "sweep."  # runs.parquet columns of the sweep axes: sweep.training.learning_rate
TUNED_PREFIX = "tuned."  # runs.parquet columns of a tuned study: tuned.training.learning_rate (its variant's value)
TUNING_PREFIX = "tuning."  # and what tuning measured: tuning.val_dice, tuning.default_val_dice, tuning.run
PREDICTIONS_FOLDER = "predictions"  # a few runs' predictions.png, kept by the export for the report
DATA_FILES = (RUNS_FILE, EPOCHS_FILE, PER_IMAGE_FILE)
LOCK_FILE = ".analysis.lock"  # held by `analysis export` and `analysis report` while they write into a folder

VARIANT_GROUPS = {
    "No-Skip": ("noskip_unet", "noskip_vnet"),
    "Standard": ("unet", "vnet"),
    "Enhanced": ("attention_unet", "unet_plus_plus", "udtransnet"),  # extra or learned skip paths
}
LEVEL_ORDER = ("hardest", "harder", "in_domain", "easier", "easiest")
JOURNAL_METRICS = ("hd95", "asd", "nsd")
METRIC_NAMES = {"dice": "Dice", "hd95": "HD95", "asd": "ASD", "nsd": "NSD"}
LOWER_IS_BETTER = frozenset({"hd95", "asd"})
TRAINED_ON = "trained on alpha"
TESTED_ON = "tested on alpha"
ALPHA_DECIMALS = 6  # alphas are matched after rounding, so 0.30000000000000004 == 0.3
KEY_COLUMNS = ["dataset", "variant", "train_alpha", "seed"]
BASELINE_FLOOR = 0.1  # a relative difference over a baseline Dice below this divides by ~0: not drawn, not tested


class ExcludedRunsWarning(UserWarning):
    """Some runs of a study did not finish and were left out of the export."""


class MissingDataWarning(UserWarning):
    """A cell of a table or figure is NaN because a run or a test condition is missing."""


class UnverifiedExportWarning(UserWarning):
    """``export.json`` predates file hashes, so the Parquet files cannot be checked to belong together."""


class IncompleteExportError(ValueError):
    """The files of an export folder do not belong together: an export was interrupted, or a file was replaced."""


class FolderBusyError(ValueError):
    """Another ``analysis`` command is writing into the folder."""


@dataclass(frozen=True)
class ExportedStudy:
    """The three tables of an export and its manifest.

    Attributes:
        runs: One row per finished trial run.
        epochs: One row per (run, epoch).
        per_image: One row per (run, test condition, image).
        manifest: ``export.json``: study name, run count, runs left out.
        pictures: ``predictions/<name>.png`` of the export (checked against ``export.json``) by name: the run
            it shows (``run_name``, ``dataset``, ``variant``, ``train_alpha``, ``seed``); empty for older exports.
    """

    runs: pd.DataFrame
    epochs: pd.DataFrame
    per_image: pd.DataFrame
    manifest: dict = field(default_factory=dict)
    pictures: dict = field(default_factory=dict)

    @property
    def study(self) -> str:
        """The study name recorded at export."""
        return str(self.manifest.get("study", ""))


def load_export(export_dir: str | Path) -> ExportedStudy:
    """Read an export folder written by :func:`analysis.export.export_study`, checking its files belong together.

    Each Parquet file is hashed as read and compared with the SHA-256 that ``export.json`` records for it. An
    ``export.json`` written before hashes were recorded is accepted with an :class:`UnverifiedExportWarning`.

    Args:
        export_dir: Folder holding ``runs.parquet``, ``epochs.parquet``, ``per_image.parquet`` and ``export.json``.

    Returns:
        The exported study.

    Raises:
        FileNotFoundError: A table or ``export.json`` is missing; the message says how to create them.
        IncompleteExportError: A file does not match ``export.json``.
        ValueError: ``export.json`` is not a JSON object.
    """
    folder = Path(export_dir)
    missing = [name for name in DATA_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} lacks {', '.join(missing)}; run `python -m analysis export --study STUDY --out {folder}` first"
        )
    if not (folder / MANIFEST_FILE).is_file():
        raise FileNotFoundError(
            f"{folder} has Parquet files but no {MANIFEST_FILE}: an export into it was interrupted; "
            f"run `python -m analysis export --study STUDY --out {folder}` again"
        )
    manifest = read_manifest(folder)
    recorded = manifest.get("files")
    if recorded is None:
        warnings.warn(
            f"{MANIFEST_FILE} records no file hashes (an export older than them), so its Parquet files could not be "
            "checked to belong together; export the study again to record them",
            UnverifiedExportWarning,
            stacklevel=2,
        )
    tables = {}
    for name in DATA_FILES:
        payload = (folder / name).read_bytes()  # hash the very bytes parsed: a file replaced meanwhile cannot slip by
        entry = recorded.get(name) if isinstance(recorded, dict) else None
        if recorded is not None and (not isinstance(entry, dict) or entry.get("sha256") != _sha256(payload)):
            study = manifest.get("study") or "STUDY"
            raise IncompleteExportError(
                f"{folder / name} does not match {MANIFEST_FILE}: the export was interrupted or the file replaced; "
                f"run `python -m analysis export --study {study} --out {folder}` again"
            )
        tables[name] = pd.read_parquet(io.BytesIO(payload))
    pictures = manifest.get("predictions") or {}
    for name, entry in pictures.items():
        path = folder / PREDICTIONS_FOLDER / name
        if not path.is_file() or _sha256(path.read_bytes()) != entry.get("sha256"):
            study = manifest.get("study") or "STUDY"
            raise IncompleteExportError(
                f"{path} does not match {MANIFEST_FILE}: the export was interrupted or the picture replaced; "
                f"run `python -m analysis export --study {study} --out {folder}` again"
            )
    return ExportedStudy(
        runs=tables[RUNS_FILE],
        epochs=tables[EPOCHS_FILE],
        per_image=tables[PER_IMAGE_FILE],
        manifest=manifest,
        pictures=pictures,
    )


def read_manifest(folder: str | Path) -> dict:
    """``export.json`` of an export folder as a dict.

    Raises:
        ValueError: It is not readable JSON, or not a JSON object; the message names the file.
    """
    path = Path(folder) / MANIFEST_FILE
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"{path}: not readable JSON ({error}); export the study again") from None
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(content).__name__}; export it again")
    return content


def file_record(path: str | Path) -> dict:
    """What ``export.json`` records of a Parquet file: its size in bytes and its SHA-256."""
    payload = Path(path).read_bytes()
    return {"bytes": len(payload), "sha256": _sha256(payload)}


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


@contextmanager
def folder_lock(folder: str | Path, command: str) -> Iterator[None]:
    """Hold ``folder``'s lock while ``command`` writes into it; refuse at once when another process holds it.

    The lock is an OS lock (``flock``) on ``<folder>/.analysis.lock``, so it is released when its process ends,
    however it ends. The file names the holder and is removed on release.

    Args:
        folder: An existing folder.
        command: What is writing, for the message another process gets, e.g. ``"analysis report"``.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        FolderBusyError: Another process holds the lock; the message names the folder and the holder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: no such folder; run `python -m analysis export --study STUDY --out {folder}` first"
        )
    path = folder / LOCK_FILE
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, plain_mode())
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 200).decode(errors="replace").strip() or "another process"
            os.close(descriptor)
            raise FolderBusyError(f"{folder} is in use by {holder}; wait for it to end, then run this again") from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        opened = os.fstat(descriptor)
        if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
            break
        os.close(descriptor)  # the previous holder removed the file between our open and our lock: lock the new one
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{command} (pid {os.getpid()})".encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # before unlocking, so whoever locks next locks the file it finds
        os.close(descriptor)


def image_scores(runs: pd.DataFrame, per_image: pd.DataFrame) -> pd.DataFrame:
    """Per-image results joined with their run's key fields.

    Alphas are rounded to :data:`ALPHA_DECIMALS` so that trained and tested alphas can be matched.
    Infinite metric values (a distance to an empty prediction) become NaN, with a warning.

    Args:
        runs: ``runs.parquet``.
        per_image: ``per_image.parquet``.

    Returns:
        Columns ``run_id, dataset, variant, train_alpha, seed, condition, test_alpha, image_id, dice, ts``
        and any journal metric present.
    """
    keys = runs[["run_id", *KEY_COLUMNS]]
    joined = per_image.merge(keys, on="run_id", how="inner", validate="many_to_one")
    for column in ("train_alpha", "test_alpha"):
        joined[column] = joined[column].astype("float64").round(ALPHA_DECIMALS)
    metrics = [m for m in ("dice", *JOURNAL_METRICS) if m in joined]
    for metric in metrics:
        values = joined[metric].astype("float64")
        infinite = int(np.isinf(values).sum())
        if infinite:
            warnings.warn(
                f"{infinite} per-image {metric} value(s) are infinite (empty prediction or mask); "
                "they are left out of means and tests",
                MissingDataWarning,
                stacklevel=2,
            )
        joined[metric] = values.where(np.isfinite(values))
    columns = ["run_id", *KEY_COLUMNS, "condition", "test_alpha", "image_id", *metrics, "ts"]
    return joined[columns].reset_index(drop=True)


def cross_alpha_rows(images: pd.DataFrame) -> pd.DataFrame:
    """Per-image rows of the cross-alpha conditions (``alpha_<a>``) of synthetic runs.

    Perturbation levels of a synthetic run (``harder``, ...) are left out even if a
    writer gave them a ``test_alpha``: they belong to the out-of-domain table.
    """
    selected = (
        images["condition"].astype(str).str.startswith(ALPHA_CONDITION_PREFIX)
        & images["train_alpha"].notna()
        & images["test_alpha"].notna()
    )
    return images[selected]


MISSING = "NaN"  # a missing cell, in Markdown, LaTeX, CSV and figures alike
INFINITE = "inf"  # an infinite ratio (division by a zero baseline), likewise; negative: -inf


def format_number(value: float, digits: int = 3) -> str:
    """A number with fixed decimals; ``NaN`` when missing, ``inf`` or ``-inf`` when infinite."""
    if value is None or value is pd.NA:
        return MISSING
    number = float(value)
    if math.isnan(number):
        return MISSING
    if math.isinf(number):
        return INFINITE if number > 0 else f"-{INFINITE}"
    return f"{number:.{digits}f}"


def ordered_variants(variants) -> list[str]:
    """Variants in the canonical order of the papers; unknown names follow, sorted."""
    present = set(variants)
    known = [v for v in VARIANT_ORDER if v in present]
    return known + sorted(present - set(VARIANT_ORDER))


def ordered_levels(levels) -> list[str]:
    """Perturbation test levels present, hardest first."""
    present = set(levels)
    return [level for level in LEVEL_ORDER if level in present]


def variant_group(variant: str) -> str | None:
    """The journal's architecture group (No-Skip / Standard / Enhanced) of a variant, or None. The two ends of the
    skip subsets are the networks they equal: ``unet_skips_0000`` is No-Skip, ``unet_skips_1111`` Standard; a
    partial subset belongs to no group."""
    if is_skip_subset(variant):
        kept = set(variant.removeprefix(SKIP_SUBSET_PREFIX))
        return "No-Skip" if kept == {"0"} else "Standard" if kept == {"1"} else None
    return next((group for group, members in VARIANT_GROUPS.items() if variant in members), None)


def dataset_label(dataset: str, train_alpha: float) -> str:
    """``busi`` for a medical data set, ``synthetic (alpha 0.30)`` for a synthetic training level."""
    return dataset if pd.isna(train_alpha) else f"{dataset} (alpha {format_alpha(train_alpha)})"
