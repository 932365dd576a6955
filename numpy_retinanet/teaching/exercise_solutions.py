"""Worked solutions of the exercises in lessons/exercises, and the checker's reference.

``numpy-retinanet check`` compares a learner's answer with central differences *and* with
these functions, entry by entry. Read them after trying; each is written for reading, with
loops where a loop says more than a reshape (the package's own versions in ``nn/`` are the
fast ones). Inputs are host NumPy float64 arrays, as the checker passes them.

This file is itself a valid answer to all five exercises: it defines no ``EXERCISE`` constant,
so the checker recognises every exercise by the name it defines, and
``numpy-retinanet check numpy_retinanet/teaching/exercise_solutions.py`` checks all five.
"""

from __future__ import annotations

import numpy as np

from numpy_retinanet.nn import functional as F
from numpy_retinanet.nn.losses import sigmoid, softplus


def focal_loss_backward(dout, logits, targets, alpha, gamma):
    """Exercise 1: dFL/dx of FL = -alpha_t (1 - p_t)^gamma log p_t (eq. 5), times ``dout``.

    Chain rule through x_t = y' x (y' = 2y - 1) and p_t = sigmoid(x_t), dp_t/dx_t = p_t (1 - p_t):

        dFL/dp_t = alpha_t [gamma (1 - p_t)^(gamma - 1) log p_t - (1 - p_t)^gamma / p_t]
        dFL/dx   = y' alpha_t (1 - p_t)^gamma (gamma p_t log p_t + p_t - 1)     (Appendix B)

    Each factor is evaluated from the logit so that none overflows: (1 - p_t)^gamma =
    exp(-gamma softplus(x_t)), log p_t = -softplus(-x_t), p_t - 1 = -sigmoid(-x_t).
    """
    sign = 2.0 * targets - 1.0
    x_t = sign * logits
    alpha_t = np.where(targets == 1, alpha, 1.0 - alpha)
    modulator = np.exp(-gamma * softplus(x_t))
    log_p_t = -softplus(-x_t)
    dfl_dxt = alpha_t * modulator * (gamma * sigmoid(x_t) * log_p_t - sigmoid(-x_t))
    return dout * sign * dfl_dxt


def smooth_l1_backward(dout, pred, target, beta):
    """Exercise 2: d/dpred of smooth L1 (§4.1), times ``dout``.

    With d = pred - target: d / beta inside the quadratic zone |d| < beta, sign(d) outside;
    beta = 0 is the L1 loss, whose gradient is sign(d) everywhere.
    """
    d = pred - target
    if beta == 0:
        return dout * np.sign(d)
    inside = np.abs(d) < beta
    # np.where evaluates both branches; d / beta is finite here because beta > 0.
    return dout * np.where(inside, d / beta, np.sign(d))


def conv2d_backward(dout, x, w, b, stride, padding):
    """Exercise 3: gradients of y = conv2d(x, w, b) (cross-correlation, zero padding).

    Output pixel (oh, ow) read the window xpad[:, :, s*oh : s*oh + KH, s*ow : s*ow + KW]
    through every filter, so its upstream gradient dout[:, :, oh, ow] (N, F) flows back
    to that window through w (into dx) and to w through that window (into dw). Windows
    overlap, so both are *added*; the padding's share of dx is cut off at the end.
    """
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    _, _, oh, ow = dout.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)
    for i in range(oh):
        for j in range(ow):
            r, q = i * stride, j * stride
            g = dout[:, :, i, j]  # (N, F)
            window = xpad[:, :, r:r + kh, q:q + kw]  # (N, C, KH, KW)
            dw += np.tensordot(g, window, axes=([0], [0]))  # (F, C, KH, KW)
            dxpad[:, :, r:r + kh, q:q + kw] += np.tensordot(g, w, axes=([1], [0]))  # (N, C, KH, KW)
    db = dout.sum(axis=(0, 2, 3))
    return dxpad[:, :, padding:padding + h, padding:padding + wd], dw, db


def upsample_nearest_backward(dout, factor):
    """Exercise 4: x[n, c, i, j] was copied into the factor x factor block of y at
    (i*factor .. i*factor + factor - 1, j*factor .. j*factor + factor - 1), so its gradient
    is the sum of dout over that block.

    Splitting H*factor into (H, factor) and W*factor into (W, factor) puts each block on
    axes 3 and 5.
    """
    n, c, hk, wk = dout.shape
    return dout.reshape(n, c, hk // factor, factor, wk // factor, factor).sum(axis=(3, 5))


class SharedHead:
    """Exercise 5: one 3x3 conv (padding 1) shared by every pyramid level (§4, the subnets).

    ``forward`` is the one given in the exercise; ``backward`` is the answer.
    """

    def __init__(self, w, b):
        self.params = {"w": w, "b": b}
        self.grads = {"w": np.zeros_like(w), "b": np.zeros_like(b)}
        self._caches = []

    def forward(self, levels):
        """[(N, C, H_l, W_l) per level] -> [(N, F, H_l, W_l) per level]; one cache per level."""
        outs = []
        for x in levels:
            y, cache = F.conv2d_forward(x, self.params["w"], self.params["b"], stride=1, padding=1)
            self._caches.append(cache)
            outs.append(y)
        return outs

    def backward(self, douts):
        """[(N, F, H_l, W_l) per level] -> [(N, C, H_l, W_l) per level]; adds into grads.

        The caches are a stack, the last level's on top, so the levels are walked in
        reverse. Every level used the same w and b, so their gradient is the sum of the
        levels' contributions, added to whatever ``grads`` already held.
        """
        dlevels = [None] * len(douts)
        for lvl in reversed(range(len(douts))):
            dx, dw, db = F.conv2d_backward(douts[lvl], self._caches.pop())
            self.grads["w"] += dw
            self.grads["b"] += db
            dlevels[lvl] = dx
        return dlevels
