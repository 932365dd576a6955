"""Pixels and boxes between the picture and the network: normalization and the horizontal flip.

Pixels
    The network sees ``(uint8 / 255 - PIXEL_MEAN) / PIXEL_STD`` per channel, with
    ``PIXEL_MEAN = 0.5`` and ``PIXEL_STD = 0.25``: values lie in [-2, 2], NCHW,
    float32. ``normalize`` and ``denormalize`` are the only places this happens,
    so training, detection and drawing agree.
Flip
    Horizontal flip is the only augmentation, as in the paper (§4.1): ``hflip``
    mirrors an image and its boxes together.
"""

from __future__ import annotations

import numpy as np

from numpy_retinanet._checks import check_array

PIXEL_MEAN = 0.5
PIXEL_STD = 0.25


def normalize(image):
    """uint8 picture -> network input: ``(image / 255 - PIXEL_MEAN) / PIXEL_STD``, channels first.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8

    Returns
    -------
    ndarray, shape (3, H, W), float32, values in [-2, 2]
    """
    image = np.asarray(image)
    check_array("image", image, ("H", "W", 3), dtype=np.uint8)
    # Channels first while still uint8 (one small copy), then the arithmetic in place on
    # contiguous rows: the same float32 operations on each entry, so the same numbers.
    x = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    x /= np.float32(255)
    x -= np.float32(PIXEL_MEAN)
    x /= np.float32(PIXEL_STD)
    return x


def denormalize(image):
    """Network input -> uint8 picture, the inverse of ``normalize`` (rounded to the nearest level).

    Values outside the displayable range (below -2 or above 2, e.g. after an
    adversarial edit) saturate at 0 and 255.

    Parameters
    ----------
    image : ndarray, shape (3, H, W), float

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    image = np.asarray(image)
    check_array("image", image, (3, "H", "W"), kind="f", finite=True)
    x = (image.transpose(1, 2, 0) * PIXEL_STD + PIXEL_MEAN) * 255.0
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def hflip(image, target):
    """Mirror an image left-right, with its boxes: x1' = W - x2, x2' = W - x1.

    Parameters
    ----------
    image : ndarray (C, H, W)
    target : dict with "boxes" (n, 4); other entries are copied unchanged

    Returns
    -------
    (image (C, H, W), target) : new arrays; the inputs are not modified
    """
    image = np.asarray(image)
    check_array("image", image, ("C", "H", "W"))
    boxes = np.asarray(target["boxes"])
    check_array("target['boxes']", boxes, ("n", 4))
    width = image.shape[2]
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return np.ascontiguousarray(image[:, :, ::-1]), {**target, "boxes": flipped}
