"""Exercises 8-10: the detection steps, written forward and checked case by case.

8. IoU and the anchor matcher (§4, "Matching"): ``box_iou`` and ``match_anchors``.
9. Non-maximum suppression (§4.1, "Inference"): ``nms``.
10. COCO average precision of one class at one IoU threshold (§5): ``average_precision``.

The ground truth of every case is the package's own function on the same inputs
(``detection.boxes``, ``detection.matcher``, ``evaluation.coco``), and the reference
solution too when the repository's ``lessons/exercises/solutions/`` is there. Each case is
written out by hand to sit on one boundary: an IoU exactly at a threshold, a tie, an empty
set, a box no anchor overlaps.

Outputs are exact (indices and labels) or nearly so (an IoU, an AP), so a mistake is not a
large error but a *different answer*. The checker knows each typical mistake as a small
variant of the right algorithm (``variant``) and names the one whose outputs equal yours on
every failing row.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field

import numpy as np

from numpy_retinanet.detection.boxes import box_iou, nms
from numpy_retinanet.detection.matcher import BACKGROUND, IGNORED, match_anchors
from numpy_retinanet.evaluation.coco import RECALL_THRESHOLDS, evaluate_detections
from numpy_retinanet.teaching.exercises.base import Diagnosis, Exercise, Row

__all__ = ["DETECTION_EXERCISES", "AveragePrecisionExercise", "DetectionRow", "MatcherExercise", "NmsExercise"]

# An IoU or an AP computed in another order than the package's agrees to rounding (~1e-16);
# every mistake below changes it by 1e-3 or more.
ATOL = 1e-12
# The outputs that are indices or labels: compared exactly.
EXACT = ("matches", "keep")


@dataclass
class DetectionRow(Row):
    """A Row that keeps both outputs, so ``diagnose`` can hold yours against each mistake.

    got : your output (None when it could not be read as the output asked for).
    expected : the package's output.
    """

    got: object = field(default=None, repr=False, compare=False)
    expected: object = field(default=None, repr=False, compare=False)


def _boxes(rows):
    """A float64 (N, 4) array from a list of (x1, y1, x2, y2); [] gives (0, 4)."""
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def _same(got, expected, exact):
    """Equal shapes and entries (exact), or entries equal up to rounding; nan equals nan."""
    if got is None or np.shape(got) != np.shape(expected):
        return False
    if exact:
        return bool(np.array_equal(got, expected))
    return bool(np.allclose(got, expected, rtol=0, atol=ATOL, equal_nan=True))


def _value(v):
    """An entry as a learner reads it: an int as an int, a float to 6 significant digits."""
    return f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v)


def _count(n, one, many=None):
    """``n`` and the noun, plural unless n is 1: "1 image", "3 images"."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _read(value, name, expected):
    """``value`` as an array comparable with ``expected`` (an array, or a float for "AP").

    Returns (array or None, problem): problem is one line when ``value`` is not what was asked.
    """
    if name == "AP":
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return float(value), ""
        if isinstance(value, np.ndarray) and value.shape == ():
            return float(value), ""
        return None, f"yours AP is a {type(value).__name__}, expected a float"
    if not isinstance(value, np.ndarray):
        return None, f"yours {name} is a {type(value).__name__}, expected a NumPy array of shape {expected.shape}"
    kind = "f" if expected.dtype.kind == "f" else "iu"
    if value.dtype.kind not in kind:
        what = "floats" if kind == "f" else "integers"
        return None, f"yours {name} has dtype {value.dtype}, expected {what}"
    if name == "keep" and value.ndim != 1:  # any number kept, but in a flat list
        return None, f"yours {name} has shape {value.shape}, expected (n_kept,)"
    if name != "keep" and value.shape != expected.shape:
        return None, f"yours {name} has shape {value.shape}, expected {expected.shape}"
    return value, ""


def _difference(name, got, expected, describe_entry):
    """One line naming where ``got`` first differs from ``expected``."""
    if name == "AP":
        return f"yours AP = {_value(got)}, expected {_value(expected)}"
    if name == "keep":
        return f"yours keep = {got.tolist()}, expected {expected.tolist()}"
    if np.issubdtype(expected.dtype, np.floating):
        wrong = ~np.isclose(got, expected, rtol=0, atol=ATOL)
    else:
        wrong = got != expected
    where = tuple(int(i) for i in np.argwhere(wrong)[0])
    index = ", ".join(str(i) for i in where)
    text = (f"yours {name}[{index}] = {describe_entry(got[where])}, "
            f"expected {describe_entry(expected[where])}")
    if wrong.sum() > 1:
        text += f"; {int(wrong.sum())} of {got.size} differ"
    return text


