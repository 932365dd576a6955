"""Tests for the exercise checker (numpy_retinanet/teaching/exercises.py) and the stubs in lessons/exercises.

The checker is only useful if it passes every correct answer and fails the mistakes learners
actually make, at the rows where they make them. So the reference solutions and independently
written correct answers must pass; for each exercise several typical wrong answers must fail,
and the failing rows are pinned down (a mistake that only matters for stride 2 fails only the
stride-2 cases). The untouched stubs must say "not implemented yet" and exit 1, and files that
cannot be checked exit 2 with a message.
"""

import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from numpy_retinanet.teaching import exercise_solutions as sol
from numpy_retinanet.teaching.exercises import EXERCISES, check_file, check_module, load_exercise_file

ROOT = Path(__file__).resolve().parents[1]
STUBS = {
    1: ROOT / "lessons/exercises/ex1_focal_loss_backward.py",
    2: ROOT / "lessons/exercises/ex2_smooth_l1_backward.py",
    3: ROOT / "lessons/exercises/ex3_conv2d_backward.py",
    4: ROOT / "lessons/exercises/ex4_upsample_backward.py",
    5: ROOT / "lessons/exercises/ex5_shared_head_backward.py",
}


def answer(exercise, **names):
    """An in-memory learner's module: EXERCISE = exercise and the given names."""
    m = types.ModuleType(f"answer_{exercise}")
    m.EXERCISE = exercise
    for k, v in names.items():
        setattr(m, k, v)
    return m


def failing(rows):
    return {r.name for r in rows if not r.passed}


def names(rows):
    return {r.name for r in rows}


# ----------------------------------------------------------------------------------------
# Correct answers pass
# ----------------------------------------------------------------------------------------


def test_the_solutions_file_checks_all_five_exercises_and_passes(capsys):
    assert check_file(sol.__file__) == 0
    out = capsys.readouterr().out
    for n in EXERCISES:
        assert f"Exercise {n}: PASS" in out
    assert "FAIL" not in out
    passed, rows = check_module(sol)
    assert passed
    # 5 + 4 cases of one input, 5 conv cases of (x, w, b), head cases of w, b and 3 + 4 + 2 levels
    assert len(rows) == 5 + 4 + 15 + 4 + (5 + 6 + 4)
    assert all(r.checked > 0 for r in rows)


@pytest.mark.parametrize("n", sorted(EXERCISES))
def test_the_error_a_stub_promises_is_what_the_reference_reaches(n):
    # The stub and the checker's header say "around <typical>"; the reference's worst row
    # must be within a factor of 10 of it, and the stub must say the same number.
    typical = EXERCISES[n].typical_error
    passed, rows = check_module(sol, exercise=n)
    assert passed
    worst = max(r.max_rel_error for r in rows)
    assert worst <= 10 * float(typical), (n, worst)
    doc = re.sub(r"\s+", " ", load_exercise_file(STUBS[n]).__doc__)
    assert f"max relative error around {typical}" in doc


@pytest.mark.parametrize("n", sorted(STUBS))
def test_each_stub_with_the_reference_backward_filled_in_passes(n):
    # Catches drift between a stub (its EXERCISE, its names, exercise 5's given forward)
    # and the reference.
    stub = load_exercise_file(STUBS[n])
    name = EXERCISES[n].name
    if n == 5:
        stub.SharedHead.backward = sol.SharedHead.backward  # the stub's own forward stays
    else:
        setattr(stub, name, getattr(sol, name))
    passed, rows = check_module(stub)
    assert passed and rows


def test_a_correct_answer_that_scribbles_on_its_arguments_still_passes():
    # The checker hands every answer copies, so the numerical gradient and the reference
    # see the case as drawn.
    def focal(dout, logits, targets, alpha, gamma):
        g = sol.focal_loss_backward(dout, logits, targets, alpha, gamma)
        for a in (dout, logits, targets):
            a[...] = 7.0
        return g

    assert check_module(answer(1, focal_loss_backward=focal))[0]


def test_an_error_too_small_for_central_differences_is_caught_by_the_reference():
    def slightly_off(*args):
        return sol.smooth_l1_backward(*args) * (1 + 3e-7)

    passed, rows = check_module(answer(2, smooth_l1_backward=slightly_off))
    assert not passed
    for r in rows:
        assert r.max_rel_error < 1e-6  # the numerical column alone cannot tell
        assert not r.passed and r.note.startswith("reference solution differs: max rel 3.0e-07")


