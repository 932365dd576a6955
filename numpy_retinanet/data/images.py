"""Image files in: any PNG or JPEG as an (H, W, 3) uint8 RGB picture (``numpy-retinanet detect``)."""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from numpy_retinanet._checks import check_file

# Pillow's integer modes wider than 8 bits: a 16-bit PNG opens as "I;16" (or "I"), whose full range is 0..65535.
_WIDE_INT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_MAX_16BIT = 65535

# The longest image side ``numpy-retinanet detect`` runs the model on; a larger image is shrunk to it
# first. torchvision's RetinaNet transform uses the same max_size (1333), and at the model's few hundred
# bytes per input pixel a 1333x1333 image stays near 1 GB.
MAX_SIDE = 1333
# The smallest longest side it may be shrunk to: the coarsest level, P7, has stride 128, and below a
# quarter of that the picture keeps too few pixels to hold a shape.
MIN_SIDE = 32


class ImageFileError(ValueError):
    """An image file that cannot be used: not an image, truncated, over Pillow's pixel limit, or
    (``data.coco_format``) gone or not the size its annotations give.

    Its own type so that training can tell a data file that broke mid-run (the step's parameters
    are intact, and are saved) from an error of the code.
    """


def _to_uint8_gray(img):
    """A 16-bit, 32-bit int or float image as an 8-bit "L" image, scaled (not clipped) to 0..255.

    Integer images whose values fit 16 bits are divided by 65535 / 255 (the bit depth's range maps
    onto 0..255, so a dark 16-bit picture stays dark); float images and wider integers have no fixed
    range and are stretched from their own minimum to their maximum (a constant image becomes black).
    """
    a = np.asarray(img, dtype=np.float64)
    a = np.where(np.isfinite(a), a, 0.0)  # NaN/inf in a float TIFF: no colour to give them
    if img.mode in _WIDE_INT_MODES and a.min() >= 0 and a.max() <= _MAX_16BIT:
        a = a * (255 / _MAX_16BIT)
    else:
        low, span = a.min(), np.ptp(a)
        a = (a - low) * (255 / span) if span > 0 else np.zeros_like(a)
    return Image.fromarray(np.round(a).astype(np.uint8), mode="L")


def _open_rgb(path):
    """The decoded RGB PIL image of ``path``, upright (EXIF orientation applied)."""
    path = check_file("image", path, "an image file")
    try:
        # Over Image.MAX_IMAGE_PIXELS Pillow only warns (an error from twice that): make both an error,
        # so a small file that decodes to gigabytes (a "decompression bomb") is refused before decoding.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img)  # a phone photo's "rotate 90°" tag, applied to the pixels
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageFileError(f"image {path!r} has more pixels than Pillow's limit "
                             f"Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}: {e}") from e
    except (UnidentifiedImageError, OSError) as e:
        raise ImageFileError(f"{path!r} is not an image that can be read (PNG or JPEG expected): {e}") from e
    if img.mode in _WIDE_INT_MODES or img.mode == "F":
        img = _to_uint8_gray(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composited over white, so transparent areas do not turn black.
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img.convert("RGB")


def load_image(path):
    """Read an image file as (H, W, 3) uint8 RGB; grayscale, palette, RGBA, 16-bit and float are converted.

    EXIF orientation is applied; 16-bit and float images are scaled to 0..255 (see ``_to_uint8_gray``).
    Raises FileNotFoundError for a missing file, ValueError for a directory and ImageFileError (a
    ValueError) for a file that is not an image, is truncated, or is over Pillow's decompression-bomb limit.
    """
    return np.asarray(_open_rgb(path), dtype=np.uint8)


def load_image_within(path, max_side):
    """``load_image``, shrunk (bilinear, aspect kept) so that its longer side is at most ``max_side``.

    Returns (picture (h, w, 3) uint8, (W, H) the file's own upright size): the picture's
    pixel (x, y) is the file's (x * W / w, y * H / h).
    """
    img = _open_rgb(path)
    size = img.size
    if max(size) > max_side:
        s = max_side / max(size)
        img = img.resize((max(1, round(size[0] * s)), max(1, round(size[1] * s))), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8), size
