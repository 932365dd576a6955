"""Tests for the exercise checker of the gradient exercises 1-7 (numpy_retinanet/teaching/exercises/) and
their stubs in lessons/exercises (exercises 8-10: tests/test_exercises_detection.py).

The checker is only useful if it passes every correct answer and fails the mistakes learners
actually make, at the rows where they make them, naming the mistake. So for each exercise the
reference solution (lessons/exercises/solutions/, read from the repository as the checker reads
it) and independently written correct answers pass; several typical wrong answers fail, and the
failing rows and the diagnosis printed are pinned down; the untouched stub says "not implemented
yet" and exits 1; an answer that calls the package's own function is reported as such. Files
that cannot be checked exit 2 with a message, and so does a hint number out of range.
"""

import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from numpy_retinanet.nn import functional as F
from numpy_retinanet.teaching.exercises import EXERCISES, runner
from numpy_retinanet.teaching.exercises.runner import (
    check_file,
    check_module,
    load_exercise_file,
    load_solution,
    show_hint,
)

ROOT = Path(__file__).resolve().parents[1]
STUBS = {
    1: ROOT / "lessons/exercises/ex1_focal_loss_backward.py",
    2: ROOT / "lessons/exercises/ex2_smooth_l1_backward.py",
    3: ROOT / "lessons/exercises/ex3_conv2d_backward.py",
    4: ROOT / "lessons/exercises/ex4_upsample_backward.py",
    5: ROOT / "lessons/exercises/ex5_shared_head_backward.py",
    6: ROOT / "lessons/exercises/ex6_group_norm_backward.py",
    7: ROOT / "lessons/exercises/ex7_residual_block_backward.py",
}
SOL = {n: load_solution(n) for n in STUBS}


def answer(exercise, **names):
    """An in-memory learner's module: EXERCISE = exercise and the given names."""
    m = types.ModuleType(f"answer_{exercise}")
    m.EXERCISE = exercise
    for k, v in names.items():
        setattr(m, k, v)
    return m


def label(r):
    return f"case {r.case} {r.name}".rstrip()


def failing(rows):
    return {label(r) for r in rows if not r.passed}


def check(module, capsys):
    """(passed, rows, printed report with its lines joined) of a verbose check of ``module``."""
    passed, rows = check_module(module, verbose=True, path="ANSWER.py")
    out = capsys.readouterr().out
    return passed, rows, out


def said(out):
    """The report with wrapped lines joined, so that a sentence can be searched whole."""
    return re.sub(r"\s*\n\s*", " ", out)


def assert_diagnosis(out, mistake, hint):
    text = said(out)
    assert f"Likely mistake: {mistake}" in text, out
    assert f"hint {hint} helps: numpy-retinanet check ANSWER.py --hint {hint}" in text, out


# ----------------------------------------------------------------------------------------
# Every exercise: the reference passes, the stub says so, hints, the package's own answer
# ----------------------------------------------------------------------------------------


def test_the_solutions_live_in_the_repository_not_in_the_package():
    assert runner.SOLUTIONS_DIR == ROOT / "lessons/exercises/solutions"
    for n, stub in STUBS.items():
        assert (runner.SOLUTIONS_DIR / stub.name).is_file()
        assert SOL[n].EXERCISE == n
    import numpy_retinanet

    package = Path(numpy_retinanet.__file__).parent
    assert not list(package.rglob("*solution*"))


@pytest.mark.parametrize("n", sorted(STUBS))
def test_the_reference_solution_passes(n, capsys):
    assert check_file(runner.SOLUTIONS_DIR / STUBS[n].name) == 0
    out = capsys.readouterr().out
    assert f"Exercise {n}: PASS" in out and "FAIL" not in out and "Likely mistake" not in out
    passed, rows = check_module(SOL[n])
    assert passed and rows and all(r.checked > 0 for r in rows)


def test_the_number_of_rows_is_one_per_input_per_case():
    counts = {n: len(check_module(SOL[n])[1]) for n in STUBS}
    # 5 + 4 cases of one input; 5 conv cases of (x, w, b); 4 upsampling cases; head cases of w, b and
    # 3 + 4 + 2 levels; 4 GroupNorm cases of (x, gamma, beta); blocks of x + 6 params, + 3 with a projection
    assert counts == {1: 5, 2: 4, 3: 15, 4: 4, 5: 5 + 6 + 4, 6: 12, 7: 7 + 10 + 7}


@pytest.mark.parametrize("n", sorted(STUBS))
def test_the_error_a_stub_promises_is_what_the_reference_reaches(n):
    # The stub and the checker's legend say "around <typical>"; the reference's worst row
    # must be within a factor of 10 of it, and the stub must say the same number.
    typical = EXERCISES[n].typical_error
    passed, rows = check_module(SOL[n], exercise=n)
    assert passed
    worst = max(r.max_rel for r in rows)
    assert worst <= 10 * float(typical), (n, worst)
    doc = re.sub(r"\s+", " ", load_exercise_file(STUBS[n]).__doc__)
    assert f"max relative error around {typical}" in doc


@pytest.mark.parametrize("n", sorted(STUBS))
def test_each_stub_with_the_reference_backward_filled_in_passes(n):
    # Catches drift between a stub (its EXERCISE, its names, the given forward of 5 and 7)
    # and the reference.
    stub = load_exercise_file(STUBS[n])
    name = EXERCISES[n].name
    if n in (5, 7):
        getattr(stub, name).backward = getattr(SOL[n], name).backward  # the stub's own forward stays
    else:
        setattr(stub, name, getattr(SOL[n], name))
    passed, rows = check_module(stub)
    assert passed and rows


@pytest.mark.parametrize("n", sorted(STUBS))
def test_untouched_stubs_say_not_implemented_yet_and_exit_1(n, capsys):
    assert check_file(STUBS[n]) == 1
    out = capsys.readouterr()
    assert f"Exercise {n}: not implemented yet" in out.out
    assert (f"stuck? hints, gentlest first: numpy-retinanet check {STUBS[n]} --hint 1 (of {len(EXERCISES[n].hints)})"
            in said(out.out))
    assert "Traceback" not in out.out + out.err
    passed, rows = check_module(load_exercise_file(STUBS[n]))
    assert not passed
    assert len(rows) == 1 and rows[0].note.startswith(f"not implemented yet (Exercise {n}:")