def test_a_float32_gradient_fails_naming_the_dtype():
    def float32(*args):
        return sol.upsample_nearest_backward(*args).astype(np.float32)

    passed, rows = check_module(answer(4, upsample_nearest_backward=float32))
    assert not passed
    assert {r.note for r in rows} == {"returned dtype float32, expected float64 (the input's)"}


# ----------------------------------------------------------------------------------------
# Exercise 1: focal loss
# ----------------------------------------------------------------------------------------


def naive_focal(dout, logits, targets, alpha, gamma, sign=True, alpha_t=True, gamma_term=True):
    """dFL/dx written directly from p (not the reference's stable form); the flags make mistakes."""
    p = 1.0 / (1.0 + np.exp(-logits))
    p_t = np.where(targets == 1, p, 1.0 - p)
    y_sign = 2.0 * targets - 1.0 if sign else 1.0
    a_t = np.where(targets == 1, alpha, 1.0 - alpha) if alpha_t else 1.0
    inner = (gamma * p_t * np.log(p_t) if gamma_term else 0.0) + p_t - 1.0
    return dout * y_sign * a_t * (1.0 - p_t) ** gamma * inner


def test_focal_a_direct_formula_from_p_passes():
    # The stub promises that logits in [-5, 5] let an unstabilised formula pass.
    assert check_module(answer(1, focal_loss_backward=naive_focal))[0]


ALL_FOCAL = {f"case {k} logits" for k in range(1, 6)}


@pytest.mark.parametrize("mistake, fails", [
    # every case has targets 0 and 1, and y' = -1 flips the negatives' gradient
    (dict(sign=False), ALL_FOCAL),
    (dict(alpha_t=False), ALL_FOCAL),
    # without gamma p_t log p_t only gamma = 0 (case 2) is still right
    (dict(gamma_term=False), ALL_FOCAL - {"case 2 logits"}),
])
def test_focal_typical_mistakes_fail_where_they_matter(mistake, fails):
    def wrong(*args):
        return naive_focal(*args, **mistake)

    passed, rows = check_module(answer(1, focal_loss_backward=wrong))
    assert not passed
    assert failing(rows) == fails


def test_focal_alpha_in_place_of_alpha_t_passes_only_at_alpha_one_half():
    def wrong(dout, logits, targets, alpha, gamma):
        return alpha / np.where(targets == 1, alpha, 1 - alpha) * sol.focal_loss_backward(
            dout, logits, targets, alpha, gamma)

    passed, rows = check_module(answer(1, focal_loss_backward=wrong))
    assert not passed
    assert failing(rows) == ALL_FOCAL - {"case 4 logits"}  # case 4: alpha = 0.5


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


@pytest.mark.parametrize("mistake, fails", [
    (dict(flip=True), {"case 1 pred", "case 2 pred", "case 3 pred", "case 4 pred"}),
    # |d| < 1 is the zone of beta = 1 (case 2) only; case 4 is L1
    (dict(zone=1.0), {"case 1 pred", "case 3 pred"}),
    # d instead of d / beta is right only for beta = 1
    (dict(divide=False), {"case 1 pred", "case 3 pred"}),
    # d / beta everywhere ignores the linear zone of every beta > 0
    (dict(clip=False), {"case 1 pred", "case 2 pred", "case 3 pred"}),
])
def test_smooth_l1_typical_mistakes_fail_where_they_matter(mistake, fails):
    def wrong(*args):
        return naive_smooth_l1(*args, **mistake)

    passed, rows = check_module(answer(2, smooth_l1_backward=wrong))
    assert not passed
    assert failing(rows) == fails


# ----------------------------------------------------------------------------------------
# Exercise 3: conv2d
# ----------------------------------------------------------------------------------------


