"""Solution of exercise 6: the backward pass of GroupNorm (Wu & He 2018, §3.1).

Read it after trying. ``numpy-retinanet check`` compares every answer with this file, entry by
entry; it lives in the repository and is not installed with the package.

With M = C/G * H * W entries per (sample, group), xhat = (x - mu) / sqrt(var + eps) and
y = gamma xhat + beta. x reaches xhat directly, through mu and through var; summing the three
paths gives, with dxhat = dout gamma and every mean over one (sample, group),

    dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat)).
"""

import numpy as np

EXERCISE = 6


def group_norm_backward(dout, x, gamma, beta, num_groups, eps):
    """(dx, dgamma, dbeta) of y = group_norm_forward(x, gamma, beta, num_groups, eps)."""
    n, c, h, w = x.shape
    xg = x.reshape(n, num_groups, c // num_groups * h * w)  # one row per (sample, group)
    mu = xg.mean(axis=2, keepdims=True)
    inv_std = 1.0 / np.sqrt(xg.var(axis=2, keepdims=True) + eps)  # the biased variance, as the forward
    xhat = ((xg - mu) * inv_std).reshape(x.shape)

    dbeta = dout.sum(axis=(0, 2, 3))
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))

    dxhat = (dout * gamma[:, None, None]).reshape(xg.shape)
    xhat_g = xhat.reshape(xg.shape)
    dx = inv_std * (dxhat - dxhat.mean(axis=2, keepdims=True)
                    - xhat_g * (dxhat * xhat_g).mean(axis=2, keepdims=True))
    return dx.reshape(x.shape), dgamma, dbeta
