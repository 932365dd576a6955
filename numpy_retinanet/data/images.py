"""Image files in: any PNG or JPEG as an (H, W, 3) uint8 RGB picture (``numpy-retinanet detect``)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError


def load_image(path):
    """Read an image file as (H, W, 3) uint8 RGB; grayscale, palette and RGBA are converted.

    RGBA is composited over white, so transparent areas do not turn black.
    Raises FileNotFoundError for a missing file and ValueError for a file that is not an image.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path!r} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba)
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path!r} is not an image that can be read (PNG or JPEG expected): {e}") from e
    return np.asarray(rgb, dtype=np.uint8)
