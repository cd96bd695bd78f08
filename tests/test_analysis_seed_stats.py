"""Seed-level inference: hand-computed t intervals and tests, TOST, the crossed bootstrap, the power line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats as scipy_stats

from analysis.statistics.cells import seed_tests
from analysis.statistics.seeds import (
    DIFFERENT,
    EQUIVALENT,
    UNDECIDED,
    equivalence,
    hierarchical_bootstrap,
    minimum_detectable_effect,
    seed_effect,
)


def test_seed_effect_by_hand():
    effect = seed_effect([0.1, 0.2, 0.3, np.nan])  # the NaN seed has no result and is left out
    # mean 0.2, std 0.1, t(0.975, 2) = 4.302653 -> half-width 4.302653 * 0.1 / sqrt(3) = 0.248414
    assert effect.n_seeds == 3
    assert_allclose([effect.mean, effect.std], [0.2, 0.1])
    assert_allclose([effect.ci_low, effect.ci_high], [0.2 - 0.248414, 0.2 + 0.248414], atol=1e-6)
    # t = 0.2 / (0.1 / sqrt(3)) = 3.4641 with 2 degrees of freedom: p = 0.07418
    assert_allclose(effect.p_value, 0.074180, atol=1e-5)


def test_one_seed_tests_nothing_and_identical_seeds_are_decided_by_the_sign():
    single = seed_effect([0.3])
    assert single.n_seeds == 1 and single.mean == 0.3 and np.isnan(single.p_value) and np.isnan(single.ci_low)
    assert seed_effect([0.1, 0.1, 0.1]).p_value == 0.0 and seed_effect([0.0, 0.0]).p_value == 1.0


def test_forty_image_pairs_of_two_seeds_are_two_replicates():
    """A worked example: a per-seed gain of 0.174 +- 0.127 over 2 seeds is not significant (p_holm was 2e-4)."""
    effects = [0.174 - 0.127 / np.sqrt(2), 0.174 + 0.127 / np.sqrt(2)]
    result = seed_effect(effects)
    assert_allclose(result.std, 0.127)
    assert result.p_value > 0.2  # t = 1.94 with 1 degree of freedom


@pytest.mark.parametrize(
    ("effects", "outcome"),
    [
        ([0.001, -0.001, 0.002, 0.0, -0.002], EQUIVALENT),  # well inside +-2%
        ([0.10, 0.11, 0.09], DIFFERENT),  # well outside
        ([0.0, 0.04, -0.04], UNDECIDED),  # the interval straddles both margins
        ([0.025, 0.015, 0.02], UNDECIDED),  # on the margin itself
        ([0.0], UNDECIDED),  # one seed decides nothing
    ],
)
def test_equivalence_is_three_way(effects, outcome):
    assert equivalence(effects, margin=0.02).outcome == outcome


def test_tost_p_value_by_hand():
    x = np.array([0.001, -0.001, 0.002, 0.0, -0.002])
    se = x.std(ddof=1) / np.sqrt(5)
    expected = max(scipy_stats.t(4).sf((x.mean() + 0.02) / se), scipy_stats.t(4).cdf((x.mean() - 0.02) / se))
    assert_allclose(equivalence(x, 0.02).p_equivalent, expected)
    with pytest.raises(ValueError, match="margin must be positive"):
        equivalence(x, 0.0)


def test_bootstrap_with_seeds_that_differ_and_images_that_do_not():
    # two seeds with effects 0 and 1 on every image: a resample's mean is 0, 0.5 or 1 (1/4, 1/2, 1/4)
    variant = np.array([[0.5] * 10, [1.5] * 10])
    baseline = np.full((2, 10), 0.5)
    assert hierarchical_bootstrap(variant, baseline, n_resamples=4000) == (0.0, 1.0)


def test_bootstrap_with_images_that_differ_and_seeds_that_do_not_keeps_the_test_set_variation():
    values = np.arange(20) / 20.0
    variant = np.tile(values, (5, 1))
    low, high = hierarchical_bootstrap(variant, np.zeros_like(variant), n_resamples=4000)
    # the same as bootstrapping the 20 images once: se = std / sqrt(20) = 0.0647 -> width ~ 2 x 1.96 x 0.0647
    se = values.std(ddof=0) / np.sqrt(20)
    assert_allclose(high - low, 2 * 1.96 * se, rtol=0.1)
    assert low < values.mean() < high
    # resampling images afresh per seed would have shrunk the width by sqrt(5): 0.11 instead of 0.25
    assert high - low > 0.2


def test_relative_bootstrap_and_missing_images():
    variant = np.array([[1.1, 1.1, np.nan], [1.2, 1.2, 1.2]])
    baseline = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    low, high = hierarchical_bootstrap(variant, baseline, relative=True, n_resamples=2000)
    assert_allclose([low, high], [0.1, 0.2], atol=1e-12)


def test_minimum_detectable_effect_by_hand():
    # (t(0.975, 4) + t(0.8, 4)) * 0.1 / sqrt(5) = (2.776445 + 0.940965) * 0.044721 = 0.166248
    assert_allclose(minimum_detectable_effect(0.1, 5), 0.166248, atol=1e-6)
    assert np.isnan(minimum_detectable_effect(0.1, 1))
    assert minimum_detectable_effect(0.1, 10) < minimum_detectable_effect(0.1, 3)


def _cell_images(gains: dict[int, float], image_noise: float = 0.0) -> pd.DataFrame:
    rows = []
    for seed, gain in gains.items():
        for image in range(4):
            base = 0.5 + image_noise * image
            rows.append({"cell": "a", "variant": "noskip_unet", "seed": seed, "image_id": image, "dice": base})
            rows.append({"cell": "a", "variant": "unet", "seed": seed, "image_id": image, "dice": base + gain})
    return pd.DataFrame(rows)


def test_seed_tests_use_seeds_as_replicates_and_keep_the_per_image_view():
    images = _cell_images({0: 0.05, 1: 0.15, 2: 0.10}, image_noise=0.1)
    (row,) = seed_tests(images, ["cell"], ["noskip_unet", "unet"], "noskip_unet", n_resamples=200).itertuples()
    assert (row.n_seeds, row.n_images) == (3, 4)
    assert_allclose([row.mean_diff, row.std_seeds], [0.10, 0.05])
    assert_allclose(row.p_value, scipy_stats.ttest_1samp([0.05, 0.15, 0.10], 0.0).pvalue)
    assert row.p_holm == row.p_value and row.significant == (row.p_value <= 0.05)
    # 12 image pairs all favour unet: the per-image view alone would call it highly significant
    assert row.p_images < row.p_value
    relative = seed_tests(images, ["cell"], ["unet"], "noskip_unet", relative=True, n_resamples=200)
    # baseline per-seed mean 0.5 + 0.1 * 1.5 = 0.65: relative gains 0.05/0.65, 0.15/0.65, 0.10/0.65
    assert_allclose(relative.loc[0, "mean_diff"], 0.10 / 0.65)


def test_seed_tests_with_one_seed_decide_nothing():
    tests = seed_tests(_cell_images({0: 0.2}), ["cell"], ["unet"], "noskip_unet", n_resamples=50)
    assert tests.loc[0, "n_seeds"] == 1 and np.isnan(tests.loc[0, "p_value"])
    assert not tests.loc[0, "significant"]
