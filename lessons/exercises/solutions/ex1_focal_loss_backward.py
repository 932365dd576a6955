"""Solution of exercise 1: the backward pass of the sigmoid focal loss (§3.2 eq. 5, Appendix B).

Read it after trying. ``numpy-retinanet check`` compares every answer with this file, entry by
entry; it lives in the repository and is not installed with the package.

Chain rule through x_t = y' x (y' = 2y - 1) and p_t = sigmoid(x_t), dp_t/dx_t = p_t (1 - p_t):

    dFL/dp_t = alpha_t [gamma (1 - p_t)^(gamma - 1) log p_t - (1 - p_t)^gamma / p_t]
    dFL/dx   = y' alpha_t (1 - p_t)^gamma (gamma p_t log p_t + p_t - 1)     (Appendix B)

Each factor is evaluated from the logit so that none overflows: (1 - p_t)^gamma =
exp(-gamma softplus(x_t)), log p_t = -softplus(-x_t), p_t - 1 = -sigmoid(-x_t).
"""

import numpy as np

from numpy_retinanet.nn.losses import sigmoid, softplus

EXERCISE = 1


def focal_loss_backward(dout, logits, targets, alpha, gamma):
    """dout * dFL/dx of eq. 5; every array has the logits' shape."""
    sign = 2.0 * targets - 1.0
    x_t = sign * logits
    alpha_t = np.where(targets == 1, alpha, 1.0 - alpha)
    modulator = np.exp(-gamma * softplus(x_t))
    log_p_t = -softplus(-x_t)
    dfl_dxt = alpha_t * modulator * (gamma * sigmoid(x_t) * log_p_t - sigmoid(-x_t))
    return dout * sign * dfl_dxt
