"""Exercise 10: COCO average precision of one class at one IoU threshold (§5): ``average_precision``."""

from __future__ import annotations

import numpy as np

from numpy_retinanet.detection.boxes import box_iou
from numpy_retinanet.evaluation.coco import RECALL_THRESHOLDS, evaluate_detections
from numpy_retinanet.teaching.exercises.forward import ForwardExercise, as_boxes, count_of

__all__ = ["AveragePrecisionExercise"]



def _ap_variant(detections, ground_truths, iou_threshold, mistake):
    """AP of one class at one threshold as ``evaluate_detections``, or as a mistake computes it."""
    num_gt = sum(len(gt["boxes"]) for gt in ground_truths)
    if num_gt == 0:
        return 0.0 if mistake == "zero_without_gt" else float("nan")

    def by_score(scores):
        if mistake == "reversed_ties":
            return np.argsort(scores, kind="stable")[::-1]
        return np.argsort(-scores, kind="stable")

    scores, hits = [], []
    for det, gt in zip(detections, ground_truths):
        if mistake == "skip_images_without_gt" and len(gt["boxes"]) == 0:
            continue
        taken = np.zeros(len(gt["boxes"]), dtype=bool)
        for d in by_score(det["scores"]):
            iou = box_iou(det["boxes"][d : d + 1], gt["boxes"])[0]
            free = iou > iou_threshold if mistake == "strict_threshold" else iou >= iou_threshold
            if mistake != "double_match":
                free &= ~taken
            candidates = np.flatnonzero(free)
            if len(candidates):
                if mistake == "first_above_threshold":
                    best = candidates[0]
                else:
                    top = candidates[iou[candidates] == iou[candidates].max()]
                    best = top[0] if mistake == "tie_first_gt" else top[-1]
                taken[best] = True
            scores.append(det["scores"][d])
            hits.append(len(candidates) > 0)
    hits = np.asarray(hits, dtype=bool)[by_score(np.asarray(scores, dtype=np.float64))]
    tp = np.cumsum(hits)
    if mistake == "num_gt_from_matches":
        num_gt = tp[-1] if len(tp) else 0
        if num_gt == 0:
            return float("nan")
    recall = tp / num_gt
    precision = tp / np.arange(1, len(hits) + 1)
    if mistake == "raw_area":
        return float(np.sum(precision * np.diff(recall, prepend=0.0)))
    if mistake != "no_envelope":
        precision = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0, 1, 11) if mistake == "eleven_points" else RECALL_THRESHOLDS
    first = np.searchsorted(recall, points, side="left")  # the first rank with recall >= r
    return float(np.mean([precision[i] if i < len(hits) else 0.0 for i in first]))


