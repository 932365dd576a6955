"""Modules (cache stack, accumulation, state dicts) and the optimizer."""

import numpy as np
import pytest

from numpy_retinanet.gradcheck import all_passed, check_gradients
from numpy_retinanet.nn import functional as F
from numpy_retinanet.nn.modules import Conv2d, GroupNorm, Module, ReLU, Sequential
from numpy_retinanet.nn.optim import SGD, WarmupStepSchedule


def _conv(seed=0, dtype=np.float64, **kw):
    return Conv2d(3, 4, 3, rng=np.random.default_rng(seed), dtype=dtype, **kw)


def test_conv_module_matches_functional():
    rng = np.random.default_rng(1)
    m = _conv()
    x = rng.standard_normal((2, 3, 5, 6))
    y = m.forward(x)
    y_ref, cache = F.conv2d_forward(x, m.params["weight"], m.params["bias"], stride=1, padding=1)
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(y.shape)
    dx = m.backward(dy)
    dx_ref, dw_ref, db_ref = F.conv2d_backward(dy, cache)
    np.testing.assert_allclose(dx, dx_ref)
    np.testing.assert_allclose(m.grads["weight"], dw_ref)
    np.testing.assert_allclose(m.grads["bias"], db_ref)


def test_backward_pops_last_in_first_out_and_accumulates():
    rng = np.random.default_rng(2)
    m = _conv()
    x1, x2 = rng.standard_normal((1, 3, 4, 4)), rng.standard_normal((2, 3, 6, 5))
    y1 = m.forward(x1)
    y2 = m.forward(x2)
    dy1, dy2 = rng.standard_normal(y1.shape), rng.standard_normal(y2.shape)
    dx2 = m.backward(dy2)  # must use x2's cache: the last pushed
    dx1 = m.backward(dy1)
    assert dx2.shape == x2.shape and dx1.shape == x1.shape
    w, b = m.params["weight"], m.params["bias"]
    _, dw1, db1 = F.conv2d_backward(dy1, F.conv2d_forward(x1, w, b, 1, 1)[1])
    _, dw2, db2 = F.conv2d_backward(dy2, F.conv2d_forward(x2, w, b, 1, 1)[1])
    np.testing.assert_allclose(m.grads["weight"], dw1 + dw2, rtol=1e-12)
    np.testing.assert_allclose(m.grads["bias"], db1 + db2, rtol=1e-12)
    m.zero_grad()
    assert not np.any(m.grads["weight"]) and not np.any(m.grads["bias"])


def test_backward_without_forward_is_an_error():
    with pytest.raises(RuntimeError, match="no pending forward"):
        _conv().backward(np.zeros((1, 4, 3, 3)))


def test_backward_never_changes_parameters():
    rng = np.random.default_rng(3)
    m = _conv()
    before = {k: v.copy() for k, v in m.params.items()}
    y = m.forward(rng.standard_normal((1, 3, 4, 4)))
    m.backward(np.ones_like(y))
    for k, v in m.params.items():
        np.testing.assert_array_equal(v, before[k])


class _Two(Module):
    def __init__(self):
        super().__init__()
        self.body = Sequential(_conv(0), ReLU(), GroupNorm(2, 4, dtype=np.float64))
        self.out = Conv2d(4, 2, 1, padding=0, rng=np.random.default_rng(5), dtype=np.float64)

    def forward(self, x):
        return self.out.forward(self.body.forward(x))

    def backward(self, dy):
        return self.body.backward(self.out.backward(dy))


def test_nested_names_and_same_keys():
    m = _Two()
    assert set(m.params) == set(m.grads)
    assert set(m.params) == {"body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias",
                             "out.weight", "out.bias"}
    assert m.num_parameters() == 4 * 3 * 9 + 4 + 4 + 4 + 2 * 4 + 2


def test_nested_module_gradients_agree_with_numerical():
    rng = np.random.default_rng(6)
    m = _Two()
    x = rng.standard_normal((2, 3, 5, 4))
    dy = rng.standard_normal((2, 2, 5, 4))

    def f():
        y = m.forward(x)
        m.clear_cache()
        return float(np.sum(y * dy))

    m.zero_grad()
    m.forward(x)
    m.backward(dy)
    assert m.num_pending() == 0
    rows = check_gradients(f, m.params, m.grads, verbose=False)
    assert all_passed(rows), [r.format() for r in rows]


