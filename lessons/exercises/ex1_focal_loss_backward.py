"""Exercise 1: the backward pass of the sigmoid focal loss (§3.2 eq. 5, Appendix B).

Task
----
Write ``focal_loss_backward``: the gradient of the focal loss with respect to the logits,
multiplied by the upstream gradient ``dout``. Only the backward is yours; the forward is
``numpy_retinanet.nn.losses.sigmoid_focal_loss_forward(logits, targets, alpha, gamma)``,
which computes, entry by entry (no sum),

    FL = -alpha_t (1 - p_t)^gamma log p_t                                   (eq. 5)

For one entry: x is the logit, y in {0, 1} the target, y' = 2y - 1, x_t = y' x,
p_t = sigmoid(x_t) and alpha_t = alpha if y = 1, else 1 - alpha (§3). Derive dFL/dx yourself
with the chain rule; the hints (``numpy-retinanet check FILE --hint 1``, then 2, 3, 4) lead you
through it, gentlest first, the last with the full formula. The paper's Appendix B is the answer
too: look there after you have tried.

Shapes: ``dout``, ``logits`` and ``targets`` share one shape, any shape ((N, anchors, K) in
the detector); ``dlogits`` has that shape too. ``alpha`` is a float in [0, 1] and ``gamma`` a
float >= 0. All arrays are float64 NumPy arrays. ``sigmoid`` and ``softplus`` (imported below)
evaluate the pieces without overflow; the checker's logits lie in [-5, 5], so a direct formula
works too.

What the checker compares
-------------------------
Run ``numpy-retinanet check lessons/exercises/ex1_focal_loss_backward.py``. Five cases, shapes
(4, 6) to (2, 3, 4), with (alpha, gamma) = (0.25, 2), (0.25, 0), (0.75, 1), (0.5, 0.5) and
(0.25, 5), about a third of the targets 1, and a random ``dout``. For each case one row: your
``dlogits`` against central differences of the forward (float64, h = 1e-5) and against the
reference solution, on every entry. A correct answer reaches a max relative error around 1e-8
(a row passes below about 1e-6); a mistake is usually off by 1e-2 or more.
"""

import numpy as np  # noqa: F401 -- offered for your answer

from numpy_retinanet.nn.losses import sigmoid, softplus  # noqa: F401 -- stable helpers for your answer

EXERCISE = 1


def focal_loss_backward(dout, logits, targets, alpha, gamma):
    """Gradient of the focal loss (eq. 5) with respect to the logits, times ``dout``.

    Parameters
    ----------
    dout : (...) upstream gradient, one per entry of the loss.
    logits : (...) the logits x.
    targets : (...) 0.0 or 1.0.
    alpha : float in [0, 1], the weight of the positives (negatives get 1 - alpha).
    gamma : float >= 0, the focusing parameter.

    Returns
    -------
    dlogits : (...) dout * dFL/dx, the shape of ``logits``.
    """
    raise NotImplementedError("Exercise 1: write focal_loss_backward, dout * dFL/dx of eq. 5")
