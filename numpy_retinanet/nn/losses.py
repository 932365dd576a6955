"""The losses of RetinaNet (§3, Appendix A/B, §4.1), as forward/backward pairs computed from logits.

Every loss here is *elementwise*: the forward returns one loss per entry, shaped like its
input, and leaves the reduction (sum over anchors, divide by the number of positives, §4.1)
to the caller. Each pair follows the package convention::

    loss, cache = op_forward(inputs..., hyperparams)     # loss: same shape as the input
    dinput = op_backward(dout, cache)                    # dout: same shape as loss

Notation (§3): x is the logit, p = sigmoid(x), y in {0, 1} the target, y' = 2y - 1 in
{-1, +1}, x_t = y' x, p_t = sigmoid(x_t) (= p if y = 1 else 1 - p), alpha_t = alpha if y = 1
else 1 - alpha.

Stable math. The sigmoid is fused with the loss "for numerical stability" (§3.3): nothing
forms p and takes its log. With softplus(z) = log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)),

    -log p_t        = softplus(-x_t)
    (1 - p_t)^gamma = exp(-gamma softplus(x_t))

are finite for every finite logit, so no probability is ever clipped and no RuntimeWarning is
raised for logits as large as +-1e4 in float32 or float64.

dtype: the loss and the gradient have the dtype of ``logits`` (``pred`` for smooth L1);
targets and ``dout`` are cast to it. float32 trains, float64 checks gradients.
"""

from __future__ import annotations

from numpy_retinanet._checks import check_array, check_dout, check_real, check_same_shape
from numpy_retinanet.backend import array_module

# The paper's values, written once: the defaults below and ``detection.criterion.LossConfig``'s
# use these names. gamma 2 with alpha .25 is Table 1b's best pair (§3.2); FL*'s beta 1 with
# gamma 2 is in Table 3 (Appendix A); smooth L1's beta 0.11 is Detectron's (§4.1).
ALPHA = 0.25
GAMMA = 2.0
FL_STAR_BETA = 1.0
SMOOTH_L1_BETA = 0.11

__all__ = [
    "softplus",
    "log_sigmoid",
    "sigmoid",
    "sigmoid_focal_loss_forward",
    "sigmoid_focal_loss_backward",
    "sigmoid_cross_entropy_forward",
    "sigmoid_cross_entropy_backward",
    "focal_loss_star_forward",
    "focal_loss_star_backward",
    "smooth_l1_forward",
    "smooth_l1_backward",
    "CLASSIFICATION_LOSSES",
]


# ----------------------------------------------------------------------------------------
# Stable elementwise helpers (no validation: they are the building blocks of the losses)
# ----------------------------------------------------------------------------------------


def softplus(z):
    """softplus(z) = log(1 + exp(z)), evaluated as max(z, 0) + log1p(exp(-|z|)).

    exp only ever sees a non-positive argument, so it cannot overflow; the result is finite
    for every finite ``z``. Any shape; same dtype as ``z``.
    """
    xp = array_module(z)
    return xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))


def log_sigmoid(z):
    """log(sigmoid(z)) = -softplus(-z): finite for every finite ``z`` (never log(0))."""
    return -softplus(-z)


def sigmoid(z):
    """sigmoid(z) = 1 / (1 + exp(-z)) without overflow.

    With e = exp(-|z|) in (0, 1]: sigmoid(z) = 1 / (1 + e) for z >= 0 and e / (1 + e) for
    z < 0, so exp never sees a positive argument and 1 - sigmoid(z) is available accurately
    as sigmoid(-z). Any shape; same dtype as ``z``.
    """
    xp = array_module(z)
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _binary_targets(targets, logits):
    """Check ``targets`` (values exactly 0 or 1) and return them as logits' dtype."""
    check_same_shape("targets", targets, "logits", logits)
    if targets.dtype.kind not in "biuf":
        raise ValueError(f"targets must be 0/1 numbers (bool, int or float), got dtype {targets.dtype}")
    xp = array_module(logits, targets)
    if targets.dtype.kind == "f" and bool(xp.any(xp.isnan(targets))):
        raise ValueError("targets must be exactly 0 or 1, got NaN values")
    if not bool(xp.all((targets == 0) | (targets == 1))):
        bad = targets[(targets != 0) & (targets != 1)]
        raise ValueError(
            f"targets must be exactly 0 or 1, got other values such as {bad.ravel()[0].item()!r}"
        )
    return targets.astype(logits.dtype)


def _alpha_t(alpha, y):
    """alpha_t of eq. 3: alpha where y = 1, 1 - alpha where y = 0 (``None`` if alpha is None).

    y * a + (1 - y) * b is exact for y in {0, 1} and keeps y's dtype.
    """
    if alpha is None:
        return None
    a = check_real("alpha", alpha, 0, 1)
    return y * a + (1 - y) * (1.0 - a)


# ----------------------------------------------------------------------------------------
# Focal loss (§3.2, eq. 4-5; gradient: Appendix B)
# ----------------------------------------------------------------------------------------


