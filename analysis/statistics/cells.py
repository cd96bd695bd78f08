"""Per-cell comparisons of each variant with the baseline, one Holm family per table (pandas over scipy).

Two views of one table cell (a data set x training alpha x tested alpha or test level):

- :func:`seed_tests`, the inference: the unit of replication is the trained model. Per seed, the variant's
  and the baseline's per-image values are averaged over the images both have; their difference (or relative
  difference) is the seed's effect; the cell's effect is the mean over seeds, its interval and two-sided
  t-test have k - 1 degrees of freedom (:mod:`analysis.statistics.seeds`), and Holm corrects across the
  cells of the table. A hierarchical bootstrap interval (seeds, then images) is given beside it.
- :func:`paired_tests`, variation over the test set: a Wilcoxon signed-rank test on the pooled per-image
  differences (pairs = same seed and image). Its p-values say how consistently the variant wins over test
  images for these few trained models, not whether another training run would win: they are kept as a
  description of the test set, never as the significance of a difference between variants.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.statistics.paired import holm, paired_comparison, wilcoxon_signed_rank
from analysis.statistics.seeds import hierarchical_bootstrap, per_seed_effect, seed_effect

SEED_TEST_COLUMNS = [
    "n_seeds",
    "n_images",
    "mean_diff",
    "std_seeds",
    "ci_low",
    "ci_high",
    "boot_low",
    "boot_high",
    "p_value",
    "p_holm",
    "significant",
    "p_images",
]


def _paired_rows(images: pd.DataFrame, cells: list[str], variant: str, baseline: str, metric: str) -> pd.DataFrame:
    keys = [*cells, "seed", "image_id"]
    reference = images.loc[images["variant"] == baseline, [*keys, metric]]
    mine = images.loc[images["variant"] == variant, [*keys, metric]]
    return mine.merge(reference, on=keys, suffixes=("", "_baseline"))


def _cells(images: pd.DataFrame, cells: list[str], variants: list[str], baseline: str, metric: str):
    """Yield ``(variant, {cell column: value}, paired rows)`` per variant other than the baseline and table cell."""
    for variant in variants:
        if variant == baseline:
            continue
        paired = _paired_rows(images, cells, variant, baseline, metric)
        for cell, group in paired.groupby(cells, dropna=False, sort=True):
            yield variant, dict(zip(cells, cell, strict=True)), group


def seed_arrays(group: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``(k seeds, n images)`` arrays of the variant's and the baseline's values in one cell."""
    variant = group.pivot_table(index="seed", columns="image_id", values=metric, aggfunc="mean", dropna=False)
    baseline = group.pivot_table(
        index="seed", columns="image_id", values=f"{metric}_baseline", aggfunc="mean", dropna=False
    )
    baseline = baseline.reindex(index=variant.index, columns=variant.columns)
    return variant.to_numpy(dtype="float64"), baseline.to_numpy(dtype="float64")


