"""Exercise 7: the backward pass of a residual block (He et al. 2016; the backbone's BasicBlock).

Task
----
Write ``ResidualBlock.backward``. The backbone (``numpy_retinanet.model.backbone.BasicBlock``) is
a stack of residual blocks; ``ResidualBlock`` below is one, written with the package's ops:

    F(x) = GN(conv3x3(relu(GN(conv3x3(x, stride)))))         the residual branch
    S(x) = x, or GN(conv1x1(x, stride)) when the shape changes   the shortcut ("projection")
    out  = relu(F(x) + S(x))

The convs have no bias (the GroupNorm's shift replaces it) and padding 1 (3x3) or 0 (1x1). Its
``forward`` is given: it keeps every op's cache in ``self.cache``. Only ``backward`` is yours.
You may use the package's backward of each op, ``conv2d_backward``, ``group_norm_backward``
and ``relu_backward`` (imported below; exercises 3 and 6 are two of them): the block is the
exercise. Which gradient reaches x, and where does the final ReLU's mask act? The hints
(``numpy-retinanet check FILE --hint 1``, then 2, 3, 4) lead you there, gentlest first.

Shapes: x (N, C_in, H, W); out and dout (N, C_out, H', W') with H' = ceil(H / stride);
``params`` maps "w1" (C_out, C_in, 3, 3), "gamma1", "beta1" (C_out,), "w2" (C_out, C_out, 3, 3),
"gamma2", "beta2", and with a projection "w_s" (C_out, C_in, 1, 1), "gamma_s", "beta_s". Return
dx; add each parameter's gradient into ``self.grads[name]`` (they start at zero), as every
module of the package does. All arrays are float64 NumPy arrays.

What the checker compares
-------------------------
Run ``numpy-retinanet check lessons/exercises/ex7_residual_block_backward.py``. Three cases: an
identity shortcut (N = 2, 4 channels, G = 2), a projection shortcut (2 -> 4 channels, stride 2,
odd H and W), and an identity shortcut with G = 1 at N = 1; every ReLU input is drawn at least
2e-3 away from 0, so that central differences do not step across a kink. Rows: x and every
parameter, each against central differences of the forward (float64, h = 1e-5) and against
the reference solution, on every entry. A correct answer reaches a max relative error around
1e-7 (a row passes below about 1e-6); a mistake is usually off by 1e-2 or more.
"""

import numpy as np

from numpy_retinanet.nn.functional import (  # noqa: F401 -- the backward ops are for your answer
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
        """dout (N, C_out, H', W') -> dx (N, C_in, H, W); adds each parameter's gradient into ``self.grads``.

        ``self.cache`` holds (conv1, norm1, relu1, conv2, norm2, conv_s, norm_s, relu_out), the
        caches of the forward's ops in order (conv_s and norm_s are None without a projection).
        """
        raise NotImplementedError("Exercise 7: write ResidualBlock.backward, returning dx")
