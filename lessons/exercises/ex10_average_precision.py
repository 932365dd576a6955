"""Exercise 10: COCO average precision with 101-point interpolation (§5).

Task
----
Write ``average_precision(detections, ground_truths, iou_threshold)``: the AP of one class at
one IoU threshold over a few images, computed as COCO (pycocotools) computes it, the number in
every table of the paper (COCO's AP then averages it over classes and over the thresholds
0.50, 0.55, ..., 0.95). A detection is right (a true positive) when it finds a ground-truth
box of its image that it overlaps by at least ``iou_threshold``; each box can be found once.
Ranking the detections by score gives a precision-recall curve; AP summarises it by reading
precision at the 101 recall values in ``RECALL_THRESHOLDS`` (0, 0.01, ..., 1). Work out the
matching and the reading; the hints say COCO's rules one at a time.

You may use ``box_iou`` from ``numpy_retinanet.detection.boxes`` (exercise 8 wrote it).

Inputs and outputs
------------------
detections : list, one dict per image: ``{"boxes": float64 (D, 4), "scores": float64 (D,)}``,
    boxes (x1, y1, x2, y2); D may be 0.
ground_truths : list, one dict per image, the same images in the same order:
    ``{"boxes": float64 (G, 4)}``; G may be 0.
iou_threshold : float in (0, 1).
returns AP : a float in [0, 1], or nan when there is no ground-truth box in any image.

Checking
--------
Run ``numpy-retinanet check lessons/exercises/ex10_average_precision.py``. Eleven small cases,
each written to sit on a boundary: perfect detections, all wrong, none, no ground truth, an image
without ground truth, equal scores, an IoU exactly at the threshold, one detection overlapping
two ground-truth boxes. One row per case, ``AP``, against the package's
``evaluate_detections`` (to 1e-12).

Stuck, or a row fails? ``numpy-retinanet check lessons/exercises/ex10_average_precision.py --hint 1``
prints the first of six hints, gentlest first; when the checker recognises a mistake it names the
hint that helps. An answer that calls the package's evaluate_detections, match_image or
precision_at_recall_thresholds is reported, not passed.
"""

import numpy as np  # noqa: F401 -- offered for your answer

from numpy_retinanet.detection.boxes import box_iou  # noqa: F401 -- offered for your answer
from numpy_retinanet.evaluation.coco import RECALL_THRESHOLDS  # noqa: F401 -- the 101 recall values

EXERCISE = 10


def average_precision(detections, ground_truths, iou_threshold):
    """AP of one class at one IoU threshold over the images: a float (nan without ground truth)."""
    raise NotImplementedError("Exercise 10: write average_precision, COCO's AP of one class")
