"""torchvision's anchors for RetinaNet (``torchvision.models.detection.anchor_utils.AnchorGenerator``
as ``retinanet_resnet50_fpn`` configures it): the convention its weights were trained with.

They differ from ``detection/anchors.py`` (the paper's exact anchors) in three ways:

- Sizes are whole pixels: level l has sizes ``(s, int(s * 2^(1/3)), int(s * 2^(2/3)))`` with
  s = 32 .. 512, i.e. (32, 40, 50) on P3, (64, 80, 101) on P4, ... (``TORCHVISION_SIZES``).
- The cell anchors are computed in float32 and rounded to whole pixels: for ratio r = h / w and
  size S, ``w = S / sqrt(r)``, ``h = S sqrt(r)``, corners ``round(+-w / 2), round(+-h / 2)``
  (round half to even, as ``torch.round``).
- The anchor of row i, column j is centred at ``(j * stride_w, i * stride_h)``, the top-left
  corner of its cell, where the stride is ``image side // feature-map side`` of the padded image
  (so 800 // 13 = 61 on P6 of an 800 px image, not 64).

Order: level, row, column, anchor with ``a = ratio_index * 3 + size_index``, as in
``detection/anchors.py`` and the heads' outputs.
"""

from __future__ import annotations

import numpy as np

from numpy_retinanet._checks import check_int

#: Anchor sizes of P3..P7 as torchvision's ``_default_anchorgen`` computes them (int() truncates).
TORCHVISION_SIZES = tuple((s, int(s * 2 ** (1.0 / 3)), int(s * 2 ** (2.0 / 3))) for s in (32, 64, 128, 256, 512))
TORCHVISION_ASPECT_RATIOS = (0.5, 1.0, 2.0)


class TorchvisionAnchorGenerator:
    """Anchors on P3..P7 in torchvision's convention (module docstring)."""

    def __init__(self, sizes=TORCHVISION_SIZES, aspect_ratios=TORCHVISION_ASPECT_RATIOS):
        self.sizes = tuple(tuple(int(s) for s in level) for level in sizes)
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)

    @property
    def num_anchors_per_location(self):
        """A = len(aspect_ratios) * sizes per level (9)."""
        return len(self.aspect_ratios) * len(self.sizes[0])

    def cell_anchors(self, level):
        """The A anchors of one location of ``level`` (0 = P3), centred on (0, 0): (A, 4) float32,
        ratio-major, size-minor, rounded to whole pixels in float32 as torchvision does."""
        check_int("level", level, 0, len(self.sizes) - 1)
        sizes = np.asarray(self.sizes[level], dtype=np.float32)
        h_ratios = np.sqrt(np.asarray(self.aspect_ratios, dtype=np.float32))
        w_ratios = np.float32(1) / h_ratios
        ws = (w_ratios[:, None] * sizes[None, :]).reshape(-1)
        hs = (h_ratios[:, None] * sizes[None, :]).reshape(-1)
        return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2))

    @staticmethod
    def level_shapes(height, width, num_levels=5):
        """(ceil(height / 2^l), ceil(width / 2^l)) for l = 3 .. 7: the maps of ``model/resnet50.py``
        and the FPN on an image of this size (every stride-2 layer maps n to ceil(n / 2))."""
        height, width = check_int("height", height, 1), check_int("width", width, 1)
        return [(-(-height // 2 ** l), -(-width // 2 ** l)) for l in range(3, 3 + num_levels)]

    def level_sizes(self, height, width):
        """Anchors on each level, A * H_l * W_l (``postprocess``'s ``level_sizes``)."""
        return [h * w * self.num_anchors_per_location for h, w in self.level_shapes(height, width)]

    def anchors(self, height, width, dtype=np.float32):
        """(M, 4) anchors of a padded image of ``height`` x ``width``, ordered level, row, column, anchor."""
        per_level = []
        for level, (h, w) in enumerate(self.level_shapes(height, width)):
            # torchvision's stride: integer division of the image side by the map side.
            stride_h, stride_w = height // h, width // w
            cy, cx = np.meshgrid(np.arange(h) * stride_h, np.arange(w) * stride_w, indexing="ij")
            shifts = np.stack([cx, cy, cx, cy], axis=-1).reshape(-1, 1, 4).astype(np.float32)
            per_level.append((shifts + self.cell_anchors(level)[None]).reshape(-1, 4))
        return np.concatenate(per_level).astype(dtype)
