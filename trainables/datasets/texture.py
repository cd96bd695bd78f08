"""Texture similarity (TS): how alike the foreground and background textures are.

    TS = KL( H(LBP(I)[background]) || H(LBP(I)[foreground]) )      (MICCAI 2023, Eq. 1)

Low TS means the textures are alike, a hard task; high TS an easy one. TS is an
analysis quantity: computed per image and logged, never used in training. The
functions here are pure numpy; the configuration is
:class:`trainables.config.TextureSimilarityConfig`.
"""

from __future__ import annotations

import warnings

import numpy as np
from skimage.feature import local_binary_pattern
from skimage.transform import resize
from skimage.util import img_as_float

from trainables.config import TextureSimilarityConfig


def lbp_bin_count(points: int, method: str) -> int:
    """Number of LBP codes for (P, method): fixed, never dependent on the image.

    Args:
        points: LBP sampling points P.
        method: skimage LBP method.
    """
    if method == "uniform":
        return points + 2
    if method == "nri_uniform":
        return points * (points - 1) + 3
    if method in ("default", "ror"):
        return 2**points
    raise ValueError(f"unsupported LBP method '{method}'")


def kl_divergence(p: np.ndarray, q: np.ndarray, base: float = 2.0) -> float:
    """KL(p || q) over the bins that are non-empty in BOTH histograms.

    This is the released code's rule (no epsilon): bins where either histogram is
    empty are dropped. Inputs are normalised here, so counts are fine.

    Args:
        p: first histogram (counts or probabilities).
        q: second histogram, same length.
        base: logarithm base (2 gives bits).

    Returns:
        The divergence; NaN if a histogram is empty or no bin is shared.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in length: {p.shape} vs {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    p = p / p.sum()
    q = q / q.sum()
    both = (p > 0) & (q > 0)
    if not both.any():
        return float("nan")
    return float(np.sum(p[both] * np.log(p[both] / q[both])) / np.log(base))


def lbp_histograms(
    image: np.ndarray, mask: np.ndarray, config: TextureSimilarityConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised LBP histograms of the background and of the foreground.

    Args:
        image: 2D grayscale image (any numeric type; compared within itself only).
        mask: 2D array, non-zero = foreground.
        config: LBP parameters.

    Returns:
        (background histogram, foreground histogram), each summing to 1 (or all zeros
        when that region is empty).
    """
    image = np.asarray(image)
    mask = np.asarray(mask) > 0
    if image.ndim != 2 or image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must be equal 2D shapes")
    if config.lbp_input == "float":
        image = img_as_float(image)  # the released rule: uint8 / 255, LBP on floats in [0, 1]
    if config.resize_to is not None and image.shape != (config.resize_to, config.resize_to):
        image, mask = resize_for_lbp(image, mask, config)
    if config.lbp_input == "float":
        with warnings.catch_warnings():  # skimage warns that float ties are fragile: the released rule accepts that
            warnings.simplefilter("ignore", UserWarning)
            codes = local_binary_pattern(image, P=config.lbp_points, R=config.lbp_radius, method=config.lbp_method)
    else:
        if np.issubdtype(image.dtype, np.floating):
            # LBP compares neighbours; quantising to 8 bits avoids ties decided by float noise.
            image = np.clip(np.round(image * 255.0 if image.max() <= 1.0 else image), 0, 255).astype(np.uint8)
        codes = local_binary_pattern(image, P=config.lbp_points, R=config.lbp_radius, method=config.lbp_method)
    bins = lbp_bin_count(config.lbp_points, config.lbp_method)
    codes = codes.astype(np.int64)

    def histogram(region: np.ndarray) -> np.ndarray:
        counts = np.bincount(codes[region], minlength=bins).astype(np.float64)
        total = counts.sum()
        return counts / total if total > 0 else counts

    return histogram(~mask), histogram(mask)


def resize_for_lbp(
    image: np.ndarray, mask: np.ndarray, config: TextureSimilarityConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask resized to ``config.resize_to`` squared before LBP.

    Args:
        image: 2D image; resized bilinearly with anti-aliasing, its range kept.
        mask: 2D mask, non-zero = foreground.
        config: ``resize_to`` and ``mask_resize`` ('nearest': value > 0.5 after a nearest-neighbour
            resize; 'bilinear_nonzero': value > 0 after a bilinear one, the released rule).

    Returns:
        (float64 image, boolean foreground mask).
    """
    size = (config.resize_to, config.resize_to)
    image = resize(image.astype(np.float64), size, order=1, preserve_range=True, anti_aliasing=True)
    if config.mask_resize == "bilinear_nonzero":
        mask = resize(mask.astype(np.float64), size, order=1, preserve_range=True, anti_aliasing=False) > 0
    else:
        mask = resize(mask.astype(np.float64), size, order=0, preserve_range=True, anti_aliasing=False) > 0.5
    return image, mask


def texture_similarity(image: np.ndarray, mask: np.ndarray, config: TextureSimilarityConfig | None = None) -> float:
    """TS of one image: KL divergence between background and foreground LBP histograms.

    Args:
        image: 2D grayscale image; floats are taken to lie in [0, 1].
        mask: 2D foreground mask of the same shape.
        config: LBP and KL parameters; the paper's defaults when None.

    Returns:
        TS in units of ``log_base``; NaN when the mask is empty or covers the image
        (TS is undefined without both regions).
    """
    config = config or TextureSimilarityConfig()
    background, foreground = lbp_histograms(image, mask, config)
    if config.kl_direction == "background_foreground":
        return kl_divergence(background, foreground, config.log_base)
    return kl_divergence(foreground, background, config.log_base)


def texture_similarities(
    images: np.ndarray, masks: np.ndarray, config: TextureSimilarityConfig | None = None
) -> np.ndarray:
    """TS of each image in a stack (N, H, W) with its mask (N, H, W)."""
    return np.array([texture_similarity(image, mask, config) for image, mask in zip(images, masks, strict=True)])


def summarise(values: np.ndarray) -> dict[str, float]:
    """Mean, std, median and count of the defined (non-NaN) TS values of a set."""
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "median": float("nan"), "count": 0}
    return {
        "mean": float(defined.mean()),
        "std": float(defined.std()),
        "median": float(np.median(defined)),
        "count": int(defined.size),
    }
