"""Test-time perturbations for the out-of-domain test levels (pure, seeded functions), and the test sets they make.

| level     | what is done                                   | effect on TS  |
| --------- | ---------------------------------------------- | ------------- |
| hardest   | speckle noise, variance 0.3, whole image       | lowers most   |
| harder    | speckle noise, variance 0.1, whole image       | lowers        |
| in_domain | unchanged                                      |               |
| easier    | Gaussian blur, sigma 3.0, background only      | raises        |
| easiest   | Gaussian blur, sigma 7.0, background only      | raises most   |

Both papers write "variance 3.0" for the blur; the released code passes 3.0 as
sigma, so the parameter is called ``sigma`` here. Noise is seeded (the released
code's is not): every variant and seed sees the same perturbed test set.
"""

from __future__ import annotations

import numpy as np
from skimage.filters import gaussian
from skimage.util import random_noise

from trainables.config import TEST_LEVEL_ORDER, PerturbationConfig, StudyConfig
from trainables.datasets.arrays import TestCondition, input_images
from trainables.datasets.texture import texture_similarities


def speckle(image: np.ndarray, variance: float, seed: int) -> np.ndarray:
    """Multiplicative speckle noise ``image + image * n``, n ~ N(0, variance), clipped to [0, 1].

    Args:
        image: float image in [0, 1].
        variance: noise variance.
        seed: seed of the noise.
    """
    return random_noise(np.asarray(image, dtype=np.float64), mode="speckle", var=variance, rng=seed, clip=True)


def background_blur(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the whole image written back where ``mask == 0`` (background only).

    Args:
        image: float image in [0, 1].
        mask: foreground mask, same shape.
        sigma: standard deviation of the Gaussian kernel in pixels.
    """
    image = np.asarray(image, dtype=np.float64)
    blurred = gaussian(image, sigma=sigma, preserve_range=True)
    return np.where(np.asarray(mask) > 0, image, blurred)


def perturb(image: np.ndarray, mask: np.ndarray, level: PerturbationConfig, seed: int) -> np.ndarray:
    """Apply one test level to one image (float in [0, 1]); returns float64."""
    if level.kind == "speckle":
        return speckle(image, level.variance, seed)
    if level.kind == "background_blur":
        return background_blur(image, mask, level.sigma)
    return np.asarray(image, dtype=np.float64)


def perturb_set(images: np.ndarray, masks: np.ndarray, level: PerturbationConfig, seed: int) -> np.ndarray:
    """Apply one test level to a stack (N, H, W); image i gets noise seed ``(seed, i)``."""
    out = np.empty(images.shape, dtype=np.float32)
    for index, (image, mask) in enumerate(zip(images, masks, strict=True)):
        image_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        out[index] = perturb(image, mask, level, image_seed)
    return out


def level_seed(data_seed: int, level: str) -> int:
    """Noise seed of a test level: a function of the data seed only, never of variant or seed."""
    return int(np.random.SeedSequence([data_seed, 7, TEST_LEVEL_ORDER.index(level)]).generate_state(1)[0])


def perturbed_conditions(
    config: StudyConfig, images: np.ndarray, masks: np.ndarray, test_alpha: float, image_ids: tuple[str, ...]
) -> list[TestCondition]:
    """The study's out-of-domain test levels applied to one in-domain test set (float images in [0, 1]).

    The perturbation works on the image / 255, as the released code's does on its 8-bit files; the
    study's ``training.input_scaling`` is applied afterwards (TS is measured before it).
    """
    conditions = []
    for level in TEST_LEVEL_ORDER:
        if level not in config.test_levels:
            continue
        perturbed = perturb_set(images, masks, config.test_levels[level], level_seed(config.data_seed, level))
        ts = texture_similarities(perturbed, masks, config.texture_similarity)
        shown = input_images(perturbed, config.training.input_scaling)
        conditions.append(TestCondition(level, test_alpha, shown, masks, ts, image_ids))
    return conditions
