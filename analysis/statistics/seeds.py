"""Inference with the trained model as the unit of replication (numpy/scipy only).

A study tests k models per (variant, alpha) cell, one per seed, each on the same n test images. The n x k
per-image values are k replicates measured on n images, not n x k replicates: an effect is first reduced to
one number per seed (e.g. the relative Dice gain of the seed-s variant over the seed-s baseline, each
averaged over the test images), and tests, intervals and equivalence are computed on those k numbers with
k - 1 degrees of freedom.

- :func:`seed_effect`: mean, spread, Student-t interval and two-sided t-test of k per-seed effects.
- :func:`equivalence`: two one-sided t-tests (TOST) against a margin, and the mirror test that the effect lies
  outside it: "equivalent", "different" or "undecided".
- :func:`hierarchical_bootstrap`: a percentile interval that resamples seeds and test images, so it carries
  both training and test-set variation (reported beside the t interval).
- :func:`minimum_detectable_effect`: the smallest effect k seeds detect with a given power (the power line).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

MIN_SEEDS = 3  # fewest seeds for a verdict that rests on seed-level inference
EQUIVALENT, DIFFERENT, UNDECIDED = "equivalent", "different", "undecided"


@dataclass(frozen=True)
class SeedEffect:
    """k per-seed effects summarised.

    Attributes:
        n_seeds: Seeds with a finite effect.
        mean: Mean effect over seeds.
        std: Sample standard deviation over seeds (ddof=1; NaN below 2 seeds).
        ci_low: Lower end of the Student-t interval (df = k - 1; NaN below 2 seeds).
        ci_high: Upper end of that interval.
        p_value: Two-sided one-sample t-test of a zero mean effect (NaN below 2 seeds; 1.0 when every
            effect is 0, 0.0 when all are equal and non-zero).
    """

    n_seeds: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    p_value: float


def _finite(values) -> np.ndarray:
    x = np.asarray(values, dtype="float64").ravel()
    return x[np.isfinite(x)]


def seed_p(effects, alternative: str = "two-sided") -> float:
    """p of a t-test of per-seed effects against 0 (``two-sided`` or ``greater``); NaN below 2 seeds. When every
    seed agrees, 0 if their shared effect is positive, else 1."""
    x = _finite(effects)
    if x.size < 2:
        return np.nan
    if np.allclose(x, x[0]):
        return 0.0 if x[0] > 0 else 1.0
    return float(scipy_stats.ttest_1samp(x, 0.0, alternative=alternative).pvalue)


def seed_effect(effects, confidence: float = 0.95) -> SeedEffect:
    """Mean, Student-t interval and t-test of per-seed effects.

    Args:
        effects: One effect per seed; NaN (a seed without a result) is left out.
        confidence: Coverage of the interval.

    Returns:
        A :class:`SeedEffect`.
    """
    x = _finite(effects)
    k = x.size
    if k == 0:
        return SeedEffect(0, np.nan, np.nan, np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if k < 2:
        return SeedEffect(1, mean, np.nan, np.nan, np.nan, np.nan)
    std = float(x.std(ddof=1))
    if std <= 1e-12 * max(
        1.0, abs(mean)
    ):  # every seed agrees (up to rounding): the interval is the point, the test is decided by the sign
        return SeedEffect(k, mean, 0.0, mean, mean, 1.0 if mean == 0.0 else 0.0)
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, k - 1)) * std / np.sqrt(k)
    p_value = float(scipy_stats.ttest_1samp(x, 0.0).pvalue)
    return SeedEffect(k, mean, std, mean - half, mean + half, p_value)


@dataclass(frozen=True)
class Equivalence:
    """An effect judged against a margin.

    Attributes:
        outcome: ``equivalent`` (inside +-margin by TOST), ``different`` (outside it, by the mirror one-sided
            test), or ``undecided`` (the interval straddles a margin, or fewer than 2 seeds).
        p_equivalent: TOST p-value: the larger of the two one-sided p-values (small = inside the margin).
        p_outside: p-value of the test that the effect lies beyond the margin on the side of its mean.
        p_above_lower: One-sided p-value of ``mean > -margin`` (small = non-inferior: not worse by the margin).
        low: Lower end of the 1 - 2 * level interval (the interval TOST reads).
        high: Upper end of that interval.
    """

    outcome: str
    p_equivalent: float
    p_outside: float
    low: float
    high: float
    p_above_lower: float = float("nan")


def equivalence(effects, margin: float, level: float = 0.05) -> Equivalence:
    """Is the mean per-seed effect within ``+-margin`` (TOST), outside it, or undecided?

    Equivalent when both one-sided t-tests (mean > -margin, mean < +margin) reject at ``level``, i.e. the
    ``1 - 2 level`` interval lies inside the margin. Different when the mean lies beyond the margin by a
    one-sided t-test at ``level`` (the interval lies wholly outside it). Otherwise undecided.

    Args:
        effects: One effect per seed.
        margin: Half-width of the equivalence region (> 0), in the effect's units.
        level: Significance level of each one-sided test.

    Returns:
        An :class:`Equivalence`.
    """
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin}")
    x = _finite(effects)
    if x.size < 2:
        return Equivalence(UNDECIDED, np.nan, np.nan, np.nan, np.nan)
    mean, k = float(x.mean()), x.size
    se = float(x.std(ddof=1)) / np.sqrt(k)
    if se <= 1e-12 * max(1.0, abs(mean)):
        inside = abs(mean) < margin
        return Equivalence(
            EQUIVALENT if inside else DIFFERENT, 0.0 if inside else 1.0, 1.0 if inside else 0.0, mean, mean
        )
    t = scipy_stats.t(k - 1)
    p_above_lower = float(t.sf((mean + margin) / se))  # H0: mean <= -margin
    p_below_upper = float(t.cdf((mean - margin) / se))  # H0: mean >= +margin
    p_equivalent = max(p_above_lower, p_below_upper)
    p_outside = float(t.sf((abs(mean) - margin) / se))  # H0: |mean| <= margin, on the side of the mean
    half = float(t.ppf(1 - level)) * se
    if p_equivalent < level:
        outcome = EQUIVALENT
    elif p_outside < level:
        outcome = DIFFERENT
    else:
        outcome = UNDECIDED
    return Equivalence(outcome, p_equivalent, p_outside, mean - half, mean + half, p_above_lower)


def per_seed_effect(variant, baseline, relative: bool) -> np.ndarray:
    """Per-seed effect from per-seed means: ``v - b`` or ``(v - b) / b`` (NaN where b is 0 or missing)."""
    v, b = np.asarray(variant, dtype="float64"), np.asarray(baseline, dtype="float64")
    if not relative:
        return v - b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, (v - b) / b, np.nan)


def hierarchical_bootstrap(
    variant,
    baseline,
    relative: bool = False,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of the mean per-seed effect, resampling seeds and test images.

    Each resample draws k seeds with replacement and n test images with replacement, averages each drawn
    model over the drawn images (the same images for variant and baseline: they stay paired), turns the two
    means into the seed's effect (:func:`per_seed_effect`) and averages over the drawn seeds. Every seed is
    tested on the same images (seeds and images are crossed, not nested), so one image draw serves all the
    seeds of a resample: drawing images afresh for each seed would treat the k x n values as k x n different
    images and shrink the test-set part of the interval by about sqrt(k).

    Args:
        variant: Array ``(k seeds, n images)`` of the variant's per-image values; NaN = missing image.
        baseline: Same shape, the baseline's values on the same images and seeds.
        relative: Relative effect ``(v - b) / b`` instead of the difference.
        n_resamples: Bootstrap resamples.
        confidence: Coverage of the percentile interval.
        seed: Seed of the resampling generator, so a report is reproducible.

    Returns:
        ``(low, high)``; NaNs with no complete pair.
    """
    v, b = np.atleast_2d(np.asarray(variant, dtype="float64")), np.atleast_2d(np.asarray(baseline, dtype="float64"))
    if v.shape != b.shape:
        raise ValueError(f"variant and baseline differ in shape: {v.shape} vs {b.shape}")
    both = np.isfinite(v) & np.isfinite(b)
    keep = both.any(axis=1)
    v, b, both = v[keep], b[keep], both[keep]
    if v.size == 0:
        return float("nan"), float("nan")
    k, n = v.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, k, size=(n_resamples, k))
    images = rng.integers(0, n, size=(n_resamples, 1, n))
    rows = seeds[:, :, None]
    mask = both[rows, images]
    with np.errstate(invalid="ignore", divide="ignore"):
        v_mean = np.where(mask, v[rows, images], 0.0).sum(axis=2) / mask.sum(axis=2)
        b_mean = np.where(mask, b[rows, images], 0.0).sum(axis=2) / mask.sum(axis=2)
    effects = per_seed_effect(v_mean, b_mean, relative)
    finite = np.isfinite(effects)
    with np.errstate(invalid="ignore"):
        means = np.where(finite, effects, 0.0).sum(axis=1) / finite.sum(axis=1)
    means = means[np.isfinite(means)]
    if means.size == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def minimum_detectable_effect(std: float, n_seeds: int, level: float = 0.05, power: float = 0.8) -> float:
    """Smallest mean effect a two-sided one-sample t-test over ``n_seeds`` detects with ``power``.

    ``(t_{1 - level/2, k-1} + t_{power, k-1}) * std / sqrt(k)`` (the usual approximation).

    Args:
        std: Spread of the per-seed effect across seeds (ddof=1).
        n_seeds: Seeds per cell (k).
        level: Two-sided significance level.
        power: Wanted probability of detecting an effect of that size.

    Returns:
        The effect, in the units of ``std``; NaN below 2 seeds or without a finite spread.
    """
    if n_seeds < 2 or not np.isfinite(std):
        return float("nan")
    df = n_seeds - 1
    factor = scipy_stats.t.ppf(1 - level / 2, df) + scipy_stats.t.ppf(power, df)
    return float(factor * std / np.sqrt(n_seeds))
