"""Tests of nn/losses.py: gradients, the identities and ratios of §3, stability, dtypes, input checks.

References are written independently of the code under test: the gradients are central
differences, and the "in p" formulas of §3 and Appendix A/B are evaluated the naive way
(p = 1 / (1 + exp(-x)), log p) at moderate logits where that is accurate.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from numpy_retinanet.gradcheck import check_gradients, format_report
from numpy_retinanet.nn.losses import (
    focal_loss_star_backward,
    focal_loss_star_forward,
    log_sigmoid,
    sigmoid,
    sigmoid_cross_entropy_backward,
    sigmoid_cross_entropy_forward,
    sigmoid_focal_loss_backward,
    sigmoid_focal_loss_forward,
    smooth_l1_backward,
    smooth_l1_forward,
    softplus,
)

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
alphas = st.one_of(st.none(), st.floats(0.0, 1.0))
seeds = st.integers(0, 2**32 - 1)


@st.composite
def logits_and_targets(draw, bound=20.0):
    shape = draw(shapes)
    x = draw(hnp.arrays(np.float64, shape, elements=st.floats(-bound, bound)))
    y = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 1)))
    return x, y


def logit(p):
    return np.log(p) - np.log1p(-p)


def logits_for_pt(p_t, y):
    """Logits whose p_t (§3: p if y = 1, else 1 - p) is ``p_t``."""
    return logit(p_t) if y == 1 else -logit(p_t)


def assert_gradcheck(forward, backward, inputs, dout):
    """Central differences of f = sum(loss * dout) against the backward pass, to 1e-6 relative.

    f subtracts the loss at the unperturbed inputs, a constant: the entries not being perturbed
    then contribute exact zeros, so f is not a large sum whose rounding (~1e-16 |f| / h) would
    swamp the small gradient entries.
    """
    names = list(inputs)
    loss0 = forward(*inputs.values())[0].copy()

    def f():
        return float(np.sum((forward(*inputs.values())[0] - loss0) * dout))

    grads = backward(dout, forward(*inputs.values())[1])
    grads = grads if isinstance(grads, tuple) else (grads,)
    rows = check_gradients(f, inputs, dict(zip(names, grads)), verbose=False)
    assert all(r.passed and r.max_rel_error <= 1e-6 for r in rows), format_report(rows)


# ---------------------------------------------------------------------------------------------
# Backward passes agree with central differences (float64)
# ---------------------------------------------------------------------------------------------


@given(data=logits_and_targets(), alpha=alphas, gamma=st.floats(0.0, 5.0), seed=seeds)
def test_focal_loss_gradient_matches_numerical(data, alpha, gamma, seed):
    x, y = data
    dout = np.random.default_rng(seed).standard_normal(x.shape)
    assert_gradcheck(
        lambda x: sigmoid_focal_loss_forward(x, y, alpha=alpha, gamma=gamma),
        sigmoid_focal_loss_backward, {"logits": x}, dout,
    )


@given(data=logits_and_targets(), alpha=alphas, seed=seeds)
def test_cross_entropy_gradient_matches_numerical(data, alpha, seed):
    x, y = data
    dout = np.random.default_rng(seed).standard_normal(x.shape)
    assert_gradcheck(
        lambda x: sigmoid_cross_entropy_forward(x, y, alpha=alpha),
        sigmoid_cross_entropy_backward, {"logits": x}, dout,
    )


@given(data=logits_and_targets(), gamma=st.floats(0.1, 5.0), beta=st.floats(-3.0, 3.0), seed=seeds)
def test_focal_loss_star_gradient_matches_numerical(data, gamma, beta, seed):
    x, y = data
    dout = np.random.default_rng(seed).standard_normal(x.shape)
    assert_gradcheck(
        lambda x: focal_loss_star_forward(x, y, gamma=gamma, beta=beta),
        focal_loss_star_backward, {"logits": x}, dout,
    )


@given(
    shape=shapes,
    beta=st.one_of(st.just(0.0), st.floats(0.01, 2.0)),
    seed=seeds,
)
def test_smooth_l1_gradient_matches_numerical(shape, beta, seed):
    rng = np.random.default_rng(seed)
    target = rng.uniform(-3, 3, shape)
    pred = rng.uniform(-3, 3, shape)
    # Central differences straddling the kink at |d| = beta (d = 0 for L1) see neither slope:
    # move such entries 2e-3 outside the kink.
    d = pred - target
    near_kink = np.abs(np.abs(d) - beta) < 1e-3
    pred[near_kink] = target[near_kink] + np.where(d[near_kink] >= 0, 1.0, -1.0) * (beta + 2e-3)
    dout = rng.standard_normal(shape)

    def backward(dout, cache):
        dpred = smooth_l1_backward(dout, cache)
        return dpred, -dpred  # loss depends on pred - target

    assert_gradcheck(
        lambda pred, target: smooth_l1_forward(pred, target, beta=beta),
        backward, {"pred": pred, "target": target}, dout,
    )


# ---------------------------------------------------------------------------------------------
# Identities and bounds of §3
# ---------------------------------------------------------------------------------------------


@given(data=logits_and_targets(bound=50.0), alpha=alphas, seed=seeds)
def test_focal_loss_with_gamma_zero_is_cross_entropy(data, alpha, seed):
    x, y = data
    dout = np.random.default_rng(seed).standard_normal(x.shape)
    fl, fl_cache = sigmoid_focal_loss_forward(x, y, alpha=alpha, gamma=0.0)
    ce, ce_cache = sigmoid_cross_entropy_forward(x, y, alpha=alpha)
    np.testing.assert_allclose(fl, ce, rtol=1e-12, atol=0)
    np.testing.assert_allclose(
        sigmoid_focal_loss_backward(dout, fl_cache),
        sigmoid_cross_entropy_backward(dout, ce_cache), rtol=1e-12, atol=0,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=logits_and_targets(bound=1e4), alpha=alphas, gamma=st.floats(0.0, 5.0))
def test_focal_loss_is_at_most_cross_entropy(dtype, data, alpha, gamma):
    x, y = data
    x = x.astype(dtype)
    fl = sigmoid_focal_loss_forward(x, y, alpha=alpha, gamma=gamma)[0]
    ce = sigmoid_cross_entropy_forward(x, y, alpha=alpha)[0]
    assert np.all(fl <= ce)
    assert np.all(fl >= 0)


@pytest.mark.parametrize("y", [0, 1])
def test_focal_loss_is_100x_and_1000x_below_cross_entropy(y):
    # §3.2, gamma = 2: CE / FL = 1 / (1 - p_t)^2.
    p_t = np.array([0.9, 1.0 - 10.0**-1.5])
    x = logits_for_pt(p_t, y)
    t = np.full(x.shape, y)
    fl = sigmoid_focal_loss_forward(x, t, alpha=None, gamma=2.0)[0]
    ce = sigmoid_cross_entropy_forward(x, t)[0]
    np.testing.assert_allclose(ce / fl, [100.0, 1000.0], rtol=1e-9)


@pytest.mark.parametrize("y", [0, 1])
def test_focal_loss_is_at_most_4x_below_cross_entropy_for_hard_examples(y):
    # §3.2: for p_t <= 0.5 gamma = 2 scales the loss down by at most 4x; the bound is reached at 0.5.
    p_t = np.linspace(1e-6, 0.5, 2001)
    x = logits_for_pt(p_t, y)
    t = np.full(x.shape, y)
    ratio = (sigmoid_cross_entropy_forward(x, t)[0]
             / sigmoid_focal_loss_forward(x, t, alpha=None, gamma=2.0)[0])
    assert np.all(ratio >= 1.0)
    assert np.all(ratio <= 4.0 * (1 + 1e-12))
    assert ratio[-1] == pytest.approx(4.0, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# The stable forms agree with the formulas written in p (moderate logits, float64)
# ---------------------------------------------------------------------------------------------


def _naive_p_t(x, y):
    p = 1.0 / (1.0 + np.exp(-x))
    return np.where(y == 1, p, 1.0 - p), 2.0 * y - 1.0


@given(data=logits_and_targets(bound=10.0), alpha=alphas, gamma=st.floats(0.0, 5.0))
def test_focal_loss_and_gradient_match_the_formulas_in_p(data, alpha, gamma):
    x, y = data
    p_t, y_sign = _naive_p_t(x, y)
    alpha_t = 1.0 if alpha is None else np.where(y == 1, alpha, 1.0 - alpha)
    loss, cache = sigmoid_focal_loss_forward(x, y, alpha=alpha, gamma=gamma)
    # eq. 5 and Appendix B, directly in p
    np.testing.assert_allclose(loss, -alpha_t * (1 - p_t) ** gamma * np.log(p_t), rtol=1e-9, atol=0)
    grad_b = y_sign * alpha_t * (1 - p_t) ** gamma * (gamma * p_t * np.log(p_t) + p_t - 1)
    np.testing.assert_allclose(sigmoid_focal_loss_backward(np.ones_like(x), cache), grad_b,
                               rtol=1e-9, atol=0)


@given(data=logits_and_targets(bound=10.0), alpha=alphas)
def test_cross_entropy_and_gradient_match_the_formulas_in_p(data, alpha):
    x, y = data
    p_t, _ = _naive_p_t(x, y)
    p = 1.0 / (1.0 + np.exp(-x))
    alpha_t = 1.0 if alpha is None else np.where(y == 1, alpha, 1.0 - alpha)
    loss, cache = sigmoid_cross_entropy_forward(x, y, alpha=alpha)
    np.testing.assert_allclose(loss, -alpha_t * np.log(p_t), rtol=1e-9, atol=0)  # eq. 3
    np.testing.assert_allclose(sigmoid_cross_entropy_backward(np.ones_like(x), cache),
                               alpha_t * (p - y), rtol=1e-9, atol=1e-300)


@given(data=logits_and_targets(bound=5.0), gamma=st.floats(0.1, 5.0), beta=st.floats(-3.0, 3.0))
def test_focal_loss_star_and_gradient_match_appendix_a(data, gamma, beta):
    x, y = data
    y_sign = 2.0 * y - 1.0
    p_star = 1.0 / (1.0 + np.exp(-(gamma * y_sign * x + beta)))
    loss, cache = focal_loss_star_forward(x, y, gamma=gamma, beta=beta)
    # p*_t reaches 1 - 1e-13 here, where the naive log(p*_t) and p*_t - 1 keep only ~1e-16 absolute
    np.testing.assert_allclose(loss, -np.log(p_star) / gamma, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(focal_loss_star_backward(np.ones_like(x), cache),
                               y_sign * (p_star - 1), rtol=1e-9, atol=1e-15)


@given(data=logits_and_targets(bound=50.0))
def test_focal_loss_star_with_gamma_one_beta_zero_is_cross_entropy(data):
    x, y = data
    np.testing.assert_allclose(focal_loss_star_forward(x, y, gamma=1.0, beta=0.0)[0],
                               sigmoid_cross_entropy_forward(x, y)[0], rtol=1e-12, atol=0)


@given(shape=shapes, beta=st.one_of(st.just(0.0), st.floats(0.01, 2.0)), seed=seeds)
def test_smooth_l1_matches_detectron_piecewise_form(shape, beta, seed):
    rng = np.random.default_rng(seed)
    pred, target = rng.uniform(-3, 3, shape), rng.uniform(-3, 3, shape)
    d = pred - target
    loss, cache = smooth_l1_forward(pred, target, beta=beta)
    grad = smooth_l1_backward(np.ones(shape), cache)
    if beta == 0.0:
        np.testing.assert_array_equal(loss, np.abs(d))
        np.testing.assert_array_equal(grad, np.sign(d))
    else:
        for i in np.ndindex(shape):
            quadratic = abs(d[i]) < beta
            assert loss[i] == pytest.approx(0.5 * d[i] ** 2 / beta if quadratic else abs(d[i]) - 0.5 * beta,
                                            rel=1e-12, abs=1e-15)
            assert grad[i] == pytest.approx(d[i] / beta if quadratic else np.sign(d[i]), rel=1e-12)


@pytest.mark.parametrize("beta", [0.11, 1.0])
def test_smooth_l1_pieces_meet_in_value_and_slope_at_beta(beta):
    eps = 1e-9
    d = np.array([beta - eps, beta + eps, -beta - eps, -beta + eps])
    loss, cache = smooth_l1_forward(d, np.zeros(4), beta=beta)
    grad = smooth_l1_backward(np.ones(4), cache)
    np.testing.assert_allclose(loss, 0.5 * beta, atol=2e-9)
    np.testing.assert_allclose(grad, [1, 1, -1, -1], atol=1e-8)


def test_stable_helpers_match_their_definitions():
    z = np.linspace(-30, 30, 601)
    np.testing.assert_allclose(softplus(z), np.log1p(np.exp(z)), rtol=1e-13)
    np.testing.assert_allclose(sigmoid(z), 1 / (1 + np.exp(-z)), rtol=1e-13)
    # the naive log of a probability near 1 is accurate only to ~1e-16 absolute
    np.testing.assert_allclose(log_sigmoid(z), np.log(1 / (1 + np.exp(-z))), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_helpers_match_scipy_where_the_definitions_overflow(dtype):
    # scipy.special is an independent implementation; it reaches |z| = 1e4, where the
    # definitions above overflow (exp(1e4) = inf) and only a stable form gives a number.
    from scipy.special import expit, log_expit

    z = np.concatenate([-np.logspace(-3, 4, 50), [0.0], np.logspace(-3, 4, 50)]).astype(dtype)
    # atol: below the smallest normal number one side may return a subnormal, the other 0.
    tol = dict(rtol=1e-6 if dtype == np.float32 else 1e-13, atol=np.finfo(dtype).tiny)
    np.testing.assert_allclose(sigmoid(z), expit(z), **tol)
    np.testing.assert_allclose(log_sigmoid(z), log_expit(z), **tol)
    np.testing.assert_allclose(softplus(z), -log_expit(-z), **tol)  # log(1 + e^z) = -log sigmoid(-z)


# ---------------------------------------------------------------------------------------------
# Stability and dtypes
# ---------------------------------------------------------------------------------------------

EXTREME = np.array([-1e4, -1e3, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0, 1e3, 1e4])


def _all_losses(x, y, dout):
    """(name, loss, grad) for every loss at logits x / targets y (smooth L1: pred x, target -x)."""
    out = []
    for name, fwd, bwd in [
        ("focal", lambda: sigmoid_focal_loss_forward(x, y), sigmoid_focal_loss_backward),
        ("focal gamma=0", lambda: sigmoid_focal_loss_forward(x, y, gamma=0.0), sigmoid_focal_loss_backward),
        ("focal gamma=5", lambda: sigmoid_focal_loss_forward(x, y, alpha=None, gamma=5.0),
         sigmoid_focal_loss_backward),
        ("ce", lambda: sigmoid_cross_entropy_forward(x, y), sigmoid_cross_entropy_backward),
        ("ce alpha", lambda: sigmoid_cross_entropy_forward(x, y, alpha=0.25), sigmoid_cross_entropy_backward),
        ("fl*", lambda: focal_loss_star_forward(x, y), focal_loss_star_backward),
        ("fl* 4,0", lambda: focal_loss_star_forward(x, y, gamma=4.0, beta=0.0), focal_loss_star_backward),
        ("smooth l1", lambda: smooth_l1_forward(x, -x), smooth_l1_backward),
        ("l1", lambda: smooth_l1_forward(x, -x, beta=0.0), smooth_l1_backward),
    ]:
        loss, cache = fwd()
        out.append((name, loss, bwd(dout, cache)))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_logits_give_finite_values_in_the_input_dtype_without_warnings(dtype):
    x = np.repeat(EXTREME, 2).astype(dtype)
    y = np.tile([0, 1], EXTREME.size)
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        results = _all_losses(x, y, np.ones_like(x))
    for name, loss, grad in results:
        assert loss.dtype == dtype and grad.dtype == dtype, name
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad)), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_clipping_far_from_the_target(dtype):
    # x_t -> -inf: p_t -> 0, so FL -> alpha_t |x_t| and dFL/dx -> -y' alpha_t. A clipped p_t
    # would cap the loss at -log(eps) and zero the gradient.
    x = np.array([-1e4, 1e4], dtype=dtype)
    y = np.array([1, 0])
    loss, cache = sigmoid_focal_loss_forward(x, y, alpha=0.25, gamma=2.0)
    np.testing.assert_allclose(loss, [0.25e4, 0.75e4], rtol=1e-6)
    np.testing.assert_allclose(sigmoid_focal_loss_backward(np.ones_like(x), cache), [-0.25, 0.75], rtol=1e-6)
    # x_t -> +inf: the loss and its gradient vanish.
    loss, cache = sigmoid_focal_loss_forward(-x, y, alpha=0.25, gamma=2.0)
    assert np.all(loss == 0) and np.all(sigmoid_focal_loss_backward(np.ones_like(x), cache) == 0)


@given(data=logits_and_targets(), seed=seeds)
def test_float32_results_agree_with_float64(data, seed):
    x64, y = data
    x32 = x64.astype(np.float32)
    dout = np.random.default_rng(seed).standard_normal(x64.shape)
    r32 = _all_losses(x32, y, dout.astype(np.float32))
    r64 = _all_losses(x32.astype(np.float64), y, dout)
    for (name, l32, g32), (_, l64, g64) in zip(r32, r64):
        assert l32.dtype == np.float32 and g32.dtype == np.float32, name
        # float32 rounding is amplified by exp(-gamma softplus(x_t)) up to ~gamma |x_t| 6e-8 relative;
        # the tiny atol covers float32 subnormals.
        np.testing.assert_allclose(l32, l64, rtol=1e-4, atol=1e-30, err_msg=name)
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-30, err_msg=name)


def test_float64_dloss_does_not_promote_a_float32_gradient():
    x = np.array([-1.0, 2.0], dtype=np.float32)
    _, cache = sigmoid_focal_loss_forward(x, np.array([1, 0]))
    assert sigmoid_focal_loss_backward(np.ones(2), cache).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_inputs_give_empty_outputs(dtype):
    # An image with no positive anchors has nothing to regress.
    pred = np.zeros((0, 4), dtype=dtype)
    loss, cache = smooth_l1_forward(pred, np.zeros((0, 4)))
    assert loss.shape == (0, 4) and smooth_l1_backward(loss, cache).shape == (0, 4)
    loss, cache = sigmoid_focal_loss_forward(pred, np.zeros((0, 4), dtype=int))
    assert loss.shape == (0, 4) and sigmoid_focal_loss_backward(loss, cache).dtype == dtype


def test_targets_may_be_bool_int_or_float():
    x = np.array([-2.0, 0.5, 3.0])
    ref = sigmoid_focal_loss_forward(x, np.array([1, 0, 1]))[0]
    for t in (np.array([True, False, True]), np.array([1.0, 0.0, 1.0], dtype=np.float32)):
        np.testing.assert_array_equal(sigmoid_focal_loss_forward(x, t)[0], ref)


# ---------------------------------------------------------------------------------------------
# Bad input: ValueError naming the argument
# ---------------------------------------------------------------------------------------------

X = np.array([[0.5, -1.0], [2.0, 0.0]])
Y = np.array([[1, 0], [0, 1]])
NAN_X = np.array([[0.5, np.nan], [2.0, 0.0]])

BAD_CALLS = {
    "focal: targets shape": (lambda: sigmoid_focal_loss_forward(X, Y[:1]), r"targets.*shape"),
    "focal: targets 2": (lambda: sigmoid_focal_loss_forward(X, 2 * Y), r"targets.*0 or 1"),
    "focal: targets -1": (lambda: sigmoid_focal_loss_forward(X, -Y), r"targets.*0 or 1"),
    "focal: targets 0.5": (lambda: sigmoid_focal_loss_forward(X, Y * 0.5), r"targets.*0 or 1"),
    "focal: targets NaN": (lambda: sigmoid_focal_loss_forward(X, NAN_X), r"targets.*NaN"),
    "focal: int logits": (lambda: sigmoid_focal_loss_forward(Y, Y), r"logits.*floating dtype"),
    "focal: list logits": (lambda: sigmoid_focal_loss_forward([0.5], np.array([1])), r"logits.*array"),
    "focal: NaN logits": (lambda: sigmoid_focal_loss_forward(NAN_X, Y), r"logits.*NaN"),
    "focal: inf logits": (lambda: sigmoid_focal_loss_forward(np.full_like(X, np.inf), Y), r"logits.*finite"),
    "focal: gamma < 0": (lambda: sigmoid_focal_loss_forward(X, Y, gamma=-1.0), r"gamma.*>= 0"),
    "focal: gamma NaN": (lambda: sigmoid_focal_loss_forward(X, Y, gamma=np.nan), r"^gamma must be a finite real number >= 0, got nan$"),
    "focal: gamma str": (lambda: sigmoid_focal_loss_forward(X, Y, gamma="2"), r"gamma.*real number"),
    "focal: alpha > 1": (lambda: sigmoid_focal_loss_forward(X, Y, alpha=1.5), r"^alpha must be a finite real number in \[0, 1\], got 1\.5$"),
    "focal: alpha < 0": (lambda: sigmoid_focal_loss_forward(X, Y, alpha=-0.25), r"^alpha must be .*in \[0, 1\], got -0\.25$"),
    "focal: dout shape": (lambda: sigmoid_focal_loss_backward(X[0], sigmoid_focal_loss_forward(X, Y)[1]),
                           r"^dout must be an array of the forward output's shape"),
    "ce: targets 2": (lambda: sigmoid_cross_entropy_forward(X, 2 * Y), r"targets.*0 or 1"),
    "ce: int logits": (lambda: sigmoid_cross_entropy_forward(Y, Y), r"logits.*floating dtype"),
    "ce: NaN logits": (lambda: sigmoid_cross_entropy_forward(NAN_X, Y), r"logits.*NaN"),
    "ce: alpha > 1": (lambda: sigmoid_cross_entropy_forward(X, Y, alpha=2.0), r"^alpha must be .*in \[0, 1\], got 2\.0$"),
    "ce: dout shape": (lambda: sigmoid_cross_entropy_backward(X[:1], sigmoid_cross_entropy_forward(X, Y)[1]),
                        r"^dout must be an array of the forward output's shape"),
    "fl*: gamma 0": (lambda: focal_loss_star_forward(X, Y, gamma=0.0), r"gamma.*> 0"),
    "fl*: gamma < 0": (lambda: focal_loss_star_forward(X, Y, gamma=-2.0), r"gamma.*> 0"),
    "fl*: beta inf": (lambda: focal_loss_star_forward(X, Y, beta=np.inf), r"^beta must be a finite real number, got inf$"),
    "fl*: targets shape": (lambda: focal_loss_star_forward(X, Y.T[:, :1]), r"targets.*shape"),
    "fl*: NaN logits": (lambda: focal_loss_star_forward(NAN_X, Y), r"logits.*NaN"),
    "smooth l1: beta < 0": (lambda: smooth_l1_forward(X, X, beta=-0.11), r"beta.*>= 0"),
    "smooth l1: target shape": (lambda: smooth_l1_forward(X, X[0]), r"target.*shape"),
    "smooth l1: int pred": (lambda: smooth_l1_forward(Y, X), r"pred.*floating dtype"),
    "smooth l1: NaN pred": (lambda: smooth_l1_forward(NAN_X, X), r"pred.*NaN"),
    "smooth l1: NaN target": (lambda: smooth_l1_forward(X, NAN_X), r"target.*NaN"),
    "smooth l1: dout shape": (lambda: smooth_l1_backward(X[0], smooth_l1_forward(X, X)[1]), r"^dout must be an array of the forward output's shape"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_raises_value_error_naming_the_argument(case):
    call, message = BAD_CALLS[case]
    with pytest.raises(ValueError, match=message):
        call()
