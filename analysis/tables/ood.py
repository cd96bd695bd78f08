"""Out-of-domain tables and the robustness ranking (MICCAI Table 1, journal tables; pure pandas).

A cell of the table is one (data set, test level, variant): the mean (std) of a per-image
metric pooled over all test images and all seeds (std with ddof=1). Test levels are the
perturbation conditions ``hardest, harder, in_domain, easier, easiest`` that exist, in that
order. Synthetic runs that were also tested on perturbation levels get one row group per
training alpha, labelled ``synthetic (alpha 0.30)``.

Robustness score (journal): per data set and variant, the coefficient of variation of the
per-level mean Dice, ``CoV = std(m_1..m_L) / mean(m_1..m_L)`` with the population standard
deviation (ddof=0) by default; lower means the Dice changes less across test levels.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.frames import (
    LEVEL_ORDER,
    LOWER_IS_BETTER,
    VARIANT_GROUPS,
    MissingDataWarning,
    dataset_label,
    ordered_levels,
    ordered_variants,
    variant_group,
)
from analysis.statistics.cells import seed_tests

METRIC_DIGITS = {"dice": 3, "nsd": 3, "hd95": 2, "asd": 2}
CELL_KEYS = ["dataset", "train_alpha", "level"]


def ood_table(
    images: pd.DataFrame,
    metric: str = "dice",
    baseline: str | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.05,
) -> pd.DataFrame:
    """Mean (std) of a metric per data set x test level x variant, pooled over test images and seeds.

    Args:
        images: Output of :func:`analysis.frames.image_scores`.
        metric: Per-image column (``dice``, ``hd95``, ``asd`` or ``nsd``).
        baseline: When given, each other variant's cell gets a seed-level test of its difference from the
            baseline (:func:`analysis.statistics.cells.seed_tests`, absolute difference, Holm across the table).
        n_resamples: Hierarchical bootstrap resamples per cell.
        seed: Bootstrap seed.
        level: Family-wise error rate of the Holm correction.

    Returns:
        Long table with columns ``label, dataset, train_alpha, level, variant, n, mean, std, best`` (and the
        test columns with a baseline), rows ordered by data set, level (hardest first) and variant. A
        missing cell is NaN and named in a :class:`MissingDataWarning`; ``best`` marks the highest mean
        per row (lowest for HD95 and ASD) at the printed precision, ties all marked.
    """
    rows = images[images["condition"].isin(LEVEL_ORDER)].rename(columns={"condition": "level"})
    columns = ["label", *CELL_KEYS, "variant", "n", "mean", "std", "best"]
    if rows.empty or rows[metric].isna().all():
        return pd.DataFrame({column: [] for column in columns})
    blocks = []
    for (dataset, alpha), block in rows.groupby(["dataset", "train_alpha"], dropna=False, sort=True):
        grid = pd.MultiIndex.from_product(
            [ordered_levels(block["level"].unique()), ordered_variants(block["variant"].unique())],
            names=["level", "variant"],
        )
        stats = block.groupby(["level", "variant"])[metric].agg(n="count", mean="mean", std="std")
        blocks.append(stats.reindex(grid).reset_index().assign(dataset=dataset, train_alpha=alpha))
    table = pd.concat(blocks, ignore_index=True)[[*CELL_KEYS, "variant", "n", "mean", "std"]]
    table["n"] = table["n"].fillna(0).astype("int64")
    missing = table[table["n"] == 0]
    if not missing.empty:
        named = "; ".join(
            f"({dataset_label(r.dataset, r.train_alpha)}, {r.level}, {r.variant})" for r in missing.itertuples()
        )
        warnings.warn(
            f"no {metric} for (data set, level, variant) {named}; those cells are NaN", MissingDataWarning, stacklevel=2
        )
    table.insert(0, "label", [dataset_label(d, a) for d, a in zip(table["dataset"], table["train_alpha"], strict=True)])
    table["best"] = _best_per_row(table, metric)
    if baseline is not None:
        tests = seed_tests(
            rows,
            CELL_KEYS,
            ordered_variants(rows["variant"].unique()),
            baseline,
            metric,
            n_resamples=n_resamples,
            seed=seed,
            level=level,
        )
        table = table.merge(tests, on=[*CELL_KEYS, "variant"], how="left")
    return table


def _best_per_row(table: pd.DataFrame, metric: str) -> pd.Series:
    shown = table["mean"].round(METRIC_DIGITS.get(metric, 3))
    keys = [table["dataset"], table["train_alpha"], table["level"]]
    target = shown.groupby(keys, dropna=False).transform("min" if metric in LOWER_IS_BETTER else "max")
    return (shown == target) & shown.notna()


def robustness_cov(dice_table: pd.DataFrame, ddof: int = 0) -> pd.DataFrame:
    """Coefficient of variation of the per-level mean Dice, per data set and variant (lower = more robust).

    Args:
        dice_table: :func:`ood_table` of ``dice``.
        ddof: Delta degrees of freedom of the standard deviation across levels (0: population).

    Returns:
        Columns ``label, dataset, train_alpha, variant, group, n_levels, mean_dice, cov, rank``; ``rank`` is 1
        for the lowest CoV within a data set. NaN when a level is missing or fewer than two levels exist.
    """
    rows = []
    for (label, dataset, alpha, variant), block in dice_table.groupby(
        ["label", "dataset", "train_alpha", "variant"], dropna=False, sort=False
    ):
        means = block["mean"].to_numpy(dtype="float64")
        complete = means.size >= 2 and np.isfinite(means).all()
        mean = float(means.mean()) if complete else float("nan")
        cov = float(means.std(ddof=ddof) / mean) if complete else float("nan")
        rows.append(
            {
                "label": label,
                "dataset": dataset,
                "train_alpha": alpha,
                "variant": variant,
                "group": variant_group(variant),
                "n_levels": int(means.size),
                "mean_dice": mean,
                "cov": cov,
            }
        )
    table = pd.DataFrame(
        rows, columns=["label", "dataset", "train_alpha", "variant", "group", "n_levels", "mean_dice", "cov"]
    )
    table["rank"] = table.groupby("label", sort=False)["cov"].rank(method="min")
    return table


def rank_variants(cov: pd.DataFrame) -> pd.DataFrame:
    """Variants ranked by their mean CoV over data sets (rank 1 = most robust).

    Args:
        cov: Output of :func:`robustness_cov`.

    Returns:
        Index ``variant``; one CoV column per data set label, then ``mean CoV`` and ``rank``.
    """
    wide = cov.pivot_table(index="variant", columns="label", values="cov", sort=False, dropna=False)
    wide = wide.reindex(ordered_variants(cov["variant"].unique()))
    return _ranked(wide)


def rank_groups(cov: pd.DataFrame) -> pd.DataFrame:
    """Architecture groups (No-Skip / Standard / Enhanced) ranked by CoV.

    A group's CoV on a data set is the mean CoV of its member variants present there.

    Args:
        cov: Output of :func:`robustness_cov`.

    Returns:
        Index ``group``; one CoV column per data set label, then ``mean CoV`` and ``rank``.
    """
    grouped = cov[cov["group"].notna()]
    wide = grouped.pivot_table(index="group", columns="label", values="cov", aggfunc="mean", sort=False)
    wide = wide.reindex([group for group in VARIANT_GROUPS if group in set(grouped["group"])])
    return _ranked(wide)


def _ranked(wide: pd.DataFrame) -> pd.DataFrame:
    wide.columns.name = None
    wide["mean CoV"] = wide.mean(axis=1)
    wide["rank"] = wide["mean CoV"].rank(method="min").astype("Int64")
    return wide
