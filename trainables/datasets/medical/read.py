"""Medical files to 2D slices: images in [0, 1] and boolean masks at ``image_size``, oriented as displayed.

Orientation and intensity rules: the package docstring (:mod:`trainables.datasets.medical`).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.transform import resize

from trainables.config import MedicalDatasetConfig, VolumeDatasetConfig
from trainables.datasets.medical.layouts import Case, MedicalDataError, one_line

RAS_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}  # after as_closest_canonical: x (R), y (A), z (S)


def _read_picture(path: Path, labels: bool = False) -> np.ndarray:
    try:
        with Image.open(path) as picture:
            if picture.mode == "P" and not labels:
                picture = picture.convert("RGB")
            return np.asarray(picture)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise MedicalDataError(f"{path}: cannot read the image ({one_line(error)})") from None


def _grayscale(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array.astype(np.float64)
    if array.shape[2] < 3:
        return array[..., 0].astype(np.float64)
    return array[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _foreground(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array > 0
    colour = array[..., :1] if array.shape[2] < 3 else array[..., :3]  # never the alpha channel
    return (colour > 0).any(axis=-1)


def _read_volume(path: Path) -> np.ndarray:
    import nibabel  # only studies with NIfTI volumes pay for loading it

    try:
        data = np.asanyarray(nibabel.as_closest_canonical(nibabel.load(path)).dataobj)
    except (OSError, EOFError, ValueError, zlib.error, nibabel.filebasedimages.ImageFileError) as error:
        raise MedicalDataError(f"{path}: cannot read the NIfTI volume ({one_line(error)})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise MedicalDataError(f"{path}: expected a 3D volume, got shape {data.shape}")
    return data


def display_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` along RAS ``axis`` of a canonical volume, as displayed (see the package docstring)."""
    return np.take(volume, index, axis=axis).T[::-1, ::-1]


def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, dtype=np.float64)
    return np.clip((values.astype(np.float64) - low) / (high - low), 0.0, 1.0)


def _to_size(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    if image.shape != (size, size):
        image = resize(image, (size, size), order=1, anti_aliasing=True, preserve_range=True)
        mask = resize(mask.astype(np.float32), (size, size), order=0, anti_aliasing=False, preserve_range=True) > 0.5
    return image, mask


Slice = tuple[str, np.ndarray, np.ndarray]  # slice id, image in [0, 1], boolean mask


def picture_slices(case: Case, dataset: MedicalDatasetConfig, size: int) -> list[Slice]:
    """The one 2D image of a BUSI or GlaS case, if its mask has foreground at ``size``.

    Raises:
        MedicalDataError: an unreadable file, a mask whose shape differs from its image, or (a case with
            ``foreground_required``) a mask without foreground at its own size; naming the file.
    """
    image = _grayscale(_read_picture(case.image))
    mask = np.zeros(image.shape, dtype=bool)
    for path in case.masks:
        labels = _foreground(_read_picture(path, labels=True))
        if labels.shape != image.shape:
            raise MedicalDataError(
                f"{path}: mask shape {labels.shape} differs from image {case.image.name} {image.shape}"
            )
        mask |= labels
    if case.foreground_required and not mask.any():
        raise MedicalDataError(f"{case.masks[0]}: the mask has no foreground anywhere (every pixel is 0)")
    image, mask = _to_size(_scale(image, *np.percentile(image, dataset.percentiles)), mask, size)
    return [(case.case_id, image, mask)] if mask.any() else []


def volume_slices(case: Case, dataset: VolumeDatasetConfig, size: int) -> list[Slice]:
    """The slices of an MSD volume along ``dataset.slice_axis`` whose label has foreground at ``size``."""
    image, label = _read_volume(case.image), _read_volume(case.masks[0]) > 0
    if label.shape != image.shape:
        raise MedicalDataError(
            f"{case.masks[0]}: label shape {label.shape} differs from image {case.image.name} {image.shape} (as RAS)"
        )
    low, high = dataset.window or np.percentile(image, dataset.percentiles)
    axis = RAS_AXIS[dataset.slice_axis]
    others = tuple(a for a in range(3) if a != axis)
    slices = []
    for index in np.flatnonzero(label.any(axis=others)):
        picture = _scale(display_slice(image, axis, index), low, high)
        picture, mask = _to_size(picture, display_slice(label, axis, index), size)
        if mask.any():
            slices.append((f"{case.case_id}/{dataset.slice_axis[0]}{index:03d}", picture, mask))
    return slices
