"""The network's conv (``conv2d_forward``/``conv2d_backward``, the grid layout of nn/functional.py)
against the plain im2col reference (``conv2d_forward_reference``/``conv2d_backward_reference``),
and the reference against the naive loops and central differences of test_functional.py.

The two versions share only their argument checks: the fast one copies each kernel tap's
shifted run of a flattened grid and adds col2im back on that grid, the reference copies strided
windows of a padded image. Every output and gradient is compared over kernels 1x1 and 3x3 (and
rectangular ones), strides 1-3, padding 0-2, float32 and float64, and inputs in the memory
layouts the network hands a conv (the conv returns transposed views, which the next op reads).
"""

import _strict_cupy
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_functional import assert_all_pass, conv_gradient_rows, naive_conv2d

from numpy_retinanet import backend
from numpy_retinanet.backend import to_host
from numpy_retinanet.nn.functional import (
    conv2d_backward,
    conv2d_backward_reference,
    conv2d_forward,
    conv2d_forward_reference,
    relu_backward,
    relu_forward,
)

# float64 sums of up to a few hundred products agree to rounding; float32 to its epsilon
# times the sum's size (entries and weights are standard normal here).
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-4)}
LAYOUTS = ["nchw", "cnhw", "grid", "nhwc"]


def in_layout(x, layout):
    """The same values as x, of x's dtype, in another memory layout.

    "nchw": contiguous. "cnhw": compact channels-first, batch-second (a ReLU of a conv
    output). "grid": a slice of a larger channels-first buffer (a conv output itself).
    "nhwc": channels-last, a transposed view of another kind.
    """
    if layout == "nchw":
        return x
    if layout == "cnhw":
        return np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    if layout == "nhwc":
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    n, c, h, w = x.shape
    buf = np.full((c, n, h + 1, w + 2), np.inf, dtype=x.dtype)
    buf[:, :, :h, :w] = x.transpose(1, 0, 2, 3)
    return buf[:, :, :h, :w].transpose(1, 0, 2, 3)


@st.composite
def cases(draw):
    """A valid conv: kernels mostly 1x1 and 3x3, strides mostly 1 and 2, padding mostly 0 and 1."""
    kh = draw(st.sampled_from([1, 3, 3, 2, 5]))
    kw = draw(st.sampled_from([kh, kh, kh, 1, 3]))
    stride, padding = draw(st.sampled_from([1, 2, 2, 3])), draw(st.sampled_from([0, 1, 1, 2]))
    h = draw(st.integers(max(1, kh - 2 * padding), 9))
    w = draw(st.integers(max(1, kw - 2 * padding), 9))
    return dict(n=draw(st.integers(1, 3)), c=draw(st.integers(1, 5)), f=draw(st.integers(1, 5)), h=h, w=w,
                kh=kh, kw=kw, stride=stride, padding=padding, bias=draw(st.booleans()),
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                layout=draw(st.sampled_from(LAYOUTS)), dout_layout=draw(st.sampled_from(LAYOUTS)),
                seed=draw(st.integers(0, 2**32 - 1)))


def inputs(case):
    rng = np.random.default_rng(case["seed"])
    dt = case["dtype"]
    x = in_layout(rng.standard_normal((case["n"], case["c"], case["h"], case["w"])).astype(dt), case["layout"])
    w = rng.standard_normal((case["f"], case["c"], case["kh"], case["kw"])).astype(dt)
    b = rng.standard_normal(case["f"]).astype(dt) if case["bias"] else None
    return rng, x, w, b


@given(case=cases())
def test_fast_conv_equals_reference_forward_and_backward(case):
    rng, x, w, b = inputs(case)
    s, p, tol = case["stride"], case["padding"], TOL[case["dtype"]]
    y, cache = conv2d_forward(x, w, b, s, p)
    y_ref, cache_ref = conv2d_forward_reference(x, w, b, s, p)
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype == case["dtype"]
    np.testing.assert_allclose(y, y_ref, **tol)

    dout = in_layout(rng.standard_normal(y.shape).astype(case["dtype"]), case["dout_layout"])
    for name, got, want in zip(("dx", "dw", "db"), conv2d_backward(dout, cache), conv2d_backward_reference(dout, cache_ref)):
        if want is None:
            assert got is None, name
            continue
        assert got.shape == want.shape and got.dtype == want.dtype == case["dtype"], name
        np.testing.assert_allclose(got, want, **tol, err_msg=name)


@given(case=cases())
def test_reference_forward_matches_naive_loops(case):
    _, x, w, b = inputs(case)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    b64 = None if b is None else b.astype(np.float64)
    y, _ = conv2d_forward_reference(x, w, b, case["stride"], case["padding"])
    np.testing.assert_allclose(y, naive_conv2d(x64, w64, b64, case["stride"], case["padding"]), **TOL[case["dtype"]])