@pytest.mark.parametrize("n", sorted(STUBS))
def test_the_stubs_leave_the_formulas_to_the_hints(n):
    # Derive-first: the stub points at the hints and spells out no gradient.
    doc = load_exercise_file(STUBS[n]).__doc__
    assert "--hint 1" in doc
    assert "Math\n----" not in doc
    for formula in ("dxpad", "+=", "gamma p_t log p_t", "d / beta", "mean(dxhat", "sum_l"):
        assert formula not in doc, (n, formula)
    hints = EXERCISES[n].hints
    assert 3 <= len(hints) and all(h.strip() for h in hints)
    for h in hints:  # ideas and formulas, never code
        assert "return " not in h and "def " not in h and "np.zeros" not in h


@pytest.mark.parametrize("n", sorted(STUBS))
def test_hint_prints_the_hint_and_how_many_there_are(n, capsys):
    hints = EXERCISES[n].hints
    assert show_hint(STUBS[n], len(hints)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Exercise {n}, hint {len(hints)} of {len(hints)} (")
    assert hints[-1].splitlines()[0] in out
    assert show_hint(STUBS[n], 1) == 0
    assert f"(the next: numpy-retinanet check {STUBS[n]} --hint 2)" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [0, -1, 99])
def test_a_hint_number_out_of_range_exits_2_saying_the_range(bad, capsys):
    assert show_hint(STUBS[3], bad) == 2
    err = capsys.readouterr().err
    assert f"--hint must be an int in [1, 4] (exercise 3 has 4 hints), got {bad}" in err


# Answers that only call the package's function for the step. Exercises 5 and 7 may call the
# package's op backwards; their package answer is the module that does the whole step.
PACKAGE_CALLERS = {
    1: ("sigmoid_focal_loss_backward", """
from numpy_retinanet.nn.losses import sigmoid_focal_loss_backward, sigmoid_focal_loss_forward

def focal_loss_backward(dout, logits, targets, alpha, gamma):
    return sigmoid_focal_loss_backward(dout, sigmoid_focal_loss_forward(logits, targets, alpha, gamma)[1])
"""),
    2: ("smooth_l1_backward", """
from numpy_retinanet.nn import losses

def smooth_l1_backward(dout, pred, target, beta):
    return losses.smooth_l1_backward(dout, losses.smooth_l1_forward(pred, target, beta)[1])
"""),
    3: ("conv2d_backward", """
from numpy_retinanet.nn.functional import conv2d_backward as backward, conv2d_forward

def conv2d_backward(dout, x, w, b, stride, padding):
    return backward(dout, conv2d_forward(x, w, b, stride, padding)[1])
"""),
    4: ("upsample_nearest_backward", """
import numpy as np
from numpy_retinanet.nn.functional import upsample_nearest_backward as backward, upsample_nearest_forward

def upsample_nearest_backward(dout, factor):
    n, c, h, w = dout.shape
    return backward(dout, upsample_nearest_forward(np.zeros((n, c, h // factor, w // factor)), factor)[1])
"""),
    5: ("Conv2d.backward", """
import numpy as np
from numpy_retinanet.nn.modules import Conv2d

class SharedHead:
    def __init__(self, w, b):
        self.params = {"w": w, "b": b}
        self.grads = {"w": np.zeros_like(w), "b": np.zeros_like(b)}
        self._caches = []

    def forward(self, levels):
        f, c = self.params["w"].shape[:2]
        self.conv = Conv2d(c, f, 3, stride=1, padding=1, dtype=np.float64)
        self.conv.params["weight"][...] = self.params["w"]
        self.conv.params["bias"][...] = self.params["b"]
        outs = [self.conv.forward(x) for x in levels]
        self._caches = [None] * len(levels)
        return outs

    def backward(self, douts):
        out = [self.conv.backward(d) for d in reversed(douts)][::-1]
        self.grads["w"] += self.conv.grads["weight"]
        self.grads["b"] += self.conv.grads["bias"]
        self._caches = []
        return out
"""),
    6: ("group_norm_backward", """
from numpy_retinanet.nn import functional

def group_norm_backward(dout, x, gamma, beta, num_groups, eps):
    return functional.group_norm_backward(dout, functional.group_norm_forward(x, gamma, beta, num_groups, eps)[1])
"""),
    7: ("BasicBlock.backward", """
import numpy as np
from numpy_retinanet.model.backbone import BasicBlock

NAMES = {"w1": "branch.0.0.weight", "gamma1": "branch.0.1.weight", "beta1": "branch.0.1.bias",
         "w2": "branch.1.weight", "gamma2": "branch.2.weight", "beta2": "branch.2.bias",
         "w_s": "shortcut.0.weight", "gamma_s": "shortcut.1.weight", "beta_s": "shortcut.1.bias"}

class ResidualBlock:
    def __init__(self, params, stride, num_groups):
        cout, cin = params["w1"].shape[:2]
        self.block = BasicBlock(cin, cout, stride, np.random.default_rng(0), np.float64, num_groups)
        for k, v in params.items():
            self.block.params[NAMES[k]][...] = v
        self.params = params
        self.grads = {k: self.block.grads[NAMES[k]] for k in params}

    def forward(self, x):
        return self.block.forward(x)

    def backward(self, dout):
        return self.block.backward(dout)
"""),
}


@pytest.mark.parametrize("n", sorted(PACKAGE_CALLERS))
def test_an_answer_that_calls_the_package_is_reported_not_passed(n, tmp_path, capsys):
    name, code = PACKAGE_CALLERS[n]
    p = tmp_path / f"ex{n}.py"
    p.write_text(f"EXERCISE = {n}\n" + code)
    assert check_file(p) == 1
    out = said(capsys.readouterr().out)
    assert f"Exercise {n}: FAIL: your answer calls the package's {name}: write it yourself" in out
    passed, rows = check_module(load_exercise_file(p))
    assert not passed
    assert {r.note for r in rows} == {f"calls the package's {name}: write it yourself"}
    # The numbers themselves are right: only the call fails the rows.
    assert all(r.max_rel < 1e-6 for r in rows)


@pytest.mark.parametrize("n, module", [(4, "numpy_retinanet.nn.functional"), (9, "numpy_retinanet.detection.boxes")])
def test_the_package_function_imported_as_the_answer_is_reported_not_passed(n, module, tmp_path, capsys):
    # Nothing in the learner's file calls it, so the watch cannot see it: the function's module tells.
    name = EXERCISES[n].name
    p = tmp_path / f"ex{n}.py"
    p.write_text(f"EXERCISE = {n}\nfrom {module} import {name}  # noqa: F401\n")
    assert check_file(p) == 1
    out = said(capsys.readouterr().out)
    assert f"FAIL: your answer calls the package's {name} (imported from {module}): write it yourself" in out


def test_the_package_call_is_caught_through_other_package_code(tmp_path):
    # GroupNorm (the module) calls functional.group_norm_backward: the first frame outside the
    # package is the learner's, so the call counts.
    p = tmp_path / "ex6.py"
    p.write_text("""EXERCISE = 6
from numpy_retinanet.nn.modules import GroupNorm

def group_norm_backward(dout, x, gamma, beta, num_groups, eps):
    m = GroupNorm(num_groups, x.shape[1], eps=eps, dtype=x.dtype)
    m.params["weight"][...] = gamma
    m.params["bias"][...] = beta
    m.forward(x)
    return m.backward(dout), m.grads["weight"], m.grads["bias"]
""")
    passed, rows = check_module(load_exercise_file(p))
    assert not passed
    assert rows[0].note == "calls the package's GroupNorm.backward: write it yourself"


def test_without_the_solutions_the_checker_says_so_once_and_compares_with_central_differences(monkeypatch, capsys):
    monkeypatch.setattr(runner, "SOLUTIONS_DIR", ROOT / "no such folder")

    def slightly_off(*args):
        return SOL[2].smooth_l1_backward(*args) * (1 + 3e-7)

    # An error below what central differences can see passes without the reference.
    passed, rows, out = check(answer(2, smooth_l1_backward=slightly_off), capsys)
    assert passed
    assert said(out).count("the reference solutions are not here") == 1
    assert "comparing with central differences and the package only" in said(out)
    mistakes = {1: dict(gamma_term=False)}
    passed, rows, out = check(answer(1, focal_loss_backward=lambda *a: naive_focal(*a, **mistakes[1])), capsys)
    assert not passed  # still caught, and still named: the diagnosis holds against central differences
    assert_diagnosis(out, "passes only when gamma = 0", 2)
    passed, rows, out = check(conv_mistake(crop=False), capsys)  # a shape failure, no reference to hold it to
    assert not passed
    assert_diagnosis(out, "case 1's dx still has its padding", 3)


def test_a_correct_answer_that_scribbles_on_its_arguments_still_passes():
    # The checker hands every answer copies, so the numerical gradient and the reference
    # see the case as drawn.
    def focal(dout, logits, targets, alpha, gamma):
        g = SOL[1].focal_loss_backward(dout, logits, targets, alpha, gamma)
        for a in (dout, logits, targets):
            a[...] = 7.0
        return g

    assert check_module(answer(1, focal_loss_backward=focal))[0]


def test_an_error_too_small_for_central_differences_is_caught_by_the_reference():
    def slightly_off(*args):
        return SOL[2].smooth_l1_backward(*args) * (1 + 3e-7)

    passed, rows = check_module(answer(2, smooth_l1_backward=slightly_off))
    assert not passed
    for r in rows:
        assert r.max_rel < 1e-6  # the numerical column alone cannot tell
        assert not r.passed and r.note.startswith("reference solution differs: max rel 3.0e-07")


def test_a_float32_gradient_fails_naming_the_dtype():
    def float32(*args):
        return SOL[4].upsample_nearest_backward(*args).astype(np.float32)

    passed, rows = check_module(answer(4, upsample_nearest_backward=float32))
    assert not passed
    assert {r.note for r in rows} == {"returned dtype float32, expected float64 (the input's)"}


@pytest.mark.parametrize("module", [
    answer(2, smooth_l1_backward=lambda *a: naive_smooth_l1(*a, zone=1.0)),  # notes and a diagnosis
    answer(4, upsample_nearest_backward=lambda d, k: None),  # rows with no numbers
    answer(3, conv2d_backward=lambda *a: naive_conv_backward(*a, crop=False)),  # shapes that differ
], ids=["notes", "no-numbers", "shapes"])
def test_the_report_fits_a_100_column_terminal(module, capsys):
    _, _, out = check(module, capsys)
    assert "FAIL" in out
    assert max(len(line) for line in out.splitlines()) <= 100, out


# ----------------------------------------------------------------------------------------
# Exercise 1: focal loss
# ----------------------------------------------------------------------------------------


def naive_focal(dout, logits, targets, alpha, gamma, sign=True, alpha_t=True, gamma_term=True, use_gamma=True,
                use_dout=True):
    """dFL/dx written directly from p (not the reference's stable form); the flags make mistakes."""
    gamma = gamma if use_gamma else 2.0
    p = 1.0 / (1.0 + np.exp(-logits))
    p_t = np.where(targets == 1, p, 1.0 - p)
    y_sign = 2.0 * targets - 1.0 if sign else 1.0
    a_t = np.where(targets == 1, alpha, 1.0 - alpha) if alpha_t else 1.0
    inner = (gamma * p_t * np.log(p_t) if gamma_term else 0.0) + p_t - 1.0
    return (dout if use_dout else 1.0) * y_sign * a_t * (1.0 - p_t) ** gamma * inner


def test_focal_a_direct_formula_from_p_passes():
    # The stub promises that logits in [-5, 5] let an unstabilised formula pass.
    assert check_module(answer(1, focal_loss_backward=naive_focal))[0]


ALL_FOCAL = {f"case {k} logits" for k in range(1, 6)}


@pytest.mark.parametrize("mistake, fails, diagnosis, hint", [
    # without gamma p_t log p_t only gamma = 0 (case 2) is still right
    (dict(gamma_term=False), ALL_FOCAL - {"case 2 logits"}, "passes only when gamma = 0: the modulating factor", 2),
    # every case has targets 0 and 1, and y' = -1 flips the negatives' gradient
    (dict(sign=False), ALL_FOCAL, "the sign is wrong exactly where the target is 0", 1),
    (dict(alpha_t=False), ALL_FOCAL, "the weight alpha_t is missing", 3),
    (dict(use_gamma=False), ALL_FOCAL - {"case 1 logits"}, "passes only when gamma = 2: gamma is hard-coded", 4),
    (dict(use_dout=False), ALL_FOCAL, "the upstream gradient is missing", 1),
], ids=["modulator-constant", "no-y-sign", "no-alpha-t", "gamma-2", "no-dout"])
def test_focal_typical_mistakes_fail_where_they_matter_and_are_named(mistake, fails, diagnosis, hint, capsys):
    passed, rows, out = check(answer(1, focal_loss_backward=lambda *a: naive_focal(*a, **mistake)), capsys)
    assert not passed
    assert failing(rows) == fails
    assert_diagnosis(out, diagnosis, hint)


def test_focal_alpha_in_place_of_alpha_t_passes_only_at_alpha_one_half(capsys):
    def wrong(dout, logits, targets, alpha, gamma):
        return alpha / np.where(targets == 1, alpha, 1 - alpha) * SOL[1].focal_loss_backward(
            dout, logits, targets, alpha, gamma)

    passed, rows, out = check(answer(1, focal_loss_backward=wrong), capsys)
    assert not passed
    assert failing(rows) == ALL_FOCAL - {"case 4 logits"}  # case 4: alpha = 0.5
    assert_diagnosis(out, "alpha in place of alpha_t", 3)


def test_focal_a_flipped_sign_is_named_with_its_relative_error_of_2(capsys):
    passed, rows, out = check(answer(1, focal_loss_backward=lambda *a: -naive_focal(*a)), capsys)
    assert not passed and failing(rows) == ALL_FOCAL
    assert all(abs(r.max_rel - 2.0) < 1e-6 for r in rows)
    assert_diagnosis(out, "the sign is flipped: your gradient is minus the right one everywhere, a relative "
                          "error of exactly 2", 1)


# ----------------------------------------------------------------------------------------
# Exercise 2: smooth L1
# ----------------------------------------------------------------------------------------


def naive_smooth_l1(dout, pred, target, beta, flip=False, zone=None, divide=True, clip=True):
    d = target - pred if flip else pred - target
    if beta == 0:
        return dout * np.sign(d)
    inside = np.abs(d) < (beta if zone is None else zone)
    quad = d / beta if divide else d
    return dout * (np.where(inside, quad, np.sign(d)) if clip else quad)


def test_smooth_l1_cases_keep_away_from_the_kinks_as_the_stub_says():
    # "no |d| lies within 0.05 beta of a kink": central differences there straddle two pieces
    for c in EXERCISES[2].cases():
        ad = np.abs(c["pred"] - c["target"])
        margin = 0.05 * c["beta"] if c["beta"] > 0 else 0.05
        assert np.min(ad) >= margin * (1 - 1e-9)
        if c["beta"] > 0:
            assert np.min(np.abs(ad - c["beta"])) >= margin * (1 - 1e-9)


def test_smooth_l1_an_independent_correct_answer_passes():
    assert check_module(answer(2, smooth_l1_backward=naive_smooth_l1))[0]


@pytest.mark.parametrize("mistake, fails, diagnosis, hint", [
    (dict(flip=True), {"case 1 pred", "case 2 pred", "case 3 pred", "case 4 pred"}, "the sign is flipped", 1),
    # |d| < 1 is the zone of beta = 1 (case 2) only; case 4 is L1
    (dict(zone=1.0), {"case 1 pred", "case 3 pred"}, "the quadratic zone is |d| < beta, not |d| < 1", 2),
    # d instead of d / beta is right only for beta = 1
    (dict(divide=False), {"case 1 pred", "case 3 pred"}, "inside the zone the slope is d / beta: yours is d", 1),
    # d / beta everywhere ignores the linear zone of every beta > 0
    (dict(clip=False), {"case 1 pred", "case 2 pred", "case 3 pred"},
     "outside the zone |d| < beta the slope is sign(d)", 2),
    (dict(zone=1.0, divide=False), {"case 1 pred", "case 3 pred"},
     "beta is hard-coded to 1 (the zone |d| < 1, the slope d inside it)", 2),
], ids=["flipped", "zone-1", "no-divide", "no-clip", "beta-1"])
def test_smooth_l1_typical_mistakes_fail_where_they_matter_and_are_named(mistake, fails, diagnosis, hint, capsys):
    passed, rows, out = check(answer(2, smooth_l1_backward=lambda *a: naive_smooth_l1(*a, **mistake)), capsys)
    assert not passed
    assert failing(rows) == fails
    assert_diagnosis(out, diagnosis, hint)


# ----------------------------------------------------------------------------------------
# Exercise 3: conv2d
# ----------------------------------------------------------------------------------------


def naive_conv_backward(dout, x, w, b, stride, padding, flip=False, use_stride=True, crop=True, assign=False):
    """Loops over every output entry (not the reference's tensordot); the flags make mistakes."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    s = stride if use_stride else 1
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    wx = w[:, :, ::-1, ::-1] if flip else w
    dxpad, dw = np.zeros_like(xpad), np.zeros_like(w)
    for r in range(dout.shape[2]):
        for q in range(dout.shape[3]):
            window = (slice(None), slice(None), slice(r * s, r * s + kh), slice(q * s, q * s + kw))
            g = dout[:, :, r, q]  # (N, F)
            dw += np.einsum("nf,nchw->fchw", g, xpad[window])
            contribution = np.einsum("nf,fchw->nchw", g, wx)
            if assign:
                dxpad[window] = contribution
            else:
                dxpad[window] += contribution
    dx = dxpad[:, :, padding:padding + h, padding:padding + wd] if crop else dxpad
    return dx, dw, dout.sum(axis=(0, 2, 3))


def test_conv_an_independent_correct_answer_passes():
    assert check_module(answer(3, conv2d_backward=naive_conv_backward))[0]


def conv_mistake(**flags):
    return answer(3, conv2d_backward=lambda *a: naive_conv_backward(*a, **flags))


def test_conv_assignment_instead_of_adding_fails_only_where_windows_overlap(capsys):
    passed, rows, out = check(conv_mistake(assign=True), capsys)
    assert not passed
    # cases 1-3 have stride < kernel; case 4 is 1x1, case 5 a 2x2 kernel at stride 2
    assert failing(rows) == {"case 1 x", "case 2 x", "case 3 x"}
    assert_diagnosis(out, "fails only where windows overlap (stride < kernel), and only in dx: a window's "
                          "contribution is assigned to dxpad instead of added (+=)", 3)


def test_conv_flipped_kernel_fails_dx_except_for_the_1x1_kernel(capsys):
    passed, rows, out = check(conv_mistake(flip=True), capsys)
    assert not passed
    assert failing(rows) == {"case 1 x", "case 2 x", "case 3 x", "case 5 x"}  # case 4 is 1x1
    assert_diagnosis(out, "dx is what a flipped kernel gives: the forward is a cross-correlation", 2)


def test_conv_ignored_stride_fails_dx_and_dw_of_the_stride_2_cases(capsys):
    passed, rows, out = check(conv_mistake(use_stride=False), capsys)
    assert not passed
    assert failing(rows) == {f"case {k} {v}" for k in (2, 3, 5) for v in "xw"}
    assert_diagnosis(out, "fails only where stride > 1: the window of output pixel (oh, ow) starts at "
                          "(s*oh, s*ow), not (oh, ow)", 2)


def test_conv_missing_padding_crop_fails_with_the_expected_shape(capsys):
    passed, rows, out = check(conv_mistake(crop=False), capsys)
    assert not passed
    assert failing(rows) == {"case 1 x", "case 2 x", "case 5 x"}  # the padding = 1 cases
    row = next(r for r in rows if label(r) == "case 1 x")
    assert row.note == "returned shape (2, 3, 7, 9), expected (2, 3, 5, 7)"
    assert_diagnosis(out, "case 1's dx still has its padding: shape (2, 3, 7, 9); drop the padding, 1 on each "
                          "side of H and W", 3)


def test_conv_a_transposed_dw_is_named_with_its_axis_order(capsys):
    def transposed(*args):
        dx, dw, db = SOL[3].conv2d_backward(*args)
        return dx, dw.transpose(1, 0, 2, 3), db

    passed, rows, out = check(answer(3, conv2d_backward=transposed), capsys)
    assert not passed
    assert "case 1 w" in failing(rows)
    assert_diagnosis(out, "case 1 w has the right numbers with its axes in the order (1, 0, 2, 3): shape "
                          "(3, 4, 3, 3) instead of (4, 3, 3, 3)", 1)


def test_conv_returning_two_gradients_fails_every_case_with_a_message():
    passed, rows = check_module(answer(3, conv2d_backward=lambda *a: SOL[3].conv2d_backward(*a)[:2]))
    assert not passed
    assert [label(r) for r in rows] == [f"case {k}" for k in range(1, 6)]
    assert all(r.note == "must return the tuple (dx, dw, db), got tuple of length 2" for r in rows)


# ----------------------------------------------------------------------------------------
# Exercise 4: nearest upsampling
# ----------------------------------------------------------------------------------------


def blocks(dout, k):
    n, c, hk, wk = dout.shape
    return dout.reshape(n, c, hk // k, k, wk // k, k)


ALL_UPSAMPLE = {f"case {k} x" for k in range(1, 5)}


@pytest.mark.parametrize("wrong, diagnosis, hint", [
    (lambda d, k: d[:, :, ::k, ::k], "one pixel of each block instead of the block's sum", 1),
    (lambda d, k: blocks(d, k).mean(axis=(3, 5)), "each failing row is the right gradient times c = 1/factor^2 "
                                                   "(0.25 for factor 2): the mean of each block instead of its sum", 1),
    (lambda d, k: d[:, :, :d.shape[2] // k, :d.shape[3] // k], "dx[h, w] reads dout[h, w]", 2),
    (lambda d, k: d.reshape(d.shape[0], d.shape[1], k, d.shape[2] // k, k, d.shape[3] // k).sum(axis=(2, 4)),
     "the blocks are split the wrong way round: H*factor is (H, factor)", 3),
], ids=["strided-pick", "mean", "no-index-division", "wrong-block-axes"])
def test_upsample_typical_mistakes_fail_every_case_and_are_named(wrong, diagnosis, hint, capsys):
    passed, rows, out = check(answer(4, upsample_nearest_backward=wrong), capsys)
    assert not passed
    assert failing(rows) == ALL_UPSAMPLE
    assert_diagnosis(out, diagnosis, hint)


def test_upsample_the_mean_is_a_constant_ratio_of_one_over_factor_squared():
    passed, rows = check_module(answer(4, upsample_nearest_backward=lambda d, k: blocks(d, k).mean(axis=(3, 5))))
    for r, c in zip(rows, EXERCISES[4].cases()):
        assert np.allclose(r.got, r.expected / c["factor"] ** 2, rtol=1e-12, atol=0)


def test_upsample_an_independent_correct_answer_passes():
    def loops(dout, k):
        n, c, hk, wk = dout.shape
        dx = np.zeros((n, c, hk // k, wk // k))
        for i in range(hk):
            for j in range(wk):
                dx[:, :, i // k, j // k] += dout[:, :, i, j]
        return dx

    assert check_module(answer(4, upsample_nearest_backward=loops))[0]


# ----------------------------------------------------------------------------------------
# Exercise 5: the shared head
# ----------------------------------------------------------------------------------------

Head = SOL[5].SharedHead
WB = {f"case {k} {p}" for k in (1, 2, 3) for p in "wb"}


class Overwrite(Head):
    def backward(self, douts):
        dlevels = [None] * len(douts)
        for lvl in reversed(range(len(douts))):
            dx, dw, db = F.conv2d_backward(douts[lvl], self._caches.pop())
            self.grads["w"][...] = dw  # only the last level walked (level 0) survives
            self.grads["b"][...] = db
            dlevels[lvl] = dx
        return dlevels


class SumButAssign(Head):
    def backward(self, douts):
        dlevels, dw_sum, db_sum = [None] * len(douts), 0.0, 0.0
        for lvl in reversed(range(len(douts))):
            dlevels[lvl], dw, db = F.conv2d_backward(douts[lvl], self._caches.pop())
            dw_sum, db_sum = dw_sum + dw, db_sum + db
        self.grads["w"], self.grads["b"] = dw_sum, db_sum  # drops what grads held before
        return dlevels


class ForwardOrder(Head):
    def backward(self, douts):
        dlevels = []
        for d in douts:  # pops level L-1's cache for level 0's dout
            dx, dw, db = F.conv2d_backward(d, self._caches.pop())
            self.grads["w"] += dw
            self.grads["b"] += db
            dlevels.append(dx)
        return dlevels


class ReturnsLastLevelFirst(Head):
    def backward(self, douts):
        out = []
        for lvl in reversed(range(len(douts))):
            dx, dw, db = F.conv2d_backward(douts[lvl], self._caches.pop())
            self.grads["w"] += dw
            self.grads["b"] += db
            out.append(dx)
        return out


class IndexesInsteadOfPopping(Head):
    def backward(self, douts):
        dlevels = []
        for lvl, d in enumerate(douts):
            dx, dw, db = F.conv2d_backward(d, self._caches[lvl])
            self.grads["w"] += dw
            self.grads["b"] += db
            dlevels.append(dx)
        return dlevels


def test_shared_head_assigning_the_sum_is_named_grads_started_non_zero(capsys):
    passed, rows, out = check(answer(5, SharedHead=SumButAssign), capsys)
    assert not passed
    assert failing(rows) == WB
    assert any(label(r) == "case 1 levels[0]" and r.passed for r in rows)  # dx per level is right
    for r, c in [(r, EXERCISES[5].cases()[r.case - 1]) for r in rows if label(r) in WB]:
        # the difference from the right answer is minus what grads held
        assert np.allclose(r.got - r.expected, -c["grads0"][r.name], rtol=1e-9, atol=1e-12)
    assert_diagnosis(out, "grads started non-zero, and your gradient differs from the right one by exactly "
                          "minus what they held: backward assigned the sum instead of adding it (+=)", 3)


def test_shared_head_assigning_each_level_keeps_only_level_0(capsys):
    passed, rows, out = check(answer(5, SharedHead=Overwrite), capsys)
    assert not passed
    assert failing(rows) == WB
    assert_diagnosis(out, "grads hold only level 0's gradient: each level's dw, db was assigned", 3)


def test_shared_head_wrong_level_order_fails_by_shape_or_by_value_and_is_named(capsys):
    passed, rows, out = check(answer(5, SharedHead=ForwardOrder), capsys)
    assert not passed
    by_label = {label(r): r for r in rows}
    for k in (1, 2):  # levels of different sizes: conv2d_backward refuses the pairing
        assert not by_label[f"case {k}"].passed
        assert by_label[f"case {k}"].note.startswith("raised ValueError")
    # two levels of one size: no error, but dw pairs each dout with the other level's input
    # (db and dx do not read the cache's input, so they come out right)
    assert failing(r for r in rows if r.case == 3) == {"case 3 w"}
    assert_diagnosis(out, "each dout was paired with another level's cache", 2)


def test_shared_head_returning_levels_in_reverse_fails_and_is_named(capsys):
    passed, rows, out = check(answer(5, SharedHead=ReturnsLastLevelFirst), capsys)
    assert not passed
    bad = failing(rows)
    assert {"case 1 levels[0]", "case 1 levels[2]", "case 2 levels[0]", "case 2 levels[3]"} <= bad
    assert not bad & WB  # the grads are right; only the list order is wrong
    assert_diagnosis(out, "the level gradients come back last level first", 2)


def test_shared_head_that_leaves_caches_on_the_stack_fails():
    passed, rows = check_module(answer(5, SharedHead=IndexesInsteadOfPopping))
    assert not passed
    assert [label(r) for r in rows] == ["case 1", "case 2", "case 3"]
    assert rows[0].note == "backward left 3 of 3 caches on the stack; pop one per level, last level first"


# ----------------------------------------------------------------------------------------
# Exercise 6: GroupNorm
# ----------------------------------------------------------------------------------------


def naive_group_norm(dout, x, gamma, beta, num_groups, eps, groups=None, ddof=0, mean_path=True, var_path=True):
    """Written per (sample, group) with loops, from the three paths; the flags make mistakes."""
    n, c, h, w = x.shape
    g = num_groups if groups is None else groups(x.shape[1], num_groups)
    per = c // g
    dx, dgamma, dbeta = np.zeros_like(x), np.zeros_like(gamma), np.zeros_like(beta)
    for i in range(n):
        for j in range(g):
            ch = slice(j * per, (j + 1) * per)
            xs, ds = x[i, ch], dout[i, ch]
            m = xs.size
            mu = xs.mean()
            var = ((xs - mu) ** 2).sum() / (m - ddof)
            inv = 1 / np.sqrt(var + eps)
            xhat = (xs - mu) * inv
            dgamma[ch] += (ds * xhat).sum(axis=(1, 2))
            dbeta[ch] += ds.sum(axis=(1, 2))
            dxhat = ds * gamma[ch, None, None]
            dx[i, ch] = inv * (dxhat - (dxhat.mean() if mean_path else 0)
                               - (xhat * (dxhat * xhat).mean() if var_path else 0))
    return dx, dgamma, dbeta


def test_group_norm_an_independent_correct_answer_passes():
    assert check_module(answer(6, group_norm_backward=naive_group_norm))[0]


ALL_GN = {f"case {k} {v}" for k in range(1, 5) for v in ("x", "gamma", "beta")}


@pytest.mark.parametrize("mistake, fails, diagnosis, hint", [
    (dict(mean_path=False, var_path=False), {f"case {k} x" for k in range(1, 5)},
     "dx is dout * gamma / sqrt(var + eps) alone: mu and var are treated as constants", 2),
    (dict(var_path=False), {f"case {k} x" for k in range(1, 5)},
     "dx has the path through mu but not the one through var", 2),
    # per channel is instance norm: right where G = C (case 3)
    (dict(groups=lambda c, g: c), {f"case {k} {v}" for k in (1, 2, 4) for v in ("x", "gamma")},
     "passes only when G = C: you normalise each channel on its own (instance norm)", 3),
    (dict(ddof=1), {f"case {k} {v}" for k in range(1, 5) for v in ("x", "gamma")},
     "dgamma is what the unbiased variance (divided by M - 1) gives", 4),
], ids=["mean-var-constant", "no-var-path", "instance-norm", "unbiased"])
def test_group_norm_typical_mistakes_fail_where_they_matter_and_are_named(mistake, fails, diagnosis, hint, capsys):
    passed, rows, out = check(answer(6, group_norm_backward=lambda *a: naive_group_norm(*a, **mistake)), capsys)
    assert not passed
    assert failing(rows) == fails
    assert_diagnosis(out, diagnosis, hint)


def test_group_norm_dgamma_per_sample_is_named(capsys):
    def per_sample(dout, x, gamma, beta, num_groups, eps):
        dx, _, dbeta = naive_group_norm(dout, x, gamma, beta, num_groups, eps)
        _, cache = F.group_norm_forward(x, gamma, beta, num_groups, eps)
        return dx, (dout * cache[0]).sum(axis=(2, 3)), dbeta

    passed, rows, out = check(answer(6, group_norm_backward=per_sample), capsys)
    assert failing(rows) == {f"case {k} gamma" for k in range(1, 5)}
    assert_diagnosis(out, "dgamma has shape (2, 4), one per sample: sum over the batch too", 1)


# ----------------------------------------------------------------------------------------
# Exercise 7: the residual block
# ----------------------------------------------------------------------------------------

Block = SOL[7].ResidualBlock


def block_backward(block, dout, skip=True, branch_mask=True, skip_mask=True):
    """The block's backward written with the ops; the flags make mistakes."""
    conv1, norm1, relu1, conv2, norm2, conv_s, norm_s, relu_out = block.cache
    masked = F.relu_backward(dout, relu_out)
    dz2, dg2, db2 = F.group_norm_backward(masked if branch_mask else dout, norm2)
    da1, dw2, _ = F.conv2d_backward(dz2, conv2)
    dz1, dg1, db1 = F.group_norm_backward(F.relu_backward(da1, relu1), norm1)
    dx, dw1, _ = F.conv2d_backward(dz1, conv1)
    grads = {"w1": dw1, "gamma1": dg1, "beta1": db1, "w2": dw2, "gamma2": dg2, "beta2": db2}
    d_skip = masked if skip_mask else dout
    if block.projection:
        dzs, grads["gamma_s"], grads["beta_s"] = F.group_norm_backward(d_skip, norm_s)
        d_skip, grads["w_s"], _ = F.conv2d_backward(dzs, conv_s)
    for k, v in grads.items():
        block.grads[k] += v
    return dx + d_skip if skip else dx


def block_answer(**flags):
    class Answer(Block):
        def backward(self, dout):
            return block_backward(self, dout, **flags)

    return answer(7, ResidualBlock=Answer)


def test_residual_block_an_independent_correct_answer_passes():
    assert check_module(block_answer())[0]


def test_residual_block_cases_keep_every_relu_input_away_from_its_kink():
    # As the stub says: both shortcuts, a 1x1 stride-2 projection, and no ReLU input within 2e-3
    # of 0 (recomputed here with the package's ops), on both sides of each kink.
    cases = EXERCISES[7].cases()
    assert {"w_s" in c["params"] for c in cases} == {True, False}
    assert [(c["stride"], c["params"]["w_s"].shape[2:]) for c in cases if "w_s" in c["params"]] == [(2, (1, 1))]
    for c in cases:
        p, g, s = c["params"], c["num_groups"], c["stride"]
        z1 = F.group_norm_forward(F.conv2d_forward(c["x"], p["w1"], None, s, 1)[0], p["gamma1"], p["beta1"], g)[0]
        z2 = F.conv2d_forward(np.maximum(z1, 0), p["w2"], None, 1, 1)[0]
        short = c["x"] if "w_s" not in p else F.group_norm_forward(
            F.conv2d_forward(c["x"], p["w_s"], None, s, 0)[0], p["gamma_s"], p["beta_s"], g)[0]
        pre_out = F.group_norm_forward(z2, p["gamma2"], p["beta2"], g)[0] + short
        for pre in (z1, pre_out):
            assert np.abs(pre).min() > 2e-3 and (pre > 0).any() and (pre < 0).any()


@pytest.mark.parametrize("mistake, diagnosis, hint", [
    (dict(skip=False), "dx misses the skip path: x is read by the branch and by the shortcut", 2),
    (dict(branch_mask=False, skip_mask=False), "the final ReLU's mask is missing", 3),
    (dict(skip_mask=False), "the final ReLU's mask reaches the branch but not the shortcut", 3),
    (dict(branch_mask=False), "the final ReLU's mask reaches the shortcut but not the branch", 3),
], ids=["no-skip", "no-final-mask", "mask-branch-only", "mask-skip-only"])
def test_residual_block_typical_mistakes_fail_and_are_named(mistake, diagnosis, hint, capsys):
    passed, rows, out = check(block_answer(**mistake), capsys)
    assert not passed
    bad = failing(rows)
    assert {"case 1 x", "case 2 x", "case 3 x"} <= bad
    if mistake == dict(skip=False):
        assert bad == {"case 1 x", "case 2 x", "case 3 x"}  # every parameter's gradient is right
    if mistake == dict(skip_mask=False):
        # the branch's parameters get the masked gradient: right; the projection's do not
        assert not bad & {f"case {k} {p}" for k in (1, 2, 3) for p in ("w1", "w2", "gamma2")}
        assert {"case 2 w_s", "case 2 gamma_s"} <= bad
    assert_diagnosis(out, diagnosis, hint)


# ----------------------------------------------------------------------------------------
# What the checker says about files and broken answers
# ----------------------------------------------------------------------------------------


def test_a_missing_file_exits_2_with_a_message(tmp_path, capsys):
    missing = tmp_path / "ex9_nothing.py"
    assert check_file(missing) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err
    assert show_hint(missing, 1) == 2


def test_a_syntax_error_exits_2_naming_the_line(tmp_path, capsys):
    p = tmp_path / "ex1.py"
    p.write_text("EXERCISE = 1\n\ndef focal_loss_backward(dout, logits, targets, alpha, gamma)\n    return dout\n")
    assert check_file(p) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "SyntaxError" in err


def test_an_answer_that_raises_fails_with_the_exception_and_its_line(tmp_path, capsys):
    p = tmp_path / "ex2.py"
    p.write_text("EXERCISE = 2\n\n\ndef smooth_l1_backward(dout, pred, target, beta):\n"
                 "    return dout[pred.size]\n")
    assert check_file(p) == 1
    out = capsys.readouterr().out
    assert said(out).count("raised IndexError at line 5: index") == 4  # every case, no traceback
    assert "Traceback" not in out


def test_returning_none_fails_naming_what_was_expected():
    passed, rows = check_module(answer(4, upsample_nearest_backward=lambda d, k: None))
    assert not passed
    assert rows[0].note == "dx must be a NumPy array, got NoneType"


def test_a_file_without_an_exercise_exits_2(tmp_path, capsys):
    # Importing the package's conv2d_backward does not make a file an answer to exercise 3.
    p = tmp_path / "notes.py"
    p.write_text("from numpy_retinanet.nn.functional import conv2d_backward\n")
    assert check_file(p) == 2
    assert "answers no exercise" in capsys.readouterr().err


def test_an_unknown_exercise_number_exits_2(tmp_path, capsys):
    p = tmp_path / "ex11.py"
    p.write_text("EXERCISE = 11\n")
    assert check_file(p) == 2
    assert f"EXERCISE must be one of {sorted(EXERCISES)}, got 11" in capsys.readouterr().err
    assert sorted(EXERCISES) == list(range(1, 11))


def test_a_file_naming_exercise_but_missing_its_function_fails():
    passed, rows = check_module(answer(3))
    assert not passed
    assert rows[0].note.startswith("missing: the file must define conv2d_backward(dout, x, w, b")


def test_a_file_answering_several_exercises_is_checked_whole_but_asks_for_one_for_a_hint(tmp_path, capsys):
    p = tmp_path / "both.py"
    p.write_text("def smooth_l1_backward(dout, pred, target, beta):\n    return dout * 0\n\n"
                 "def upsample_nearest_backward(dout, factor):\n    raise NotImplementedError('Exercise 4: later')\n")
    assert check_file(p) == 1
    out = capsys.readouterr().out
    assert "Exercise 2: FAIL" in out and "Exercise 4: not implemented yet" in out and "some exercises failed" in out
    assert show_hint(p, 1) == 2
    assert "--hint needs a file that answers one exercise" in capsys.readouterr().err


def test_the_command_line_checks_a_solution_and_shows_hints():
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "numpy_retinanet", "check", *args],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)

    r = cli(str(runner.SOLUTIONS_DIR / STUBS[1].name))
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^ +1 logits .* PASS$", r.stdout, re.M)
    assert "FAIL" not in r.stdout
    r = cli(str(STUBS[2]), "--hint", "2")
    assert r.returncode == 0 and r.stdout.startswith("Exercise 2, hint 2 of 3")
    r = cli(str(STUBS[2]), "--hint", "4")
    assert r.returncode == 2 and "--hint must be an int in [1, 3] (exercise 2 has 3 hints), got 4" in r.stderr


