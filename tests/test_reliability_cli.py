"""Issue 16, classes 3-5 on the command line: every out-of-range setting is refused with a message
naming it, before any work; the gradient checker refuses a step it would divide by."""

from __future__ import annotations

import numpy as np
import pytest

from numpy_retinanet import gradcheck


def _gradcheck_inputs():
    x = np.array([0.5, -1.0, 2.0])
    return (lambda: float((x ** 2).sum())), {"x": x}, {"x": 2 * x}


@pytest.mark.parametrize("h", [0.0, -1e-5, float("nan"), float("inf")])
def test_gradcheck_refuses_a_step_that_is_not_positive_and_finite(h):
    f, inputs, analytic = _gradcheck_inputs()
    with pytest.raises(ValueError, match=r"^h must be a finite real number > 0"):
        gradcheck.check_gradients(f, inputs, analytic, h=h, verbose=False)
    with pytest.raises(ValueError, match=r"^h must be"):
        gradcheck.numerical_gradient(f, inputs["x"], h=h)
    with pytest.raises(ValueError, match=r"^h must be"):
        gradcheck.directional_check(f, inputs, analytic, h=h, verbose=False)


@pytest.mark.parametrize("tolerances, name", [(dict(rtol=0.0), "rtol"), (dict(atol=-1.0), "atol"),
                                              (dict(rtol=float("nan")), "rtol")])
def test_gradcheck_refuses_tolerances_it_would_divide_by(tolerances, name):
    f, inputs, analytic = _gradcheck_inputs()
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        gradcheck.check_gradients(f, inputs, analytic, verbose=False, **tolerances)


def test_gradcheck_still_passes_a_correct_gradient_at_a_valid_step():
    f, inputs, analytic = _gradcheck_inputs()
    assert gradcheck.all_passed(gradcheck.check_gradients(f, inputs, analytic, h=1e-4, verbose=False))