@given(case=cases().filter(lambda c: c["dtype"] == np.float64))
def test_reference_backward_matches_numerical_gradients(case):
    rng, x, w, b = inputs(case)
    # f is linear in each input, so central differences carry no truncation error at any step h, only
    # the rounding of f divided by h: a step of 1e-3 rather than the default keeps that under RTOL on
    # entries a thousand times smaller than f (hypothesis found one at 1.05e-6 with the default step).
    assert_all_pass(conv_gradient_rows(conv2d_forward_reference, conv2d_backward_reference, rng, x, w, b,
                                       case["stride"], case["padding"], h=1e-3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chain_of_views_conv_relu_strided_conv_equals_reference(dtype):
    # The network's pattern: a 3x3 conv's output (a transposed view), ReLU (same layout), a 3x3
    # stride-2 conv and a 1x1 conv reading those views; the gradients flow back through views too.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    ws = [rng.standard_normal(s).astype(dtype) for s in ((5, 3, 3, 3), (4, 5, 3, 3), (2, 4, 1, 1))]
    bs = [rng.standard_normal(s[0]).astype(dtype) for s in ((5,), (4,), (2,))]
    hyper = [(1, 1), (2, 1), (1, 0)]

    def run(fwd, bwd):
        a, caches = x, []
        for k, (w, b, (s, p)) in enumerate(zip(ws, bs, hyper)):
            a, c = fwd(a, w, b, s, p)
            caches.append(c)
            if k < 2:
                a, rc = relu_forward(a)
                caches.append(rc)
        out, d, grads = a, np.ones(a.shape, dtype), []
        for k in reversed(range(3)):
            d, dw, db = bwd(d, caches.pop())
            grads += [dw, db]
            if k:
                d = relu_backward(d, caches.pop())
        return out, d, grads

    out, dx, grads = run(conv2d_forward, conv2d_backward)
    out_ref, dx_ref, grads_ref = run(conv2d_forward_reference, conv2d_backward_reference)
    np.testing.assert_allclose(out, out_ref, **TOL[dtype])
    np.testing.assert_allclose(dx, dx_ref, **TOL[dtype])
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, **TOL[dtype])
    x64 = naive_conv2d(x.astype(np.float64), ws[0].astype(np.float64), bs[0].astype(np.float64), 1, 1)
    x64 = naive_conv2d(np.maximum(x64, 0), ws[1].astype(np.float64), bs[1].astype(np.float64), 2, 1)
    x64 = naive_conv2d(np.maximum(x64, 0), ws[2].astype(np.float64), bs[2].astype(np.float64), 1, 0)
    np.testing.assert_allclose(out, x64, **TOL[dtype])


def test_reference_backward_leaves_cache_unchanged_and_can_repeat():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    y, cache = conv2d_forward_reference(x, w, b, 2, 1)
    dout = rng.standard_normal(y.shape)
    for g1, g2 in zip(conv2d_backward_reference(dout, cache), conv2d_backward_reference(dout, cache)):
        np.testing.assert_array_equal(g1, g2)


@pytest.mark.parametrize("name,call", [
    ("x", lambda: conv2d_forward_reference(np.zeros((2, 4, 4)), np.zeros((3, 2, 3, 3)), None)),
    ("w", lambda: conv2d_forward_reference(np.zeros((1, 2, 4, 4)), np.zeros((3, 2, 7, 3)), None, padding=1)),
    ("b", lambda: conv2d_forward_reference(np.zeros((1, 2, 4, 4)), np.zeros((3, 2, 3, 3)), np.zeros(2))),
    ("stride", lambda: conv2d_forward_reference(np.zeros((1, 2, 4, 4)), np.zeros((3, 2, 3, 3)), None, stride=0)),
    ("dout", lambda: conv2d_backward_reference(
        np.zeros((1, 3, 4, 5)), conv2d_forward_reference(np.zeros((1, 2, 4, 4)), np.zeros((3, 2, 3, 3)), None, 1, 1)[1])),
])
def test_reference_refuses_bad_input_like_the_fast_conv(name, call):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


@pytest.mark.parametrize("stride,padding,kernel", [(1, 1, 3), (2, 1, 3), (1, 0, 1), (2, 0, 1)])
def test_both_versions_run_on_device_arrays(monkeypatch, stride, padding, kernel):
    # The strict CuPy stand-in refuses NumPy calls on device arrays and host operands: both
    # versions must use only xp.* and give the NumPy numbers on the device.
    monkeypatch.setattr(backend, "_MODULES", dict(backend._MODULES))
    backend.register_array_module(_strict_cupy.ndarray, _strict_cupy.cupy)
    xp = _strict_cupy.cupy
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, kernel, kernel)), rng.standard_normal(4)
    y_host, cache_host = conv2d_forward_reference(x, w, b, stride, padding)
    dout = rng.standard_normal(y_host.shape)
    want = (y_host, *conv2d_backward_reference(dout, cache_host))
    for fwd, bwd in ((conv2d_forward, conv2d_backward), (conv2d_forward_reference, conv2d_backward_reference)):
        y, cache = fwd(xp.asarray(x), xp.asarray(w), xp.asarray(b), stride, padding)
        got = (y, *bwd(xp.asarray(dout), cache))
        for g, h in zip(got, want):
            assert isinstance(g, _strict_cupy.ndarray), fwd.__name__
            np.testing.assert_allclose(to_host(g), h, rtol=1e-12, atol=1e-12, err_msg=fwd.__name__)


@pytest.mark.parametrize("filters", [64, 128, 27])
def test_the_weight_gradient_is_a_view_of_rows_an_odd_number_of_floats_long_with_the_same_bits(filters):
    # Conv2d adds dw into its gradient down the product's columns: a row length of 64 or 128
    # floats (a power of two) would put every read in the same few cache sets (nn/functional.py).
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 16, 5, 6), dtype=np.float32)
    w = rng.standard_normal((filters, 16, 1, 1), dtype=np.float32)
    y, cache = conv2d_forward(x, w, None, 1, 0)
    dout = rng.standard_normal(y.shape, dtype=np.float32)
    _, dw, _ = conv2d_backward(dout, cache)
    assert (dw.strides[1] // dw.itemsize) % 2 == 1 and dw.strides[0] == dw.itemsize
    # The same numbers as the product into a fresh array (a 1x1 conv's grid has no margin).
    col, dout_g = cache[0], dout.transpose(1, 0, 2, 3).reshape(filters, -1)
    assert dw.reshape(filters, 16).tobytes() == np.ascontiguousarray((col @ dout_g.T).T).tobytes()
