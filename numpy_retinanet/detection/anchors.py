"""Anchors on the feature pyramid P3-P7 (paper §4, "Anchors").

At pyramid level l (stride 2^l, anchor size 4 x stride: 32 .. 512 px on P3 .. P7)
every location carries A = len(aspect_ratios) * len(scales) anchors; the paper
uses ratios {1:2, 1:1, 2:1} and scales {2^0, 2^(1/3), 2^(2/3)}, so A = 9.

Shape of one anchor: size s, scale c, aspect ratio r = h / w give area (s c)^2,
so ``w = s c / sqrt(r)`` and ``h = s c sqrt(r)``. No rounding to whole pixels
(Detectron and torchvision round their cell anchors; we keep them exact, so the
area and the ratio hold to rounding error).

Centers: the anchor of row i, column j of a level with stride S is centered at
``((j + 0.5) S, (i + 0.5) S)``, the center of the S x S patch of the image that
the cell covers. torchvision centers at ``(j S, i S)``, the patch's top-left
corner, which shifts every anchor by S / 2 up and to the left; Detectron's
``(S - 1) / 2`` is the center in its +1 pixel convention. In continuous
coordinates the patch center is ``(j + 0.5) S``.

Order of the (M, 4) anchors: level, then row, then column, then anchor index a,
with ``a = ratio_index * len(scales) + scale_index`` (ratio-major, scale-minor,
as torchvision). This is the order of the heads' outputs once a level's
``(N, A*K, H, W)`` map, channel ``c = a*K + k``, is flattened as
``(N, H, W, A, K) -> (N, H*W*A, K)`` and the levels are concatenated.
"""

from __future__ import annotations

import numpy as np

from numpy_retinanet._checks import check_int, check_real


def _positive_numbers(name, values, *, integers=False):
    """A non-empty tuple of positive ints (``integers``) or positive finite real numbers."""
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of positive numbers, got {values!r}") from None
    if not values:
        raise ValueError(f"{name} must be a non-empty sequence of positive numbers, got {values!r}")
    for i, v in enumerate(values):
        if integers:
            check_int(f"{name}[{i}]", v, 1)
        else:
            check_real(f"{name}[{i}]", v, 0, low_open=True)
    return values


