"""What one trial gets: training and validation arrays, its test conditions, and the manifest of its split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainables.config import stable_hash


@dataclass(frozen=True)
class TestCondition:
    """One test set a trained model is evaluated on."""

    name: str  # "alpha_0.30" or a test level such as "harder"
    test_alpha: float  # the alpha tested on; NaN for perturbation levels
    images: np.ndarray  # (n, H, W) float32 in [0, 1]
    masks: np.ndarray  # (n, H, W) uint8
    ts: np.ndarray  # (n,) texture similarity of each image as tested
    image_ids: tuple[str, ...]


@dataclass(frozen=True)
class TrialData:
    """The arrays of one trial: training and validation sets and every test condition."""

    train_images: np.ndarray  # (n, H, W) float32 in [0, 1]
    train_masks: np.ndarray  # (n, H, W) uint8
    val_images: np.ndarray
    val_masks: np.ndarray
    conditions: tuple[TestCondition, ...]
    manifest: dict  # dataset, train / val / test image ids, hash


def split_manifest(
    dataset: str,
    image_ids: tuple[str, ...],
    split: dict[str, np.ndarray],
    patients: dict[str, list[str]] | None = None,
) -> dict:
    """Which image ids (and, for medical data, which patients) are train / val / test, with a hash of exactly that."""
    manifest = {"dataset": dataset, **{name: [image_ids[i] for i in split[name]] for name in ("train", "val", "test")}}
    if patients is not None:
        manifest["patients"] = {name: list(patients[name]) for name in ("train", "val", "test")}
    manifest["hash"] = stable_hash(
        {k: manifest[k] for k in ("dataset", "train", "val", "test", "patients") if k in manifest}
    )
    return manifest


def input_images(images: np.ndarray, scaling: str = "divide_255") -> np.ndarray:
    """What the network sees, float32 in [0, 1] (N, H, W).

    Args:
        images: uint8 images (divided by 255 first) or float images in [0, 1].
        scaling: ``divide_255`` keeps that; ``min_max`` maps each image's own minimum to 0 and
            maximum to 1, like the released pipeline's ``ScaleIntensityd`` (a flat image becomes 0).

    Kept in numpy rather than MONAI's ``ScaleIntensity(channel_wise=True)`` / ``ScaleIntensityRange``: on finite
    images those give bit-identical values (``tests/test_synthetic.py`` checks it), but they raise on an empty
    batch, turn an image with a NaN pixel into NaN instead of 0, and return a torch ``MetaTensor``.
    """
    images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    if scaling == "divide_255":
        return images
    if scaling != "min_max":
        raise ValueError(f"unknown input scaling '{scaling}'")
    low = images.min(axis=(-2, -1), keepdims=True)
    span = images.max(axis=(-2, -1), keepdims=True) - low
    return np.where(span > 0, (images - low) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)
