"""Tests for exercises 8-10, the detection steps (numpy_retinanet/teaching/exercises/: forward, matching, nms, average_precision).

A forward exercise is only as good as its cases: each must really sit on the boundary it names
(an IoU of exactly 0.5 in floating point, a true tie, an empty set), the reference solution must
pass them all, and each typical wrong answer must fail and be named. The wrong answers are the
reference solution with a line or two changed, as a learner would get it wrong; the checker must
name exactly that mistake, with its hint.
"""

import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from numpy_retinanet.detection.boxes import box_iou
from numpy_retinanet.evaluation.coco import RECALL_THRESHOLDS
from numpy_retinanet.teaching.exercises import EXERCISES as ALL_EXERCISES
from numpy_retinanet.teaching.exercises.runner import check_file, check_module, load_exercise_file

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = {n: ALL_EXERCISES[n] for n in (8, 9, 10)}
FILES = {8: "ex8_iou_and_matcher.py", 9: "ex9_nms.py", 10: "ex10_average_precision.py"}


def load(path):
    return load_exercise_file(path)


def solution(n):
    return ROOT / "lessons/exercises/solutions" / FILES[n]


def wrong_answer(tmp_path, n, changes):
    """The reference solution of exercise n with each (old, new) applied; old must occur once."""
    text = solution(n).read_text()
    for old, new in changes:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / FILES[n]
    path.write_text(text)
    return path


def report(path, capsys):
    """(exit status, the checker's report on one line: wrapped lines joined) of ``check_file(path)``."""
    status = check_file(path)
    return status, " ".join(capsys.readouterr().out.split())


def case(n, tag_start):
    """Exercise n's case whose tag starts with ``tag_start``."""
    (found,) = [c for c in EXERCISES[n].cases() if c["tag"].startswith(tag_start)]
    return found


# ----------------------------------------------------------------------------------------
# The reference passes; the stubs are not implemented
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", sorted(EXERCISES))
def test_the_reference_passes_every_case(n, capsys):
    ex = EXERCISES[n]
    status, out = report(solution(n), capsys)
    assert status == 0 and f"Exercise {n}: PASS" in out and "FAIL" not in out
    passed, rows = check_module(load(solution(n)))
    assert passed and {r.case for r in rows} == set(range(1, len(ex.cases()) + 1))
    assert ex.diagnose(ex.cases(), rows) == []


def vectorized_iou(a, b):
    """IoU written another way than the reference: corners by broadcasting."""
    sides = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
    inter = sides[..., 0] * sides[..., 1]
    area_a, area_b = np.prod(a[:, 2:] - a[:, :2], axis=1), np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def vectorized_match(anchors, boxes, fg_iou, bg_iou, allow_low_quality):
    if len(boxes) == 0:
        return np.full(len(anchors), -1, dtype=np.int64)
    iou = vectorized_iou(anchors, boxes)
    best, best_box = iou.max(axis=1), iou.argmax(axis=1)
    matches = np.select([best >= fg_iou, best >= bg_iou], [best_box, -2], -1)
    if allow_low_quality:
        highest = iou.max(axis=0)
        promoted = ((iou == highest) & (highest > 0)).any(axis=1)
        matches[promoted] = best_box[promoted]
    return matches.astype(np.int64)


def matrix_nms(boxes, scores, iou_threshold):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # Python's sort is stable
    iou, alive, keep = vectorized_iou(boxes, boxes), np.ones(len(scores), dtype=bool), []
    for i in order:
        if alive[i]:
            keep.append(i)
            alive &= iou[i] <= iou_threshold
    return np.array(keep, dtype=np.int64)


