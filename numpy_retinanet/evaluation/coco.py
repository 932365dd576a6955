"""COCO-style average precision and recall, computed the way pycocotools' ``COCOeval`` does it.

The paper reports COCO AP (§5, Tables 1-2): AP averaged over the IoU thresholds
0.50:0.05:0.95, plus AP50 and AP75 and AP of small, medium and large objects.
This module reproduces ``COCOeval`` for boxes (``iouType="bbox"``), all twelve numbers
of its ``summarize()``, so numbers are comparable to what pycocotools would print for
the same detections:

1. Per image and class, detections are sorted by score (descending, *stable*:
   equal scores keep their input order) and only the first ``max_detections``
   are kept. The limit is per image *per class*, as in pycocotools.
2. IoU of every kept detection with every ground-truth box of the class in the image.
   A crowd box (``iscrowd``, a group of objects labelled as one box) is special: its
   "IoU" is the intersection over the *detection's* area alone, so any detection lying
   inside the crowd has IoU 1 with it however small it is.
3. Each area range (COCO's ``AREA_RANGES``: all, small < 32^2, medium 32^2..96^2,
   large > 96^2 pixels, both ends inclusive) is scored separately. In a range, a
   ground truth is *ignored* if it is a crowd box or if its area lies outside the
   range. The area of a ground truth is its ``"areas"`` entry when given (COCO's JSON
   gives the area of the object's mask, which is smaller than its box), else its
   box's ``w * h``. The area of a detection is always its box's ``w * h``.
4. Greedy matching, separately at every IoU threshold t: each detection, in score
   order, takes the still unmatched ground-truth box with the highest IoU among
   those with IoU >= t (t capped at 1 - 1e-10). Boxes that are not ignored are
   tried first; only a detection that finds none of them may take an ignored one.
   Equal best IoUs go to the later ground-truth box (in the order: not ignored,
   then ignored, each in input order), because pycocotools replaces its candidate
   on ``>=``. A crowd box is never used up: it can take any number of detections.
   A detection matched to a ground truth that is not ignored is a true positive; one
   matched to an ignored box is *ignored*: neither true nor false positive. An
   unmatched detection is a false positive, unless its own area lies outside the
   range: then it is ignored too (a detection of a large object is no mistake when
   scoring small ones).
5. Per class, the detections of all images are concatenated in image order and
   sorted by score (stable again), then cumulated, ignored detections counting as
   neither: ``recall = TP / num_gt`` with ``num_gt`` the ground truths not ignored,
   ``precision = TP / (TP + FP)`` (0 before the first detection that counts).
6. Precision is made monotone from the right (``p[i] = max(p[i:])``) and read at
   the 101 recall thresholds ``linspace(0, 1, 101)``: at threshold r it is the
   precision at the first detection whose recall is >= r, and 0 where recall
   never reaches r. AP of a class at a threshold is the mean of these 101 values.
   AR of a class at a threshold is the recall after its last kept detection.
7. A class without any ground-truth box that counts in the range is left out of
   every mean of that range (pycocotools marks it -1; we give ``nan``), even when it
   has detections. A class with ground truth but no detections has AP 0. Images
   with neither boxes nor detections change nothing; detections in an image
   without boxes of their class are false positives.
8. The summary: AP is the mean over classes (with ground truth) and IoU thresholds;
   AP50 and AP75 use the single thresholds 0.5 and 0.75; AP_small, AP_medium,
   AP_large the area ranges. AR1, AR10 and AR100 keep only the first 1, 10 and
   ``max_detections`` detections per image and class (COCO's maxDets 1, 10, 100:
   the first of a sorted list are the first whatever the limit, so the matches of
   step 4 do not change) and average the recall over classes and IoU thresholds;
   AR_small, AR_medium, AR_large do so per area range with ``max_detections``.
   When no class has any ground truth in a range, its numbers are ``nan``
   (pycocotools would print -1).

``area_scale`` multiplies the bounds of the small, medium and large ranges. COCO's
ranges were chosen for photos about 640 pixels wide: at 128 pixels a side (the
shapes dataset) an image holds 128^2 = 16384 pixels, under twice 96^2 = 9216, so a
"large" object in COCO's sense would fill half the picture and AP_large says little.
``area_scale=(128 / 640) ** 2`` scores the objects that would be small, medium and
large had the picture been taken at COCO's size. The default 1.0 is COCO's.

Two deliberate differences from pycocotools, neither of which changes a result by
more than about 1e-16:

* pycocotools divides ``tp / (tp + fp + np.spacing(1))`` to guard against 0 / 0
  from ignored detections. We divide exactly where ``tp + fp >= 1`` and give 0
  where it is 0 (what pycocotools' guard gives there): perfect detections give
  exactly 1.0.
* Means are taken over a differently shaped array, so the floating-point
  summation order differs.

IoU is ``detection.boxes.box_iou``. For (x1, y1, x2, y2) boxes it is pycocotools'
``bbIou`` (maskApi.c) for non-crowd boxes: continuous coordinates (width x2 - x1, no
``+ 1``), ``intersection / (area_det + area_gt - intersection)`` in float64, and 0 for
boxes that do not overlap. It differs in one place only: it clamps an IoU that rounding
puts an ulp above 1 back to 1. Thresholds are capped at 1 - 1e-10, so that changes no
TP/FP decision; it could only change which of two ground-truth boxes a detection takes
when it overlaps both with IoU 1 up to rounding. pycocotools works on (x, y, w, h)
boxes and computes ``x + w``, which can round an ulp away from our ``x2``; that
moves an IoU by about 1e-16 and matters only for an IoU exactly on a threshold.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_array, check_int, check_real
from ..backend import to_host
from ..detection.boxes import box_iou

#: COCO's IoU thresholds 0.50:0.05:0.95, built as pycocotools builds them, so that
#: ``0.5`` and ``0.75`` are exact members.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)

#: The 101 recall thresholds 0.00:0.01:1.00 at which precision is read.
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)

#: COCO's area ranges in square pixels, both ends inclusive (pycocotools' ``areaRng``).
AREA_RANGES = {"all": (0.0, 1e5**2), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2),
               "large": (96.0**2, 1e5**2)}

#: The twelve numbers of pycocotools' ``summarize()``, in its order: (key, AP or AR, IoU
#: threshold or None for 0.50:0.95, area range, index into the max-detections list (1, 10, max)).
SUMMARY = (
    ("AP", "AP", None, "all", 2), ("AP50", "AP", 0.5, "all", 2), ("AP75", "AP", 0.75, "all", 2),
    ("AP_small", "AP", None, "small", 2), ("AP_medium", "AP", None, "medium", 2),
    ("AP_large", "AP", None, "large", 2),
    ("AR1", "AR", None, "all", 0), ("AR10", "AR", None, "all", 1), ("AR100", "AR", None, "all", 2),
    ("AR_small", "AR", None, "small", 2), ("AR_medium", "AR", None, "medium", 2),
    ("AR_large", "AR", None, "large", 2),
)


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


def _check_crowd_and_areas(record, where, boxes):
    """The optional ``"iscrowd"`` (m,) bools (absent: none is a crowd) and ``"areas"`` (m,) >= 0
    (absent: each box's ``w * h``) of a ground-truth record."""
    n = len(boxes)
    crowd = np.zeros(n, dtype=bool)
    if "iscrowd" in record:
        crowd = check_array(f"{where}['iscrowd']", _field(record, "iscrowd", where), (n,), kind="bui")
        if not np.isin(crowd, (0, 1)).all():
            raise ValueError(f"{where}['iscrowd'] must be 0/1 or False/True, got {crowd.tolist()}")
        crowd = crowd.astype(bool)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if "areas" in record:
        areas = check_array(f"{where}['areas']", _field(record, "areas", where), (n,), kind="fiu", finite=True)
        if (areas < 0).any():
            raise ValueError(f"{where}['areas'] must be >= 0, got {areas.tolist()}")
        areas = areas.astype(np.float64)
    return crowd, areas


def coco_iou(det_boxes, gt_boxes, gt_crowd):
    """IoU as pycocotools' ``maskUtils.iou`` computes it for boxes, crowd boxes included.

    Parameters
    ----------
    det_boxes : ndarray, shape (D, 4), float64
    gt_boxes : ndarray, shape (G, 4), float64
    gt_crowd : ndarray, shape (G,), bool

    Returns
    -------
    ndarray, shape (D, G): ``box_iou`` for a ground truth that is not a crowd; for a crowd
    box the intersection over the detection's area (0 where they do not overlap, so a
    detection of zero area, which overlaps nothing, never divides by 0).
    """
    ious = box_iou(det_boxes, gt_boxes)
    if gt_crowd.any():
        crowd = gt_boxes[gt_crowd]
        iw = np.minimum(det_boxes[:, None, 2], crowd[None, :, 2]) - np.maximum(det_boxes[:, None, 0], crowd[None, :, 0])
        ih = np.minimum(det_boxes[:, None, 3], crowd[None, :, 3]) - np.maximum(det_boxes[:, None, 1], crowd[None, :, 1])
        overlap = (iw > 0) & (ih > 0)
        det_area = ((det_boxes[:, 2] - det_boxes[:, 0]) * (det_boxes[:, 3] - det_boxes[:, 1]))[:, None]
        ious[:, gt_crowd] = np.where(overlap, iw * ih / np.where(overlap, det_area, 1.0), 0.0)
    return ious


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
    no_gt = np.zeros(ious.shape[1], dtype=bool)
    return match_image_with_ignored(ious, iou_thresholds, no_gt, no_gt)[0]


def match_image_with_ignored(ious, iou_thresholds, gt_ignored, gt_crowd):
    """``match_image`` with ignored and crowd ground truths (steps 3-4 of the module docstring).

    Parameters
    ----------
    ious : ndarray, shape (D, G), rows sorted by score, best first (``coco_iou``).
    iou_thresholds : ndarray, shape (T,)
    gt_ignored : ndarray, shape (G,), bool: crowd boxes and boxes outside the area range.
    gt_crowd : ndarray, shape (G,), bool: crowd boxes, which any number of detections may take.

    Returns
    -------
    matched : ndarray, shape (T, D), bool: the detection took a ground truth at that threshold.
    ignored : ndarray, shape (T, D), bool: the ground truth it took is an ignored one.
    """
    num_dets, num_gt = ious.shape
    # pycocotools starts its running best at min(t, 1 - 1e-10), so at t = 1 an IoU
    # a rounding error below 1 still matches.
    limits = np.minimum(iou_thresholds, 1 - 1e-10)[:, None]
    gt_taken = np.zeros((len(iou_thresholds), num_gt), dtype=bool)
    matched = np.zeros((len(iou_thresholds), num_dets), dtype=bool)
    ignored = np.zeros((len(iou_thresholds), num_dets), dtype=bool)
    # Only a detection with some IoU at or above the lowest limit can match anything; the others
    # (most of a detector's, on background) are skipped without a step of the loop.
    for d in np.nonzero((ious >= limits.min()).any(axis=1))[0]:
        candidates = (~gt_taken | gt_crowd[None, :]) & (ious[d][None, :] >= limits)  # (T, G)
        # The boxes that count first; the ignored ones only where none of those is a candidate
        # (pycocotools sorts the ignored boxes last and stops at them once it holds a match).
        counted = candidates & ~gt_ignored[None, :]
        candidates = np.where(counted.any(axis=1, keepdims=True), counted, candidates)
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
        ignored[rows, d] = gt_ignored[best[rows]]
    return matched, ignored


def precision_at_recall_thresholds(matched, num_gt, ignored=None):
    """Interpolated precision of one class at the 101 recall thresholds, per IoU threshold.

    Parameters
    ----------
    matched : ndarray, shape (T, D), bool
        True positives of all detections of the class over all images, columns
        sorted by score (best first).
    num_gt : int, > 0
        Number of ground-truth boxes of the class over all images (those not ignored).
    ignored : ndarray, shape (T, D), bool, optional
        Detections that count neither as true nor as false positives (step 4 of the
        module docstring). None: none.

    Returns
    -------
    precision : ndarray, shape (T, 101), float64
        Monotone (from the right) precision read at ``RECALL_THRESHOLDS``; 0 where
        recall never reaches the threshold.
    recall : ndarray, shape (T,), float64
        Recall after the last detection (0 without detections).
    """
    num_thresholds, num_dets = matched.shape
    counts = np.ones_like(matched) if ignored is None else ~ignored
    tp = np.cumsum(matched & counts, axis=1).astype(np.float64)
    fp = np.cumsum(~matched & counts, axis=1).astype(np.float64)
    precision = np.zeros((num_thresholds, len(RECALL_THRESHOLDS)))
    recall = np.zeros(num_thresholds)
    if num_dets == 0:
        return precision, recall
    rc = tp / num_gt
    # tp + fp is 0 only before the first detection that counts: precision 0 there, which the
    # monotone envelope below then lifts to the best precision that follows.
    seen = tp + fp
    pr = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
    for t in range(num_thresholds):
        idx = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
        reached = idx < num_dets
        precision[t, reached] = pr[t, idx[reached]]
    recall[:] = rc[:, -1]
    return precision, recall


def _mean(values):
    """Mean of the entries that are not nan (pycocotools' mean over ``s > -1``); nan if none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else np.nan


def evaluate_detections(detections, ground_truths, num_classes, iou_thresholds=None, max_detections=100,
                        area_scale=1.0):
    """COCO box AP and AR of detections against ground truth, as pycocotools' ``COCOeval``.

    Parameters
    ----------
    detections : list of dict, one per image
        ``{"boxes": (n, 4), "scores": (n,), "labels": (n,)}``; NumPy arrays or
        anything ``np.asarray`` converts (an empty list is read as no boxes).
        Boxes are (x1, y1, x2, y2) in pixels, continuous coordinates.
    ground_truths : list of dict, same length and image order as ``detections``
        ``{"boxes": (m, 4), "labels": (m,)}`` and optionally ``"iscrowd"`` (m,) bool
        (absent: no crowd boxes) and ``"areas"`` (m,) (absent: each box's ``w * h``);
        other keys are ignored.
    num_classes : int
        Labels must lie in ``[0, num_classes)``.
    iou_thresholds : sequence of float in [0, 1], optional
        Defaults to COCO's ``0.50:0.05:0.95`` (10 thresholds).
    max_detections : int
        Detections kept per image *and class*, best scores first (COCO: 100). AR1 and
        AR10 keep the first 1 and 10 of them.
    area_scale : float > 0
        Multiplies the bounds of the small, medium and large ``AREA_RANGES`` (1: COCO's;
        the module docstring says why images much smaller than COCO's want less).

    Returns
    -------
    dict with
        the twelve numbers of ``SUMMARY`` (floats): ``"AP"`` (mean over IoU thresholds
        and classes with ground truth), ``"AP50"``, ``"AP75"`` (``nan`` when that
        threshold is not among ``iou_thresholds``), ``"AP_small"``, ``"AP_medium"``,
        ``"AP_large"``, ``"AR1"``, ``"AR10"``, ``"AR100"`` (recall with at most 1, 10,
        ``max_detections`` detections per image and class), ``"AR_small"``,
        ``"AR_medium"``, ``"AR_large"``;
        ``"stats"`` : the twelve in pycocotools' ``stats`` order (``nan`` for its -1);
        ``"AR"`` : float, the same as ``"AR100"`` (COCO's AR@max_detections).
        ``"per_class_AP"`` : list of ``num_classes`` floats, ``nan`` for a class
        without ground truth.
        ``"num_ground_truths"`` : list of ``num_classes`` ints (crowd boxes not counted).
        ``"num_images"`` : int.
        ``"iou_thresholds"`` : ndarray (T,).
        ``"max_detections"`` : int. ``"area_ranges"`` : dict name -> (low, high), scaled.
        ``"precision"`` : ndarray (T, 101, num_classes), the interpolated
        precision at ``RECALL_THRESHOLDS`` (a precision-recall curve per class and
        threshold; area "all"), ``nan`` for classes without ground truth.
        A number is ``nan`` when no class has any ground truth in its range.

    Raises
    ------
    ValueError
        On lists of different lengths, a missing key, boxes not (n, 4) or with
        x2 < x1 or y2 < y1, scores or labels of the wrong length, labels outside
        ``[0, num_classes)``, NaN or inf; the message names the image and field.
    """
    num_classes = check_int("num_classes", num_classes, 1)
    max_detections = check_int("max_detections", max_detections, 1)
    area_scale = check_real("area_scale", area_scale, 0, low_open=True)
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
    # "all" stays COCO's [0, 1e10]: scaling it would only risk ignoring a huge box.
    ranges = {name: (lo, hi) if name == "all" else (lo * area_scale, hi * area_scale)
              for name, (lo, hi) in AREA_RANGES.items()}
    max_dets = (1, 10, max_detections)

    num_t, num_a = len(thresholds), len(ranges)
    # Per class and area range: each image's kept scores, (T, D) match and ignore flags, in
    # image order, and the number of ground truths that count.
    entries = [[[] for _ in range(num_a)] for _ in range(num_classes)]
    num_gt = np.zeros((num_classes, num_a), dtype=np.int64)
    for i, (det, gt) in enumerate(zip(detections, ground_truths)):
        gt_boxes = _check_boxes(gt, f"ground_truths[{i}]")
        gt_labels = _check_labels(gt, f"ground_truths[{i}]", len(gt_boxes), num_classes)
        gt_crowd, gt_areas = _check_crowd_and_areas(gt, f"ground_truths[{i}]", gt_boxes)
        det_boxes = _check_boxes(det, f"detections[{i}]")
        det_scores = _check_scores(det, f"detections[{i}]", len(det_boxes))
        det_labels = _check_labels(det, f"detections[{i}]", len(det_boxes), num_classes)
        det_areas = (det_boxes[:, 2] - det_boxes[:, 0]) * (det_boxes[:, 3] - det_boxes[:, 1])
        for k in np.union1d(gt_labels, det_labels):
            d_k = np.nonzero(det_labels == k)[0]
            order = d_k[np.argsort(-det_scores[d_k], kind="mergesort")][:max_detections]
            g_k = gt_labels == k
            ious = coco_iou(det_boxes[order], gt_boxes[g_k], gt_crowd[g_k])
            for a, (lo, hi) in enumerate(ranges.values()):
                gt_ignored = gt_crowd[g_k] | (gt_areas[g_k] < lo) | (gt_areas[g_k] > hi)
                matched, ignored = match_image_with_ignored(ious, thresholds, gt_ignored, gt_crowd[g_k])
                # An unmatched detection outside the range is no false positive of this range.
                outside = (det_areas[order] < lo) | (det_areas[order] > hi)
                ignored |= ~matched & outside[None, :]
                entries[k][a].append((det_scores[order], matched, ignored))
                num_gt[k, a] += int((~gt_ignored).sum())

    # pycocotools' accumulate(): precision (T, 101, K, A, M) and recall (T, K, A, M).
    precision = np.full((num_t, len(RECALL_THRESHOLDS), num_classes, num_a, len(max_dets)), np.nan)
    recall = np.full((num_t, num_classes, num_a, len(max_dets)), np.nan)
    for k in range(num_classes):
        for a in range(num_a):
            if num_gt[k, a] == 0:
                continue  # left out of every mean, even if it has (false) detections
            for m, limit in enumerate(max_dets):
                scores = np.concatenate([e[0][:limit] for e in entries[k][a]])
                matched = np.concatenate([e[1][:, :limit] for e in entries[k][a]], axis=1)
                ignored = np.concatenate([e[2][:, :limit] for e in entries[k][a]], axis=1)
                order = np.argsort(-scores, kind="mergesort")
                precision[:, :, k, a, m], recall[:, k, a, m] = precision_at_recall_thresholds(
                    matched[:, order], int(num_gt[k, a]), ignored[:, order])

    area_index = {name: a for a, name in enumerate(ranges)}
    result = {}
    for key, kind, iou, area, m in SUMMARY:
        values = precision[..., area_index[area], m] if kind == "AP" else recall[..., area_index[area], m]
        if iou is not None:
            at = np.nonzero(np.isclose(thresholds, iou, rtol=0.0, atol=1e-12))[0]
            values = values[at[:1]]  # empty (nan) when the threshold is not evaluated
        result[key] = _mean(values)
    result.update({
        "stats": [result[key] for key, *_ in SUMMARY],
        "AR": result["AR100"],
        "per_class_AP": [_mean(precision[:, :, k, 0, -1]) for k in range(num_classes)],
        "num_ground_truths": num_gt[:, 0].tolist(),
        "num_images": len(detections),
        "iou_thresholds": thresholds.copy(),
        "max_detections": max_detections,
        "area_ranges": ranges,
        "precision": precision[:, :, :, 0, -1].copy(),
    })
    return result


def summary_lines(result):
    """The twelve numbers of ``evaluate_detections`` as pycocotools' ``summarize()`` prints them.

    Its layout, character for character, for COCO's IoU thresholds: a number that is ``nan``
    (no ground truth in its range) is printed as pycocotools prints it, -1.000.
    """
    thresholds = result["iou_thresholds"]
    limits = (1, 10, result["max_detections"])
    lines = []
    for key, kind, iou, area, m in SUMMARY:
        title = "Average Precision" if kind == "AP" else "Average Recall"
        iou_text = f"{thresholds[0]:0.2f}:{thresholds[-1]:0.2f}" if iou is None else f"{iou:0.2f}"
        value = -1.0 if np.isnan(result[key]) else result[key]
        lines.append(f" {title:<18} ({kind}) @[ IoU={iou_text:<9} | area={area:>6s} | maxDets={limits[m]:>3d} ] "
                     f"= {value:0.3f}")
    return lines


def coco_results(detections, image_ids, category_ids):
    """Detections in COCO's results format, the list ``COCO.loadRes`` (and the COCO server) reads.

    Parameters
    ----------
    detections : list of dict ``{"boxes": (n, 4), "scores": (n,), "labels": (n,)}``, one per image,
        boxes (x1, y1, x2, y2) in the pixels of the image as its file holds it.
    image_ids : one id per image (an int, or a string for files that are not in a COCO dataset).
    category_ids : the category id of each label (label k -> ``category_ids[k]``).

    Returns
    -------
    list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` with Python numbers, in
    image order, each image's detections in their order. ``w = x2 - x1`` and ``h = y2 - y1``
    exactly as computed here; JSON keeps every float exactly (Python writes the shortest repr).
    """
    detections, image_ids = list(detections), list(image_ids)
    if len(detections) != len(image_ids):
        raise ValueError(f"image_ids must have one entry per image ({len(detections)}), got {len(image_ids)}")
    results = []
    for i, (det, image_id) in enumerate(zip(detections, image_ids)):
        boxes = _check_boxes(det, f"detections[{i}]")
        scores = _check_scores(det, f"detections[{i}]", len(boxes))
        labels = _check_labels(det, f"detections[{i}]", len(boxes), len(category_ids))
        image_id = int(image_id) if not isinstance(image_id, str) else image_id
        for (x1, y1, x2, y2), score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
            results.append({"image_id": image_id, "category_id": int(category_ids[label]),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    return results
