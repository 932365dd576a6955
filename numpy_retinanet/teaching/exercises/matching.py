"""Exercise 8: IoU and the anchor matcher (§4, "Matching"): ``box_iou`` and ``match_anchors``, checked case by case."""

from __future__ import annotations

import numpy as np

from numpy_retinanet.detection.boxes import box_iou
from numpy_retinanet.detection.matcher import BACKGROUND, IGNORED, match_anchors
from numpy_retinanet.teaching.exercises.forward import ForwardExercise, as_boxes, shown

__all__ = ["MatcherExercise"]



def _iou_variant(a, b, mistake):
    """IoU (N, M) as ``box_iou``, or as a mistake computes it."""
    plus = 1.0 if mistake == "plus_one" else 0.0  # pixel counting: x2 - x1 + 1
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + plus
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + plus
    if mistake != "no_clamp":
        iw, ih = np.maximum(iw, 0), np.maximum(ih, 0)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0] + plus) * (a[:, 3] - a[:, 1] + plus)
    area_b = (b[:, 2] - b[:, 0] + plus) * (b[:, 3] - b[:, 1] + plus)
    with np.errstate(divide="ignore", invalid="ignore"):  # an unclamped union can reach 0
        return inter / (area_a[:, None] + area_b[None, :] - inter)


def _matches_variant(iou, fg_iou, bg_iou, allow_low_quality, mistake):
    """Matches (M,) from IoU (M, G) as ``match_anchors``, or as a mistake computes them."""
    m, g = iou.shape
    if g == 0:
        return np.full(m, BACKGROUND, dtype=np.int64)
    if mistake == "fixed_thresholds":
        fg_iou, bg_iou = 0.5, 0.4
    best_box = np.argmax(iou, axis=1)
    if mistake == "tie_last_box":
        best_box = g - 1 - np.argmax(iou[:, ::-1], axis=1)
    best = iou.max(axis=1)
    foreground = best > fg_iou if mistake == "fg_strict" else best >= fg_iou
    background = best <= bg_iou if mistake == "bg_inclusive" else best < bg_iou
    matches = np.where(foreground, best_box, np.where(background, BACKGROUND, IGNORED)).astype(np.int64)
    if allow_low_quality or mistake == "always_low_quality":
        for box in range(g):
            highest = iou[:, box].max()
            if highest == 0 and mistake != "low_quality_zero":
                continue
            reaching = np.flatnonzero(iou[:, box] == highest)
            if mistake == "low_quality_first_only":
                reaching = reaching[:1]
            matches[reaching] = box if mistake == "low_quality_promoting_box" else best_box[reaching]
    return matches


