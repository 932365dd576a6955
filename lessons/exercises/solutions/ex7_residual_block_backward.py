"""Solution of exercise 7: the backward pass of a residual block (He et al. 2016, the backbone's BasicBlock).

Read it after trying. ``numpy-retinanet check`` compares every answer with this file, entry by
entry; it lives in the repository and is not installed with the package. ``forward`` is the one
the exercise gives; ``backward`` is the answer.
"""

import numpy as np

from numpy_retinanet.nn.functional import (
    conv2d_backward,
    conv2d_forward,
    group_norm_backward,
    group_norm_forward,
    relu_backward,
    relu_forward,
)

EXERCISE = 7


class ResidualBlock:
    """out = relu(F(x) + S(x)): F = GN(conv3x3(relu(GN(conv3x3(x, stride))))), S = x or GN(conv1x1(x, stride))."""

    def __init__(self, params, stride, num_groups):
        self.params = params
        self.grads = {k: np.zeros_like(v) for k, v in params.items()}
        self.stride, self.num_groups = stride, num_groups
        self.projection = "w_s" in params
        self.cache = None

    def forward(self, x):
        """x (N, C_in, H, W) -> (N, C_out, H', W'), H' = ceil(H / stride)."""
        p, g = self.params, self.num_groups
        z1, conv1 = conv2d_forward(x, p["w1"], None, self.stride, 1)
        n1, norm1 = group_norm_forward(z1, p["gamma1"], p["beta1"], g)
        a1, relu1 = relu_forward(n1)
        z2, conv2 = conv2d_forward(a1, p["w2"], None, 1, 1)
        n2, norm2 = group_norm_forward(z2, p["gamma2"], p["beta2"], g)
        if self.projection:
            zs, conv_s = conv2d_forward(x, p["w_s"], None, self.stride, 0)
            s, norm_s = group_norm_forward(zs, p["gamma_s"], p["beta_s"], g)
        else:
            s, conv_s, norm_s = x, None, None
        out, relu_out = relu_forward(n2 + s)
        self.cache = (conv1, norm1, relu1, conv2, norm2, conv_s, norm_s, relu_out)
        return out

    def backward(self, dout):
        """dout (N, C_out, H', W') -> dx (N, C_in, H, W); adds every parameter's gradient into grads.

        The final ReLU acts on the sum, so its mask comes first; the gradient of the sum then
        reaches both terms unchanged, and x, read by both, gets the sum of their gradients.
        """
        conv1, norm1, relu1, conv2, norm2, conv_s, norm_s, relu_out = self.cache
        d = relu_backward(dout, relu_out)  # the gradient of n2 + s, for both terms

        dz2, dgamma2, dbeta2 = group_norm_backward(d, norm2)
        da1, dw2, _ = conv2d_backward(dz2, conv2)
        dz1, dgamma1, dbeta1 = group_norm_backward(relu_backward(da1, relu1), norm1)
        dx, dw1, _ = conv2d_backward(dz1, conv1)
        grads = {"w1": dw1, "gamma1": dgamma1, "beta1": dbeta1, "w2": dw2, "gamma2": dgamma2, "beta2": dbeta2}

        if self.projection:
            dzs, grads["gamma_s"], grads["beta_s"] = group_norm_backward(d, norm_s)
            dx_s, grads["w_s"], _ = conv2d_backward(dzs, conv_s)
        else:
            dx_s = d
        for k, v in grads.items():
            self.grads[k] += v
        return dx + dx_s