def naive_conv_backward(dout, x, w, b, stride, padding, flip=False, use_stride=True, crop=True):
    """Loops over every output entry (not the reference's tensordot); the flags make mistakes."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    s = stride if use_stride else 1
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    wx = w[:, :, ::-1, ::-1] if flip else w
    dxpad, dw = np.zeros_like(xpad), np.zeros_like(w)
    for i_n in range(n):
        for i_f in range(f):
            for r in range(dout.shape[2]):
                for q in range(dout.shape[3]):
                    g = dout[i_n, i_f, r, q]
                    dw[i_f] += g * xpad[i_n, :, r * s:r * s + kh, q * s:q * s + kw]
                    dxpad[i_n, :, r * s:r * s + kh, q * s:q * s + kw] += g * wx[i_f]
    dx = dxpad[:, :, padding:padding + h, padding:padding + wd] if crop else dxpad
    return dx, dw, dout.sum(axis=(0, 2, 3))


def test_conv_an_independent_correct_answer_passes():
    assert check_module(answer(3, conv2d_backward=naive_conv_backward))[0]


def test_conv_flipped_kernel_fails_dx_except_for_the_1x1_kernel():
    passed, rows = check_module(answer(3, conv2d_backward=lambda *a: naive_conv_backward(*a, flip=True)))
    assert not passed
    assert failing(rows) == {"case 1 x", "case 2 x", "case 3 x", "case 5 x"}  # case 4 is 1x1


def test_conv_ignored_stride_fails_dx_and_dw_of_the_stride_2_cases():
    passed, rows = check_module(answer(3, conv2d_backward=lambda *a: naive_conv_backward(*a, use_stride=False)))
    assert not passed
    assert failing(rows) == {f"case {k} {v}" for k in (2, 3, 5) for v in "xw"}


def test_conv_missing_padding_crop_fails_with_the_expected_shape():
    passed, rows = check_module(answer(3, conv2d_backward=lambda *a: naive_conv_backward(*a, crop=False)))
    assert not passed
    assert failing(rows) == {"case 1 x", "case 2 x", "case 5 x"}  # the padding = 1 cases
    row = next(r for r in rows if r.name == "case 1 x")
    assert row.note == "returned shape (2, 3, 7, 9), expected (2, 3, 5, 7)"


def test_conv_returning_two_gradients_fails_every_case_with_a_message():
    passed, rows = check_module(answer(3, conv2d_backward=lambda *a: sol.conv2d_backward(*a)[:2]))
    assert not passed
    assert [r.name for r in rows] == [f"case {k}" for k in range(1, 6)]
    assert all(r.note == "must return the tuple (dx, dw, db), got tuple of length 2" for r in rows)


# ----------------------------------------------------------------------------------------
# Exercise 4: nearest upsampling
# ----------------------------------------------------------------------------------------


def blocks(dout, k):
    n, c, hk, wk = dout.shape
    return dout.reshape(n, c, hk // k, k, wk // k, k)


ALL_UPSAMPLE = {f"case {k} x" for k in range(1, 5)}


@pytest.mark.parametrize("wrong", [
    lambda d, k: d[:, :, ::k, ::k],  # one pixel of each block instead of the block's sum
    lambda d, k: blocks(d, k).mean(axis=(3, 5)),  # the mean: divides by factor^2
    lambda d, k: d[:, :, :d.shape[2] // k, :d.shape[3] // k],  # index i, not i // factor
    lambda d, k: d.reshape(d.shape[0], d.shape[1], k, d.shape[2] // k, k, d.shape[3] // k).sum(axis=(2, 4)),
], ids=["strided-pick", "mean", "no-index-division", "wrong-block-axes"])
def test_upsample_typical_mistakes_fail_every_case(wrong):
    passed, rows = check_module(answer(4, upsample_nearest_backward=wrong))
    assert not passed
    assert failing(rows) == ALL_UPSAMPLE


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

F = sol.F  # the package's functional ops, as the stub imports them

WB = {f"case {k} {p}" for k in (1, 2, 3) for p in "wb"}


class Overwrite(sol.SharedHead):
    def backward(self, douts):
        dlevels = [None] * len(douts)
        for lvl in reversed(range(len(douts))):
            dx, dw, db = F.conv2d_backward(douts[lvl], self._caches.pop())
            self.grads["w"][...] = dw  # only the last level walked (level 0) survives
            self.grads["b"][...] = db
            dlevels[lvl] = dx
        return dlevels


class SumButAssign(sol.SharedHead):
    def backward(self, douts):
        dlevels, dw_sum, db_sum = [None] * len(douts), 0.0, 0.0
        for lvl in reversed(range(len(douts))):
            dlevels[lvl], dw, db = F.conv2d_backward(douts[lvl], self._caches.pop())
            dw_sum, db_sum = dw_sum + dw, db_sum + db
        self.grads["w"], self.grads["b"] = dw_sum, db_sum  # drops what grads held before
        return dlevels


class ForwardOrder(sol.SharedHead):
    def backward(self, douts):
        dlevels = []
        for d in douts:  # pops level L-1's cache for level 0's dout
            dx, dw, db = F.conv2d_backward(d, self._caches.pop())
            self.grads["w"] += dw
            self.grads["b"] += db
            dlevels.append(dx)
        return dlevels


class ReturnsLastLevelFirst(sol.SharedHead):
    def backward(self, douts):
        out = []
        for lvl in reversed(range(len(douts))):
            dx, dw, db = F.conv2d_backward(douts[lvl], self._caches.pop())
            self.grads["w"] += dw
            self.grads["b"] += db
            out.append(dx)
        return out


class IndexesInsteadOfPopping(sol.SharedHead):
    def backward(self, douts):
        dlevels = []
        for lvl, d in enumerate(douts):
            dx, dw, db = F.conv2d_backward(d, self._caches[lvl])
            self.grads["w"] += dw
            self.grads["b"] += db
            dlevels.append(dx)
        return dlevels


@pytest.mark.parametrize("head", [Overwrite, SumButAssign])
def test_shared_head_not_accumulating_fails_w_and_b_of_every_case(head):
    passed, rows = check_module(answer(5, SharedHead=head))
    assert not passed
    assert failing(rows) == WB
    assert any(r.name == "case 1 levels[0]" and r.passed for r in rows)  # dx per level is right


def test_shared_head_wrong_level_order_fails_by_shape_or_by_value():
    passed, rows = check_module(answer(5, SharedHead=ForwardOrder))
    assert not passed
    by_name = {r.name: r for r in rows}
    for k in (1, 2):  # levels of different sizes: conv2d_backward refuses the pairing
        assert not by_name[f"case {k}"].passed
        assert by_name[f"case {k}"].note.startswith("raised ValueError")
    # two levels of one size: no error, but dw pairs each dout with the other level's input
    # (db and dx do not read the cache's input, so they come out right)
    assert failing(r for r in rows if r.name.startswith("case 3")) == {"case 3 w"}


def test_shared_head_returning_levels_in_reverse_fails():
    passed, rows = check_module(answer(5, SharedHead=ReturnsLastLevelFirst))
    assert not passed
    bad = failing(rows)
    assert {"case 1 levels[0]", "case 1 levels[2]", "case 2 levels[0]", "case 2 levels[3]"} <= bad
    assert not bad & WB  # the grads are right; only the list order is wrong


def test_shared_head_that_leaves_caches_on_the_stack_fails():
    passed, rows = check_module(answer(5, SharedHead=IndexesInsteadOfPopping))
    assert not passed
    assert [r.name for r in rows] == ["case 1", "case 2", "case 3"]
    assert rows[0].note == "backward left 3 of 3 caches on the stack; pop one per level, last level first"


# ----------------------------------------------------------------------------------------
# What the checker says about files and broken answers
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", sorted(STUBS))
def test_untouched_stubs_say_not_implemented_yet_and_exit_1(n, capsys):
    assert check_file(STUBS[n]) == 1
    out = capsys.readouterr()
    assert "not implemented yet" in out.out
    assert "Traceback" not in out.out + out.err
    passed, rows = check_module(load_exercise_file(STUBS[n]))
    assert not passed
    assert len(rows) == 1 and rows[0].note.startswith(f"not implemented yet (Exercise {n}:")


def test_a_missing_file_exits_2_with_a_message(tmp_path, capsys):
    missing = tmp_path / "ex9_nothing.py"
    assert check_file(missing) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err


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
    assert out.count("raised IndexError at line 5: index") == 4  # every case, no traceback
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
    p = tmp_path / "ex9.py"
    p.write_text("EXERCISE = 9\n")
    assert check_file(p) == 2
    assert "EXERCISE must be one of [1, 2, 3, 4, 5], got 9" in capsys.readouterr().err


def test_a_file_naming_exercise_but_missing_its_function_fails():
    passed, rows = check_module(answer(3))
    assert not passed
    assert rows[0].note.startswith("missing: the file must define conv2d_backward(dout, x, w, b")


def test_the_command_line_checks_the_solutions_file_and_exits_0():
    r = subprocess.run([sys.executable, "-m", "numpy_retinanet", "check", sol.__file__],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^case 1 logits .* PASS$", r.stdout, re.M)
    assert "FAIL" not in r.stdout
