"""Texture similarity and test-time perturbations: hand-computed and behavioural cases."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from trainables.config import PerturbationConfig, SyntheticConfig, TextureSimilarityConfig
from trainables.perturb import background_blur, perturb_set, speckle
from trainables.synthetic import blend, generate_base
from trainables.texture import kl_divergence, lbp_bin_count, lbp_histograms, texture_similarities, texture_similarity

UNIFORM = TextureSimilarityConfig(lbp_method="uniform")


@pytest.mark.parametrize(
    ("p", "q", "base", "expected"),
    [
        ([0.5, 0.5], [0.25, 0.75], 2.0, 0.5 * 1.0 + 0.5 * np.log2(2 / 3)),  # 0.2075 bits
        ([1, 1], [1, 3], 2.0, 0.5 * 1.0 + 0.5 * np.log2(2 / 3)),  # counts are normalised first
        ([0.5, 0.5, 0.0], [0.5, 0.25, 0.25], 2.0, 0.5),  # bin 2 is empty in p: dropped
        ([0.5, 0.5], [0.25, 0.75], np.e, 0.5 * np.log(2) + 0.5 * np.log(2 / 3)),
        ([0.2, 0.8], [0.2, 0.8], 2.0, 0.0),
    ],
)
def test_kl_divergence_by_hand(p, q, base, expected) -> None:
    assert_allclose(kl_divergence(np.array(p, float), np.array(q, float), base), expected, atol=1e-12)


def test_kl_of_histograms_sharing_no_bin_is_nan() -> None:
    assert np.isnan(kl_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])))


@pytest.mark.parametrize(("points", "method", "bins"), [(8, "default", 256), (8, "uniform", 10), (24, "uniform", 26)])
def test_bin_count_is_fixed(points, method, bins) -> None:
    assert lbp_bin_count(points, method) == bins


def test_histograms_have_the_fixed_length_whatever_the_image() -> None:
    flat = np.full((32, 32), 0.5)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 1
    background, foreground = lbp_histograms(flat, mask, TextureSimilarityConfig())
    assert background.shape == foreground.shape == (256,)
    assert_allclose([background.sum(), foreground.sum()], [1.0, 1.0])


def test_direction_swaps_the_arguments() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((48, 48))
    image[16:32, 16:32] = np.linspace(0, 1, 16)[None, :]
    mask = np.zeros((48, 48), np.uint8)
    mask[16:32, 16:32] = 1
    forward = texture_similarity(image, mask, UNIFORM)
    backward = texture_similarity(image, mask, UNIFORM.model_copy(update={"kl_direction": "foreground_background"}))
    background, foreground = lbp_histograms(image, mask, UNIFORM)
    assert_allclose(forward, kl_divergence(background, foreground))
    assert_allclose(backward, kl_divergence(foreground, background))
    assert forward != pytest.approx(backward)


def test_ts_is_undefined_without_both_regions() -> None:
    image = np.random.default_rng(0).random((32, 32))
    assert np.isnan(texture_similarity(image, np.zeros((32, 32))))
    assert np.isnan(texture_similarity(image, np.ones((32, 32))))


@pytest.fixture(scope="module")
def base():
    config = SyntheticConfig(background="grass", foreground="brick", split={"train": 30, "val": 5, "test": 5})
    return generate_base(config, 64, data_seed=3)


def test_same_texture_inside_and_outside_gives_ts_near_zero(base) -> None:
    """alpha -> 0 leaves background texture inside the mask: both regions are one texture."""
    same = texture_similarities(blend(base, 0.0), base.masks, UNIFORM)
    different = texture_similarities(blend(base, 1.0), base.masks, UNIFORM)
    assert np.nanmean(same) < 0.02  # finite-sample bias of KL on 64x64 images; 0 in the limit
    assert np.nanmean(different) > 10 * np.nanmean(same)


def test_mean_ts_grows_with_alpha_on_default_textures() -> None:
    config = SyntheticConfig(split={"train": 30, "val": 5, "test": 5}, crop_size=128)
    base = generate_base(config, 64, data_seed=0)
    means = [np.nanmean(texture_similarities(blend(base, a), base.masks, UNIFORM)) for a in (0.2, 0.5, 0.8, 1.0)]
    assert all(np.diff(means) > 0), means


def test_speckle_lowers_and_background_blur_raises_mean_ts(base) -> None:
    images = blend(base, 0.9).astype(np.float32) / 255
    clean = np.nanmean(texture_similarities(images, base.masks, UNIFORM))
    noisy = perturb_set(images, base.masks, PerturbationConfig(kind="speckle", variance=0.1), seed=1)
    blurred = perturb_set(images, base.masks, PerturbationConfig(kind="background_blur", sigma=3.0), seed=1)
    assert np.nanmean(texture_similarities(noisy, base.masks, UNIFORM)) < clean
    assert np.nanmean(texture_similarities(blurred, base.masks, UNIFORM)) > clean


def test_speckle_is_seeded() -> None:
    image = np.full((16, 16), 0.5)
    assert_allclose(speckle(image, 0.1, seed=4), speckle(image, 0.1, seed=4))
    assert not np.allclose(speckle(image, 0.1, seed=4), speckle(image, 0.1, seed=5))


def test_background_blur_leaves_the_foreground_untouched() -> None:
    image = np.random.default_rng(1).random((32, 32))
    mask = np.zeros((32, 32), np.uint8)
    mask[10:20, 10:20] = 1
    blurred = background_blur(image, mask, sigma=3.0)
    assert_allclose(blurred[mask == 1], image[mask == 1])
    assert blurred[mask == 0].std() < image[mask == 0].std() / 2
