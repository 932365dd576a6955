"""Exercise 9: non-maximum suppression (§4.1, "Inference").

Task
----
Write ``nms(boxes, scores, iou_threshold)``, greedy non-maximum suppression. A trained detector
fires several times on one object, from neighbouring anchors; NMS keeps the best-scoring box of
each such group and removes the boxes that overlap it too much: IoU above ``iou_threshold`` (the
paper uses 0.5). Work out the order in which to visit the boxes and which boxes may remove
others; the hints say the package's conventions.

You may use ``box_iou`` from ``numpy_retinanet.detection.boxes`` (exercise 8 wrote it).

Inputs and outputs
------------------
boxes : float64 (N, 4), (x1, y1, x2, y2) with x2 > x1 and y2 > y1; N may be 0.
scores : float64 (N,).
iou_threshold : float in [0, 1].
returns keep : int64 (n_kept,): indices into ``boxes`` of the boxes kept, best score first.

Checking
--------
Run ``numpy-retinanet check lessons/exercises/ex9_nms.py``. Eight small cases, each written to
sit on a boundary: no boxes, one box, equal scores, an IoU exactly at the threshold, a chain of
three boxes, thresholds 0 and 1. One row per case, ``keep``, compared exactly (values and order)
with the package's ``nms``.

Stuck, or a row fails? ``numpy-retinanet check lessons/exercises/ex9_nms.py --hint 1`` prints
the first of four hints, gentlest first; when the checker recognises a mistake it names the hint
that helps. An answer that calls the package's nms is reported, not passed.
"""

import numpy as np  # noqa: F401 -- offered for your answer

from numpy_retinanet.detection.boxes import box_iou  # noqa: F401 -- offered for your answer

EXERCISE = 9


def nms(boxes, scores, iou_threshold):
    """Indices of the boxes (N, 4) kept, by decreasing score: int64 (n_kept,)."""
    raise NotImplementedError("Exercise 9: write nms, the indices of the boxes kept")
