"""The exported Parquet files, their names and vocabulary, and the joined per-image frame.

Everything after the export reads the study through :func:`load_export`, so tables and
figures can be rebuilt offline from the Parquet files alone.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trainables.schema import ALPHA_CONDITION_PREFIX
from trainables.schema import format_alpha as format_alpha  # alphas print as the run names and tags write them

RUNS_FILE = "runs.parquet"
EPOCHS_FILE = "epochs.parquet"
PER_IMAGE_FILE = "per_image.parquet"
MANIFEST_FILE = "export.json"

VARIANT_ORDER = ("noskip_unet", "unet", "attention_unet", "vnet", "noskip_vnet", "unet_plus_plus")
VARIANT_GROUPS = {
    "No-Skip": ("noskip_unet", "noskip_vnet"),
    "Standard": ("unet", "vnet"),
    "Enhanced": ("attention_unet", "unet_plus_plus"),
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


@dataclass(frozen=True)
class ExportedStudy:
    """The three tables of an export and its manifest.

    Attributes:
        runs: One row per finished trial run.
        epochs: One row per (run, epoch).
        per_image: One row per (run, test condition, image).
        manifest: ``export.json``: study name, run count, runs left out.
    """

    runs: pd.DataFrame
    epochs: pd.DataFrame
    per_image: pd.DataFrame
    manifest: dict = field(default_factory=dict)

    @property
    def study(self) -> str:
        """The study name recorded at export."""
        return str(self.manifest.get("study", ""))


def load_export(export_dir: str | Path) -> ExportedStudy:
    """Read an export folder written by :func:`analysis.export.export_study`.

    Args:
        export_dir: Folder holding ``runs.parquet``, ``epochs.parquet`` and ``per_image.parquet``.

    Returns:
        The exported study.

    Raises:
        FileNotFoundError: A table is missing; the message says how to create it.
    """
    folder = Path(export_dir)
    missing = [name for name in (RUNS_FILE, EPOCHS_FILE, PER_IMAGE_FILE) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} lacks {', '.join(missing)}; run `python -m analysis export --study STUDY --out {folder}` first"
        )
    manifest_path = folder / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    return ExportedStudy(
        runs=pd.read_parquet(folder / RUNS_FILE),
        epochs=pd.read_parquet(folder / EPOCHS_FILE),
        per_image=pd.read_parquet(folder / PER_IMAGE_FILE),
        manifest=manifest,
    )


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
    """The journal's architecture group (No-Skip / Standard / Enhanced) of a variant, or None."""
    return next((group for group, members in VARIANT_GROUPS.items() if variant in members), None)


def dataset_label(dataset: str, train_alpha: float) -> str:
    """``busi`` for a medical data set, ``synthetic (alpha 0.30)`` for a synthetic training level."""
    return dataset if pd.isna(train_alpha) else f"{dataset} (alpha {format_alpha(train_alpha)})"
