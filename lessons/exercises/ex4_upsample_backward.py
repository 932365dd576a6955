"""Exercise 4: the backward pass of nearest-neighbour upsampling (the FPN's top-down path).

Task
----
Write ``upsample_nearest_backward``: the gradient of the loss with respect to the input of
a nearest-neighbour upsampling, given the upstream gradient ``dout``. Only the backward is
yours; the forward is ``numpy_retinanet.nn.functional.upsample_nearest_forward(x, factor)``,
which the FPN uses to bring a coarse map up to the next level's size (Lin et al. 2017,
"Feature Pyramid Networks", §3):

    y[n, c, i, j] = x[n, c, i // factor, j // factor]

Derive dx yourself; the hints (``numpy-retinanet check FILE --hint 1``, then 2, 3, 4) lead you
through it, gentlest first, the last with the full result.

Shapes: dout (N, C, H*factor, W*factor); return dx (N, C, H, W). ``factor`` is an int >= 1.
All arrays are float64 NumPy arrays.

What the checker compares
-------------------------
Run ``numpy-retinanet check lessons/exercises/ex4_upsample_backward.py``. Four cases with
non-square maps and factors 2, 3 and 4. For each case one row: your ``dx`` against central
differences of the forward (float64, h = 1e-5) and against the reference solution, on every
entry. A correct answer reaches a max relative error around 1e-8 (a row passes below about
1e-6); a mistake is usually off by 1e-2 or more.
"""

import numpy as np  # noqa: F401 -- offered for your answer

EXERCISE = 4


def upsample_nearest_backward(dout, factor):
    """Gradient of y = upsample_nearest_forward(x, factor) with respect to x.

    Parameters
    ----------
    dout : (N, C, H*factor, W*factor) upstream gradient.
    factor : int >= 1.

    Returns
    -------
    dx : (N, C, H, W)
    """
    raise NotImplementedError("Exercise 4: write upsample_nearest_backward")
