"""Exercise 10, a worked answer: COCO average precision of one class at one IoU threshold (§5).

Written for reading: greedy matching in loops, then the precision-recall curve, its
envelope and the 101 recall points. The checker compares a learner's answer with this file
and with the package's ``numpy_retinanet.evaluation.coco.evaluate_detections``.
"""

import numpy as np

from numpy_retinanet.detection.boxes import box_iou
from numpy_retinanet.evaluation.coco import RECALL_THRESHOLDS

EXERCISE = 10


def average_precision(detections, ground_truths, iou_threshold):
    """AP of one class: ``detections[i]`` = {"boxes": (D_i, 4), "scores": (D_i,)},
    ``ground_truths[i]`` = {"boxes": (G_i, 4)}, one per image; a float (nan without ground truth)."""
    num_gt = sum(len(gt["boxes"]) for gt in ground_truths)  # every box, found or not
    if num_gt == 0:
        return float("nan")  # recall is undefined: COCO leaves the class out
    scores, hits = [], []
    for det, gt in zip(detections, ground_truths):
        taken = [False] * len(gt["boxes"])
        # Greedy, best score first; equal scores keep their input order (a stable sort).
        for d in np.argsort(-det["scores"], kind="stable"):
            iou = box_iou(det["boxes"][d : d + 1], gt["boxes"])[0]
            best = None
            for g in range(len(taken)):
                if taken[g] or iou[g] < iou_threshold:
                    continue  # a ground truth matches one detection only, and needs IoU >= t
                if best is None or iou[g] >= iou[best]:  # ">=": an equal IoU goes to the later box
                    best = g
            if best is not None:
                taken[best] = True
            scores.append(det["scores"][d])
            hits.append(best is not None)
    # All images together, best score first; a stable sort keeps image order on ties.
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = np.asarray(hits, dtype=bool)[order]
    tp = np.cumsum(hits)
    recall = tp / num_gt
    precision = tp / np.arange(1, len(hits) + 1)  # TP / (TP + FP): detections so far
    # The envelope: precision at a rank is the best precision at that rank or later.
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    total = 0.0
    for r in RECALL_THRESHOLDS:  # 0, 0.01, ..., 1
        reached = np.flatnonzero(recall >= r)
        total += precision[reached[0]] if len(reached) else 0.0  # never reached: precision 0
    return total / len(RECALL_THRESHOLDS)