class AveragePrecisionExercise(ForwardExercise):
    number = 10
    name = "average_precision"
    functions = ("average_precision",)
    compared = "AP to 1e-12; nan equals nan"
    signature = ("average_precision(detections, ground_truths, iou_threshold) -> AP, a float; per image "
                 "{'boxes': (D, 4), 'scores': (D,)} and {'boxes': (G, 4)}")
    title = "COCO average precision with 101-point interpolation (§5)"
    package_answers = ("numpy_retinanet.evaluation.coco.evaluate_detections",
                       "numpy_retinanet.evaluation.coco.match_image",
                       "numpy_retinanet.evaluation.coco.precision_at_recall_thresholds")
    hints = (
        "AP summarises the precision-recall curve of one class. Put the detections of all images in one "
        "list, best score first; walk down it and after each detection count TP (true positives so far) "
        "and FP. precision = TP / (TP + FP); recall = TP / the number of ground-truth boxes in all images "
        "(every box, also those no detection found).",
        "Which detections are TP (greedy, image by image, as COCO): go through the image's detections best "
        "score first; each takes, among the image's ground-truth boxes not taken yet, the one with the "
        "highest IoU, provided that IoU >= iou_threshold (exactly the threshold counts). A taken box cannot "
        "be taken again. A detection that finds no box is a FP; so is every detection in an image without "
        "boxes. Two free boxes with the same highest IoU: take the later one (pycocotools' rule).",
        "Equal scores keep their input order in both sorts: within an image, and over all images (image "
        "order, then order within the image). A stable sort of the negated scores does that; reversing an "
        "ascending sort puts ties the other way round.",
        "The envelope: replace the precision at each rank by the largest precision at that rank or any "
        "later one (walk from the end with a running maximum). The curve then never rises to the right.",
        "101-point interpolation: for each recall threshold r in RECALL_THRESHOLDS (0, 0.01, ..., 1: 101 "
        "values), read the envelope at the first rank whose recall is >= r, and 0 where recall never "
        "reaches r. AP is the mean of the 101 values: not 11 points (VOC 2007), not the area under the "
        "raw curve.",
        "The edges: no ground-truth box in any image: AP is undefined, return nan (COCO leaves the class "
        "out of its mean). Boxes but no detections: AP 0.",
    )
    mistakes = {
        "eleven_points": ("your AP is read at 11 recall points (VOC 2007); COCO reads it at 101", 5),
        "no_envelope": ("your precision is not made monotone: take at each rank the best precision at "
                        "that rank or later", 4),
        "raw_area": ("your AP is the area under the raw curve (sum of precision x recall step); COCO "
                     "averages the envelope at 101 recall points", 5),
        "double_match": ("in yours a detection can take a ground-truth box that an earlier detection "
                         "already took", 2),
        "num_gt_from_matches": ("your recall divides by the number of matched detections: divide by the "
                                "number of ground-truth boxes, found or not", 1),
        "first_above_threshold": ("in yours a detection takes the first free box with IoU >= the "
                                  "threshold: it takes the one with the highest IoU", 2),
        "strict_threshold": ("in yours an IoU exactly at the threshold is no match: IoU >= iou_threshold "
                             "matches", 2),
        "tie_first_gt": ("a detection with the same IoU with two free boxes takes the earlier box in "
                         "yours: COCO takes the later one", 2),
        "reversed_ties": ("equal scores go last first in yours (a reversed ascending sort?): they keep "
                          "their input order", 3),
        "zero_without_gt": ("with no ground truth at all yours returns 0: AP is undefined there, nan", 6),
        "skip_images_without_gt": ("yours drops the detections of images without ground truth: they "
                                   "are false positives", 2),
    }
    crash = ("your code raises on an empty case (no detections, or no ground truth): AP is 0 and nan there", 6)

    def cases(self):
        rng = np.random.default_rng(10)
        gts = [as_boxes(np.concatenate([xy, xy + rng.uniform(8, 20, (n, 2))], axis=1))
               for xy, n in ((rng.uniform(0, 60, (3, 2)), 3), (rng.uniform(0, 60, (2, 2)), 2),
                             (rng.uniform(0, 60, (4, 2)), 4))]
        # Per image: each box found by a jittered copy, plus two random false positives.
        dets = [np.concatenate([g + rng.normal(0, 1.5, g.shape), as_boxes(
            np.concatenate([xy, xy + 10], axis=1))]) for g, xy in zip(gts, rng.uniform(0, 60, (3, 2, 2)))]

        def image(boxes, scores=None):
            boxes = as_boxes(boxes)
            return {"boxes": boxes, "scores": np.array(scores if scores is not None else [], dtype=np.float64)}

        def case(tag, detections, ground_truths, iou_threshold=0.5, empty=False):
            return dict(tag=tag, detections=detections, ground_truths=[{"boxes": as_boxes(g)} for g in ground_truths],
                        iou_threshold=iou_threshold, empty=empty)

        g0, g1 = [[0, 0, 10, 10]], [[20, 20, 40, 40], [50, 0, 60, 20]]
        g2 = [[0, 0, 10, 10], [4, 0, 14, 10], [50, 50, 60, 60]]
        return [
            case("perfect detections", [image(g0, [0.3]), image(g1, [0.9, 0.6])], [g0, g1]),
            case("all detections wrong", [image([[30, 30, 40, 40]], [0.9]), image([[0, 0, 10, 10]], [0.8])],
                 [g0, g1]),
            case("no detections", [image([]), image([])], [g0, g1], empty=True),
            case("no ground truth in any image", [image(g0, [0.9])], [[]], empty=True),
            case("an image with no ground truth", [image(g0, [0.5]), image([[0, 0, 10, 10]], [0.9])], [g0, []]),
            # The two detections at 0.9: a false positive in image 0, then a hit in image 1.
            case("equal scores in two images", [image([[30, 30, 40, 40], [0, 0, 10, 10]], [0.9, 0.6]),
                                                image(g0, [0.9])], [g0, g0]),
            # [0, 0, 10, 10] and [0, 0, 10, 20]: intersection 100, union 200.
            case("IoU exactly 0.5 = iou_threshold", [image([[0, 0, 10, 20], [20, 20, 40, 40]], [0.9, 0.8])],
                 [[[0, 0, 10, 10], [20, 20, 40, 40]]]),
            # The first detection overlaps box 0 (IoU 7/13) and box 1 (9/11): it takes box 1; the second,
            # a copy of box 1, finds box 1 taken and box 0 at IoU 3/7 < 0.5. No detection finds box 2.
            case("a detection overlapping two ground truths",
                 [image([[3, 0, 13, 10], [4, 0, 14, 10], [0, 0, 10, 10]], [0.9, 0.8, 0.7])], [g2]),
            # The first detection overlaps box 0 by 3/13, boxes 1 and 2 by 1/3 each: it takes box 2, the
            # later of the two best. The next two copy boxes 2 and 1; no detection finds box 3.
            case("equal IoU with two ground truths",
                 [image([[4, 0, 8, 2], [6, 0, 10, 2], [2, 0, 6, 2]], [0.9, 0.8, 0.7])],
                 [[[4, 1.25, 8, 3.25], [2, 0, 6, 2], [6, 0, 10, 2], [50, 50, 60, 60]]], iou_threshold=0.2),
            # Hit, miss, miss, hit, hit, miss: the raw precision falls, then rises again.
            case("a precision that rises again", [image([[0, 0, 10, 10], [30, 30, 31, 31], [32, 32, 33, 33],
                                                         [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 61, 61]],
                                                        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4])],
                 [[[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [70, 70, 80, 80]]]),
            case("jittered boxes and false positives",
                 [image(d, rng.uniform(0, 1, len(d))) for d in dets], gts, iou_threshold=0.75),
        ]

    def describe(self, case):
        n_det = sum(len(d["boxes"]) for d in case["detections"])
        n_gt = sum(len(g["boxes"]) for g in case["ground_truths"])
        return (f"{count_of(len(case['detections']), 'image')}, {count_of(n_det, 'detection')}, "
                f"{count_of(n_gt, 'ground-truth box', 'ground-truth boxes')}, "
                f"iou_threshold={case['iou_threshold']}: {case['tag']}")

    def answer(self, impl, case):
        return {"AP": impl.average_precision(case["detections"], case["ground_truths"], case["iou_threshold"])}

    def truth(self, case):
        def labelled(record):
            return dict(record, labels=np.zeros(len(record["boxes"]), dtype=np.int64))

        result = evaluate_detections([labelled(d) for d in case["detections"]],
                                     [labelled(g) for g in case["ground_truths"]], num_classes=1,
                                     iou_thresholds=[case["iou_threshold"]], max_detections=1000)
        return {"AP": result["per_class_AP"][0]}

    def variant(self, case, mistake):
        return {"AP": _ap_variant(case["detections"], case["ground_truths"], case["iou_threshold"], mistake)}
