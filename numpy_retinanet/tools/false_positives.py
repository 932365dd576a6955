"""What a detector's false positives are: wrong class, poor box, duplicate, distractor or background.

Read with the Table 1 ablation (tools/ablate.py): two losses with equal AP can err in
different ways, and the regimes differ in what there is to mistake for an object. Each
detection scoring ``score_threshold`` or more on a held-out image is matched as the AP
counts it (per class, highest score first, IoU >= 0.5 with a box of its class not yet
taken). One that is not a true positive is put in the first kind that fits:

- ``duplicate``: IoU >= 0.5 with a box of its class that a higher-scoring detection took;
- ``localization``: IoU from ``NEAR_IOU`` to 0.5 with a box of its class;
- ``wrong class``: IoU >= ``NEAR_IOU`` with a box of another class;
- ``distractor``: IoU >= ``NEAR_IOU`` with a distractor (data/clutter.py; the plain regime has none);
- ``background``: none of these.
"""

from __future__ import annotations

import numpy as np

from numpy_retinanet._checks import check_probability
from numpy_retinanet.detection.boxes import box_iou
from numpy_retinanet.engine.inference import predict_dataset
from numpy_retinanet.evaluation.visualize import DRAW_SCORE_THRESHOLD

KINDS = ("duplicate", "localization", "wrong class", "distractor", "background")
MATCH_IOU = 0.5
#: A detection this close to a box (IoU) is "near" it.
NEAR_IOU = 0.1


def _iou(boxes, others):
    """(D, G) IoU in float64; zeros when either side is empty."""
    if len(boxes) == 0 or len(others) == 0:
        return np.zeros((len(boxes), len(others)))
    return box_iou(np.asarray(boxes, np.float64), np.asarray(others, np.float64))


def classify_detections(det, gt, distractors=None, score_threshold=0.5):
    """Kind of each detection of one image scoring ``score_threshold`` or more.

    det : {"boxes": (D, 4), "scores": (D,), "labels": (D,)}; gt : {"boxes": (G, 4), "labels": (G,)};
    distractors : (B, 4) boxes or None.

    Returns a list of strings, one per kept detection in descending score order: "true positive"
    or one of ``KINDS``.
    """
    check_probability("score_threshold", score_threshold)
    keep = np.flatnonzero(np.asarray(det["scores"]) >= score_threshold)
    order = keep[np.argsort(-np.asarray(det["scores"])[keep], kind="stable")]
    boxes, labels = np.asarray(det["boxes"])[order], np.asarray(det["labels"])[order]
    gt_labels = np.asarray(gt["labels"])
    iou = _iou(boxes, gt["boxes"])
    near_distractor = _iou(boxes, distractors if distractors is not None else np.zeros((0, 4))).max(
        axis=1, initial=0.0) >= NEAR_IOU
    taken = np.zeros(len(gt_labels), dtype=bool)
    kinds = []
    for d, label in enumerate(labels):
        same = gt_labels == label
        free = np.where(same & ~taken, iou[d], -1.0)
        if free.size and free.max() >= MATCH_IOU:
            taken[np.argmax(free)] = True
            kinds.append("true positive")
        elif np.any(iou[d][same] >= MATCH_IOU):
            kinds.append("duplicate")
        elif np.any(iou[d][same] >= NEAR_IOU):
            kinds.append("localization")
        elif np.any(iou[d][~same] >= NEAR_IOU):
            kinds.append("wrong class")
        elif near_distractor[d]:
            kinds.append("distractor")
        else:
            kinds.append("background")
    return kinds


def false_positive_kinds(model, dataset, score_threshold=DRAW_SCORE_THRESHOLD):
    """Counts of each kind of false positive of ``model`` on every image of ``dataset``.

    The default threshold is the one ``detect`` draws boxes at (0.3): what a user would see.

    Returns {"images", "score_threshold", "true_positives", "false_positives", "kinds": {kind: count}}.
    """
    detections, ground_truths = predict_dataset(model, dataset)
    has_distractors = hasattr(dataset, "distractors")
    counts = dict.fromkeys(("true positive",) + KINDS, 0)
    for i, (det, gt) in enumerate(zip(detections, ground_truths)):
        distractors = dataset.distractors(i)["boxes"] if has_distractors else None
        for kind in classify_detections(det, gt, distractors, score_threshold):
            counts[kind] += 1
    true_positives = counts.pop("true positive")
    return {"images": len(dataset), "score_threshold": score_threshold, "true_positives": true_positives,
            "false_positives": sum(counts.values()), "kinds": counts}


__all__ = ["KINDS", "MATCH_IOU", "NEAR_IOU", "classify_detections", "false_positive_kinds"]
