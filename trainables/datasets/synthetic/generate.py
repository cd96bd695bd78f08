"""The synthetic texture data set, generated deterministically from one data seed.

Each of the N images has its own random smooth closed mask (a closed Bezier curve
through a few random points, filled) and its own random crops of the background and
foreground textures. Those are drawn once; the alpha levels differ only in how the
two crops are blended, so every level has the same masks, crops and split.

Blending, in the paper's convention (alpha = foreground share, 1 = easiest):
- ``direction: foreground``: inside the mask ``alpha * FG + (1 - alpha) * BG``,
  outside ``BG``.
- ``direction: background_bleed``: inside the mask ``FG``, outside
  ``alpha * BG + (1 - alpha) * FG`` (the released code's second data set, where the
  foreground texture bleeds into the background).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.data
from scipy.ndimage import binary_dilation, binary_fill_holes
from skimage.draw import polygon
from skimage.transform import resize
from skimage.util import img_as_float

from trainables.config import BUILTIN_TEXTURES, MaskConfig, SyntheticConfig
from trainables.datasets.synthetic.texture_file import read_texture_file

_SPLIT_STREAM = 1_000_003  # a SeedSequence word that separates the split from the per-image draws


def load_texture(name: str) -> np.ndarray:
    """A grayscale texture as float64 in [0, 1]: a scikit-image name or an image file.

    Raises:
        ValueError: naming the file when it cannot be read as an image.
    """
    if name in BUILTIN_TEXTURES:
        return img_as_float(getattr(skimage.data, name)())
    return read_texture_file(name)


def _mean_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.arctan2(np.sin(a) + np.sin(b), np.cos(a) + np.cos(b))


def bezier_outline(rng: np.random.Generator, config: MaskConfig, samples_per_segment: int = 40) -> np.ndarray:
    """Points (M, 2) on a random smooth closed curve in the unit square.

    Control points sit at sorted random angles around the centre with random radii
    (so the curve does not cross itself); consecutive points are joined by cubic
    Bezier segments whose handles follow the mean direction of the two neighbouring
    chords (``edginess`` pulls them towards the chord: corners) and are
    ``radius / 2`` of the chord long.
    """
    n = config.points
    # One point per sector of the circle, at a random angle inside it: sorted, spread out.
    angles = (np.arange(n) + rng.uniform(0.15, 0.85, n)) * (2 * np.pi / n)
    radii = rng.uniform(0.45, 1.0, n)
    points = 0.5 + 0.5 * np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    following = np.roll(points, -1, axis=0)
    chord = following - points
    chord_angle = np.arctan2(chord[:, 1], chord[:, 0])
    smooth = _mean_angle(np.roll(chord_angle, 1), chord_angle)
    tangent = (1 - config.edginess) * smooth + config.edginess * chord_angle
    length = np.hypot(chord[:, 0], chord[:, 1]) * config.radius / 2
    tangent_next = np.roll(tangent, -1)
    handle_out = points + length[:, None] * np.stack([np.cos(tangent), np.sin(tangent)], axis=1)
    handle_in = following - length[:, None] * np.stack([np.cos(tangent_next), np.sin(tangent_next)], axis=1)
    t = np.linspace(0.0, 1.0, samples_per_segment, endpoint=False)[None, :, None]
    return _cubic(points, handle_out, handle_in, following, t)


def _cubic(
    start: np.ndarray, handle_out: np.ndarray, handle_in: np.ndarray, end: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """Cubic Bezier segments (one per row of ``start``) sampled at ``t`` (1, T, 1), as (segments * T, 2) points."""
    curve = (
        (1 - t) ** 3 * start[:, None]
        + 3 * (1 - t) ** 2 * t * handle_out[:, None]
        + 3 * (1 - t) * t**2 * handle_in[:, None]
        + t**3 * end[:, None]
    )
    return curve.reshape(-1, 2)


def released_outline(rng: np.random.Generator, config: MaskConfig, samples_per_segment: int = 100) -> np.ndarray:
    """Points (M, 2) on a random closed curve built by the released code's rule, in the unit square.

    ``points`` control points uniform in ``box``^2, ordered by their angle around their mean;
    the tangent at a point is a blend of the chords leaving and reaching it, with weight
    ``arctan(edginess) / pi + 1/2`` on the leaving one (turned by pi where the two chord angles,
    taken in [0, 2 pi), differ by more than pi); handles are ``radius`` times the chord long.
    The released sampler also rejects point sets closer than 0.001 by a measure that almost never
    rejects; that step is left out.
    """
    low, high = config.box
    points = rng.uniform(low, high, (config.points, 2))
    centred = points - points.mean(axis=0)
    points = points[np.argsort(np.arctan2(centred[:, 0], centred[:, 1]))]
    following = np.roll(points, -1, axis=0)
    chord = following - points
    leaving = np.mod(np.arctan2(chord[:, 1], chord[:, 0]), 2 * np.pi)
    reaching = np.roll(leaving, 1)
    weight = np.arctan(config.edginess) / np.pi + 0.5
    tangent = weight * leaving + (1 - weight) * reaching + np.pi * (np.abs(reaching - leaving) > np.pi)
    length = np.hypot(chord[:, 0], chord[:, 1]) * config.radius
    tangent_next = np.roll(tangent, -1)
    handle_out = points + length[:, None] * np.stack([np.cos(tangent), np.sin(tangent)], axis=1)
    handle_in = following - length[:, None] * np.stack([np.cos(tangent_next), np.sin(tangent_next)], axis=1)
    t = np.linspace(0.0, 1.0, samples_per_segment)[None, :, None]
    return _cubic(points, handle_out, handle_in, following, t)


def released_mask(rng: np.random.Generator, size: int, config: MaskConfig) -> np.ndarray:
    """The released construction: the outline's samples set at ``drawn_at`` px, dilated, filled, resized.

    Returns:
        uint8 (size, size), 1 = foreground; resized from ``drawn_at`` by area (a pixel is foreground
        when at least half of it was).
    """
    drawn = config.drawn_at
    outline = released_outline(rng, config)
    pixels = np.clip((outline * drawn).astype(np.int64), 0, drawn - 1)
    mask = np.zeros((drawn, drawn), dtype=bool)
    mask[pixels[:, 0], pixels[:, 1]] = True
    mask = binary_fill_holes(binary_dilation(mask, np.ones((config.dilation, config.dilation), dtype=bool)))
    if size != drawn:
        mask = resize(mask.astype(np.float64), (size, size), order=1, anti_aliasing=True) >= 0.5
    return mask.astype(np.uint8)


def random_mask(rng: np.random.Generator, size: int, config: MaskConfig) -> np.ndarray:
    """A filled random smooth closed shape, uint8 (size, size), 1 = foreground, by ``config.construction``."""
    if config.construction == "released":
        return released_mask(rng, size, config)
    outline = bezier_outline(rng, config)
    outline = outline - outline.min(axis=0)
    outline = outline / outline.max()
    extent = rng.uniform(config.min_extent, config.max_extent) * (size - 2)
    outline = outline * extent
    span = outline.max(axis=0)
    offset = rng.uniform(1.0, np.maximum(size - 1 - span, 1.0))
    outline = outline + offset
    rows, cols = polygon(outline[:, 1], outline[:, 0], shape=(size, size))
    mask = np.zeros((size, size), dtype=bool)
    mask[rows, cols] = True
    return binary_fill_holes(mask).astype(np.uint8)


def random_crop(rng: np.random.Generator, texture: np.ndarray, crop: int, size: int) -> np.ndarray:
    """A random square crop of ``crop`` pixels, resized to ``size``; float32 in [0, 1]."""
    height, width = texture.shape
    if crop > min(height, width):
        raise ValueError(f"crop_size {crop} exceeds the texture's size {texture.shape}")
    top = int(rng.integers(0, height - crop + 1))
    left = int(rng.integers(0, width - crop + 1))
    patch = texture[top : top + crop, left : left + crop]
    if crop != size:
        patch = resize(patch, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    return patch.astype(np.float32)


@dataclass(frozen=True)
class SyntheticBase:
    """What every alpha level shares: masks, crops and the split."""

    masks: np.ndarray  # (N, H, W) uint8
    backgrounds: np.ndarray  # (N, H, W) float32 in [0, 1]
    foregrounds: np.ndarray  # (N, H, W) float32 in [0, 1]
    split: dict[str, np.ndarray]  # "train" / "val" / "test" -> image indices
    image_ids: tuple[str, ...]


def generate_base(config: SyntheticConfig, size: int, data_seed: int) -> SyntheticBase:
    """Draw the masks, crops and split of the data set from one data seed.

    Image i draws from ``SeedSequence([data_seed, i])``, so an image does not depend
    on how many images come after it.
    """
    background = load_texture(config.background)
    foreground = load_texture(config.foreground)
    crop = config.crop_size or size
    count = config.split.total
    masks = np.empty((count, size, size), dtype=np.uint8)
    backgrounds = np.empty((count, size, size), dtype=np.float32)
    foregrounds = np.empty((count, size, size), dtype=np.float32)
    for index in range(count):
        rng = np.random.default_rng(np.random.SeedSequence([data_seed, index]))
        masks[index] = random_mask(rng, size, config.mask)
        backgrounds[index] = random_crop(rng, background, crop, size)
        foregrounds[index] = random_crop(rng, foreground, crop, size)
    order = np.random.default_rng(np.random.SeedSequence([data_seed, _SPLIT_STREAM])).permutation(count)
    train_end = config.split.train
    val_end = train_end + config.split.val
    split = {
        "train": np.sort(order[:train_end]),
        "val": np.sort(order[train_end:val_end]),
        "test": np.sort(order[val_end:]),
    }
    image_ids = tuple(f"img{index:04d}" for index in range(count))
    return SyntheticBase(masks, backgrounds, foregrounds, split, image_ids)


def blend(base: SyntheticBase, alpha: float, direction: str = "foreground") -> np.ndarray:
    """Images of one level as uint8 (N, H, W); alpha in the paper's convention."""
    inside = base.masks.astype(bool)
    if direction == "foreground":
        mixed = alpha * base.foregrounds + (1.0 - alpha) * base.backgrounds
        images = np.where(inside, mixed, base.backgrounds)
    elif direction == "background_bleed":
        mixed = alpha * base.backgrounds + (1.0 - alpha) * base.foregrounds
        images = np.where(inside, base.foregrounds, mixed)
    else:
        raise ValueError(f"unknown blending direction '{direction}'")
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


def texture_fingerprint(name: str) -> str:
    """What identifies a texture in a cache key: its built-in name or its file's content hash."""
    if name in BUILTIN_TEXTURES:
        return f"builtin:{name}"
    return "sha256:" + hashlib.sha256(Path(name).read_bytes()).hexdigest()
