"""Texture similarity and test-time perturbations: hand-computed and behavioural cases."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from trainables.config import PerturbationConfig, SyntheticConfig, TextureSimilarityConfig
from trainables.datasets.perturb import background_blur, perturb_set, speckle
from trainables.datasets.synthetic.generate import blend, generate_base
from trainables.datasets.texture import (
    kl_divergence,
    lbp_bin_count,
    lbp_histograms,
    resize_for_lbp,
    texture_similarities,
    texture_similarity,
)

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


def test_released_preset_follows_the_released_rule_and_paper_keeps_ours() -> None:
    released, paper = TextureSimilarityConfig(preset="released"), TextureSimilarityConfig()
    assert (released.mask_resize, released.lbp_input, released.resize_to) == ("bilinear_nonzero", "float", 256)
    assert (paper.mask_resize, paper.lbp_input, paper.resize_to) == ("nearest", "uint8", None)


@pytest.mark.parametrize(("rule", "side"), [("nearest", 64), ("bilinear_nonzero", 68)])
def test_mask_resize_rule_by_hand(rule: str, side: int) -> None:
    """A 16x16 square at 64 px, x4: nearest keeps 64x64 pixels; bilinear > 0 adds a 2-pixel ring (68x68)."""
    mask = np.zeros((64, 64), np.uint8)
    mask[24:40, 24:40] = 1
    config = TextureSimilarityConfig(resize_to=256, mask_resize=rule)
    image, resized = resize_for_lbp(np.zeros((64, 64)), mask, config)
    assert image.shape == resized.shape == (256, 256)
    assert resized.sum() == side * side
    rows = np.flatnonzero(resized.any(axis=1))
    assert (rows[0], rows[-1]) == (128 - side // 2, 127 + side // 2)


def test_float_lbp_sees_what_8_bits_round_away() -> None:
    image = 0.5 + 1e-4 * np.random.default_rng(0).random((32, 32))  # one 8-bit level: flat when quantised
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 1
    _, quantised = lbp_histograms(image, mask, UNIFORM)  # the foreground, away from the image border
    _, floating = lbp_histograms(image, mask, UNIFORM.model_copy(update={"lbp_input": "float"}))
    assert np.count_nonzero(quantised) == 1
    assert np.count_nonzero(floating) > 5


def test_speckle_works_in_the_released_intensity_range() -> None:
    """The released code adds speckle to its 8-bit PNGs through random_noise, which first maps them to [0, 1]."""
    from skimage.util import random_noise

    image = np.random.default_rng(2).integers(0, 256, (32, 32), dtype=np.uint8)
    released = random_noise(image, mode="speckle", var=0.1, rng=9)  # img_as_float inside, clipped to [0, 1]
    assert_allclose(speckle(image / 255.0, 0.1, seed=9), released, atol=1e-12)


def test_speckle_statistics_by_hand() -> None:
    """x (1 + n), n ~ N(0, 0.1) on a flat 0.4: mean 0.4, std 0.4 * sqrt(0.1) = 0.126, inside [0, 1]."""
    noisy = speckle(np.full((256, 256), 0.4), 0.1, seed=3)
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert_allclose(noisy.mean(), 0.4, atol=0.002)
    assert_allclose(noisy.std(), 0.4 * np.sqrt(0.1), rtol=0.02)
