"""Paired statistics on hand-computable samples: Wilcoxon exact p-values, bootstrap, Holm."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from analysis.statistics.paired import bootstrap_ci, holm, paired_comparison, wilcoxon_signed_rank


@pytest.mark.parametrize(
    ("differences", "expected"),
    [
        # n=5, all positive: W- = 0; P(W- <= 0) = 1/32 under the null (2^5 equally likely sign patterns).
        ([1.0, 2.0, 3.0, 4.0, 5.0], 2 / 32),
        # W- = 2 (the rank of -2); subsets of {1..5} with rank sum <= 2: {}, {1}, {2} -> 3/32, two-sided 6/32.
        ([1.0, -2.0, 3.0, 4.0, 5.0], 6 / 32),
        # n=3 all negative: 2 * 1/8.
        ([-1.0, -2.0, -3.0], 2 / 8),
        # the zero is dropped (Wilcoxon's convention), leaving the first case.
        ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 2 / 32),
    ],
)
def test_wilcoxon_exact_p_values(differences, expected):
    assert_allclose(wilcoxon_signed_rank(differences), expected, rtol=1e-12)


def test_wilcoxon_degenerate_samples():
    assert wilcoxon_signed_rank([0.0, 0.0, 0.0]) == 1.0
    assert math.isnan(wilcoxon_signed_rank([]))
    assert math.isnan(wilcoxon_signed_rank([np.nan]))


def test_bootstrap_interval_contains_mean_and_is_reproducible():
    rng = np.random.default_rng(3)
    sample = rng.normal(0.05, 0.02, size=40)
    low, high = bootstrap_ci(sample, n_resamples=2000, seed=7)
    assert low < sample.mean() < high
    assert high - low < 4 * 0.02 / np.sqrt(40) * 1.96  # about 2 * 1.96 standard errors wide, not more
    assert bootstrap_ci(sample, n_resamples=2000, seed=7) == (low, high)
    assert bootstrap_ci([0.3, 0.3, 0.3]) == (pytest.approx(0.3), pytest.approx(0.3))
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def _hand_written_bootstrap_ci(x: np.ndarray, n_resamples: int, confidence: float, seed: int, chunk: int = 250):
    """The loop ``bootstrap_ci`` replaced: ``scipy.stats.bootstrap`` must give the same interval."""
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [
            x[rng.integers(0, x.size, size=(min(chunk, n_resamples - start), x.size))].mean(axis=1)
            for start in range(0, n_resamples, chunk)
        ]
    )
    tail = (1.0 - confidence) / 2.0 * 100.0
    return tuple(np.percentile(means, [tail, 100.0 - tail]))


@pytest.mark.parametrize("size", [2, 3, 40, 333])
@pytest.mark.parametrize(("n_resamples", "confidence", "seed"), [(2000, 0.95, 0), (999, 0.9, 7)])
def test_bootstrap_matches_the_hand_written_percentile_bootstrap(size, n_resamples, confidence, seed):
    sample = np.random.default_rng(size).normal(size=size)
    expected = _hand_written_bootstrap_ci(sample, n_resamples, confidence, seed)
    assert_allclose(bootstrap_ci(sample, n_resamples, confidence, seed), expected, rtol=0, atol=1e-12)


def test_bootstrap_of_one_value_is_that_value():
    assert bootstrap_ci([0.25, np.nan]) == (0.25, 0.25)


def test_holm_hand_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone).
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert list(adjusted <= 0.05) == [True, False, False, True]


def test_holm_keeps_nan_out_of_the_family_and_caps_at_one():
    adjusted = holm([0.5, np.nan, 0.02])  # m = 2: 0.02*2 = 0.04, 0.5*1 -> 0.5
    assert_allclose(adjusted, [0.5, np.nan, 0.04])
    assert_allclose(holm([0.6, 0.7]), [1.0, 1.0])


def test_paired_comparison_pairs_values():
    result = paired_comparison([2.0, 4.0, 6.0, 8.0, 10.0], [1.0, 2.0, 3.0, 4.0, 5.0], n_resamples=500)
    assert result.n_pairs == 5
    assert_allclose(result.mean_diff, 3.0)
    assert_allclose(result.p_value, 2 / 32)
    assert result.ci_low <= 3.0 <= result.ci_high
    with pytest.raises(ValueError, match="differ in length"):
        paired_comparison([1.0], [1.0, 2.0])
