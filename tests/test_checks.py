"""Tests for _checks.py: every check accepts good values and names the argument, the
expectation and what came in one message shape, "<name> must be <expected>, got <what>"."""

import numpy as np
import pytest

from numpy_retinanet._checks import (
    check_array,
    check_dout,
    check_int,
    check_probability,
    check_real,
    check_same_shape,
    is_int,
    nan_scans_skipped,
)

# ---------------------------------------------------------------------------------- ints


@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3)])
def test_check_int_accepts_python_and_numpy_ints_and_returns_a_python_int(value):
    got = check_int("n", value, 1, 5)
    assert got == 3 and type(got) is int


@pytest.mark.parametrize(
    "value, low, high, message",
    [
        (0, 1, None, r"^n must be an int >= 1, got 0$"),
        (6, 1, 5, r"^n must be an int in \[1, 5\], got 6$"),
        (True, 0, None, r"^n must be an int >= 0, got True$"),
        (np.bool_(True), 0, None, r"^n must be an int >= 0, got "),
        (2.0, 1, None, r"^n must be an int >= 1, got 2\.0$"),
        ("2", 1, None, r"^n must be an int >= 1, got '2'$"),
        (None, 1, None, r"^n must be an int >= 1, got None$"),
    ],
)
def test_check_int_refuses_with_name_expectation_and_value(value, low, high, message):
    with pytest.raises(ValueError, match=message):
        check_int("n", value, low, high)


def test_is_int_refuses_bools():
    assert is_int(1) and is_int(np.int16(1))
    assert not is_int(True) and not is_int(np.bool_(False)) and not is_int(1.0)


# ------------------------------------------------------------------------------- reals


@pytest.mark.parametrize("value", [0.5, 1, np.float32(0.5), np.float64(0.5), np.int64(1), np.array(0.5)])
def test_check_real_accepts_numbers_and_returns_a_python_float(value):
    got = check_real("x", value, 0, 1)
    assert type(got) is float and got == float(value)


@pytest.mark.parametrize(
    "value, bounds, message",
    [
        (-1.0, dict(low=0), r"^x must be a finite real number >= 0, got -1\.0$"),
        (0.0, dict(low=0, low_open=True), r"^x must be a finite real number > 0, got 0\.0$"),
        (2.0, dict(high=1), r"^x must be a finite real number <= 1, got 2\.0$"),
        (1.0, dict(high=1, high_open=True), r"^x must be a finite real number < 1, got 1\.0$"),
        (1.0, dict(low=0, high=1, high_open=True), r"^x must be a finite real number in \[0, 1\), got 1\.0$"),
        (0.0, dict(low=0, high=1, low_open=True), r"^x must be a finite real number in \(0, 1\], got 0\.0$"),
        (float("nan"), {}, r"^x must be a finite real number, got nan$"),
        (np.inf, {}, r"^x must be a finite real number, got inf$"),
        (-np.inf, dict(low=0), r"^x must be a finite real number >= 0, got -inf$"),
        (True, {}, r"^x must be a finite real number, got bool True$"),
        ("2", {}, r"^x must be a finite real number, got str '2'$"),
        (None, {}, r"^x must be a finite real number, got NoneType None$"),
        (np.array([0.5]), {}, r"^x must be a finite real number, got ndarray array\(\[0\.5\]\)$"),
        (np.array([0.5, 1.0]), {}, r"^x must be a finite real number, got ndarray "),
    ],
)
def test_check_real_refuses_with_name_expectation_and_value(value, bounds, message):
    with pytest.raises(ValueError, match=message):
        check_real("x", value, **bounds)


def test_check_real_keeps_closed_bounds():
    assert check_real("x", 0, 0, 1) == 0.0 and check_real("x", 1, 0, 1) == 1.0


def test_check_probability_is_the_closed_unit_interval():
    assert check_probability("p", 0) == 0.0 and check_probability("p", np.float32(1)) == 1.0
    for bad in (-0.01, 1.01, float("nan"), True):
        with pytest.raises(ValueError, match=r"^p must be a finite real number in \[0, 1\], got "):
            check_probability("p", bad)


# ------------------------------------------------------------------------------ arrays


def test_check_array_returns_a_good_array_unchanged():
    a = np.zeros((2, 4), dtype=np.float32)
    assert check_array("a", a, ("N", 4), kind="f", dtype=np.float32, nonempty=True, finite=True) is a
    assert check_array("a", np.zeros((0, 4)), ("N", 4), finite=True).shape == (0, 4)  # empty passes
    assert check_array("a", np.arange(3), kind="fiu", finite=True).shape == (3,)  # ints are finite