def _package_function(dotted):
    """The package's function named ``dotted`` ("numpy_retinanet.detection.boxes.nms")."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


class _ForwardExercise(Exercise):
    """What exercises 8-10 share: compare outputs with the package's, name mistakes by variants.

    A subclass defines ``cases``, ``describe``, and

    answer(impl, case) -> {output name: what ``impl`` returned}, on copies of the case;
    truth(case) -> {output name: the package's output};
    variant(case, mistake) -> {output name: what that mistake computes};
    mistakes : {mistake: (the sentence naming it, the hint that helps)};
    crash : the sentence naming an answer that raises on the empty cases (``case["empty"]``),
        and its hint.
    functions : the names of the functions the learner writes.
    compared : how the rows compare, for the legend ("keep exactly").
    """

    functions: tuple[str, ...] = ()
    compared: str = ""

    mistakes: dict[str, tuple[str, int]] = {}
    crash: tuple[str, int] = ("", 1)

    def answer(self, impl, case):
        raise NotImplementedError

    def truth(self, case):
        raise NotImplementedError

    def variant(self, case, mistake):
        raise NotImplementedError

    def legend(self):
        names = " and ".join(self.functions)
        return (f"Each row: one output of your {names} on one case against the package's on the same "
                f"inputs ({self.compared}). A case sits on a boundary (a tie, an empty set, an IoU exactly "
                "at a threshold), so a mistake shows as a different answer, not a large error.")

    def describe_entry(self, v):
        return _value(v)

    def summary(self, name, value):
        """The measure of a passing row: what the right output was, in a few words."""
        if name == "AP":
            return f"AP = {_value(value)}"
        if name == "keep":
            return f"keep = {value.tolist()}"
        if name == "matches":
            fg, ign = int(np.sum(value >= 0)), int(np.sum(value == IGNORED))
            return f"{fg} foreground, {ign} ignored, {value.size - fg - ign} background"
        return f"{name} {value.shape} equal to the package's"

    def check_case(self, impl, reference, k, case):
        # The package's own function imported under the asked name: the checker would call it
        # directly, which the runner's watch for calls from the learner's file cannot see.
        package = [_package_function(d) for d in self.package_answers]
        imported = [f for f in self.functions if any(getattr(impl, f, None) is p for p in package)]
        if imported:
            return [DetectionRow(k, f, False, f"case {k} ({case['tag']}): yours {f} is the package's own, "
                                 "imported", "an imported answer is not yours: write it yourself") for f in imported]
        expected = self.truth(case)
        got = self.answer(impl, copy.deepcopy(case))
        rows = []
        for name, want in expected.items():
            value, problem = _read(got[name], name, want)
            if problem:
                rows.append(DetectionRow(k, name, False, f"case {k} ({case['tag']}): {problem}", expected=want))
            elif not _same(value, want, name in EXACT):
                difference = _difference(name, value, want, self.describe_entry)
                rows.append(DetectionRow(k, name, False, f"case {k} ({case['tag']}): {difference}",
                                         got=value, expected=want))
            else:
                rows.append(DetectionRow(k, name, True, self.summary(name, value), got=value, expected=want))
        if reference is not None:
            # The reference and the package must agree; if they do not, the repository has a bug.
            ref = self.answer(reference, copy.deepcopy(case))
            for name, want in expected.items():
                value, problem = _read(ref[name], name, want)
                if problem or not _same(value, want, name in EXACT):
                    rows.append(DetectionRow(k, f"reference {name}", False, f"case {k} ({case['tag']})",
                                             "the reference solution disagrees with the package: please report it"))
        return rows

    def diagnose(self, cases, rows):
        compared = [r for r in rows if isinstance(r, DetectionRow) and r.got is not None]
        wrong = [r for r in compared if not r.passed]
        found = []
        for mistake, (sentence, hint) in self.mistakes.items():
            if wrong and all(_same(r.got, self.variant(cases[r.case - 1], mistake)[r.name],
                                   r.name in EXACT) for r in wrong):
                found.append(Diagnosis(sentence, hint))
        # A row that is not ours comes from the runner: the answer raised on that case.
        raised = {r.case for r in rows if not r.passed and not isinstance(r, DetectionRow)}
        if compared and any(cases[k - 1].get("empty") for k in raised):
            found.append(Diagnosis(*self.crash))
        return found


# ----------------------------------------------------------------------------------------
# Exercise 8: IoU and the matcher
# ----------------------------------------------------------------------------------------


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


class MatcherExercise(_ForwardExercise):
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
            return dict(tag=tag, anchors=_boxes(anchors), boxes=_boxes(boxes), fg_iou=fg_iou, bg_iou=bg_iou,
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
            return _value(v)
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


# ----------------------------------------------------------------------------------------
# Exercise 9: NMS
# ----------------------------------------------------------------------------------------


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


class NmsExercise(_ForwardExercise):
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
            return dict(tag=tag, boxes=_boxes(boxes), scores=np.array(scores, dtype=np.float64),
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


# ----------------------------------------------------------------------------------------
# Exercise 10: average precision
# ----------------------------------------------------------------------------------------


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


class AveragePrecisionExercise(_ForwardExercise):
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
        gts = [_boxes(np.concatenate([xy, xy + rng.uniform(8, 20, (n, 2))], axis=1))
               for xy, n in ((rng.uniform(0, 60, (3, 2)), 3), (rng.uniform(0, 60, (2, 2)), 2),
                             (rng.uniform(0, 60, (4, 2)), 4))]
        # Per image: each box found by a jittered copy, plus two random false positives.
        dets = [np.concatenate([g + rng.normal(0, 1.5, g.shape), _boxes(
            np.concatenate([xy, xy + 10], axis=1))]) for g, xy in zip(gts, rng.uniform(0, 60, (3, 2, 2)))]

        def image(boxes, scores=None):
            boxes = _boxes(boxes)
            return {"boxes": boxes, "scores": np.array(scores if scores is not None else [], dtype=np.float64)}

        def case(tag, detections, ground_truths, iou_threshold=0.5, empty=False):
            return dict(tag=tag, detections=detections, ground_truths=[{"boxes": _boxes(g)} for g in ground_truths],
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
        return (f"{_count(len(case['detections']), 'image')}, {_count(n_det, 'detection')}, "
                f"{_count(n_gt, 'ground-truth box', 'ground-truth boxes')}, "
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


DETECTION_EXERCISES = (MatcherExercise(), NmsExercise(), AveragePrecisionExercise())
