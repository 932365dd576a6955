"""Exercise 9: non-maximum suppression (§4.1, "Inference"): ``nms``, checked case by case."""

from __future__ import annotations

import numpy as np

from numpy_retinanet.detection.boxes import box_iou, nms
from numpy_retinanet.teaching.exercises.forward import ForwardExercise, as_boxes

__all__ = ["NmsExercise"]



def _nms_variant(boxes, scores, iou_threshold, mistake):
    """Kept indices as ``nms``, or as a mistake computes them."""
    order = np.argsort(-scores, kind="stable")
    if mistake == "reversed_ties":
        order = np.argsort(scores, kind="stable")[::-1]
    iou = box_iou(boxes, boxes)
    over = iou >= iou_threshold if mistake == "suppress_at_threshold" else iou > iou_threshold
    keep, suppressed = [], np.zeros(len(boxes), dtype=bool)
    for rank, i in enumerate(order):
        if mistake == "suppressed_suppress":
            if over[i, order[:rank]].any():  # any better box, kept or not
                continue
        elif suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    keep = np.asarray(keep, dtype=np.int64)
    return np.sort(keep) if mistake == "input_order" else keep


class NmsExercise(ForwardExercise):
    number = 9
    name = "nms"
    functions = ("nms",)
    compared = "keep exactly: the same indices in the same order"
    signature = "nms(boxes, scores, iou_threshold) -> keep (n_kept,) int64, by decreasing score"
    title = "greedy non-maximum suppression (§4.1, Inference)"
    package_answers = ("numpy_retinanet.detection.boxes.nms", "numpy_retinanet.detection.boxes.batched_nms")
    hints = (
        "Greedy: take the highest-scoring box still in play, keep it, and take out of play every box that "
        "overlaps it too much; repeat until no box is left. Only a box you keep takes others out: if A "
        "takes out B and B would take out C, B is gone, so C stays (unless A overlaps C too).",
        "'Too much' is an IoU strictly greater than iou_threshold: a pair whose IoU equals the threshold "
        "both stay. So at threshold 0 any overlap takes a box out but boxes that only touch (IoU 0) stay, "
        "and at threshold 1 nothing is taken out, not even an identical copy.",
        "Order: visit the boxes by decreasing score, equal scores in input order (the lower index first): "
        "a stable sort of the negated scores does that, reversing an ascending sort does not. Return the "
        "kept indices in the order you kept them, by decreasing score, not sorted by index.",
        "No boxes: return an empty int64 array, shape (0,). One box: it is kept.",
    )
    mistakes = {
        "suppress_at_threshold": ("in yours a box whose IoU equals the threshold is taken out: only an IoU "
                                  "strictly above it takes a box out", 2),
        "reversed_ties": ("equal scores are visited last index first in yours (a reversed ascending "
                          "sort?): they go in input order", 3),
        "suppressed_suppress": ("in yours a box that was itself taken out still takes out others (the chain "
                                "case): only kept boxes do", 1),
        "input_order": ("your kept indices are sorted by index: return them by decreasing score, in the "
                        "order you kept them", 3),
    }
    crash = ("your code raises when there are no boxes: return an empty int64 array", 4)

    def cases(self):
        rng = np.random.default_rng(9)
        centres = np.repeat(rng.uniform(10, 50, (4, 2)), 3, axis=0) + rng.normal(0, 1.5, (12, 2))
        half_sides = rng.uniform(5, 7, (12, 1))
        random_boxes = np.concatenate([centres - half_sides, centres + half_sides], axis=1)

        def case(tag, boxes, scores, iou_threshold=0.5, empty=False):
            return dict(tag=tag, boxes=as_boxes(boxes), scores=np.array(scores, dtype=np.float64),
                        iou_threshold=iou_threshold, empty=empty)

        return [
            case("one box", [[0, 0, 4, 4]], [0.3]),
            case("no boxes", [], [], empty=True),
            # Intersection 4, union 8: IoU exactly 0.5.
            case("IoU exactly 0.5 = iou_threshold", [[0, 0, 3, 2], [1, 0, 4, 2]], [0.9, 0.8]),
            # A = box 1, B = box 2, C = box 0: IoU(A, B) = IoU(B, C) = 0.6, IoU(A, C) = 1/3.
            case("a chain: A takes out B, B would take out C", [[2, 0, 6, 2], [0, 0, 4, 2], [1, 0, 5, 2]],
                 [0.7, 0.9, 0.8]),
            case("equal scores", [[0, 0, 4, 2], [1, 0, 5, 2], [10, 0, 14, 2]], [0.5, 0.5, 0.5]),
            # Box 1 only touches box 0 (IoU 0); box 2 overlaps both.
            case("iou_threshold 0: any overlap takes a box out", [[0, 0, 2, 2], [2, 0, 4, 2], [1, 0, 3, 2]],
                 [0.9, 0.8, 0.7], iou_threshold=0.0),
            case("iou_threshold 1: an identical copy stays", [[0, 0, 2, 2], [0, 0, 2, 2], [5, 5, 9, 9]],
                 [0.6, 0.9, 0.75], iou_threshold=1.0),
            case("12 random boxes in 4 clusters", random_boxes, rng.uniform(0, 1, 12)),
        ]

    def describe(self, case):
        return f"boxes {case['boxes'].shape}, iou_threshold={case['iou_threshold']}: {case['tag']}"

    def answer(self, impl, case):
        return {"keep": impl.nms(case["boxes"], case["scores"], case["iou_threshold"])}

    def truth(self, case):
        return {"keep": nms(case["boxes"], case["scores"], case["iou_threshold"])}

    def variant(self, case, mistake):
        return {"keep": _nms_variant(case["boxes"], case["scores"], case["iou_threshold"], mistake)}
