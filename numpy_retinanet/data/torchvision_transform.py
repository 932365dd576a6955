"""torchvision's detection transform (``GeneralizedRCNNTransform`` of ``retinanet_resnet50_fpn``)
in NumPy: what its COCO weights expect to see.

For each picture, in this order:

1. ``picture / 255`` as float32, channels first (what ``to_tensor`` gives), then the ImageNet
   normalization ``(x - IMAGENET_MEAN) / IMAGENET_STD`` per channel;
2. resized by ``scale = min(800 / short side, 1333 / long side)`` to
   ``floor(side * scale)`` pixels a side, bilinearly as ``torch.nn.functional.interpolate(...,
   mode="bilinear", align_corners=False, recompute_scale_factor=True)`` computes it (``resize_bilinear``);
3. the batch padded with zeros at the bottom and right to a common size, a multiple of 32.

Detections come back in the resized picture's pixels and are mapped to the file's by the ratio of
the sizes (``boxes_to_original``).
"""

from __future__ import annotations

import math

import numpy as np

from numpy_retinanet._checks import check_array, check_int

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_SIZE, MAX_SIZE = 800, 1333  # torchvision's short-side target and long-side bound
SIZE_DIVISIBLE = 32  # the padded batch's sides are multiples of this (C5's stride)


def resized_size(height, width, min_size=MIN_SIZE, max_size=MAX_SIZE):
    """(height', width') of a picture after step 2: ``floor(side * scale)``, the scale in float64
    as Python (and so torchvision) computes it."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return math.floor(height * scale), math.floor(width * scale)


def _linear_taps(in_size, out_size):
    """For each output index: the two input indices and their weights, as PyTorch's CPU kernel
    computes them (``align_corners=False``, the scale recomputed as in / out in float32):

        src = max(scale * (dst + 0.5) - 0.5, 0),  i0 = floor(src),  i1 = min(i0 + 1, in - 1),
        w1 = src - i0,  w0 = 1 - w1

    ``src`` is rounded to float32 once, after the multiply-add: PyTorch's compiled kernel fuses it
    (an FMA), and two roundings put src up to 2 float32 ulps off (6e-5 at src ~ 500), which moved
    resized pixels by up to 1.4e-4 against PyTorch's; one rounding agrees to 5e-7. Here the
    product is exact in float64 (24-bit scale times an index below 2^24), then rounded once.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    src = (np.float64(scale) * (np.arange(out_size) + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0))
    i0 = src.astype(np.int64)  # src >= 0: truncation is floor
    w1 = np.minimum(src - i0.astype(np.float32), np.float32(1))
    return i0, np.minimum(i0 + 1, in_size - 1), np.float32(1) - w1, w1


def resize_bilinear(x, out_height, out_width):
    """Bilinear resize of x (C, H, W) float32 to (C, out_height, out_width) with PyTorch's
    ``align_corners=False`` sampling (``_linear_taps``): along the rows of pixels first, then
    along the columns."""
    check_array("x", x, ("C", "H", "W"), dtype=np.float32, nonempty=True)
    out_height, out_width = check_int("out_height", out_height, 1), check_int("out_width", out_width, 1)
    r0, r1, a0, a1 = _linear_taps(x.shape[1], out_height)
    c0, c1, b0, b1 = _linear_taps(x.shape[2], out_width)
    across = x[:, :, c0] * b0 + x[:, :, c1] * b1
    return across[:, r0, :] * a0[:, None] + across[:, r1, :] * a1[:, None]


def torchvision_transform(pictures, min_size=MIN_SIZE, max_size=MAX_SIZE):
    """Pictures -> the batch torchvision's RetinaNet runs on.

    Parameters
    ----------
    pictures : list of (H_i, W_i, 3) uint8 arrays.

    Returns
    -------
    batch : (N, 3, H, W) float32, H and W the largest resized sides rounded up to a multiple of 32.
    sizes : list of (height', width'), each picture's resized size (its detections are clipped to it).
    """
    resized = []
    for i, picture in enumerate(pictures):
        check_array(f"pictures[{i}]", picture, ("H", "W", 3), dtype=np.uint8, nonempty=True)
        x = picture.astype(np.float32).transpose(2, 0, 1) / np.float32(255)
        x = (x - np.float32(IMAGENET_MEAN)[:, None, None]) / np.float32(IMAGENET_STD)[:, None, None]
        resized.append(resize_bilinear(x, *resized_size(*picture.shape[:2], min_size, max_size)))
    sizes = [r.shape[1:] for r in resized]
    height, width = (SIZE_DIVISIBLE * math.ceil(max(s[k] for s in sizes) / SIZE_DIVISIBLE) for k in (0, 1))
    batch = np.zeros((len(resized), 3, height, width), dtype=np.float32)
    for i, r in enumerate(resized):
        batch[i, :, :r.shape[1], :r.shape[2]] = r
    return batch, sizes


def boxes_to_original(boxes, resized, original):
    """Boxes (n, 4) in the resized picture's pixels -> the original's: x times W / W', y times
    H / H', the ratios in float32 as torchvision's ``resize_boxes``."""
    ratio_h = np.float32(original[0]) / np.float32(resized[0])
    ratio_w = np.float32(original[1]) / np.float32(resized[1])
    return (boxes * np.array([ratio_w, ratio_h, ratio_w, ratio_h], dtype=np.float32)).astype(np.float32)
