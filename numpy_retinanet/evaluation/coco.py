"""COCO-style average precision, computed the way pycocotools' ``COCOeval`` does it.

The paper reports COCO AP (§5, Tables 1-2): AP averaged over the IoU thresholds
0.50:0.05:0.95, plus AP50 and AP75. This module reproduces ``COCOeval`` for boxes
with the area range "all" and no crowd annotations, so numbers are comparable to
what pycocotools would print for the same detections:

1. Per image and class, detections are sorted by score (descending, *stable*:
   equal scores keep their input order) and only the first ``max_detections``
   are kept. The limit is per image *per class*, as in pycocotools.
2. Greedy matching, separately at every IoU threshold t: each detection, in score
   order, takes the still unmatched ground-truth box with the highest IoU among
   those with IoU >= t (t capped at 1 - 1e-10). Equal best IoUs go to the later
   ground-truth box, because pycocotools replaces its candidate on ``>=``.
   A matched detection is a true positive, any other a false positive.
3. Per class, the detections of all images are concatenated in image order and
   sorted by score (stable again), then cumulated:
   ``recall = TP / num_gt``, ``precision = TP / (TP + FP)``.
4. Precision is made monotone from the right (``p[i] = max(p[i:])``) and read at
   the 101 recall thresholds ``linspace(0, 1, 101)``: at threshold r it is the
   precision at the first detection whose recall is >= r, and 0 where recall
   never reaches r. AP of a class at a threshold is the mean of these 101 values.
5. A class without any ground-truth box is left out of every mean (pycocotools
   marks it -1; we give ``nan``), even when it has detections. A class with ground
   truth but no detections has AP 0. Images with neither boxes nor detections
   change nothing; detections in an image without boxes of their class are
   false positives.

AP is the mean over classes (with ground truth) and IoU thresholds; AP50 and AP75
use the single thresholds 0.5 and 0.75. When no class has any ground truth at all,
every summary number is ``nan`` (pycocotools would print -1).

Two deliberate differences from pycocotools, neither of which changes a result by
more than about 1e-16:

* pycocotools divides ``tp / (tp + fp + np.spacing(1))`` to guard against 0 / 0
  from ignored detections. With no crowd boxes and area range "all" nothing is
  ignored, so ``tp + fp >= 1`` and we divide exactly: perfect detections give
  exactly 1.0.
* Means are taken over a differently shaped array, so the floating-point
  summation order differs.

IoU is ``detection.boxes.box_iou``. For (x1, y1, x2, y2) boxes it is pycocotools'
``bbIou`` (maskApi.c) for non-crowd boxes: continuous coordinates (width x2 - x1, no
``+ 1``), ``intersection / (area_det + area_gt - intersection)`` in float64, and 0 for
boxes that do not overlap. It differs in one place only: it clamps an IoU that rounding
puts an ulp above 1 back to 1. Thresholds are capped at 1 - 1e-10, so that changes no
TP/FP decision; it could only change which of two ground-truth boxes a detection takes
when it overlaps both with IoU 1 up to rounding. pycocotools' crowd rule (a crowd box's union is the
detection's area alone) has no counterpart because there are no crowd boxes here.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_array, check_int
from ..backend import to_host
from ..detection.boxes import box_iou

#: COCO's IoU thresholds 0.50:0.05:0.95, built as pycocotools builds them, so that
#: ``0.5`` and ``0.75`` are exact members.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)

#: The 101 recall thresholds 0.00:0.01:1.00 at which precision is read.
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)


def _field(record, key, where):
    if not isinstance(record, dict):
        raise ValueError(f"{where} must be a dict with {key!r}, got {type(record).__name__}")
    if key not in record:
        raise ValueError(f"{where} must be a dict with {key!r}, got keys {sorted(record)}")
    try:
        return np.asarray(to_host(record[key]))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}[{key!r}] must be convertible to an array, got {e}") from e


def _check_boxes(record, where):
    """``record["boxes"]`` as float64 (n, 4), an empty list meaning no boxes."""
    name = f"{where}['boxes']"
    boxes = _field(record, "boxes", where)
    if boxes.size == 0 and boxes.ndim == 1:
        boxes = boxes.reshape(0, 4)  # an empty list means "no boxes"
    boxes = check_array(name, boxes, ("n", 4), kind="fiu", finite=True).astype(np.float64)
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        raise ValueError(
            f"{name} must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1, got {boxes[np.argmax(bad)].tolist()}"
        )
    return boxes


def _check_labels(record, where, n, num_classes):
    """``record["labels"]``, one per box, as int64 in [0, num_classes); floats must be whole."""
    name = f"{where}['labels']"
    labels = check_array(name, _field(record, "labels", where), (n,), kind="fiu", finite=True)
    if labels.dtype.kind == "f" and (labels != np.round(labels)).any():
        raise ValueError(f"{name} must be integers, got {labels.tolist()}")
    labels = labels.astype(np.int64)
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name} must be in [0, {num_classes}) (num_classes={num_classes}), "
            f"got values from {labels.min()} to {labels.max()}"
        )
    return labels


def _check_scores(record, where, n):
    """``record["scores"]``, one finite score per box, as float64."""
    scores = _field(record, "scores", where)
    return check_array(f"{where}['scores']", scores, (n,), kind="fiu", finite=True).astype(np.float64)


def match_image(ious, iou_thresholds):
    """Greedy COCO matching of one image's detections of one class, at every threshold.

    Parameters
    ----------
    ious : ndarray, shape (D, G)
        IoU of each detection (rows already sorted by score, best first) with each
        ground-truth box of the same class in the same image.
    iou_thresholds : ndarray, shape (T,)

    Returns
    -------
    ndarray, shape (T, D), bool
        True where the detection is matched (a true positive) at that threshold.
    """
    num_dets, num_gt = ious.shape
    # pycocotools starts its running best at min(t, 1 - 1e-10), so at t = 1 an IoU
    # a rounding error below 1 still matches.
    limits = np.minimum(iou_thresholds, 1 - 1e-10)[:, None]
    gt_taken = np.zeros((len(iou_thresholds), num_gt), dtype=bool)
    matched = np.zeros((len(iou_thresholds), num_dets), dtype=bool)
    for d in range(num_dets):
        candidates = ~gt_taken & (ious[d][None, :] >= limits)  # (T, G)
        found = candidates.any(axis=1)  # (T,)
        if not found.any():
            continue
        masked = np.where(candidates, ious[d][None, :], -1.0)
        # Among equal best IoUs pycocotools keeps the last ground truth (it replaces
        # its candidate on >=), hence argmax over the reversed columns.
        best = num_gt - 1 - np.argmax(masked[:, ::-1], axis=1)
        rows = np.nonzero(found)[0]
        gt_taken[rows, best[rows]] = True
        matched[rows, d] = True
    return matched


def precision_at_recall_thresholds(matched, num_gt):
    """Interpolated precision of one class at the 101 recall thresholds, per IoU threshold.

    Parameters
    ----------
    matched : ndarray, shape (T, D), bool
        True positives of all detections of the class over all images, columns
        sorted by score (best first).
    num_gt : int, > 0
        Number of ground-truth boxes of the class over all images.

    Returns
    -------
    precision : ndarray, shape (T, 101), float64
        Monotone (from the right) precision read at ``RECALL_THRESHOLDS``; 0 where
        recall never reaches the threshold.
    recall : ndarray, shape (T,), float64
        Recall after the last detection (0 without detections).
    """
    num_thresholds, num_dets = matched.shape
    tp = np.cumsum(matched, axis=1).astype(np.float64)
    fp = np.cumsum(~matched, axis=1).astype(np.float64)
    precision = np.zeros((num_thresholds, len(RECALL_THRESHOLDS)))
    recall = np.zeros(num_thresholds)
    if num_dets == 0:
        return precision, recall
    rc = tp / num_gt
    pr = tp / (tp + fp)  # tp + fp = column index + 1 >= 1
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
    for t in range(num_thresholds):
        idx = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
        reached = idx < num_dets
        precision[t, reached] = pr[t, idx[reached]]
    recall[:] = rc[:, -1]
    return precision, recall


def evaluate_detections(detections, ground_truths, num_classes, iou_thresholds=None, max_detections=100):
    """COCO box AP (area "all", no crowd) of detections against ground truth, as pycocotools.

    Parameters
    ----------
    detections : list of dict, one per image
        ``{"boxes": (n, 4), "scores": (n,), "labels": (n,)}``; NumPy arrays or
        anything ``np.asarray`` converts (an empty list is read as no boxes).
        Boxes are (x1, y1, x2, y2) in pixels, continuous coordinates.
    ground_truths : list of dict, same length and image order as ``detections``
        ``{"boxes": (m, 4), "labels": (m,)}``; other keys are ignored.
    num_classes : int
        Labels must lie in ``[0, num_classes)``.
    iou_thresholds : sequence of float in [0, 1], optional
        Defaults to COCO's ``0.50:0.05:0.95`` (10 thresholds).
    max_detections : int
        Detections kept per image *and class*, best scores first (COCO: 100).

    Returns
    -------
    dict with
        ``"AP"`` : float, mean over IoU thresholds and classes with ground truth.
        ``"AP50"``, ``"AP75"`` : float, the same at IoU 0.5 / 0.75 (``nan`` when that
        threshold is not among ``iou_thresholds``).
        ``"AR"`` : float, COCO's AR@max_detections: recall after all (kept)
        detections, averaged over IoU thresholds and classes with ground truth.
        ``"per_class_AP"`` : list of ``num_classes`` floats, ``nan`` for a class
        without ground truth.
        ``"num_ground_truths"`` : list of ``num_classes`` ints.
        ``"num_images"`` : int.
        ``"iou_thresholds"`` : ndarray (T,).
        ``"precision"`` : ndarray (T, 101, num_classes), the interpolated
        precision at ``RECALL_THRESHOLDS`` (a precision-recall curve per class and
        threshold), ``nan`` for classes without ground truth.
        All summary numbers are ``nan`` when no class has any ground truth.

    Raises
    ------
    ValueError
        On lists of different lengths, a missing key, boxes not (n, 4) or with
        x2 < x1 or y2 < y1, scores or labels of the wrong length, labels outside
        ``[0, num_classes)``, NaN or inf; the message names the image and field.
    """
    num_classes = check_int("num_classes", num_classes, 1)
    max_detections = check_int("max_detections", max_detections, 1)
    if iou_thresholds is None:
        thresholds = COCO_IOU_THRESHOLDS
    else:
        thresholds = np.asarray(iou_thresholds, dtype=np.float64)
        if thresholds.ndim != 1 or thresholds.size == 0:
            raise ValueError(f"iou_thresholds must be a non-empty 1-D sequence, got shape {thresholds.shape}")
        if not (np.isfinite(thresholds).all() and (thresholds >= 0).all() and (thresholds <= 1).all()):
            raise ValueError(f"iou_thresholds must be finite values in [0, 1], got {thresholds.tolist()}")
    detections = list(detections)
    ground_truths = list(ground_truths)
    if len(detections) != len(ground_truths):
        raise ValueError(
            f"detections and ground_truths must have one entry per image, got "
            f"{len(detections)} and {len(ground_truths)}"
        )

    num_t = len(thresholds)
    # Per class: the kept scores and (T, D) match flags of each image, in image order.
    class_scores = [[] for _ in range(num_classes)]
    class_matched = [[] for _ in range(num_classes)]
    num_gt = np.zeros(num_classes, dtype=np.int64)
    for i, (det, gt) in enumerate(zip(detections, ground_truths)):
        gt_boxes = _check_boxes(gt, f"ground_truths[{i}]")
        gt_labels = _check_labels(gt, f"ground_truths[{i}]", len(gt_boxes), num_classes)
        det_boxes = _check_boxes(det, f"detections[{i}]")
        det_scores = _check_scores(det, f"detections[{i}]", len(det_boxes))
        det_labels = _check_labels(det, f"detections[{i}]", len(det_boxes), num_classes)
        num_gt += np.bincount(gt_labels, minlength=num_classes)
        for k in np.union1d(gt_labels, det_labels):
            d_k = np.nonzero(det_labels == k)[0]
            order = d_k[np.argsort(-det_scores[d_k], kind="mergesort")][:max_detections]
            ious = box_iou(det_boxes[order], gt_boxes[gt_labels == k])
            class_scores[k].append(det_scores[order])
            class_matched[k].append(match_image(ious, thresholds))

    precision = np.full((num_t, len(RECALL_THRESHOLDS), num_classes), np.nan)
    recall = np.full((num_t, num_classes), np.nan)
    for k in range(num_classes):
        if num_gt[k] == 0:
            continue  # left out of every mean, even if it has (false) detections
        scores = np.concatenate(class_scores[k])
        matched = np.concatenate(class_matched[k], axis=1)
        order = np.argsort(-scores, kind="mergesort")
        precision[:, :, k], recall[:, k] = precision_at_recall_thresholds(matched[:, order], int(num_gt[k]))

    has_gt = num_gt > 0
    result = {
        "AP": np.nan,
        "AP50": np.nan,
        "AP75": np.nan,
        "AR": np.nan,
        "per_class_AP": [float(precision[:, :, k].mean()) if has_gt[k] else np.nan for k in range(num_classes)],
        "num_ground_truths": num_gt.tolist(),
        "num_images": len(detections),
        "iou_thresholds": thresholds.copy(),
        "precision": precision,
    }
    if has_gt.any():
        valid = precision[:, :, has_gt]
        result["AP"] = float(valid.mean())
        result["AR"] = float(recall[:, has_gt].mean())
        for key, t in (("AP50", 0.5), ("AP75", 0.75)):
            at = np.nonzero(np.isclose(thresholds, t, rtol=0.0, atol=1e-12))[0]
            if len(at):
                result[key] = float(valid[at[0]].mean())
    return result
