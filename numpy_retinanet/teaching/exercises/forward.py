"""What exercises 8-10, the detection steps written forward, share: rows, comparisons, the base class.

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

from numpy_retinanet.detection.matcher import IGNORED
from numpy_retinanet.teaching.exercises.base import Diagnosis, Exercise, Row

__all__ = ["ATOL", "EXACT", "DetectionRow", "ForwardExercise", "as_boxes", "count_of", "shown"]

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


def as_boxes(rows):
    """A float64 (N, 4) array from a list of (x1, y1, x2, y2); [] gives (0, 4)."""
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def _same(got, expected, exact):
    """Equal shapes and entries (exact), or entries equal up to rounding; nan equals nan."""
    if got is None or np.shape(got) != np.shape(expected):
        return False
    if exact:
        return bool(np.array_equal(got, expected))
    return bool(np.allclose(got, expected, rtol=0, atol=ATOL, equal_nan=True))


def shown(v):
    """An entry as a learner reads it: an int as an int, a float to 6 significant digits."""
    return f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v)


def count_of(n, one, many=None):
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
        return f"yours AP = {shown(got)}, expected {shown(expected)}"
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


class ForwardExercise(Exercise):
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
        return shown(v)

    def summary(self, name, value):
        """The measure of a passing row: what the right output was, in a few words."""
        if name == "AP":
            return f"AP = {shown(value)}"
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
