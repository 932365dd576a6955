"""Tests for nn/functional.py: forward passes against naive loops, backward passes
against central differences (float64), dtypes kept, and bad input refused.

The naive conv below is the oracle: explicit loops over samples, filters and
output pixels, written from the definition and sharing no code with the
vectorised version.
"""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from numpy_retinanet.gradcheck import check_gradients, compare, numerical_gradient
from numpy_retinanet.nn.functional import (
    channel_affine_backward,
    channel_affine_forward,
    conv2d_backward,
    conv2d_forward,
    frozen_batch_norm_coefficients,
    group_norm_backward,
    group_norm_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    relu_backward,
    relu_forward,
    upsample_nearest_backward,
    upsample_nearest_forward,
)

# A correct backward pass agrees with central differences to ~1e-8 in float64.
RTOL = 1e-6


def naive_conv2d(x, w, b, stride, padding):
    """y[n, f, oh, ow] = b[f] + sum_{c,i,j} w[f, c, i, j] * xpad[n, c, s*oh + i, s*ow + j]."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xpad = np.zeros((n, c, h + 2 * padding, wd + 2 * padding), dtype=x.dtype)
    xpad[:, :, padding:padding + h, padding:padding + wd] = x
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, f, oh, ow), dtype=x.dtype)
    for i_n in range(n):
        for i_f in range(f):
            for r in range(oh):
                for q in range(ow):
                    window = xpad[i_n, :, r * stride:r * stride + kh, q * stride:q * stride + kw]
                    y[i_n, i_f, r, q] = np.sum(window * w[i_f]) + (0.0 if b is None else b[i_f])
    return y


@st.composite
def conv_cases(draw, max_size=7):
    """Shapes and hyperparameters of a valid conv: kernel 1-5, stride 1-3, padding 0-2."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride, padding = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * padding), max_size))
    w = draw(st.integers(max(1, kw - 2 * padding), max_size))
    n, c, f = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return dict(
        n=n, c=c, f=f, h=h, w=w, kh=kh, kw=kw, stride=stride, padding=padding,
        bias=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)),
    )


def make_conv_inputs(case, dtype=np.float64):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"])).astype(dtype)
    w = rng.standard_normal((case["f"], case["c"], case["kh"], case["kw"])).astype(dtype)
    b = rng.standard_normal(case["f"]).astype(dtype) if case["bias"] else None
    return rng, x, w, b


def with_layout(x, layout):
    """The same values as x in another memory layout.

    "nchw": contiguous. "cnhw": compact channels-first, batch-second, like a
    ReLU of a conv output. "grid": a slice of a larger channels-first buffer,
    like a conv output itself.
    """
    if layout == "nchw":
        return x
    if layout == "cnhw":
        return np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    n, c, h, w = x.shape
    buf = np.full((c, n, h + 1, w + 2), np.inf)
    buf[:, :, :h, :w] = x.transpose(1, 0, 2, 3)
    return buf[:, :, :h, :w].transpose(1, 0, 2, 3)


def assert_all_pass(rows):
    for r in rows:
        assert r.passed and r.max_rel_error <= RTOL, r.format()


# ---------------------------------------------------------------- conv


@given(case=conv_cases(), layout=st.sampled_from(["nchw", "cnhw", "grid"]))
def test_conv_forward_matches_naive_loops(case, layout):
    _, x, w, b = make_conv_inputs(case)
    x = with_layout(x, layout)
    y, _ = conv2d_forward(x, w, b, stride=case["stride"], padding=case["padding"])
    expected = naive_conv2d(x, w, b, case["stride"], case["padding"])
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def conv_gradient_rows(forward, backward, rng, x, w, b, stride, padding, h=1e-2):
    """``check_gradients`` rows of a conv pair: its backward against central differences of sum(y * dout)
    for a random dout (and ``db is None`` checked when there is no bias).

    The conv is linear in x, w and b, so a central difference has no truncation error at any step ``h``;
    what it has is the rounding error of f, a sum of thousands of products, divided by 2h. The large step
    keeps that far below the tolerance: at h = 1e-5 it reached 2e-6 of a small entry of dw (the example
    below the test), at 1e-2 1e-10."""
    y, cache = forward(x, w, b, stride, padding)
    dout = rng.standard_normal(y.shape)
    dx, dw, db = backward(dout, cache)
    inputs, analytic = {"x": x, "w": w}, {"x": dx, "w": dw}
    if b is not None:
        inputs["b"], analytic["b"] = b, db
    else:
        assert db is None

    def f():
        return float(np.sum(forward(x, w, b, stride, padding)[0] * dout))

    return check_gradients(f, inputs, analytic, h=h, verbose=False)


