"""Tests of the gradient checker itself: it passes right gradients, catches wrong ones where they
are wrong, refuses float32, leaves its inputs exactly as it found them, and samples entries."""

import numpy as np
import pytest

from numpy_retinanet.gradcheck import (
    all_passed,
    check_gradients,
    compare,
    directional_check,
    format_report,
    numerical_gradient,
)


def _problem(shape=(3, 4), seed=0):
    """f(x, w) = sum(sin(x) * w^2), with its exact gradients cos(x) w^2 and 2 sin(x) w."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, shape)
    w = rng.uniform(-2, 2, shape)

    def f():
        return float(np.sum(np.sin(x) * w**2))

    return f, {"x": x, "w": w}, {"x": np.cos(x) * w**2, "w": 2 * np.sin(x) * w}


def test_a_correct_gradient_passes_with_a_small_error():
    f, inputs, grads = _problem()
    rows = check_gradients(f, inputs, grads, verbose=False)
    assert [r.name for r in rows] == ["x", "w"]
    assert all_passed(rows)
    assert all(r.checked == 12 and r.max_rel_error < 1e-8 for r in rows), format_report(rows)


def test_numerical_gradient_of_a_quadratic_is_exact_to_rounding():
    # central differences have no truncation error on a quadratic
    rng = np.random.default_rng(1)
    a, x = rng.uniform(-1, 1, (2, 5)), rng.uniform(-1, 1, (2, 5))
    num = numerical_gradient(lambda: float(np.sum(a * x**2)), x)
    assert num.shape == x.shape
    np.testing.assert_allclose(num, 2 * a * x, rtol=0, atol=1e-9)


@pytest.mark.parametrize("wrong", ["factor 2", "sign"])
def test_a_wrong_entry_fails_and_is_pointed_at(wrong):
    f, inputs, grads = _problem()
    bad = (1, 2)
    grads["w"] = grads["w"].copy()
    grads["w"][bad] *= 2.0 if wrong == "factor 2" else -1.0
    rows = check_gradients(f, inputs, grads, verbose=False)
    assert rows[0].passed  # x is right
    assert not rows[1].passed and not all_passed(rows)
    assert rows[1].worst_index == bad
    assert rows[1].analytic == grads["w"][bad]
    assert rows[1].max_rel_error > 0.3


def test_a_gradient_off_by_two_everywhere_fails():
    f, inputs, grads = _problem()
    rows = check_gradients(f, inputs, {k: 2 * g for k, g in grads.items()}, verbose=False)
    assert not any(r.passed for r in rows)
    assert all(r.max_rel_error == pytest.approx(0.5, rel=1e-6) for r in rows)


def test_the_report_says_pass_and_fail():
    f, inputs, grads = _problem()
    grads["x"] = -grads["x"]
    text = format_report(check_gradients(f, inputs, grads, verbose=False))
    lines = text.splitlines()
    assert lines[0].startswith("input")
    assert lines[1].startswith("x") and lines[1].endswith("FAIL")
    assert lines[2].startswith("w") and lines[2].endswith("PASS")


def test_tiny_entries_are_compared_absolutely():
    # 1e-12 vs 2e-12 differs by 100% relative, but by far less than atol=1e-9: central-difference noise
    row = compare("g", np.array([1e-12, 1.0]), np.array([2e-12, 1.0]))
    assert row.passed and row.max_rel_error <= 1e-9
    row = compare("g", np.array([1e-6, 1.0]), np.array([2e-6, 1.0]))
    assert not row.passed and row.worst_index == (0,)


def test_float32_inputs_are_refused():
    f, inputs, grads = _problem()
    inputs["x"] = inputs["x"].astype(np.float32)
    with pytest.raises(ValueError, match=r"^x must be an array of dtype float64, got dtype float32$"):
        check_gradients(f, inputs, grads, verbose=False)
    with pytest.raises(ValueError, match=r"^x must be an array of dtype float64, got dtype float32$"):
        numerical_gradient(f, inputs["x"])
    with pytest.raises(ValueError, match=r"^x must be an array of dtype float64, got dtype float32$"):
        directional_check(f, inputs, grads, verbose=False)


def test_missing_or_misshapen_analytic_gradients_are_refused():
    f, inputs, grads = _problem()
    with pytest.raises(ValueError, match=r"no analytic gradient.*'w'"):
        check_gradients(f, inputs, {"x": grads["x"]}, verbose=False)
    with pytest.raises(ValueError, match=r"'w'.*shape"):
        check_gradients(f, inputs, {"x": grads["x"], "w": grads["w"].T}, verbose=False)


def test_inputs_are_restored_bitwise():
    f, inputs, grads = _problem()
    h = 1e-5
    # A checker that walked x -> x + h -> x - h -> x by adding and subtracting h would not get back
    # to these values in floating point; the checker must restore the saved originals.
    x = inputs["x"]
    assert np.any(((x + h) - 2 * h) + h != x)
    before = {k: v.copy() for k, v in inputs.items()}
    check_gradients(f, inputs, grads, h=h, verbose=False)
    directional_check(f, inputs, grads, h=h, verbose=False)
    numerical_gradient(f, inputs["x"], h=h)
    for k in inputs:
        assert inputs[k].tobytes() == before[k].tobytes(), k


def test_directional_check_passes_right_and_fails_wrong():
    f, inputs, grads = _problem()
    row = directional_check(f, inputs, grads, verbose=False)
    assert row.passed and row.name == "direction" and row.shape == (24,)
    assert row.max_rel_error < 1e-8
    wrong = dict(grads, w=grads["w"].copy())
    wrong["w"][0, 0] *= -1.0  # one wrong entry among 24 moves the directional derivative
    assert not directional_check(f, inputs, wrong, verbose=False).passed


def test_max_entries_checks_that_many_distinct_entries():
    f, inputs, grads = _problem(shape=(5, 6))
    x = inputs["x"]
    x0 = x.copy()
    perturbed = []

    def spying_f():
        changed = np.argwhere(x != x0)
        if len(changed):
            perturbed.append(tuple(changed[0]))
        return f()

    row = check_gradients(spying_f, {"x": x}, {"x": grads["x"]}, max_entries=7, seed=3, verbose=False)[0]
    assert row.checked == 7 and row.passed
    assert len(perturbed) == 14  # two evaluations per entry
    assert len(set(perturbed)) == 7
    assert row.worst_index in set(perturbed)
    # the same seed draws the same entries; max_entries beyond the size checks everything
    again = check_gradients(f, {"x": x}, {"x": grads["x"]}, max_entries=7, seed=3, verbose=False)[0]
    assert again.worst_index == row.worst_index
    assert check_gradients(f, {"x": x}, {"x": grads["x"]}, max_entries=100, verbose=False)[0].checked == 30