# ----------------------------------------------------------------------------------------
# The exercises' README
# ----------------------------------------------------------------------------------------

README = ROOT / "lessons/exercises/README.md"


def pasted(after):
    """The transcript in the README's first code block after the line ``after``: (command, output)."""
    text = README.read_text(encoding="utf-8")
    block = text[text.index(after):].split("```\n", 2)[1]
    lines = block.splitlines()
    command = lines[0].removeprefix("$ numpy-retinanet check ")
    output = lines[1:lines.index("$ echo $?")]
    return command, "\n".join(output), int(lines[lines.index("$ echo $?") + 1])


def test_the_readme_lists_every_exercise_and_prints_no_solution():
    text = README.read_text(encoding="utf-8")
    for n in EXERCISES:
        stub = next((ROOT / "lessons/exercises").glob(f"ex{n}_*.py"))
        assert f"| {n} | `{stub.name}` |" in text
    assert "lessons/exercises/solutions/" in text
    for stub in STUBS.values():  # no line of any solution's code
        for line in (runner.SOLUTIONS_DIR / stub.name).read_text().splitlines():
            if "return" in line or "+=" in line:
                assert line.strip() not in text, line


def test_the_readme_shows_what_the_checker_prints_for_a_stub(monkeypatch, capsys):
    command, output, status = pasted("An untouched stub:")
    monkeypatch.chdir(ROOT)
    assert check_file(command) == status
    assert capsys.readouterr().out.rstrip("\n") == output


def test_the_readme_shows_what_the_checker_prints_for_the_wrong_zone(tmp_path, monkeypatch, capsys):
    # The wrong answer it describes, in a file at the same relative path as the stub.
    command, output, status = pasted("A wrong answer to exercise 2")
    p = tmp_path / command
    p.parent.mkdir(parents=True)
    p.write_text(STUBS[2].read_text().replace(
        '    raise NotImplementedError("Exercise 2: write smooth_l1_backward, dout * d(smooth L1)/dpred")',
        "    return naive_smooth_l1(dout, pred, target, beta, zone=1.0)").replace(
        "EXERCISE = 2", "EXERCISE = 2\nfrom test_exercises import naive_smooth_l1"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    assert check_file(command) == status
    assert capsys.readouterr().out.rstrip("\n") == output