def test_state_dict_round_trip_and_checks():
    m1, m2 = _Two(), _Two()
    for v in m1.params.values():
        v += 1.0
    m2.load_state_dict(m1.state_dict())
    for k in m1.params:
        np.testing.assert_array_equal(m1.params[k], m2.params[k])
    sd = m1.state_dict()
    sd["out.weight"] = np.zeros((3, 4, 1, 1))
    with pytest.raises(ValueError, match=r"out\.weight.*shape"):
        m2.load_state_dict(sd)
    sd = m1.state_dict()
    sd["out.bias"] = sd["out.bias"].astype(np.float32)
    with pytest.raises(ValueError, match=r"out\.bias.*dtype"):
        m2.load_state_dict(sd)
    sd = m1.state_dict()
    del sd["body.0.bias"]
    with pytest.raises(ValueError, match=r"missing.*body\.0\.bias"):
        m2.load_state_dict(sd)


def test_place_in_makes_the_given_arrays_the_parameters_and_gradients():
    # engine.parallel's workers compute with shared memory this way: what is written into the given
    # parameter arrays is what forward reads, and backward adds into the given gradient arrays.
    rng = np.random.default_rng(4)
    model = Sequential(_conv(seed=3), ReLU(), GroupNorm(2, 4, dtype=np.float64))
    before = model.state_dict()
    flat_p, flat_g = np.full(130, np.nan), np.full(130, np.nan)  # 108 + 4 conv, 2 x 4 norm, 10 spare
    offsets = np.cumsum([0] + [p.size for p in before.values()])
    params = {k: flat_p[o:o + p.size].reshape(p.shape) for (k, p), o in zip(before.items(), offsets)}
    grads = {k: flat_g[o:o + p.size].reshape(p.shape) for (k, p), o in zip(before.items(), offsets)}
    assert model.place_in(params, grads) is model
    for k in before:
        np.testing.assert_array_equal(params[k], before[k])
        assert model.params[k] is params[k] and model.grads[k] is grads[k] and not grads[k].any()
    x = rng.standard_normal((2, 3, 5, 5))
    flat_p[:112] *= 2  # the conv's weight and bias, changed from outside the model
    y = model.forward(x)
    expect = _conv(seed=3)
    expect.load_state_dict({k: 2 * before["0." + k] for k in ("weight", "bias")})
    ref = Sequential(expect, ReLU(), GroupNorm(2, 4, dtype=np.float64))
    np.testing.assert_array_equal(y, ref.forward(x))
    dy = rng.standard_normal(y.shape)
    model.backward(dy)
    ref.backward(dy)
    for k in before:
        np.testing.assert_array_equal(grads[k], ref.grads[k])
    assert np.isnan(flat_g[112 + 8:]).all()  # nothing written outside the given arrays
    conv = _conv()
    kept = conv.params["weight"]
    with pytest.raises(ValueError, match=r"^gradient 'bias' must be placed in an array of shape \(4,\) "
                                         r"and dtype float64, got shape \(4,\) and dtype float32$"):
        conv.place_in({"weight": np.zeros((4, 3, 3, 3)), "bias": np.zeros(4)},
                      {"weight": np.zeros((4, 3, 3, 3)), "bias": np.zeros(4, np.float32)})
    assert conv.params["weight"] is kept  # nothing was placed
    with pytest.raises(ValueError, match=r"^params and grads must hold an array for every parameter, "
                                         r"got none for \['bias'\]$"):
        conv.place_in({"weight": np.zeros((4, 3, 3, 3))}, {"weight": np.zeros((4, 3, 3, 3)), "bias": np.zeros(4)})
    assert conv.params["weight"] is kept


