"""Solution of exercise 4: the backward pass of nearest-neighbour upsampling (the FPN's top-down path).

Read it after trying. ``numpy-retinanet check`` compares every answer with this file, entry by
entry; it lives in the repository and is not installed with the package.

x[n, c, i, j] was copied into the factor x factor block of y at rows i*factor ... i*factor +
factor - 1 and columns j*factor ... j*factor + factor - 1, so its gradient is the sum of dout
over that block. Splitting H*factor into (H, factor) and W*factor into (W, factor) puts each
block on axes 3 and 5.
"""

EXERCISE = 4


def upsample_nearest_backward(dout, factor):
    """dout (N, C, H*factor, W*factor) -> dx (N, C, H, W)."""
    n, c, hk, wk = dout.shape
    return dout.reshape(n, c, hk // factor, factor, wk // factor, factor).sum(axis=(3, 5))