def cumulative_ap(detections, ground_truths, iou_threshold):
    num_gt = sum(len(g["boxes"]) for g in ground_truths)
    if num_gt == 0:
        return np.nan
    flags, scores = [], []
    for det, gt in zip(detections, ground_truths):
        order = sorted(range(len(det["scores"])), key=lambda d: -det["scores"][d])
        iou, free = vectorized_iou(det["boxes"][order], gt["boxes"]), np.ones(len(gt["boxes"]), dtype=bool)
        for row in iou:
            ok = free & (row >= iou_threshold)
            if ok.any():
                free[len(row) - 1 - np.argmax(np.where(ok, row, -1)[::-1])] = False  # last of the best
            flags.append(ok.any())
        scores += [det["scores"][d] for d in order]
    ranked = np.array(flags, dtype=bool)[sorted(range(len(scores)), key=lambda d: -scores[d])]
    tp = np.cumsum(ranked)
    precision = np.maximum.accumulate((tp / np.arange(1, len(tp) + 1))[::-1])[::-1]
    at = np.searchsorted(tp / num_gt, RECALL_THRESHOLDS)
    return float(np.where(at < len(tp), np.append(precision, 0.0)[at], 0.0).mean())


@pytest.mark.parametrize("n, names", [
    (8, {"box_iou": vectorized_iou, "match_anchors": vectorized_match}),
    (9, {"nms": matrix_nms}),
    (10, {"average_precision": cumulative_ap}),
])
def test_a_correct_answer_written_another_way_passes(n, names):
    module = types.ModuleType(f"another_answer_{n}")
    module.EXERCISE = n
    for name, f in names.items():
        setattr(module, name, f)
    passed, rows = check_module(module)
    assert passed, [r.measure for r in rows if not r.passed]


@pytest.mark.parametrize("n", sorted(EXERCISES))
def test_the_untouched_stub_is_not_implemented(n, capsys):
    path = ROOT / "lessons/exercises" / FILES[n]
    assert load(path).EXERCISE == n
    status, out = report(path, capsys)
    assert status == 1 and f"Exercise {n}: not implemented yet" in out
    assert f"numpy-retinanet check {path} --hint 1" in out  # where to start


@pytest.mark.parametrize("n, call", [
    (8, "from numpy_retinanet.detection.boxes import box_iou\n"
        "from numpy_retinanet.detection.matcher import match_anchors\n"),
    (9, "from numpy_retinanet.detection.boxes import nms as _nms\n\n\n"
        "def nms(boxes, scores, iou_threshold):\n    return _nms(boxes, scores, iou_threshold)\n"),
    (10, "from numpy_retinanet.evaluation.coco import evaluate_detections\n\n\n"
         "def average_precision(detections, ground_truths, iou_threshold):\n"
         "    dets = [dict(d, labels=np.zeros(len(d['boxes']), int)) for d in detections]\n"
         "    gts = [dict(g, labels=np.zeros(len(g['boxes']), int)) for g in ground_truths]\n"
         "    return evaluate_detections(dets, gts, 1, [iou_threshold], 1000)['per_class_AP'][0]\n"),
])
def test_an_answer_that_calls_the_package_is_reported_not_passed(tmp_path, capsys, n, call):
    path = tmp_path / FILES[n]
    path.write_text(f"import numpy as np\n\nEXERCISE = {n}\n{call}")
    status, out = report(path, capsys)
    assert status == 1 and "PASS" not in out
    if n == 8:  # imported as it is: the runner sees where the exercise's function comes from
        assert ("your answer calls the package's match_anchors (imported from numpy_retinanet.detection.matcher): "
                "write it yourself") in out
    else:  # called from the learner's own function: the runner sees the call
        assert f"Exercise {n}: FAIL: your answer calls the package's" in out


def test_an_imported_box_iou_beside_an_own_matcher_is_reported(tmp_path, capsys):
    # The exercise is named by match_anchors, which is the learner's; box_iou, the second function
    # asked for, is the package's: exercise 8 itself tells.
    path = tmp_path / FILES[8]
    path.write_text("EXERCISE = 8\nfrom numpy_retinanet.detection.boxes import box_iou  # noqa: F401\n\n\n"
                    "def match_anchors(anchors, boxes, fg_iou, bg_iou, allow_low_quality):\n    return None\n")
    status, out = report(path, capsys)
    assert status == 1 and "yours box_iou is the package's own, imported" in out


@pytest.mark.parametrize("n", sorted(EXERCISES))
def test_the_stub_counts_the_cases_and_hints_there_are(n):
    words = {"four": 4, "six": 6, "eight": 8, "ten": 10, "eleven": 11}
    doc = " ".join(load(ROOT / "lessons/exercises" / FILES[n]).__doc__.split())
    (cases,) = re.findall(r"(\w+) small cases", doc)
    (hints,) = re.findall(r"the first of (\w+) hints", doc)
    assert words[cases.lower()] == len(EXERCISES[n].cases()) and words[hints] == len(EXERCISES[n].hints)


