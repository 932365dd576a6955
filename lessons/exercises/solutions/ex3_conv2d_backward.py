"""Solution of exercise 3: the backward pass of a 2-D convolution.

Read it after trying. ``numpy-retinanet check`` compares every answer with this file, entry by
entry; it lives in the repository and is not installed with the package. The package's own
``nn.functional.conv2d_backward`` is the fast version; this one loops over the output pixels,
which says more.

Output pixel (oh, ow) read the window xpad[:, :, s*oh : s*oh + KH, s*ow : s*ow + KW] through
every filter, so its upstream gradient dout[:, :, oh, ow] (N, F) flows back to that window
through w (into dx) and to w through that window (into dw). Windows overlap, so both are
*added*; the padding's share of dx is cut off at the end.
"""

import numpy as np

EXERCISE = 3


def conv2d_backward(dout, x, w, b, stride, padding):
    """(dx, dw, db) of y = conv2d(x, w, b, stride, padding): (N, C, H, W), (F, C, KH, KW), (F,)."""
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