class AnchorGenerator:
    """Anchor boxes for every location of every pyramid level (§4).

    Parameters
    ----------
    sizes : sequence of positive numbers, one per level
        Anchor side at scale 1 and ratio 1 (anchor area size^2): 32 .. 512 for P3 .. P7.
    strides : sequence of positive integers, one per level
        Pixels between neighbouring cells of the level: 8 .. 128 for P3 .. P7.
    aspect_ratios : sequence of positive numbers
        r = height / width.
    scales : sequence of positive numbers
        Multipliers of ``size`` (so of the side; the area scales by c^2).

    Anchors are ordered level, row, column, anchor; the anchor index is
    ``a = ratio_index * len(scales) + scale_index`` (see the module docstring).
    """

    def __init__(
        self,
        sizes=(32, 64, 128, 256, 512),
        strides=(8, 16, 32, 64, 128),
        aspect_ratios=(0.5, 1.0, 2.0),
        scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
    ):
        self.sizes = _positive_numbers("sizes", sizes)
        self.strides = _positive_numbers("strides", strides, integers=True)
        self.aspect_ratios = _positive_numbers("aspect_ratios", aspect_ratios)
        self.scales = _positive_numbers("scales", scales)
        if len(self.sizes) != len(self.strides):
            raise ValueError(
                f"sizes and strides must have one entry per pyramid level each, got "
                f"{len(self.sizes)} sizes and {len(self.strides)} strides"
            )

    @property
    def num_anchors_per_location(self):
        """A = len(aspect_ratios) * len(scales) (9 in the paper)."""
        return len(self.aspect_ratios) * len(self.scales)

    def cell_anchors(self, level):
        """The A anchors of one location of ``level`` (an index into ``sizes``), centered on (0, 0).

        Returns
        -------
        numpy float64 array, shape (A, 4), in anchor order (ratio-major, scale-minor).
        """
        check_int("level", level, 0, len(self.sizes) - 1)
        size = self.sizes[level]
        ratios = np.asarray(self.aspect_ratios, dtype=np.float64)[:, None]
        sides = size * np.asarray(self.scales, dtype=np.float64)[None, :]
        w = (sides / np.sqrt(ratios)).reshape(-1)
        h = (sides * np.sqrt(ratios)).reshape(-1)
        return np.stack([-0.5 * w, -0.5 * h, 0.5 * w, 0.5 * h], axis=1)

    def level_shapes(self, height, width):
        """Feature-map size ``(H_l, W_l) = (ceil(height / stride_l), ceil(width / stride_l))`` per level.

        A 3x3 convolution with stride 2 and padding 1 maps n to ceil(n / 2), and
        ceil(ceil(n / a) / b) = ceil(n / (a b)), so a stack of such convolutions
        reaching stride S gives ceil(n / S).

        Returns
        -------
        list of (int, int), one per level.
        """
        height = check_int("height", height, 1)
        width = check_int("width", width, 1)
        return [(-(-height // s), -(-width // s)) for s in self.strides]

    def _checked_level_shapes(self, level_shapes):
        level_shapes = list(level_shapes)
        if len(level_shapes) != len(self.strides):
            raise ValueError(
                f"level_shapes must be {len(self.strides)} pairs (H, W), one per level, got {len(level_shapes)}"
            )
        for i, hw in enumerate(level_shapes):
            if len(hw) != 2:
                raise ValueError(f"level_shapes[{i}] must be a pair (H, W), got {hw!r}")
            check_int(f"level_shapes[{i}][0]", hw[0], 1)
            check_int(f"level_shapes[{i}][1]", hw[1], 1)
        return level_shapes

    def grid_anchors(self, level_shapes, xp=np, dtype=np.float32):
        """All anchors of feature maps of the given shapes (§4).

        Parameters
        ----------
        level_shapes : sequence of (H_l, W_l), one per level
        xp : array module (numpy or cupy) the anchors are made in
        dtype : float dtype of the result

        Returns
        -------
        array, shape (M, 4) with M = A * sum(H_l * W_l), ordered level, row, column, anchor.
        The anchor of level l, row i, column j, index a is row
        ``offset_l + (i * W_l + j) * A + a``.
        """
        level_shapes = self._checked_level_shapes(level_shapes)
        if np.dtype(dtype).kind != "f":
            raise ValueError(f"dtype must be a float dtype, got {np.dtype(dtype)}")
        per_level = []
        for level, ((h, w), stride) in enumerate(zip(level_shapes, self.strides)):
            # Computed in float64 and cast once, so float32 anchors are the nearest
            # float32 to the exact corner rather than a sum of rounded terms.
            cell = xp.asarray(self.cell_anchors(level))
            cy = (xp.arange(h, dtype=np.float64) + 0.5) * stride
            cx = (xp.arange(w, dtype=np.float64) + 0.5) * stride
            cy, cx = xp.meshgrid(cy, cx, indexing="ij")
            centers = xp.stack([cx, cy, cx, cy], axis=-1)  # (H, W, 4)
            per_level.append((centers[:, :, None, :] + cell[None, None, :, :]).reshape(-1, 4))
        return xp.concatenate(per_level, axis=0).astype(dtype)

    def level_sizes(self, height, width):
        """Number of anchors of each level, ``A * H_l * W_l``: the ``level_sizes`` of ``postprocess``."""
        return [h * w * self.num_anchors_per_location for h, w in self.level_shapes(height, width)]

    def anchors(self, height, width, xp=np, dtype=np.float32):
        """Anchors for an image of ``height`` x ``width`` pixels: (M, 4), ordered level, row, column, anchor."""
        return self.grid_anchors(self.level_shapes(height, width), xp=xp, dtype=dtype)

    __call__ = anchors

    def __repr__(self):
        return (
            f"AnchorGenerator(sizes={self.sizes}, strides={self.strides}, "
            f"aspect_ratios={self.aspect_ratios}, scales={self.scales})"
        )
