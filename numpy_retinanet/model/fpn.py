"""Feature pyramid P3-P7 on top of C3-C5 (§4, "Feature Pyramid Network Backbone").

    M5 = lateral5(C5)
    M4 = lateral4(C4) + up2(M5)        (nearest-neighbour x2, cropped to C4's size)
    M3 = lateral3(C3) + up2(M4)
    P3, P4, P5 = 3x3 conv of M3, M4, M5
    P6 = 3x3 stride-2 conv on C5       (the paper; ``p6_from="p5"`` is the later variant)
    P7 = 3x3 stride-2 conv on ReLU(P6)

Laterals are 1x1 convs. Crop: with odd sizes, C4 is ceil(H3 / 2), so up2(M4) can be
one row/column larger than C3; the extra row/column is dropped (and gets zero gradient).
"""

from __future__ import annotations

import numpy as np

from numpy_retinanet.backend import array_module
from numpy_retinanet.nn import functional as F
from numpy_retinanet.nn.modules import Conv2d, Module, ReLU


class FPN(Module):
    """Feature pyramid with ``channels`` channels on every level (the paper: 256)."""

    def __init__(self, in_channels, channels, p6_from, rng=None, dtype=np.float32):
        super().__init__()
        if p6_from not in ("c5", "p5"):
            raise ValueError(f"p6_from must be 'c5' or 'p5', got {p6_from!r}")
        rng = rng if rng is not None else np.random.default_rng(0)
        c3, c4, c5 = in_channels
        self.p6_from = p6_from

        def conv(cin, k, stride=1):
            # Xavier/He-like init keeps activations O(1) in a network trained from scratch.
            return Conv2d(cin, channels, k, stride=stride, padding=k // 2, init="he", rng=rng, dtype=dtype)

        self.lateral3, self.lateral4, self.lateral5 = conv(c3, 1), conv(c4, 1), conv(c5, 1)
        self.output3, self.output4, self.output5 = conv(channels, 3), conv(channels, 3), conv(channels, 3)
        self.p6 = conv(c5 if p6_from == "c5" else channels, 3, stride=2)
        self.p7_relu = ReLU()
        self.p7 = conv(channels, 3, stride=2)

    def _up_add(self, lateral, coarser):
        """lateral + crop(up2(coarser)); returns the sum and what backward needs."""
        up, cache = F.upsample_nearest_forward(coarser, 2)
        h, w = lateral.shape[2:]
        return lateral + up[:, :, :h, :w], (cache, up.shape)

    @staticmethod
    def _up_add_backward(dout, saved):
        cache, up_shape = saved
        xp = array_module(dout)
        dup = xp.zeros(up_shape, dtype=dout.dtype)
        dup[:, :, : dout.shape[2], : dout.shape[3]] = dout
        return F.upsample_nearest_backward(dup, cache)

    def forward(self, c3, c4, c5):
        """C3, C4, C5 -> [P3, P4, P5, P6, P7], each (N, channels, H_l, W_l)."""
        m5 = self.lateral5.forward(c5)
        m4, s4 = self._up_add(self.lateral4.forward(c4), m5)
        m3, s3 = self._up_add(self.lateral3.forward(c3), m4)
        p3, p4, p5 = self.output3.forward(m3), self.output4.forward(m4), self.output5.forward(m5)
        p6 = self.p6.forward(c5 if self.p6_from == "c5" else p5)
        p7 = self.p7.forward(self.p7_relu.forward(p6))
        self._push((s3, s4))
        return [p3, p4, p5, p6, p7]

    def backward(self, douts):
        """Gradients w.r.t. [P3..P7] -> (dC3, dC4, dC5)."""
        dp3, dp4, dp5, dp6, dp7 = douts
        s3, s4 = self._pop("FPN")
        dp6 = dp6 + self.p7_relu.backward(self.p7.backward(dp7))
        d_p6_in = self.p6.backward(dp6)
        if self.p6_from == "p5":
            dp5 = dp5 + d_p6_in
        dm3 = self.output3.backward(dp3)
        dm4 = self.output4.backward(dp4) + self._up_add_backward(dm3, s3)
        dm5 = self.output5.backward(dp5) + self._up_add_backward(dm4, s4)
        dc3 = self.lateral3.backward(dm3)
        dc4 = self.lateral4.backward(dm4)
        dc5 = self.lateral5.backward(dm5)
        if self.p6_from == "c5":
            dc5 = dc5 + d_p6_in
        return dc3, dc4, dc5
