"""Synthetic-data tables: in-domain relative improvement and cross-alpha matrices (pure pandas).

Definitions (MICCAI 2023, Fig. 4; D = mean Dice over the test images of one run and test alpha):

    relative(v, a, s, b) = (D(v, a, s, b) - D(baseline, a, s, b)) / D(baseline, a, s, b)

for variant v trained on alpha a with seed s and tested on alpha b; the baseline model is the
one trained with the same seed (pairing by seed). A matrix cell is the mean over seeds; the
in-domain relative improvement is the diagonal b == a, with its spread as the sample
standard deviation (ddof=1) over seeds. A cell whose (variant, alpha, seed) is missing is NaN,
never a mean over fewer seeds, and :func:`seed_level_scores` warns naming what is missing.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.frames import (
    TESTED_ON,
    TRAINED_ON,
    MissingDataWarning,
    cross_alpha_rows,
    format_alpha,
    ordered_variants,
)

SCORE_KEYS = ["dataset", "variant", "train_alpha", "seed", "test_alpha"]


def strict_mean(values: pd.Series) -> float:
    """Mean that is NaN when any value is NaN (a missing seed is not averaged away)."""
    return float(values.mean()) if values.notna().all() and len(values) else float("nan")


def strict_std(values: pd.Series) -> float:
    """Sample standard deviation (ddof=1), NaN when any value is NaN."""
    return float(values.std(ddof=1)) if values.notna().all() else float("nan")


def require_variant(frame: pd.DataFrame, variant: str) -> None:
    """Raise ``ValueError`` naming the variants present when ``variant`` is not among them."""
    present = ordered_variants(frame["variant"].unique())
    if variant not in present:
        raise ValueError(f"baseline {variant!r} is not among the variants {present}")


def seed_level_scores(images: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """Mean of a metric over test images per (dataset, variant, train_alpha, seed, test_alpha).

    Only synthetic cross-alpha conditions count (both alphas known). The result covers the full
    grid of the variants, trained alphas, seeds and tested alphas seen per data set; a missing
    combination is a NaN row and is named in a :class:`MissingDataWarning`.

    Args:
        images: Output of :func:`analysis.frames.image_scores`.
        metric: Per-image column to average.

    Returns:
        Columns ``dataset, variant, train_alpha, seed, test_alpha, <metric>``.
    """
    synthetic = cross_alpha_rows(images)
    frames = []
    for dataset, sub in synthetic.groupby("dataset", sort=True):
        means = sub.groupby(SCORE_KEYS[1:])[metric].mean()
        test_alphas = sorted(sub["test_alpha"].unique())
        grid = pd.MultiIndex.from_product(
            [
                ordered_variants(sub["variant"].unique()),
                sorted(sub["train_alpha"].unique()),
                sorted(sub["seed"].unique()),
                test_alphas,
            ],
            names=SCORE_KEYS[1:],
        )
        full = means.reindex(grid)
        _warn_missing(str(dataset), full, len(test_alphas))
        frames.append(full.reset_index().assign(dataset=dataset))
    if not frames:
        return pd.DataFrame({column: [] for column in [*SCORE_KEYS, metric]})
    return pd.concat(frames, ignore_index=True)[[*SCORE_KEYS, metric]]


def _warn_missing(dataset: str, full: pd.Series, n_test_alphas: int) -> None:
    missing = full[full.isna()]
    if missing.empty:
        return
    parts = []
    for (variant, alpha, seed), cell in missing.groupby(level=[0, 1, 2], sort=False):
        tested = cell.index.get_level_values("test_alpha")
        where = "" if len(tested) == n_test_alphas else f" tested on alpha {', '.join(map(format_alpha, tested))}"
        parts.append(f"({variant}, alpha {format_alpha(alpha)}, seed {seed}){where}")
    warnings.warn(
        f"{dataset}: no result for (variant, alpha, seed) {'; '.join(parts)}; the cells that need them are NaN",
        MissingDataWarning,
        stacklevel=3,
    )


def _relative_by_seed(scores: pd.DataFrame, baseline: str, metric: str) -> pd.DataFrame:
    """``scores`` without the baseline rows, plus ``baseline_<metric>`` (same seed) and ``relative`` against it."""
    require_variant(scores, baseline)
    keys = ["dataset", "train_alpha", "seed", "test_alpha"]
    reference = scores.loc[scores["variant"] == baseline, [*keys, metric]]
    reference = reference.rename(columns={metric: f"baseline_{metric}"})
    paired = scores[scores["variant"] != baseline].merge(reference, on=keys, how="left")
    paired["relative"] = (paired[metric] - paired[f"baseline_{metric}"]) / paired[f"baseline_{metric}"]
    return paired


def relative_improvement(scores: pd.DataFrame, baseline: str = "noskip_unet", metric: str = "dice") -> pd.DataFrame:
    """In-domain relative improvement over the baseline per variant and training alpha (MICCAI Fig. 4 left).

    Args:
        scores: Output of :func:`seed_level_scores`.
        baseline: Reference variant.
        metric: Score column.

    Returns:
        Columns ``dataset, variant, train_alpha, mean, std, n_seeds`` (``std`` over seeds, ddof=1).
    """
    paired = _relative_by_seed(scores, baseline, metric)
    in_domain = paired[np.isclose(paired["train_alpha"], paired["test_alpha"])]
    grouped = in_domain.groupby(["dataset", "variant", "train_alpha"], sort=False)["relative"]
    table = grouped.agg(mean=strict_mean, std=strict_std, n_seeds="count").reset_index()
    return table


def dice_matrix(scores: pd.DataFrame, dataset: str, variant: str, metric: str = "dice") -> pd.DataFrame:
    """A variant's raw score averaged over seeds: rows = trained on alpha, columns = tested on alpha.

    Args:
        scores: Output of :func:`seed_level_scores`.
        dataset: Synthetic data set.
        variant: Variant.
        metric: Score column.

    Returns:
        The matrix, index named "trained on alpha", columns named "tested on alpha".
    """
    rows = scores[(scores["dataset"] == dataset) & (scores["variant"] == variant)]
    return _matrix(rows, metric)


def relative_matrix(
    scores: pd.DataFrame, dataset: str, variant: str, baseline: str = "noskip_unet", metric: str = "dice"
) -> pd.DataFrame:
    """Cross-alpha robustness matrix (MICCAI Fig. 4 right): mean over seeds of the relative difference.

    Args:
        scores: Output of :func:`seed_level_scores`.
        dataset: Synthetic data set.
        variant: Variant compared with the baseline.
        baseline: Reference variant.
        metric: Score column.

    Returns:
        The matrix, index named "trained on alpha", columns named "tested on alpha"; its diagonal is
        the ``mean`` of :func:`relative_improvement`.
    """
    paired = _relative_by_seed(scores, baseline, metric)
    rows = paired[(paired["dataset"] == dataset) & (paired["variant"] == variant)]
    return _matrix(rows, "relative")


def _matrix(rows: pd.DataFrame, value: str) -> pd.DataFrame:
    cells = rows.groupby(["train_alpha", "test_alpha"])[value].agg(strict_mean)
    matrix = cells.unstack("test_alpha")
    matrix.index.name, matrix.columns.name = TRAINED_ON, TESTED_ON
    return matrix
