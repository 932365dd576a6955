"""Exercise 9, a worked answer: greedy non-maximum suppression (§4.1, "Inference").

Written for reading: one loop, one box kept per pass. The checker compares a learner's
answer with this file and with the package's ``numpy_retinanet.detection.boxes.nms``.
"""

import numpy as np

from numpy_retinanet.detection.boxes import box_iou

EXERCISE = 9


def nms(boxes, scores, iou_threshold):
    """Indices of the boxes (N, 4) kept, by decreasing score: int64 (n_kept,)."""
    # Best score first; a stable sort keeps equal scores in input order (lower index first).
    remaining = list(np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"))
    keep = []
    while remaining:
        best = remaining.pop(0)
        keep.append(best)
        iou = box_iou(boxes[best : best + 1], boxes[remaining])[0] if remaining else []
        # Only a kept box suppresses, and only by an IoU strictly above the threshold.
        remaining = [r for r, v in zip(remaining, iou) if v <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)