def sigmoid_focal_loss_forward(logits, targets, alpha=ALPHA, gamma=GAMMA):
    """Focal loss FL(p_t) = -alpha_t (1 - p_t)^gamma log p_t (§3.2, eq. 5), per entry.

    Evaluated from the logit as  alpha_t exp(-gamma softplus(x_t)) softplus(-x_t).
    gamma = 0 gives exactly the (alpha-balanced) cross-entropy of eq. 3; since
    (1 - p_t)^gamma <= 1, FL <= CE everywhere. For gamma = 2 (§3.2) the loss is 100x lower
    than CE at p_t = 0.9, 1000x lower at p_t = 1 - 10^-1.5 ~ 0.968, and at most 4x lower for
    p_t <= 0.5. The paper's defaults are alpha = 0.25, gamma = 2 (Table 1b).

    Parameters
    ----------
    logits : float array, any shape (e.g. (N, num_anchors, K)); float32 or float64.
    targets : array of logits' shape, values exactly 0 or 1 (bool, int or float).
    alpha : weight of the positives in [0, 1] (negatives get 1 - alpha); None: no weighting (eq. 4).
    gamma : focusing parameter >= 0.

    Returns
    -------
    loss : array of logits' shape and dtype, no reduction.
    cache : for ``sigmoid_focal_loss_backward``.
    """
    check_array("logits", logits, kind="f", finite=True)
    y = _binary_targets(targets, logits)
    gamma = check_real("gamma", gamma, 0)
    alpha_t = _alpha_t(alpha, y)
    xp = array_module(logits)
    sign = 2 * y - 1
    x_t = sign * logits
    neg_log_pt = softplus(-x_t)
    modulator = xp.exp(-gamma * softplus(x_t))  # (1 - p_t)^gamma
    loss = modulator * neg_log_pt
    if alpha_t is not None:
        loss = alpha_t * loss
    return loss, (sign, x_t, neg_log_pt, modulator, alpha_t, gamma)


def sigmoid_focal_loss_backward(dout, cache):
    """Gradient of the focal loss with respect to the logits (Appendix B).

    dFL/dx = y' alpha_t (1 - p_t)^gamma (gamma p_t log p_t + p_t - 1), evaluated with
    log p_t = -softplus(-x_t), (1 - p_t)^gamma = exp(-gamma softplus(x_t)) and
    p_t - 1 = -sigmoid(-x_t): every factor is finite, so gamma = 0 gives 0 * finite (never
    0 * inf) and the gradient reduces to the cross-entropy's y' (p_t - 1).

    Parameters
    ----------
    dout : upstream gradient, the shape of the loss.
    cache : from ``sigmoid_focal_loss_forward``.

    Returns
    -------
    dlogits : the shape and dtype of the logits.
    """
    sign, x_t, neg_log_pt, modulator, alpha_t, gamma = cache
    dout = check_dout("dout", dout, x_t.shape).astype(x_t.dtype, copy=False)
    p_t = sigmoid(x_t)
    # (gamma * p_t) first: p_t -> 0 exactly where -log p_t is large, so the product stays finite.
    g = modulator * (-(gamma * p_t) * neg_log_pt - sigmoid(-x_t))
    if alpha_t is not None:
        g = alpha_t * g
    return dout * sign * g


# ----------------------------------------------------------------------------------------
# Sigmoid cross-entropy (§3.1, eq. 1-3)
# ----------------------------------------------------------------------------------------


def sigmoid_cross_entropy_forward(logits, targets, alpha=None):
    """Binary cross-entropy CE(p_t) = -log p_t (eq. 2), or -alpha_t log p_t (eq. 3), per entry.

    Evaluated as alpha_t softplus(-x_t), finite for every finite logit.

    Parameters
    ----------
    logits : float array, any shape; float32 or float64.
    targets : array of logits' shape, values exactly 0 or 1.
    alpha : None (plain CE, eq. 2) or the weight of the positives in [0, 1] (eq. 3).

    Returns
    -------
    loss : array of logits' shape and dtype, no reduction.
    cache : for ``sigmoid_cross_entropy_backward``.
    """
    check_array("logits", logits, kind="f", finite=True)
    y = _binary_targets(targets, logits)
    alpha_t = _alpha_t(alpha, y)
    sign = 2 * y - 1
    x_t = sign * logits
    loss = softplus(-x_t)
    if alpha_t is not None:
        loss = alpha_t * loss
    return loss, (sign, x_t, alpha_t)


def sigmoid_cross_entropy_backward(dout, cache):
    """Gradient of the (alpha-balanced) cross-entropy: dCE/dx = y' alpha_t (p_t - 1) = alpha_t (p - y).

    Parameters
    ----------
    dout : upstream gradient, the shape of the loss.
    cache : from ``sigmoid_cross_entropy_forward``.

    Returns
    -------
    dlogits : the shape and dtype of the logits.
    """
    sign, x_t, alpha_t = cache
    dout = check_dout("dout", dout, x_t.shape).astype(x_t.dtype, copy=False)
    g = -sigmoid(-x_t)  # p_t - 1, without the cancellation of 1 - p_t near p_t = 1
    if alpha_t is not None:
        g = alpha_t * g
    return dout * sign * g