@given(case=conv_cases())
@example(case=dict(n=4, c=4, f=4, h=6, w=5, kh=5, kw=4, stride=1, padding=2, bias=False, seed=2**32 - 1))
def test_conv_backward_matches_numerical_gradients(case):
    rng, x, w, b = make_conv_inputs(case)
    assert_all_pass(conv_gradient_rows(conv2d_forward, conv2d_backward, rng, x, w, b, case["stride"],
                                       case["padding"]))


def test_conv_output_size_is_floor_formula():
    # H: 7 + 2*1 - 3 = 6 -> 6/2 = 3 -> 4 rows;  6/3 = 2 -> 3 rows.
    # W: 5 + 2*1 - 2 = 5 -> floor(5/2) = 2 -> 3 columns;  floor(5/3) = 1 -> 2 columns.
    x = np.zeros((1, 1, 7, 5))
    y, _ = conv2d_forward(x, np.zeros((2, 1, 3, 2)), None, stride=2, padding=1)
    assert y.shape == (1, 2, 4, 3)
    y, _ = conv2d_forward(x, np.zeros((2, 1, 3, 2)), None, stride=3, padding=1)
    assert y.shape == (1, 2, 3, 2)


def test_conv_relu_conv_chain_with_non_contiguous_layouts():
    # The first conv returns a non-contiguous (channels-first) view, ReLU keeps
    # that layout, and the 1x1 conv reads it without a copy; dx comes back as
    # a view too. The composition must still match the oracle and its gradients.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5))
    w1, b1 = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    w2, b2 = rng.standard_normal((2, 4, 1, 1)), rng.standard_normal(2)
    h, c1 = conv2d_forward(x, w1, b1, 1, 1)
    r, cr = relu_forward(h)
    y, c2 = conv2d_forward(r, w2, b2, 1, 0)
    assert np.shares_memory(c2[0], r)  # the 1x1 fast path took the view
    expected = naive_conv2d(np.maximum(naive_conv2d(x, w1, b1, 1, 1), 0), w2, b2, 1, 0)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)

    dout = rng.standard_normal(y.shape)
    dr, dw2, db2 = conv2d_backward(dout, c2)
    dx, dw1, db1 = conv2d_backward(relu_backward(dr, cr), c1)

    def f():
        h_ = relu_forward(conv2d_forward(x, w1, b1, 1, 1)[0])[0]
        return float(np.sum(conv2d_forward(h_, w2, b2, 1, 0)[0] * dout))

    rows = check_gradients(f, {"x": x, "w1": w1, "b1": b1, "w2": w2, "b2": b2},
                           {"x": dx, "w1": dw1, "b1": db1, "w2": dw2, "b2": db2}, verbose=False)
    assert_all_pass(rows)


def test_conv_backward_leaves_cache_and_inputs_unchanged():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    x0, w0 = x.copy(), w.copy()
    y, cache = conv2d_forward(x, w, b, 2, 1)
    dout = rng.standard_normal(y.shape)
    first = conv2d_backward(dout, cache)
    second = conv2d_backward(dout, cache)
    for g1, g2 in zip(first, second):
        np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("k, stride, padding", [(3, 1, 1), (3, 2, 1), (1, 2, 0), (1, 1, 0)])
