"""Exercise 8, a worked answer: IoU and the anchor matcher (§4, "Matching").

Written for reading: plain loops over anchors and boxes, one rule per line. The checker
compares a learner's answer with this file and with the package's
``numpy_retinanet.detection.boxes.box_iou`` and ``numpy_retinanet.detection.matcher.match_anchors``.
"""

import numpy as np

EXERCISE = 8

BACKGROUND = -1  # the package's matcher.BACKGROUND
IGNORED = -2  # the package's matcher.IGNORED


def box_iou(a, b):
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): float64 (N, M)."""
    iou = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        ax1, ay1, ax2, ay2 = (float(v) for v in a[i])
        for j in range(len(b)):
            bx1, by1, bx2, by2 = (float(v) for v in b[j])
            # The overlap is a box too: the larger left edge to the smaller right edge.
            # Boxes apart (or touching) give a side <= 0: no overlap, not a negative area.
            w = max(min(ax2, bx2) - max(ax1, bx1), 0.0)
            h = max(min(ay2, by2) - max(ay1, by1), 0.0)
            inter = w * h
            # Continuous coordinates: a box's width is x2 - x1, no "+ 1".
            union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
            iou[i, j] = inter / union
    return iou


def match_anchors(anchors, boxes, fg_iou=0.5, bg_iou=0.4, allow_low_quality=True):
    """Each anchor's box index, BACKGROUND or IGNORED: int64 (M,) for anchors (M, 4), boxes (G, 4)."""
    matches = np.full(len(anchors), BACKGROUND, dtype=np.int64)
    if len(boxes) == 0:
        return matches  # nothing to match: every anchor is background
    iou = box_iou(anchors, boxes)  # (M, G)
    for i in range(len(anchors)):
        best = int(np.argmax(iou[i]))  # the first maximum: a tie goes to the lower box index
        if iou[i, best] >= fg_iou:
            matches[i] = best
        elif iou[i, best] >= bg_iou:
            matches[i] = IGNORED
    if allow_low_quality:
        for g in range(len(boxes)):
            highest = iou[:, g].max()
            if highest == 0:
                continue  # a box no anchor overlaps: an IoU of 0 is no match at all
            for i in range(len(anchors)):
                if iou[i, g] == highest:  # every anchor that reaches it, all of them on a tie
                    matches[i] = int(np.argmax(iou[i]))  # the anchor's own best box
    return matches
