"""Exercise 3: the backward pass of a 2-D convolution (every layer of the backbone, FPN and heads).

Task
----
Write ``conv2d_backward``: the gradients of the loss with respect to the input, the filters
and the bias of a convolution, given the upstream gradient ``dout``. Only the backward is
yours; the forward is ``numpy_retinanet.nn.functional.conv2d_forward(x, w, b, stride,
padding)``, a cross-correlation (as in every deep-learning library) with zero padding:

    y[n, f, oh, ow] = b[f] + sum_{c, i, j} w[f, c, i, j] * xpad[n, c, s*oh + i, s*ow + j]

where xpad is x with ``padding`` zeros on each side of H and W, and s is ``stride``.

Derive db, dw and dx yourself from the forward's sum; the hints (``numpy-retinanet check FILE
--hint 1``, then 2, 3, 4) lead you through it, gentlest first, the last with the full formulas.

Shapes: x (N, C, H, W); w (F, C, KH, KW); b (F,); dout (N, F, OH, OW) with
OH = (H + 2 padding - KH) // stride + 1 and OW likewise. Return dx (N, C, H, W), dw (F, C, KH,
KW) and db (F,). All arrays are float64 NumPy arrays; ``stride`` >= 1 and ``padding`` >= 0 are ints.

What the checker compares
-------------------------
Run ``numpy-retinanet check lessons/exercises/ex3_conv2d_backward.py``. Five cases with
non-square inputs and kernels, strides 1 and 2, padding 0 and 1, a 1x1 kernel, and an input
row that no stride-2 window reaches. For each case three rows, dx, dw and db: each against
central differences of the forward (float64, h = 1e-5) and against the reference solution,
on every entry. A correct answer reaches a max relative error around 1e-8 (a row passes below
about 1e-6); a mistake is usually off by 1e-2 or more. A gradient of the wrong shape fails its
row with the shape expected.
"""

import numpy as np  # noqa: F401 -- offered for your answer

EXERCISE = 3


def conv2d_backward(dout, x, w, b, stride, padding):
    """Gradients of y = conv2d_forward(x, w, b, stride, padding).

    Parameters
    ----------
    dout : (N, F, OH, OW) upstream gradient.
    x : (N, C, H, W) the input of the forward pass.
    w : (F, C, KH, KW) the filters.
    b : (F,) the bias.
    stride : int >= 1, the same along H and W.
    padding : int >= 0 zeros on each side of H and W.

    Returns
    -------
    dx : (N, C, H, W)
    dw : (F, C, KH, KW)
    db : (F,)
    """
    raise NotImplementedError("Exercise 3: write conv2d_backward, returning (dx, dw, db)")