@pytest.mark.parametrize(
    "a, kwargs, message",
    [
        ([1.0, 2.0], {}, r"^a must be an array, got list$"),
        (np.zeros(4), dict(dims=("N", 4)), r"^a must be an array of shape \(N, 4\), got shape \(4,\)$"),
        (np.zeros((2, 5)), dict(dims=("N", 4)), r"^a must be an array of shape \(N, 4\), got shape \(2, 5\)$"),
        (np.zeros((2,)), dict(dims=(3,)), r"^a must be an array of shape \(3,\), got shape \(2,\)$"),
        (np.zeros(2, dtype=np.int64), dict(kind="f"), r"^a must be an array of floating dtype .*, got dtype int64$"),
        (np.zeros(2, dtype=bool), dict(kind="fiu"), r"^a must be an array of real numbers .*, got dtype bool$"),
        (np.zeros(2), dict(kind="iu"), r"^a must be an array of integers .*, got dtype float64$"),
        (np.zeros(2), dict(dtype=np.float32), r"^a must be an array of dtype float32, got dtype float64$"),
        (np.zeros((0, 3)), dict(nonempty=True), r"^a must be a non-empty array, got shape \(0, 3\)$"),
        (np.array([1.0, np.nan]), dict(no_nan=True), r"^a must be free of NaN, got NaN values$"),
        (np.array([1.0, np.nan]), dict(finite=True), r"^a must be finite, got NaN values$"),
        (np.array([1.0, np.inf]), dict(finite=True), r"^a must be finite, got inf values$"),
        (np.array([1.0, -np.inf]), dict(finite=True), r"^a must be finite, got inf values$"),
    ],
)
def test_check_array_refuses_with_name_expectation_and_what_came(a, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_array("a", a, **kwargs)


def test_no_nan_lets_inf_through():
    # The hot ops' cheap check: one max() pass finds NaN only.
    check_array("a", np.array([1.0, np.inf]), no_nan=True)


def test_inside_nan_scans_skipped_only_the_no_nan_pass_is_skipped_and_it_comes_back_after():
    nan = np.array([1.0, np.nan])
    with nan_scans_skipped():
        assert check_array("a", nan, no_nan=True) is nan
        with pytest.raises(ValueError, match=r"^a must be finite, got NaN values$"):
            check_array("a", nan, finite=True)
        with pytest.raises(ValueError, match=r"^a must be an array of shape \(3,\), got shape \(2,\)$"):
            check_array("a", nan, dims=(3,), no_nan=True)
    with pytest.raises(ValueError, match=r"^a must be free of NaN, got NaN values$"):
        check_array("a", nan, no_nan=True)
    with pytest.raises(RuntimeError, match="inside"), nan_scans_skipped():
        raise RuntimeError("inside")  # an error in the block restores the scans too
    with pytest.raises(ValueError, match=r"^a must be free of NaN, got NaN values$"):
        check_array("a", nan, no_nan=True)


def test_check_same_shape():
    ref = np.zeros((2, 3))
    b = np.ones((2, 3), dtype=int)
    assert check_same_shape("b", b, "ref", ref) is b
    with pytest.raises(ValueError, match=r"^b must be an array of the shape of ref \(2, 3\), got shape \(3, 2\)$"):
        check_same_shape("b", b.T, "ref", ref)
    with pytest.raises(ValueError, match=r"^b must be an array of the shape of ref \(2, 3\), got list$"):
        check_same_shape("b", [[0, 0, 0]] * 2, "ref", ref)


# --------------------------------------------------------------------- upstream gradients


def test_check_dout_accepts_the_forward_outputs_shape_and_dtype():
    d = np.ones((2, 3), dtype=np.float32)
    assert check_dout("dout", d, (2, 3), np.float32) is d
    assert check_dout("dout", np.ones((2, 3)), (2, 3)) is not None  # dtype None: the caller casts
    assert check_dout("dout", np.ones((0, 4)), (0, 4)).shape == (0, 4)


@pytest.mark.parametrize(
    "dout, dtype, message",
    [
        ([1.0], None, r"^dout must be an array, got list$"),
        (np.ones((3, 2)), None, r"^dout must be an array of the forward output's shape \(2, 3\), got shape \(3, 2\)$"),
        (np.ones((2, 3)), np.float32, r"^dout must be an array of the forward pass's dtype float32, got dtype float64$"),
        (np.ones((2, 3), dtype=int), None, r"^dout must be an array of floating dtype .*, got dtype int64$"),
        (np.full((2, 3), np.nan), None, r"^dout must be free of NaN, got NaN values$"),
    ],
)
def test_check_dout_refuses_with_name_expectation_and_what_came(dout, dtype, message):
    with pytest.raises(ValueError, match=message):
        check_dout("dout", dout, (2, 3), dtype)