def test_conv_backward_without_dx_gives_the_same_weight_and_bias_gradients_bit_for_bit(k, stride, padding):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    w, b = rng.standard_normal((4, 3, k, k)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    y, cache = conv2d_forward(x, w, b, stride, padding)
    dout = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = conv2d_backward(dout, cache)
    none, dw2, db2 = conv2d_backward(dout, cache, need_dx=False)
    assert dx.shape == x.shape and none is None
    assert dw2.tobytes() == dw.tobytes() and db2.tobytes() == db.tobytes()


def test_conv_float32_agrees_with_float64_oracle():
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((2, 5, 9, 8)), rng.standard_normal((3, 5, 3, 3)), rng.standard_normal(3)
    y, _ = conv2d_forward(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), 2, 1)
    np.testing.assert_allclose(y, naive_conv2d(x, w, b, 2, 1), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- relu


@st.composite
def away_from_zero(draw, max_dim=5):
    """Arrays whose entries are at least 1e-3 from 0, where ReLU's kink is."""
    shape = tuple(draw(st.lists(st.integers(1, max_dim), min_size=1, max_size=4)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(1e-3, 3.0, size=shape), rng


@given(data=away_from_zero())
def test_relu_forward_and_backward(data):
    x, rng = data
    y, cache = relu_forward(x)
    np.testing.assert_array_equal(y, np.where(x > 0, x, 0.0))
    dout = rng.standard_normal(x.shape)
    dx = relu_backward(dout, cache)
    rows = check_gradients(lambda: float(np.sum(relu_forward(x)[0] * dout)), {"x": x}, {"x": dx},
                           verbose=False)
    assert_all_pass(rows)


# ---------------------------------------------------------------- upsample


@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4),
       factor=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_upsample_nearest_forward_and_backward(n, c, h, w, factor, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    y, cache = upsample_nearest_forward(x, factor)
    assert y.shape == (n, c, h * factor, w * factor)
    for i in range(h * factor):
        for j in range(w * factor):
            np.testing.assert_array_equal(y[:, :, i, j], x[:, :, i // factor, j // factor])
    dout = rng.standard_normal(y.shape)
    dx = upsample_nearest_backward(dout, cache)
    rows = check_gradients(lambda: float(np.sum(upsample_nearest_forward(x, factor)[0] * dout)),
                           {"x": x}, {"x": dx}, verbose=False)
    assert_all_pass(rows)


def test_upsample_output_is_a_writable_copy():
    x = np.ones((1, 1, 2, 2))
    y, _ = upsample_nearest_forward(x, 1)
    y += 1
    np.testing.assert_array_equal(x, 1.0)


# ---------------------------------------------------------------- group norm


@st.composite
def group_norm_cases(draw):
    g = draw(st.sampled_from([1, 2, 3]))
    c = g * draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 3)), c, draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    if c // g * shape[2] * shape[3] < 2:
        shape = (shape[0], c, shape[2], 2)  # a group of one entry has zero variance
    return shape, g, draw(st.integers(0, 2**32 - 1))


@given(case=group_norm_cases())
def test_group_norm_normalizes_each_sample_and_group(case):
    (n, c, h, w), g, seed = case
    rng = np.random.default_rng(seed)
    x = 3.0 + 2.0 * rng.standard_normal((n, c, h, w))
    gamma, beta = rng.uniform(0.5, 2.0, c), rng.standard_normal(c)
    y, _ = group_norm_forward(x, gamma, beta, g, eps=1e-5)
    xhat = (y - beta[:, None, None]) / gamma[:, None, None]
    per = c // g
    for i in range(n):
        for k in range(g):
            block = x[i, k * per:(k + 1) * per]
            expected = (block - block.mean()) / np.sqrt(block.var() + 1e-5)
            np.testing.assert_allclose(xhat[i, k * per:(k + 1) * per], expected, rtol=1e-10, atol=1e-10)


def test_group_norm_of_a_sample_does_not_depend_on_the_rest_of_the_batch():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 5, 5))
    gamma, beta = rng.uniform(0.5, 2.0, 4), rng.standard_normal(4)
    y_batch, _ = group_norm_forward(x, gamma, beta, 2)
    y_one, _ = group_norm_forward(x[1:2], gamma, beta, 2)
    np.testing.assert_allclose(y_batch[1:2], y_one, rtol=1e-12, atol=1e-12)


def test_group_norm_float32_is_accurate_when_the_mean_dwarfs_the_spread():
    # E[x^2] - E[x]^2 gets the variance wrong by over 10% here in float32.
    rng = np.random.default_rng(5)
    x32 = (1000.0 + rng.standard_normal((2, 4, 16, 16))).astype(np.float32)
    gamma, beta = np.ones(4), np.zeros(4)
    y32, _ = group_norm_forward(x32, gamma.astype(np.float32), beta.astype(np.float32), 2)
    y64, _ = group_norm_forward(x32.astype(np.float64), gamma, beta, 2)
    np.testing.assert_allclose(y32, y64, atol=2e-3)


def extrapolated_gradient_rows(f, inputs, analytic, h=1e-4):
    """``check_gradients``' rows with each numerical gradient extrapolated from the steps h and h/2:
    (4 D(h/2) - D(h)) / 3 cancels the h^2 term of a central difference's truncation error.

    GroupNorm of a group whose values nearly coincide (variance 2e-7, below its eps) curves so sharply
    that D(1e-5) missed a correct dx of 120.6 by 1.1e-6 of itself (the first example below the test:
    hypothesis found it in 3000 draws). Extrapolating from 1e-5 fixed that but tripled the rounding error
    of f, and a tiny entry (1.8e-5) of another case missed by 1.9e-9, over the check's 1e-9 (the second
    example). From h = 1e-4 both pass, and 3000 draws find no failure."""
    rows = []
    for name, x in inputs.items():
        num = (4 * numerical_gradient(f, x, h / 2) - numerical_gradient(f, x, h)) / 3
        rows.append(compare(name, analytic[name], num))
    return rows


@given(case=group_norm_cases())
@example(case=((3, 2, 1, 2), 2, 456804))
@example(case=((3, 9, 3, 4), 3, 3))
def test_group_norm_backward_matches_numerical_gradients(case):
    shape, g, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    gamma, beta = rng.uniform(0.5, 2.0, shape[1]), rng.standard_normal(shape[1])
    y, cache = group_norm_forward(x, gamma, beta, g)
    dout = rng.standard_normal(y.shape)
    dx, dgamma, dbeta = group_norm_backward(dout, cache)

    def f():
        return float(np.sum(group_norm_forward(x, gamma, beta, g)[0] * dout))

    assert_all_pass(extrapolated_gradient_rows(f, {"x": x, "gamma": gamma, "beta": beta},
                                               {"x": dx, "gamma": dgamma, "beta": dbeta}))


# ---------------------------------------------------------------- max pool


def naive_max_pool(x, k, s, p):
    """y and the (row, col) in x of each window's first maximum in row-major order, by loops."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    y = np.zeros((n, c, oh, ow), dtype=x.dtype)
    where = np.zeros((n, c, oh, ow, 2), dtype=np.int64)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                for j in range(ow):
                    best = None
                    for r in range(s * i - p, s * i - p + k):
                        for q in range(s * j - p, s * j - p + k):
                            if 0 <= r < h and 0 <= q < w and (best is None or x[a, b, r, q] > best):
                                best, where[a, b, i, j] = x[a, b, r, q], (r, q)
                    y[a, b, i, j] = best
    return y, where


@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
       k=st.integers(1, 3), s=st.integers(1, 3), seed=st.integers(0, 2**32 - 1), ties=st.booleans())
def test_max_pool_forward_and_backward_route_each_gradient_to_the_first_maximum(n, c, h, w, k, s, seed, ties):
    p = k // 2
    rng = np.random.default_rng(seed)
    # ties: few distinct values, so windows hold equal maxima and the rule for ties is exercised
    x = rng.integers(0, 3, (n, c, h, w)).astype(np.float64) if ties else rng.standard_normal((n, c, h, w))
    y, cache = max_pool2d_forward(x, k, s, p)
    y_ref, where = naive_max_pool(x, k, s, p)
    np.testing.assert_array_equal(y, y_ref)
    dout = rng.standard_normal(y.shape)
    dx = max_pool2d_backward(dout, cache)
    expected = np.zeros_like(x)
    for idx in np.ndindex(y.shape):
        r, q = where[idx]
        expected[idx[0], idx[1], r, q] += dout[idx]
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-12)


def test_max_pool_backward_matches_numerical_gradients():
    # distinct entries 1/432 apart, far more than the step h, so no step changes a window's maximum
    rng = np.random.default_rng(6)
    x = rng.permutation(2 * 3 * 9 * 8).reshape(2, 3, 9, 8) / 432.0
    y, cache = max_pool2d_forward(x, 3, 2, 1)
    assert y.shape == (2, 3, 5, 4)  # the ResNet stem's pool: ceil(9 / 2), ceil(8 / 2)
    dout = rng.standard_normal(y.shape)
    rows = check_gradients(lambda: float(np.sum(max_pool2d_forward(x, 3, 2, 1)[0] * dout)), {"x": x},
                           {"x": max_pool2d_backward(dout, cache)}, verbose=False)
    assert_all_pass(rows)


# ---------------------------------------------------------------- frozen batch norm


def test_frozen_batch_norm_is_batch_norm_with_fixed_statistics():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 3, 5))
    weight, bias = rng.uniform(0.5, 2.0, 4), rng.standard_normal(4)
    mean, var = rng.standard_normal(4), rng.uniform(0.1, 2.0, 4)
    scale, shift = frozen_batch_norm_coefficients(weight, bias, mean, var, eps=1e-3)
    y, _ = channel_affine_forward(x, scale, shift)
    c = (slice(None), None, None)
    np.testing.assert_allclose(y, (x - mean[c]) / np.sqrt(var[c] + 1e-3) * weight[c] + bias[c], rtol=1e-12, atol=1e-12)


def test_frozen_batch_norm_refuses_a_variance_it_cannot_divide_by():
    ones = np.ones(2)
    with pytest.raises(ValueError, match=r"^running_var \+ eps must be > 0"):
        frozen_batch_norm_coefficients(ones, ones, ones, np.array([1.0, 0.0]), eps=0.0)


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
       seed=st.integers(0, 2**32 - 1))
def test_channel_affine_backward_matches_numerical_gradients(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    scale, shift = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    y, cache = channel_affine_forward(x, scale, shift)
    dout = rng.standard_normal(y.shape)
    dx, dscale, dshift = channel_affine_backward(dout, cache)
    rows = check_gradients(lambda: float(np.sum(channel_affine_forward(x, scale, shift)[0] * dout)),
                           {"x": x, "scale": scale, "shift": shift}, {"x": dx, "scale": dscale, "shift": dshift},
                           verbose=False)
    assert_all_pass(rows)


# ---------------------------------------------------------------- dtypes


def _all_ops(dtype):
    """(name, forward outputs, backward outputs) for every op, run in ``dtype``."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 5, 6)).astype(dtype)
    w = rng.standard_normal((3, 4, 3, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    gamma, beta = np.ones(4, dtype), np.zeros(4, dtype)
    out = []
    for name, (y, cache), backward in [
        ("conv", conv2d_forward(x, w, b, 2, 1), conv2d_backward),
        ("conv1x1", conv2d_forward(x, w[:, :, :1, :1], None, 1, 0), conv2d_backward),
        ("relu", relu_forward(x), relu_backward),
        ("upsample", upsample_nearest_forward(x, 2), upsample_nearest_backward),
        ("group_norm", group_norm_forward(x, gamma, beta, 2), group_norm_backward),
        ("max_pool", max_pool2d_forward(x, 3, 2, 1), max_pool2d_backward),
        ("channel_affine", channel_affine_forward(x, gamma, beta), channel_affine_backward),
    ]:
        grads = backward(np.ones(y.shape, dtype), cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        out.append((name, y, [g for g in grads if g is not None]))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_op_keeps_the_input_dtype(dtype):
    for name, y, grads in _all_ops(dtype):
        assert y.dtype == dtype, name
        for g in grads:
            assert g.dtype == dtype, name


# ---------------------------------------------------------------- bad input


def _x():
    return np.zeros((1, 2, 4, 4))


def _w():
    return np.zeros((3, 2, 3, 3))


BAD_CONV = [
    ("x", lambda: conv2d_forward(np.zeros((2, 4, 4)), _w(), None)),
    ("x", lambda: conv2d_forward(np.zeros((1, 2, 4, 4), dtype=np.int64), _w(), None)),
    ("x", lambda: conv2d_forward(np.full((1, 2, 4, 4), np.nan), _w(), None)),
    ("x", lambda: conv2d_forward(np.zeros((0, 2, 4, 4)), _w(), None)),
    ("x", lambda: conv2d_forward([[1.0]], _w(), None)),
    ("w", lambda: conv2d_forward(_x(), np.zeros((3, 5, 3, 3)), None)),
    ("w", lambda: conv2d_forward(_x(), np.zeros((3, 2, 3)), None)),
    ("w", lambda: conv2d_forward(_x(), np.zeros((3, 2, 3, 3), dtype=np.int32), None)),
    ("w", lambda: conv2d_forward(_x(), np.zeros((3, 2, 3, 3), dtype=np.float32), None)),
    ("w", lambda: conv2d_forward(_x(), np.zeros((3, 2, 7, 3)), None, padding=1)),
    ("b", lambda: conv2d_forward(_x(), _w(), np.zeros(2))),
    ("b", lambda: conv2d_forward(_x(), _w(), np.zeros((3, 1)))),
    ("stride", lambda: conv2d_forward(_x(), _w(), None, stride=0)),
    ("stride", lambda: conv2d_forward(_x(), _w(), None, stride=1.5)),
    ("padding", lambda: conv2d_forward(_x(), _w(), None, padding=-1)),
]

BAD_OTHER = [
    ("x", lambda: relu_forward(np.array([1, -1]))),
    ("x", lambda: relu_forward(np.array([1.0, np.nan]))),
    ("x", lambda: upsample_nearest_forward(np.zeros((2, 2)), 2)),
    ("factor", lambda: upsample_nearest_forward(_x(), 0)),
    ("x", lambda: group_norm_forward(np.zeros((2, 4)), np.ones(4), np.zeros(4), 2)),
    ("gamma", lambda: group_norm_forward(_x(), np.ones(3), np.zeros(2), 1)),
    ("beta", lambda: group_norm_forward(_x(), np.ones(2), np.zeros(2, dtype=np.float32), 1)),
    ("num_groups", lambda: group_norm_forward(_x(), np.ones(2), np.zeros(2), 3)),
    ("num_groups", lambda: group_norm_forward(_x(), np.ones(2), np.zeros(2), 0)),
    ("eps", lambda: group_norm_forward(_x(), np.ones(2), np.zeros(2), 1, eps=0.0)),
    ("eps", lambda: group_norm_forward(_x(), np.ones(2), np.zeros(2), 1, eps="1e-5")),
    ("x", lambda: max_pool2d_forward(np.zeros((2, 4)))),
    ("padding", lambda: max_pool2d_forward(_x(), 3, 2, 2)),
    ("stride", lambda: max_pool2d_forward(_x(), 3, 0, 1)),
    ("x", lambda: channel_affine_forward(np.zeros((2, 4)), np.ones(4), np.zeros(4))),
    ("scale", lambda: channel_affine_forward(_x(), np.ones(3), np.zeros(2))),
    ("shift", lambda: channel_affine_forward(_x(), np.ones(2), np.zeros(2, dtype=np.float32))),
    ("running_var", lambda: frozen_batch_norm_coefficients(np.ones(2), np.ones(2), np.ones(2), np.ones(3))),
    ("eps", lambda: frozen_batch_norm_coefficients(np.ones(2), np.ones(2), np.ones(2), np.ones(2), eps=-1.0)),
]


@pytest.mark.parametrize("name,call", BAD_CONV + BAD_OTHER)
def test_bad_forward_input_raises_value_error_naming_the_argument(name, call):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


@pytest.mark.parametrize("dout", [np.zeros((1, 3, 4, 5)), np.zeros((1, 3, 4, 4), dtype=np.float32),
                                 np.full((1, 3, 4, 4), np.nan)])
def test_bad_upstream_gradient_raises_value_error_naming_dout(dout):
    _, cache = conv2d_forward(_x(), _w(), None, 1, 1)
    with pytest.raises(ValueError, match=r"^dout\b"):
        conv2d_backward(dout, cache)
