"""A texture read from an image file: one 2D grayscale picture, float64 in [0, 1].

What a file may hold, and what becomes of it:

- gray or colour (RGB: scikit-image's luminance weights): read as gray;
- an alpha channel (gray+alpha, RGBA): dropped when every pixel is opaque; refused
  otherwise, because what lies behind a transparent pixel is not part of the texture;
- several pages or frames (multi-page TIFF, animated GIF/PNG): refused, because which
  page a reader returns differs between readers and the data set must not depend on it;
  the message says to save the wanted page as its own file;
- more pixels than PIL's decompression-bomb limit: refused, naming the file;
- no texture (every pixel at one 8-bit grey level once read as gray, e.g. an all-black file): refused,
  because the images are stored with 8 bits, where it would show no pattern to learn or to measure.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from skimage.color import rgb2gray
from skimage.io import imread
from skimage.util import img_as_float

_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _check_picture(name: str) -> bool:
    """Whether the file has an (opaque) alpha channel; ValueError for pages, transparency or a bomb."""
    try:
        with Image.open(name) as picture:
            pages = getattr(picture, "n_frames", 1)
            if pages > 1:
                raise ValueError(
                    f"texture '{name}' has {pages} pages or frames; a texture is one image: save the page to use "
                    "as its own file"
                )
            alpha = picture.mode in _ALPHA_MODES or (picture.mode == "P" and "transparency" in picture.info)
            if alpha:
                low, _ = picture.convert("RGBA").getchannel("A").getextrema()
                if low < 255:
                    raise ValueError(
                        f"texture '{name}' has transparent pixels (alpha down to {low}/255); give an opaque image"
                    )
            return alpha
    except Image.DecompressionBombError as error:
        raise ValueError(f"texture '{name}' is too large to read: {_first_line(error)}") from None
    except (OSError, SyntaxError):  # not a format PIL reads: scikit-image may still read it
        return False


def read_texture_file(name: str) -> np.ndarray:
    """The texture in file ``name``, gray, float64 in [0, 1] (see the module docstring for what is refused).

    Raises:
        ValueError: naming the file when it is not one readable, opaque 2D image.
    """
    has_alpha = _check_picture(name)
    try:
        image = imread(name) if has_alpha else imread(name, as_gray=True)
    except Exception as error:  # imageio raises many types for a non-image file
        raise ValueError(f"texture '{name}' is not a readable image: {_first_line(error)}") from None
    if has_alpha and image.ndim == 3:  # opaque, checked above: drop the alpha channel
        image = image[..., 0] if image.shape[-1] == 2 else rgb2gray(image[..., :3])
    image = img_as_float(image) if image.dtype.kind in "ui" else np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"texture '{name}' is not a 2D image (shape {image.shape})")
    image = np.clip(image, 0.0, 1.0)
    _check_varies(image, name)
    return image


def _check_varies(image: np.ndarray, name: str) -> None:
    """ValueError when every pixel of the gray ``image`` lies at one 8-bit grey level (the data set's precision)."""
    levels = np.round(image * 255.0)
    if image.size and levels.min() == levels.max():
        raise ValueError(
            f"{name} has no texture (every pixel is {round(float(levels.flat[0]) / 255.0, 3)}): read as gray, "
            "as the data set uses it, it shows no pattern to learn or to measure; give an image whose grey levels vary"
        )