class MatcherExercise(ForwardExercise):
    number = 8
    name = "match_anchors"
    functions = ("box_iou", "match_anchors")
    compared = "iou to 1e-12, matches exactly"
    signature = ("box_iou(a, b) -> iou (N, M); "
                 "match_anchors(anchors, boxes, fg_iou, bg_iou, allow_low_quality) -> matches (M,)")
    title = "IoU and the anchor matcher (§4, Matching)"
    package_answers = ("numpy_retinanet.detection.boxes.box_iou", "numpy_retinanet.detection.matcher.match_anchors")
    hints = (
        "IoU = area of the intersection / area of the union, with union = area(A) + area(B) - intersection. "
        "Coordinates are continuous: a box (x1, y1, x2, y2) is x2 - x1 wide and y2 - y1 high, no '+ 1'; "
        "a box from x = 2 to x = 4 is 2 wide, and two boxes that share only an edge share no area.",
        "The intersection of two boxes is a box: its left edge is the larger of the two left edges, its right "
        "edge the smaller of the two right edges (likewise top and bottom). For boxes apart, right - left is "
        "negative: the overlap is empty, so clamp each side at 0 before multiplying (two negative sides "
        "would multiply to a positive area).",
        "The thresholds (§4): take each anchor's best IoU over all boxes. best >= fg_iou: foreground, and "
        "the anchor takes that box (exactly fg_iou counts). best < bg_iou: background. In between, exactly "
        "bg_iou included: ignored. Two boxes with the same best IoU: the anchor takes the lower box index. "
        "Use the fg_iou and bg_iou you are given, not 0.5 and 0.4.",
        "The low-quality rule (only when allow_low_quality is True): for each box, find its highest IoU "
        "over all anchors; every anchor that reaches exactly that value becomes foreground (all of them on "
        "a tie, not only the first). Such an anchor takes its own best box, the one it overlaps most, "
        "which need not be the box that promoted it.",
        "A box whose highest IoU is 0 overlaps no anchor: it promotes nothing. Otherwise every anchor, "
        "all at IoU 0 with it, would become foreground for a box it does not touch.",
        "No boxes (G = 0): the IoU matrix has shape (M, 0), there is no best box to take, and every "
        "anchor is background: M times -1, as int64.",
    )
    mistakes = {
        "plus_one": ("your widths are x2 - x1 + 1 (pixel counting): in continuous coordinates they are "
                     "x2 - x1, so boxes that only touch come out overlapping and every IoU is off", 1),
        "no_clamp": ("the intersection's sides are not clamped at 0: boxes apart get a negative "
                     "intersection (or, apart on both axes, a positive one)", 2),
        "fg_strict": ("an anchor with IoU exactly fg_iou is ignored in yours: foreground is IoU >= fg_iou", 3),
        "bg_inclusive": ("an anchor with IoU exactly bg_iou is background in yours: background is "
                         "IoU < bg_iou, and exactly bg_iou is ignored", 3),
        "fixed_thresholds": ("your matcher uses 0.5 and 0.4 whatever fg_iou and bg_iou say", 3),
        "tie_last_box": ("an anchor with the same IoU with two boxes takes the later box in yours; "
                         "it takes the lower box index (the first maximum)", 3),
        "always_low_quality": ("the low-quality rule runs in yours even when allow_low_quality is False", 4),
        "low_quality_first_only": ("the low-quality rule promotes only the first of tied anchors in yours: "
                                   "every anchor that reaches the box's highest IoU is promoted", 4),
        "low_quality_promoting_box": ("a promoted anchor takes the box that promoted it in yours: it takes "
                                      "its own best box", 4),
        "low_quality_zero": ("a box that overlaps no anchor (highest IoU 0) makes anchors foreground through "
                             "the low-quality rule in yours", 5),
    }
    crash = ("your code raises when there are no boxes (G = 0): every anchor is then background", 6)

    def cases(self):
        rng = np.random.default_rng(8)
        x1, y1 = rng.integers(0, 24, (2, 24))
        w, h = rng.integers(4, 16, (2, 24))
        random_anchors = np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float64)

        def case(tag, anchors, boxes, fg_iou=0.5, bg_iou=0.4, allow_low_quality=True, empty=False):
            return dict(tag=tag, anchors=as_boxes(anchors), boxes=as_boxes(boxes), fg_iou=fg_iou, bg_iou=bg_iou,
                        allow_low_quality=allow_low_quality, empty=empty)

        return [
            # Box 0 touches anchor 0's right edge and anchor 1's left edge; box 1 lies 1 and 5 px
            # right of anchors 1 and 0 (apart in x, level in y) and apart from anchor 2 on both axes.
            case("disjoint boxes and touching edges: IoU 0", [[0, 0, 2, 2], [4, 0, 6, 2], [0, 4, 2, 6]],
                 [[2, 0, 4, 2], [7, 0, 9, 2]]),
            case("identical boxes: IoU 1", [[0, 0, 4, 4], [1, 1, 5, 5], [8, 8, 12, 12]], [[0, 0, 4, 4]]),
            # Anchor 1 and box 0: intersection 4, union 8; anchor 3 and box 1: 4 and 10. Anchors 0
            # and 2 copy the boxes, so the low-quality rule promotes nothing else.
            case("IoU exactly 0.5 = fg_iou and exactly 0.4 = bg_iou",
                 [[0, 0, 3, 2], [1, 0, 4, 2], [10, 0, 17, 1], [13, 0, 20, 1]], [[0, 0, 3, 2], [10, 0, 17, 1]]),
            # IoU 3/5 (anchor 0) and 6/20 (anchor 1): exactly the thresholds; box 2's best anchor has
            # IoU 0.5, below fg_iou, and the low-quality rule is off: no positive for boxes 1 and 2.
            case("IoU exactly 0.6 = fg_iou and 0.3 = bg_iou, low-quality off",
                 [[1, 0, 5, 1], [27, 0, 40, 1], [50, 0, 54, 1]], [[0, 0, 4, 1], [20, 0, 33, 1], [50, 0, 52, 1]],
                 fg_iou=0.6, bg_iou=0.3, allow_low_quality=False),
            # Anchor 0 overlaps boxes 0 and 1 by 10 of 14: the same IoU, 5/7. Anchors 1 and 2 copy
            # the boxes, so the low-quality rule promotes them, not anchor 0.
            case("two boxes equally good for one anchor", [[1, 0, 7, 2], [0, 0, 6, 2], [2, 0, 8, 2]],
                 [[0, 0, 6, 2], [2, 0, 8, 2]]),
            # Anchors 0 and 1 both overlap the box by 8 of 24 (IoU 1/3, background by the thresholds).
            case("two anchors equally good for one box (low-quality)",
                 [[2, 0, 6, 4], [6, 0, 10, 4], [20, 20, 24, 24]], [[4, 0, 8, 4]]),
            # Box 1's best anchor, anchor 1 (IoU 0.2; anchor 0 has 0.16), is a copy of box 0 (IoU 1).
            case("a box whose best anchor prefers another box (low-quality)",
                 [[6, 0, 10, 4], [6, 0, 10, 5], [20, 20, 24, 24]], [[6, 0, 10, 5], [0, 0, 10, 10]]),
            case("a box that overlaps no anchor (low-quality must not promote)",
                 [[0, 0, 4, 4], [4, 0, 8, 4]], [[0, 0, 4, 4], [50, 50, 60, 60]]),
            case("no boxes (G = 0)", [[0, 0, 4, 4], [2, 2, 6, 6], [10, 0, 14, 4]], [], empty=True),
            case("24 random anchors, 3 boxes", random_anchors, [[2, 3, 14, 12], [10, 10, 26, 30], [20, 0, 28, 8]]),
        ]

    def describe(self, case):
        rule = "on" if case["allow_low_quality"] else "off"
        return (f"anchors {case['anchors'].shape}, boxes {case['boxes'].shape}, fg_iou={case['fg_iou']}, "
                f"bg_iou={case['bg_iou']}, low-quality {rule}: {case['tag']}")

    def describe_entry(self, v):
        v = v.item()
        if isinstance(v, float):
            return shown(v)
        return {BACKGROUND: "-1 (background)", IGNORED: "-2 (ignored)"}.get(v, f"{v} (box {v})")

    def answer(self, impl, case):
        args = case["fg_iou"], case["bg_iou"], case["allow_low_quality"]
        return {"iou": impl.box_iou(case["anchors"], case["boxes"]),
                "matches": impl.match_anchors(case["anchors"], case["boxes"], *args)}

    def truth(self, case):
        args = case["fg_iou"], case["bg_iou"], case["allow_low_quality"]
        return {"iou": box_iou(case["anchors"], case["boxes"]),
                "matches": match_anchors(case["anchors"], case["boxes"], *args)}

    def variant(self, case, mistake):
        iou = _iou_variant(case["anchors"], case["boxes"], mistake)
        return {"iou": iou, "matches": _matches_variant(iou, case["fg_iou"], case["bg_iou"],
                                                        case["allow_low_quality"], mistake)}
