"""Paired significance tests: Wilcoxon signed-rank, bootstrap interval, Holm correction (numpy/scipy only).

A variant is compared with the baseline on the same test images and seeds: the pairs are
``(variant value, baseline value)`` of one image tested by the two models trained with one seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class PairedComparison:
    """A variant against the baseline on paired values.

    Attributes:
        n_pairs: Pairs with both values finite.
        mean_diff: Mean of ``variant - baseline``.
        ci_low: Lower end of the bootstrap interval of ``mean_diff``.
        ci_high: Upper end of the bootstrap interval of ``mean_diff``.
        p_value: Two-sided Wilcoxon signed-rank p-value (NaN with no pairs).
    """

    n_pairs: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float


def wilcoxon_signed_rank(differences) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences.

    Zero differences are dropped (Wilcoxon's convention); scipy uses the exact null
    distribution for small samples without ties and the normal approximation otherwise.

    Args:
        differences: ``x - y`` per pair; NaN pairs are ignored.

    Returns:
        The p-value; 1.0 when every difference is zero, NaN when there is no pair.
    """
    d = np.asarray(differences, dtype="float64")
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    if not np.any(d):
        return 1.0
    return float(scipy_stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def bootstrap_ci(
    values, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0, chunk: int = 250
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (``scipy.stats.bootstrap``, ``method="percentile"``).

    Each of ``n_resamples`` resamples draws ``len(values)`` indices with replacement from a
    ``numpy.random.default_rng(seed)`` generator; the interval is the linear-interpolated
    percentiles of the resampled means.

    Args:
        values: Sample (e.g. paired differences); NaN values are ignored.
        n_resamples: Bootstrap resamples.
        confidence: Coverage of the interval.
        seed: Seed of the resampling, so a report is reproducible.
        chunk: Resamples drawn at once (bounds memory on large samples).

    Returns:
        ``(low, high)``; NaNs when the sample is empty, ``(value, value)`` for a single value
        (every resample is that value; scipy refuses samples of one).
    """
    x = np.asarray(values, dtype="float64")
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float(x[0])
    interval = scipy_stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=n_resamples,
        batch=chunk,
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
    ).confidence_interval
    return float(interval.low), float(interval.high)


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, at most 1).

    The i-th smallest of m p-values becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``; a
    hypothesis is rejected at level a when its adjusted p-value is at most a. NaN p-values
    stay NaN and do not count in m.

    Args:
        p_values: Raw p-values of one family (one table).

    Returns:
        Adjusted p-values in the input order.
    """
    p = np.asarray(p_values, dtype="float64")
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def paired_comparison(
    variant, baseline, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> PairedComparison:
    """Compare paired values of a variant and the baseline.

    Args:
        variant: The variant's values, one per pair.
        baseline: The baseline's values, same order.
        n_resamples: Bootstrap resamples.
        confidence: Coverage of the bootstrap interval.
        seed: Bootstrap seed.

    Returns:
        A :class:`PairedComparison` of ``variant - baseline``.
    """
    a, b = np.asarray(variant, dtype="float64"), np.asarray(baseline, dtype="float64")
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    diff = a - b
    diff = diff[np.isfinite(diff)]
    low, high = bootstrap_ci(diff, n_resamples=n_resamples, confidence=confidence, seed=seed)
    mean = float(diff.mean()) if diff.size else float("nan")
    return PairedComparison(
        n_pairs=int(diff.size), mean_diff=mean, ci_low=low, ci_high=high, p_value=wilcoxon_signed_rank(diff)
    )