@pytest.mark.parametrize("n", sorted(EXERCISES))
def test_every_case_has_a_tag_and_the_hints_the_mistakes_name_exist(n):
    ex = EXERCISES[n]
    tags = [c["tag"] for c in ex.cases()]
    assert len(set(tags)) == len(tags)
    assert all(ex.describe(c).endswith(c["tag"]) for c in ex.cases())
    for _, hint in list(ex.mistakes.values()) + [ex.crash]:
        assert 1 <= hint <= len(ex.hints)


def test_a_failing_row_names_the_case_the_output_and_the_first_difference():
    ex = EXERCISES[9]
    wrong = load(solution(9))
    wrong.nms = lambda boxes, scores, t: np.arange(len(boxes), dtype=np.int64)  # keeps everything
    rows = ex.check_case(wrong, None, 3, case(9, "IoU exactly"))
    assert [(r.name, r.passed) for r in rows] == [("keep", True)]  # IoU = threshold: both stay
    (row,) = ex.check_case(wrong, None, 4, case(9, "a chain"))
    assert not row.passed and row.case == 4 and row.name == "keep"
    assert row.measure == "case 4 (a chain: A takes out B, B would take out C): yours keep = [0, 1, 2], expected [1, 0]"


def test_a_matcher_row_says_what_each_value_means():
    ex = EXERCISES[8]
    wrong = load(solution(8))
    wrong.match_anchors = lambda anchors, boxes, *args: np.full(len(anchors), -1, dtype=np.int64)
    rows = ex.check_case(wrong, None, 3, case(8, "IoU exactly 0.5"))
    (row,) = [r for r in rows if r.name == "matches"]
    assert row.measure == ("case 3 (IoU exactly 0.5 = fg_iou and exactly 0.4 = bg_iou): yours matches[0] = "
                           "-1 (background), expected 0 (box 0); 4 of 4 differ")


@pytest.mark.parametrize("returned, problem", [
    ([0, 1], "yours keep is a list, expected a NumPy array of shape (2,)"),
    (np.array([0.0, 1.0]), "yours keep has dtype float64, expected integers"),
    (np.array([[0, 1]]), "yours keep has shape (1, 2), expected (n_kept,)"),
])
def test_an_output_of_the_wrong_type_fails_with_what_was_expected(returned, problem):
    ex = EXERCISES[9]
    wrong = load(solution(9))
    wrong.nms = lambda boxes, scores, t: returned
    (row,) = ex.check_case(wrong, None, 3, case(9, "IoU exactly"))
    assert not row.passed and row.measure.endswith(problem)


# ----------------------------------------------------------------------------------------
# The cases sit on their boundaries
# ----------------------------------------------------------------------------------------


def test_exercise_8_cases_hit_their_boundaries():
    c = case(8, "disjoint boxes and touching edges")
    a, b = c["anchors"], c["boxes"]
    assert np.all(box_iou(a, b) == 0)
    assert a[0, 2] == b[0, 0] and a[1, 0] == b[0, 2]  # box 0 touches anchors 0 and 1
    side = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    assert side.min() < 0  # apart in x: an unclamped intersection is negative

    c = case(8, "identical boxes")
    assert box_iou(c["anchors"], c["boxes"])[0, 0] == 1

    c = case(8, "IoU exactly 0.5")
    iou = box_iou(c["anchors"], c["boxes"])
    assert iou[1, 0] == c["fg_iou"] == 0.5 and iou[3, 1] == c["bg_iou"] == 0.4
    assert iou[0, 0] == iou[2, 1] == 1  # each box has a better anchor: the low-quality rule stays out

    c = case(8, "IoU exactly 0.6")
    iou = box_iou(c["anchors"], c["boxes"])
    assert iou[0, 0] == c["fg_iou"] == 0.6 and iou[1, 1] == c["bg_iou"] == 0.3
    assert not c["allow_low_quality"] and iou.max(axis=0)[2] < c["fg_iou"]  # box 2: no anchor reaches fg_iou

    c = case(8, "two boxes equally good")
    iou = box_iou(c["anchors"], c["boxes"])
    assert iou[0, 0] == iou[0, 1] == iou[0].max() > c["fg_iou"]
    assert np.all(iou[0] < iou.max(axis=0))  # neither box promotes anchor 0

    c = case(8, "two anchors equally good")
    iou = box_iou(c["anchors"], c["boxes"])
    assert iou[0, 0] == iou[1, 0] == iou[:, 0].max() < c["bg_iou"]

    c = case(8, "a box whose best anchor prefers another box")
    iou = box_iou(c["anchors"], c["boxes"])
    best_anchor = iou[:, 1].argmax()
    assert iou[best_anchor].argmax() == 0 and iou[best_anchor, 1] < c["bg_iou"]

    c = case(8, "a box that overlaps no anchor")
    assert np.all(box_iou(c["anchors"], c["boxes"])[:, 1] == 0) and c["allow_low_quality"]

    assert case(8, "no boxes")["boxes"].shape == (0, 4)


