"""Exercise 8: IoU and the anchor matcher (§4, "Matching").

Task
----
Write two functions, both forward: no gradient here.

``box_iou(a, b)``: the intersection over union (IoU) of every box in ``a`` with every box in ``b``.

``match_anchors(anchors, boxes, fg_iou, bg_iou, allow_low_quality)``: for every anchor, the
ground-truth box it learns, or background, or "ignored". The paper (§4) assigns an anchor to a
box when their IoU is at least 0.5, to background when its IoU is in [0, 0.4), and ignores it in
between; each anchor takes at most one box. Here 0.5 and 0.4 are ``fg_iou`` and ``bg_iou``.
With ``allow_low_quality`` True, also follow torchvision's and detectron2's rule that gives a
box an anchor even when none reaches ``fg_iou`` (hint 4 states it).

Inputs and outputs
------------------
box_iou(a, b)
    a : float64 (N, 4), b : float64 (M, 4): boxes (x1, y1, x2, y2) in pixels, continuous
        coordinates, x2 > x1 and y2 > y1. N or M may be 0.
    returns iou : float64 (N, M), every value in [0, 1].

match_anchors(anchors, boxes, fg_iou, bg_iou, allow_low_quality)
    anchors : float64 (M, 4); boxes : float64 (G, 4), G may be 0.
    fg_iou, bg_iou : floats in [0, 1], bg_iou <= fg_iou.
    allow_low_quality : bool.
    returns matches : int64 (M,): the index in [0, G) of the anchor's box, or BACKGROUND (-1),
        or IGNORED (-2).

Checking
--------
Run ``numpy-retinanet check lessons/exercises/ex8_iou_and_matcher.py``. Ten small cases, each
written to sit on a boundary: boxes that only touch, IoUs exactly at the thresholds, ties, a box
no anchor overlaps, no boxes at all. Each case gives two rows: ``iou``, your box_iou(anchors,
boxes) against the package's (to 1e-12), and ``matches``, against the package's match_anchors
(exactly). The conventions for ties and empty sets are the package's; the hints say them.

Stuck, or a row fails? ``numpy-retinanet check lessons/exercises/ex8_iou_and_matcher.py --hint 1``
prints the first of six hints, gentlest first; when the checker recognises a mistake it names
the hint that helps. An answer that calls the package's box_iou or match_anchors is reported,
not passed.
"""

import numpy as np  # noqa: F401 -- offered for your answer

EXERCISE = 8

BACKGROUND = -1  # as numpy_retinanet.detection.matcher.BACKGROUND
IGNORED = -2  # as numpy_retinanet.detection.matcher.IGNORED


def box_iou(a, b):
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): float64 (N, M)."""
    raise NotImplementedError("Exercise 8: write box_iou, the IoU of every pair of boxes")


def match_anchors(anchors, boxes, fg_iou=0.5, bg_iou=0.4, allow_low_quality=True):
    """Each anchor's box index, BACKGROUND or IGNORED: int64 (M,) for anchors (M, 4), boxes (G, 4)."""
    raise NotImplementedError("Exercise 8: write match_anchors, each anchor's box by IoU (§4)")
