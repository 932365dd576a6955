"""Exercise 2: the backward pass of the smooth L1 loss (§4.1, the box regression loss).

Task
----
Write ``smooth_l1_backward``: the gradient of the smooth L1 loss with respect to the
predicted box deltas, multiplied by the upstream gradient ``dout``. Only the backward is
yours; the forward is ``numpy_retinanet.nn.losses.smooth_l1_forward(pred, target, beta)``,
which computes, entry by entry with d = pred - target (Detectron's form, no sum),

    loss = 0.5 d^2 / beta     if |d| < beta
    loss = |d| - 0.5 beta     otherwise

and, for beta = 0, the L1 loss |d|. RetinaNet uses beta = 0.11 [Detectron].

Derive the gradient of each piece yourself; the hints (``numpy-retinanet check FILE --hint 1``,
then 2, 3) lead you through it, gentlest first, the last with the full result.

Shapes: ``dout``, ``pred`` and ``target`` share one shape ((num_positive, 4) in the detector);
``dpred`` has that shape too. ``beta`` is a float >= 0. All arrays are float64 NumPy arrays.

What the checker compares
-------------------------
Run ``numpy-retinanet check lessons/exercises/ex2_smooth_l1_backward.py``. Four cases: beta =
0.11, 1.0, 0.5 with half the entries inside the quadratic zone, and beta = 0 (L1); no |d| lies
within 0.05 beta of a kink (within 0.05 of 0 for L1), where central differences would straddle
two pieces. For each case one row: your ``dpred`` against central differences of the forward
(float64, h = 1e-5) and against the reference solution, on every entry. A correct answer
reaches a max relative error around 1e-9 (a row passes below about 1e-6); a mistake is
usually off by 1e-2 or more.
"""

import numpy as np  # noqa: F401 -- offered for your answer

EXERCISE = 2


def smooth_l1_backward(dout, pred, target, beta):
    """Gradient of the smooth L1 loss with respect to ``pred``, times ``dout``.

    Parameters
    ----------
    dout : (...) upstream gradient, one per entry of the loss.
    pred : (...) predicted box deltas.
    target : (...) target box deltas.
    beta : float >= 0, the width of the quadratic zone (0: the L1 loss).

    Returns
    -------
    dpred : (...) dout * dloss_entry/dpred, the shape of ``pred``.
    """
    raise NotImplementedError("Exercise 2: write smooth_l1_backward, dout * d(smooth L1)/dpred")
