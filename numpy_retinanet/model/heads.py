"""Classification and box regression subnets (§4, "Classification Subnet", "Box Regression Subnet").

Each subnet is ``depth`` x (3x3 conv, ReLU) followed by a 3x3 conv to A*K (or A*4)
outputs. One subnet is shared by every pyramid level: it runs once per level,
keeping one cache per run, and its backward walks the levels in reverse, so the
gradient of each weight is the sum over levels.

Why once per level, when P4-P7 are small (8x8 to 1x1 at 128 px) and a call costs
about as much on them as the math: the levels packed side by side, each layer called
once for all five (one column matrix of every level's grid, one GEMM; GroupNorm per
level inside the call), was measured in December 2026 and not kept. On one core,
4 images (a worker's share of the default step), both heads' forward + backward took
33.5-34.1 ms packed against 35.6 ms per level, and a worker's whole step 0.92-0.99x
(four alternating pairs): the per-level copies stay, because the levels' grids have
rows of different lengths, so each level still needs its own tap copies. A few percent
did not pay for the ~200 lines and a head that no longer reads as the paper's.

Initialization (§4.1): weights N(0, 0.01), biases 0, except the classification
subnet's last bias b = -log((1 - pi) / pi), pi = 0.01 (§3.3), so that every anchor
starts with foreground probability ~pi and the ~100k easy negatives do not swamp
the first iterations.

Output layout: the last conv gives (N, A*K, H, W) with channel c = a*K + k. It is
transposed to (N, H, W, A*K) and reshaped to (N, H*W*A, K): anchors ordered row,
column, anchor -- the order of ``detection.anchors`` -- and levels are concatenated.
"""

from __future__ import annotations

import math

import numpy as np

from numpy_retinanet._checks import check_real
from numpy_retinanet.backend import array_module
from numpy_retinanet.nn.modules import Conv2d, GroupNorm, Module, ReLU, Sequential


def prior_bias(pi: float) -> float:
    """b = -log((1 - pi) / pi): sigmoid(b) = pi (§3.3). pi = 0.01 gives -4.59512."""
    pi = check_real("pi", pi, 0, 1, low_open=True, high_open=True)
    return -math.log((1.0 - pi) / pi)


class RetinaHead(Module):
    """One subnet shared over pyramid levels, giving (N, M, out_per_anchor) from a list of features.

    Parameters
    ----------
    in_channels : channels of each pyramid level (all equal).
    num_anchors : A, anchors per location.
    out_per_anchor : K (classification) or 4 (box regression).
    depth : number of 3x3 conv + ReLU layers before the output conv (the paper: 4).
    channels : width of those layers (the paper: 256).
    bias_init : the output conv's bias (``prior_bias(0.01)`` for classification, 0 for boxes).
    norm_groups : 0 for the paper's head; > 0 adds GroupNorm after each conv (helps from scratch).
    """

    def __init__(self, in_channels, num_anchors, out_per_anchor, depth, channels,
                 bias_init=0.0, norm_groups=0, rng=None, dtype=np.float32):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        layers = []
        cin = in_channels
        for _ in range(depth):
            layers.append(Conv2d(cin, channels, 3, init="normal", std=0.01, rng=rng, dtype=dtype))
            if norm_groups:
                layers.append(GroupNorm(norm_groups, channels, dtype=dtype))
            layers.append(ReLU())
            cin = channels
        layers.append(Conv2d(cin, num_anchors * out_per_anchor, 3, init="normal", std=0.01,
                             bias_init=bias_init, rng=rng, dtype=dtype))
        self.subnet = Sequential(*layers)
        self.num_anchors = num_anchors
        self.out_per_anchor = out_per_anchor

    def forward(self, features):
        """[(N, C, H_l, W_l) per level] -> (N, sum_l H_l*W_l*A, out_per_anchor)."""
        xp = array_module(*features)
        outs, shapes = [], []
        for f in features:
            y = self.subnet.forward(f)  # (N, A*K, H, W)
            n, _, h, w = y.shape
            shapes.append((n, h, w))
            outs.append(y.transpose(0, 2, 3, 1).reshape(n, h * w * self.num_anchors, self.out_per_anchor))
        self._push(shapes)
        return xp.concatenate(outs, axis=1)

    def backward(self, dout):
        """(N, M, out_per_anchor) -> [(N, C, H_l, W_l) per level]; adds every level's share into grads."""
        shapes = self._pop("RetinaHead")
        sizes = [h * w * self.num_anchors for (_, h, w) in shapes]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        dfeatures = [None] * len(shapes)
        # Reverse level order: the subnet's caches were pushed P3 first, so P7's is on top.
        for lvl in reversed(range(len(shapes))):
            n, h, w = shapes[lvl]
            d = dout[:, starts[lvl]:starts[lvl + 1]].reshape(n, h, w, self.num_anchors * self.out_per_anchor)
            # A transposed view: the conv's backward accepts any layout and makes its
            # one copy into its own layout anyway.
            dfeatures[lvl] = self.subnet.backward(d.transpose(0, 3, 1, 2))
        return dfeatures
