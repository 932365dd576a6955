"""Exercise 6: the backward pass of GroupNorm (Wu & He 2018; after every conv of the backbone).

Task
----
Write ``group_norm_backward``: the gradients of the loss with respect to the input, the scale
and the shift of a group normalization, given the upstream gradient ``dout``. Only the
backward is yours; the forward is ``numpy_retinanet.nn.functional.group_norm_forward(x, gamma,
beta, num_groups, eps)``. It splits the C channels into G = ``num_groups`` groups of C/G
consecutive channels and normalises each (sample, group) by its own mean and variance, taken
over its M = C/G * H * W entries, then scales and shifts each channel:

    mu, var = the mean and the (biased) variance of x over one (sample, group)
    xhat = (x - mu) / sqrt(var + eps),     y[n, c, h, w] = gamma[c] xhat[n, c, h, w] + beta[c]

Nothing is averaged over the batch, which is why the backbone, trained from scratch at batch 8,
uses it instead of batch norm. Derive dx, dgamma and dbeta yourself; the hints (``numpy-retinanet
check FILE --hint 1``, then 2 to 5) lead you through it, gentlest first, the last with the full
formulas.

Shapes: x and dout (N, C, H, W); gamma and beta (C,); ``num_groups`` an int G dividing C;
``eps`` a float > 0 (1e-5 in the checker). Return dx (N, C, H, W), dgamma (C,) and dbeta (C,).
All arrays are float64 NumPy arrays. You get x itself, not the forward's cache: recompute what
you need from it.

What the checker compares
-------------------------
Run ``numpy-retinanet check lessons/exercises/ex6_group_norm_backward.py``. Four cases: N = 2
with uneven H and W and 2 channels per group, G = 1, G = C, and N = 3 with G = 3. For each case
three rows, dx, dgamma and dbeta: each against central differences of the forward (float64,
h = 1e-5) and against the reference solution, on every entry. A correct answer reaches a max
relative error around 1e-7 (a row passes below about 1e-6); a mistake is usually off by 1e-2
or more.
"""

import numpy as np  # noqa: F401 -- offered for your answer

EXERCISE = 6


def group_norm_backward(dout, x, gamma, beta, num_groups, eps):
    """Gradients of y = group_norm_forward(x, gamma, beta, num_groups, eps).

    Parameters
    ----------
    dout : (N, C, H, W) upstream gradient.
    x : (N, C, H, W) the input of the forward pass.
    gamma, beta : (C,) the scale and the shift.
    num_groups : int G >= 1 dividing C.
    eps : float > 0 added to the variance.

    Returns
    -------
    dx : (N, C, H, W)
    dgamma : (C,)
    dbeta : (C,)
    """
    raise NotImplementedError("Exercise 6: write group_norm_backward, returning (dx, dgamma, dbeta)")