@pytest.mark.parametrize("kernel", [3, 1])
def test_conv_weight_is_stored_taps_first_so_its_filter_matrix_is_a_view_and_the_numbers_do_not_change(kernel):
    # Conv2d stores its (F, C, KH, KW) weight as (F, KH, KW, C) in memory: the conv's
    # (F, KH*KW*C) filter matrix is then a view of it, with no copy per call. The results must
    # be those of a C-contiguous weight, bit for bit, and the gradient is stored like the weight.
    rng = np.random.default_rng(8)
    conv = Conv2d(5, 4, kernel, rng=np.random.default_rng(2), dtype=np.float32)
    w, b = conv.params["weight"], conv.params["bias"]
    assert w.shape == (4, 5, kernel, kernel) and not (kernel > 1 and w.flags.c_contiguous)
    assert w.transpose(0, 2, 3, 1).flags.c_contiguous
    assert conv.grads["weight"].strides == w.strides
    x = rng.standard_normal((2, 5, 7, 6)).astype(np.float32)
    y, cache = F.conv2d_forward(x, w, b, padding=kernel // 2)
    assert np.shares_memory(cache[1], w)  # the filter matrix: a view, not a copy
    y_c, cache_c = F.conv2d_forward(x, w.copy(order="C"), b, padding=kernel // 2)
    assert not np.shares_memory(cache_c[1], w)
    np.testing.assert_array_equal(y, y_c)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    for got, want in zip(F.conv2d_backward(dy, cache), F.conv2d_backward(dy, cache_c)):
        np.testing.assert_array_equal(got, want)
    for _ in range(2):  # the second pass adds into the same gradient arrays
        np.testing.assert_array_equal(conv.forward(x), y)
        conv.backward(dy)
    np.testing.assert_array_equal(conv.grads["weight"], 2 * F.conv2d_backward(dy, cache_c)[1])
    assert conv.state_dict()["weight"].flags.c_contiguous


def test_conv_init_statistics():
    m = Conv2d(64, 64, 3, init="normal", std=0.01, rng=np.random.default_rng(0))
    w = m.params["weight"]
    assert w.dtype == np.float32
    assert abs(float(w.std()) - 0.01) < 0.0005
    he = Conv2d(64, 64, 3, init="he", rng=np.random.default_rng(0)).params["weight"]
    assert abs(float(he.std()) - np.sqrt(2 / (64 * 9))) < 0.002
    with pytest.raises(ValueError, match="init"):
        Conv2d(1, 1, 3, init="xavier")


def test_sgd_matches_hand_computation():
    p = {"w": np.array([[1.0, -2.0]]), "b": np.array([0.5])}
    g = {"w": np.array([[0.1, 0.2]]), "b": np.array([1.0])}
    opt = SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)
    opt.step(g)
    # v = g + wd * w for the 2-D weight; the 1-D bias gets no decay.
    v_w = np.array([[0.1 + 0.01, 0.2 - 0.02]])
    np.testing.assert_allclose(p["w"], np.array([[1.0, -2.0]]) - 0.1 * v_w)
    np.testing.assert_allclose(p["b"], [0.5 - 0.1])
    w1 = p["w"].copy()
    opt.step(g, lr=0.05)
    v_w2 = 0.9 * v_w + (g["w"] + 0.01 * w1)
    np.testing.assert_allclose(p["w"], w1 - 0.05 * v_w2)
    np.testing.assert_allclose(p["b"], [0.4 - 0.05 * (0.9 * 1.0 + 1.0)])


def test_sgd_state_round_trip():
    p = {"w": np.ones((2, 2))}
    opt = SGD(p, lr=0.1)
    opt.step({"w": np.ones((2, 2))})
    opt2 = SGD({"w": np.ones((2, 2))}, lr=0.1)
    opt2.load_state_dict(opt.state_dict())
    np.testing.assert_array_equal(opt2.velocity["w"], opt.velocity["w"])
    with pytest.raises(ValueError, match="optimizer state"):
        opt2.load_state_dict({"v": np.ones(2)})


def test_warmup_step_schedule():
    s = WarmupStepSchedule(0.01, warmup_steps=100, warmup_factor=0.1, milestones=(600, 800))
    assert s(0) == pytest.approx(0.001)
    assert s(50) == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))
    assert s(100) == pytest.approx(0.01)
    assert s(599) == pytest.approx(0.01)
    assert s(600) == pytest.approx(0.001)
    assert s(800) == pytest.approx(0.0001)
    lrs = [s(t) for t in range(100)]
    assert all(a < b for a, b in zip(lrs, lrs[1:]))
    with pytest.raises(ValueError, match="milestones"):
        WarmupStepSchedule(0.01, milestones=(10, 5))