def test_exercise_9_cases_hit_their_boundaries():
    c = case(9, "IoU exactly")
    assert box_iou(c["boxes"], c["boxes"])[0, 1] == c["iou_threshold"] == 0.5

    c = case(9, "a chain")
    iou = box_iou(c["boxes"], c["boxes"])
    a, b, cc = np.argsort(-c["scores"])
    t = c["iou_threshold"]
    assert iou[a, b] > t and iou[b, cc] > t and iou[a, cc] <= t
    assert list(np.argsort(-c["scores"])) != sorted(range(3))  # kept order is not index order

    c = case(9, "equal scores")
    assert len(set(c["scores"])) == 1 and box_iou(c["boxes"], c["boxes"])[0, 1] > c["iou_threshold"]

    c = case(9, "iou_threshold 0")
    iou = box_iou(c["boxes"], c["boxes"])
    assert c["iou_threshold"] == 0 and iou[0, 1] == 0 and iou[0, 2] > 0

    c = case(9, "iou_threshold 1")
    assert c["iou_threshold"] == 1 and box_iou(c["boxes"], c["boxes"])[0, 1] == 1

    assert case(9, "no boxes")["boxes"].shape == (0, 4) and case(9, "one box")["boxes"].shape == (1, 4)


def test_exercise_10_cases_hit_their_boundaries():
    c = case(10, "IoU exactly")
    det, gt = c["detections"][0], c["ground_truths"][0]
    assert box_iou(det["boxes"], gt["boxes"])[0, 0] == c["iou_threshold"] == 0.5

    c = case(10, "a detection overlapping two")
    det, gt = c["detections"][0], c["ground_truths"][0]
    iou = box_iou(det["boxes"], gt["boxes"])
    assert iou[0, 0] >= 0.5 and iou[0, 1] > iou[0, 0]  # both match; box 1 better
    assert iou[1, 1] == 1 and iou[1, 0] < 0.5  # the second detection needs box 1

    c = case(10, "equal IoU")
    iou = box_iou(c["detections"][0]["boxes"], c["ground_truths"][0]["boxes"])
    assert iou[0, 1] == iou[0, 2] > iou[0, 0] >= c["iou_threshold"]  # a tie, and a worse box before it
    assert iou[1, 2] == iou[2, 1] == 1  # copies of boxes 2 and 1, which overlap no other box enough
    assert np.all(np.delete(iou[1], 2) < c["iou_threshold"]) and np.all(np.delete(iou[2], 1) < c["iou_threshold"])

    c = case(10, "equal scores")
    first, second = c["detections"]
    assert first["scores"][0] == second["scores"][0] == max(first["scores"].max(), second["scores"].max())
    assert box_iou(first["boxes"][:1], c["ground_truths"][0]["boxes"]).max() == 0  # a miss, first in order

    c = case(10, "an image with no ground truth")
    assert len(c["ground_truths"][1]["boxes"]) == 0 and len(c["detections"][1]["boxes"]) > 0
    assert sum(len(g["boxes"]) for g in case(10, "no ground truth in any")["ground_truths"]) == 0
    assert sum(len(d["boxes"]) for d in case(10, "no detections")["detections"]) == 0
    for c in EXERCISES[10].cases():  # every detection list fits pycocotools' 100 per image
        assert all(len(d["boxes"]) < 100 for d in c["detections"])