def per_seed_means(variant: np.ndarray, baseline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed means over the images both models have (NaN for a seed with none)."""
    both = np.isfinite(variant) & np.isfinite(baseline)
    count = both.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(both, variant, 0.0).sum(axis=1) / count
        b = np.where(both, baseline, 0.0).sum(axis=1) / count
    return np.where(count > 0, v, np.nan), np.where(count > 0, b, np.nan)


def seed_tests(
    images: pd.DataFrame,
    cells: list[str],
    variants: list[str],
    baseline: str,
    metric: str = "dice",
    relative: bool = False,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.05,
) -> pd.DataFrame:
    """Seed-level effect, interval and test of each variant against the baseline, per table cell.

    Args:
        images: Per-image rows (:func:`analysis.frames.image_scores`), already restricted to the table.
        cells: Columns that identify a table cell apart from the variant.
        variants: Variants to compare (the baseline is skipped).
        baseline: Reference variant.
        metric: Per-image column compared.
        relative: Effects relative to the baseline's per-seed mean, ``(v - b) / b``, instead of ``v - b``.
        n_resamples: Resamples of the hierarchical bootstrap interval.
        seed: Bootstrap seed.
        level: Family-wise error rate of the Holm correction across all returned rows.

    Returns:
        Columns ``variant, *cells`` and :data:`SEED_TEST_COLUMNS`: ``mean_diff`` is the mean per-seed effect,
        ``std_seeds`` its spread over seeds, ``ci_low/ci_high`` the 95% Student-t interval (df = seeds - 1),
        ``boot_low/boot_high`` the hierarchical bootstrap interval, ``p_value`` the seed-level t-test,
        ``p_holm``/``significant`` its Holm correction, ``p_images`` the per-image Wilcoxon p-value
        (variation over the test set, uncorrected). Below 2 seeds the test columns are NaN and nothing is
        significant.
    """
    rows = []
    for variant, cell, group in _cells(images, cells, variants, baseline, metric):
        v, b = seed_arrays(group, metric)
        effects = per_seed_effect(*per_seed_means(v, b), relative)
        summary = seed_effect(effects)
        low, high = hierarchical_bootstrap(v, b, relative=relative, n_resamples=n_resamples, seed=seed)
        rows.append(
            {
                "variant": variant,
                **cell,
                "n_seeds": summary.n_seeds,
                "n_images": int(np.isfinite(v - b).any(axis=0).sum()),
                "mean_diff": summary.mean,
                "std_seeds": summary.std,
                "ci_low": summary.ci_low,
                "ci_high": summary.ci_high,
                "boot_low": low,
                "boot_high": high,
                "p_value": summary.p_value,
                "p_images": wilcoxon_signed_rank(group[metric] - group[f"{metric}_baseline"]),
            }
        )
    tests = pd.DataFrame(
        rows, columns=["variant", *cells, *[c for c in SEED_TEST_COLUMNS if c not in {"p_holm", "significant"}]]
    )
    tests["p_holm"] = holm(tests["p_value"].to_numpy()) if len(tests) else []
    tests["significant"] = (tests["p_holm"] <= level).astype(bool)
    return tests[["variant", *cells, *SEED_TEST_COLUMNS]]


def paired_tests(
    images: pd.DataFrame,
    cells: list[str],
    variants: list[str],
    baseline: str,
    metric: str = "dice",
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.05,
) -> pd.DataFrame:
    """Per-image view (variation over the test set): Wilcoxon tests and bootstrap intervals of pooled pairs.

    Pairs are the same (seed, image_id) tested by the variant and by the baseline in the same
    cell. All returned rows form one family for the Holm correction.

    Args:
        images: Per-image rows (:func:`analysis.frames.image_scores`), already restricted to the table.
        cells: Columns that identify a table cell apart from the variant (e.g. dataset, train_alpha, condition).
        variants: Variants to compare (the baseline is skipped).
        baseline: Reference variant.
        metric: Per-image column compared.
        n_resamples: Bootstrap resamples per cell.
        seed: Bootstrap seed.
        level: Family-wise error rate of the Holm correction.

    Returns:
        Columns ``variant, *cells, n_pairs, mean_diff, ci_low, ci_high, p_value, p_holm, significant``.
    """
    rows = []
    for variant, cell, group in _cells(images, cells, variants, baseline, metric):
        result = paired_comparison(group[metric], group[f"{metric}_baseline"], n_resamples=n_resamples, seed=seed)
        rows.append({"variant": variant, **cell, **result.__dict__})
    columns = ["variant", *cells, "n_pairs", "mean_diff", "ci_low", "ci_high", "p_value"]
    tests = pd.DataFrame(rows, columns=columns)
    tests["p_holm"] = holm(tests["p_value"].to_numpy()) if len(tests) else []
    tests["significant"] = tests["p_holm"] <= level
    return tests