# ----------------------------------------------------------------------------------------
# FL* (Appendix A)
# ----------------------------------------------------------------------------------------


def focal_loss_star_forward(logits, targets, gamma=GAMMA, beta=FL_STAR_BETA):
    """FL* = -log(sigmoid(gamma x_t + beta)) / gamma (Appendix A), per entry.

    The alternative focal loss of Appendix A: x*_t = gamma x_t + beta, p*_t = sigmoid(x*_t),
    evaluated as softplus(-x*_t) / gamma. gamma = 1, beta = 0 is the cross-entropy. Table 3
    reports gamma = 2, beta = 1 (33.8 AP) and gamma = 4, beta = 0 (33.9 AP).

    Parameters
    ----------
    logits : float array, any shape; float32 or float64.
    targets : array of logits' shape, values exactly 0 or 1.
    gamma : steepness, > 0 (the loss divides by it).
    beta : shift of the logit, any finite number.

    Returns
    -------
    loss : array of logits' shape and dtype, no reduction.
    cache : for ``focal_loss_star_backward``.
    """
    check_array("logits", logits, kind="f", finite=True)
    y = _binary_targets(targets, logits)
    gamma = check_real("gamma", gamma, 0, low_open=True)
    beta = check_real("beta", beta)
    sign = 2 * y - 1
    z = gamma * (sign * logits) + beta  # x*_t
    loss = softplus(-z) / gamma
    return loss, (sign, z)


def focal_loss_star_backward(dout, cache):
    """Gradient of FL* (Appendix A): dFL*/dx = y' (p*_t - 1), with p*_t - 1 = -sigmoid(-x*_t).

    Parameters
    ----------
    dout : upstream gradient, the shape of the loss.
    cache : from ``focal_loss_star_forward``.

    Returns
    -------
    dlogits : the shape and dtype of the logits.
    """
    sign, z = cache
    dout = check_dout("dout", dout, z.shape).astype(z.dtype, copy=False)
    return dout * sign * -sigmoid(-z)


# ----------------------------------------------------------------------------------------
# Smooth L1 (§4.1 box regression; Detectron's form)
# ----------------------------------------------------------------------------------------


def smooth_l1_forward(pred, target, beta=SMOOTH_L1_BETA):
    """Smooth L1 loss of the box regression (§4.1), Detectron's form, per entry.

    With d = pred - target:  0.5 d^2 / beta  if |d| < beta,  else  |d| - 0.5 beta.
    The two pieces meet with equal value and slope at |d| = beta. beta = 0 is the L1 loss |d|.
    RetinaNet uses beta = 0.11 [Detectron].

    Parameters
    ----------
    pred : float array, any shape (e.g. (num_positive, 4) box deltas); float32 or float64.
    target : array of pred's shape (cast to pred's dtype).
    beta : >= 0, the width of the quadratic zone.

    Returns
    -------
    loss : array of pred's shape and dtype, no reduction.
    cache : for ``smooth_l1_backward``.
    """
    check_array("pred", pred, kind="f", finite=True)
    check_same_shape("target", target, "pred", pred)
    check_array("target", target, kind="fiu", finite=True)
    target = target.astype(pred.dtype, copy=False)
    beta = check_real("beta", beta, 0)
    xp = array_module(pred, target)
    d = pred - target
    ad = xp.abs(d)
    if beta == 0.0:
        return ad, (d, beta)
    m = xp.minimum(ad, beta)  # the quadratic piece never squares a large |d| (no overflow)
    loss = xp.where(ad < beta, 0.5 * m * m / beta, ad - 0.5 * beta)
    return loss, (d, beta)


def smooth_l1_backward(dout, cache):
    """Gradient of smooth L1: d/beta if |d| < beta, else sign(d); for beta = 0, sign(d).

    Written as clip(d, -beta, beta) / beta, which is exactly +-1 outside the quadratic zone.
    At d = 0 the L1 gradient is 0 (a subgradient).

    Parameters
    ----------
    dout : upstream gradient, the shape of the loss.
    cache : from ``smooth_l1_forward``.

    Returns
    -------
    dpred : the shape and dtype of pred (the gradient with respect to target is -dpred).
    """
    d, beta = cache
    dout = check_dout("dout", dout, d.shape).astype(d.dtype, copy=False)
    xp = array_module(d)
    g = xp.sign(d) if beta == 0.0 else xp.clip(d, -beta, beta) / beta
    return dout * g


# ----------------------------------------------------------------------------------------
# The classification losses a detector can be trained with, by name
# ----------------------------------------------------------------------------------------

#: name -> (forward, backward, the settings the forward takes after (logits, targets)).
#: ``detection.criterion.LossConfig.loss`` picks one; a new loss is a pair above plus a row here.
CLASSIFICATION_LOSSES = {
    "focal": (sigmoid_focal_loss_forward, sigmoid_focal_loss_backward, ("alpha", "gamma")),  # eq. 5
    "ce": (sigmoid_cross_entropy_forward, sigmoid_cross_entropy_backward, ("alpha",)),  # eq. 3, Table 1a
    "fl_star": (focal_loss_star_forward, focal_loss_star_backward, ("gamma", "beta")),  # Appendix A
}