# ----------------------------------------------------------------------------------------
# Typical wrong answers fail and are named
# ----------------------------------------------------------------------------------------

WRONG = {
    8: {
        "plus_one": [("w = max(min(ax2, bx2) - max(ax1, bx1), 0.0)", "w = max(min(ax2, bx2) - max(ax1, bx1) + 1, 0.0)"),
                     ("h = max(min(ay2, by2) - max(ay1, by1), 0.0)", "h = max(min(ay2, by2) - max(ay1, by1) + 1, 0.0)"),
                     ("union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter",
                      "union = (ax2 - ax1 + 1) * (ay2 - ay1 + 1) + (bx2 - bx1 + 1) * (by2 - by1 + 1) - inter")],
        "no_clamp": [("w = max(min(ax2, bx2) - max(ax1, bx1), 0.0)", "w = min(ax2, bx2) - max(ax1, bx1)"),
                     ("h = max(min(ay2, by2) - max(ay1, by1), 0.0)", "h = min(ay2, by2) - max(ay1, by1)")],
        "fg_strict": [("if iou[i, best] >= fg_iou:", "if iou[i, best] > fg_iou:")],
        "bg_inclusive": [("elif iou[i, best] >= bg_iou:", "elif iou[i, best] > bg_iou:")],
        "fixed_thresholds": [("if iou[i, best] >= fg_iou:", "if iou[i, best] >= 0.5:"),
                             ("elif iou[i, best] >= bg_iou:", "elif iou[i, best] >= 0.4:")],
        "tie_last_box": [("best = int(np.argmax(iou[i]))", "best = len(boxes) - 1 - int(np.argmax(iou[i][::-1]))")],
        "always_low_quality": [("if allow_low_quality:", "if True:")],
        "low_quality_first_only": [(
            "            for i in range(len(anchors)):\n"
            "                if iou[i, g] == highest:  # every anchor that reaches it, all of them on a tie\n"
            "                    matches[i] = int(np.argmax(iou[i]))  # the anchor's own best box\n",
            "            i = int(np.argmax(iou[:, g]))\n"
            "            matches[i] = int(np.argmax(iou[i]))\n")],
        "low_quality_promoting_box": [("matches[i] = int(np.argmax(iou[i]))  # the anchor's own best box",
                                       "matches[i] = g")],
        "low_quality_zero": [("            if highest == 0:\n                continue", "")],
        "crash": [("    if len(boxes) == 0:\n        return matches", "")],
    },
    9: {
        "suppress_at_threshold": [("if v <= iou_threshold]", "if v < iou_threshold]")],
        "reversed_ties": [('np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")',
                           "np.argsort(np.asarray(scores, dtype=np.float64))[::-1]")],
        "suppressed_suppress": [(
            "    while remaining:\n"
            "        best = remaining.pop(0)\n"
            "        keep.append(best)\n"
            "        iou = box_iou(boxes[best : best + 1], boxes[remaining])[0] if remaining else []\n"
            "        # Only a kept box suppresses, and only by an IoU strictly above the threshold.\n"
            "        remaining = [r for r, v in zip(remaining, iou) if v <= iou_threshold]\n",
            "    for rank, i in enumerate(remaining):  # drop a box that any better box overlaps\n"
            "        better = remaining[:rank]\n"
            "        if not better or box_iou(boxes[i : i + 1], boxes[better])[0].max() <= iou_threshold:\n"
            "            keep.append(i)\n")],
        "input_order": [("return np.asarray(keep, dtype=np.int64)", "return np.sort(np.asarray(keep, dtype=np.int64))")],
        "crash": [("return np.asarray(keep, dtype=np.int64)", "return np.stack(keep)")],
    },
    10: {
        "eleven_points": [("for r in RECALL_THRESHOLDS:", "for r in np.linspace(0, 1, 11):"),
                          ("return total / len(RECALL_THRESHOLDS)", "return total / 11")],
        "no_envelope": [("    for i in range(len(precision) - 2, -1, -1):\n"
                         "        precision[i] = max(precision[i], precision[i + 1])\n", "")],
        "raw_area": [("    for i in range(len(precision) - 2, -1, -1):\n"
                      "        precision[i] = max(precision[i], precision[i + 1])\n", ""),
                     ("    total = 0.0\n", "    return float(np.sum(precision * np.diff(recall, prepend=0.0)))\n")],
        "double_match": [("if taken[g] or iou[g] < iou_threshold:", "if iou[g] < iou_threshold:")],
        "num_gt_from_matches": [("recall = tp / num_gt", "recall = tp / hits.sum()")],
        "first_above_threshold": [("if best is None or iou[g] >= iou[best]:", "if best is None:")],
        "strict_threshold": [("iou[g] < iou_threshold:", "iou[g] <= iou_threshold:")],
        "tie_first_gt": [("iou[g] >= iou[best]:", "iou[g] > iou[best]:")],
        "reversed_ties": [('np.argsort(-det["scores"], kind="stable")', 'np.argsort(det["scores"])[::-1]'),
                          ('np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")',
                           "np.argsort(np.asarray(scores, dtype=np.float64))[::-1]")],
        "zero_without_gt": [('return float("nan")', "return 0.0")],
        "skip_images_without_gt": [("        taken = [False] * len(gt[\"boxes\"])\n",
                                    "        if len(gt[\"boxes\"]) == 0:\n            continue\n"
                                    "        taken = [False] * len(gt[\"boxes\"])\n")],
        "crash": [("hits = np.asarray(hits, dtype=bool)[order]", "hits = np.stack(hits)[order]")],
    },
}


@pytest.mark.parametrize("n, mistake", [(n, m) for n in sorted(WRONG) for m in WRONG[n]])
def test_a_typical_wrong_answer_fails_and_is_named(tmp_path, capsys, n, mistake):
    ex = EXERCISES[n]
    path = wrong_answer(tmp_path, n, WRONG[n][mistake])
    status, out = report(path, capsys)
    sentence, hint = ex.crash if mistake == "crash" else ex.mistakes[mistake]
    assert status == 1 and f"Exercise {n}: FAIL" in out
    assert out.count("Likely mistake:") == 1  # that mistake and no other
    assert f"Likely mistake: {sentence} hint {hint} helps: numpy-retinanet check {path} --hint {hint}" in out


@pytest.mark.parametrize("n", sorted(EXERCISES))
def test_the_models_of_the_mistakes_are_built_on_the_right_algorithm(n):
    # variant(case, None) is the checker's own model without a mistake: it must be the package.
    ex = EXERCISES[n]
    for c in ex.cases():
        truth, model = ex.truth(c), ex.variant(c, None)
        for name in truth:
            np.testing.assert_allclose(model[name], truth[name], rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", sorted(WRONG))
def test_every_mistake_the_checker_knows_is_tried(n):
    assert set(WRONG[n]) == set(EXERCISES[n].mistakes) | {"crash"}


def test_the_command_line_names_the_mistake_and_prints_its_hint(tmp_path):
    path = wrong_answer(tmp_path, 9, WRONG[9]["suppress_at_threshold"])
    command = [sys.executable, "-m", "numpy_retinanet", "check", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    sentence, hint = EXERCISES[9].mistakes["suppress_at_threshold"]
    assert done.returncode == 1 and sentence in " ".join(done.stdout.split())
    done = subprocess.run(command + ["--hint", str(hint)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and EXERCISES[9].hints[hint - 1] in " ".join(done.stdout.split())


def test_a_reference_that_disagrees_with_the_package_is_reported_as_a_bug():
    ex = EXERCISES[9]
    right, broken = load(solution(9)), load(solution(9))
    broken.nms = lambda boxes, scores, t: np.arange(len(boxes), dtype=np.int64)
    rows = ex.check_case(right, broken, 4, case(9, "a chain"))
    assert [(r.name, r.passed) for r in rows] == [("keep", True), ("reference keep", False)]
    assert "the reference solution disagrees with the package" in rows[1].note
