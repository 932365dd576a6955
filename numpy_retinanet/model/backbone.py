"""A small ResNet (He et al. 2016, BasicBlocks) returning C3, C4, C5 at strides 8, 16, 32 (§4).

The paper uses ImageNet-pretrained ResNet-50/101. Here the backbone is trained
from scratch on synthetic shapes, so it is small and uses GroupNorm after each
conv (see ``nn.modules.GroupNorm`` for why).

Layout: stem (3x3 conv, stride 2) -> stage 1 (stride 4) -> stage 2 (C3, stride 8)
-> stage 3 (C4, stride 16) -> stage 4 (C5, stride 32). Each stage's first block
downsamples with a stride-2 3x3 conv and a 1x1 stride-2 shortcut, so a map of
size H becomes ceil(H / 2): C_l has size ceil(H / 2^l).
"""

from __future__ import annotations

import numpy as np

from numpy_retinanet.nn.modules import Conv2d, GroupNorm, Module, ReLU, Sequential


def groups_for(channels: int, max_groups: int) -> int:
    """The largest number of groups <= max_groups that divides ``channels``."""
    g = min(max_groups, channels)
    while channels % g:
        g -= 1
    return g


def conv_norm_relu(cin, cout, stride, rng, dtype, gn_groups):
    """3x3 conv (no bias: the norm's shift replaces it) -> GroupNorm -> ReLU."""
    return Sequential(
        Conv2d(cin, cout, 3, stride=stride, bias=False, init="he", rng=rng, dtype=dtype),
        GroupNorm(groups_for(cout, gn_groups), cout, dtype=dtype),
        ReLU(),
    )


class BasicBlock(Module):
    """y = relu(norm(conv(relu(norm(conv(x))))) + shortcut(x)); shortcut is 1x1 conv + norm when shapes change."""

    def __init__(self, cin, cout, stride, rng, dtype, gn_groups):
        super().__init__()
        self.branch = Sequential(
            conv_norm_relu(cin, cout, stride, rng, dtype, gn_groups),
            Conv2d(cout, cout, 3, stride=1, bias=False, init="he", rng=rng, dtype=dtype),
            GroupNorm(groups_for(cout, gn_groups), cout, dtype=dtype),
        )
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = Sequential(
                Conv2d(cin, cout, 1, stride=stride, padding=0, bias=False, init="he", rng=rng, dtype=dtype),
                GroupNorm(groups_for(cout, gn_groups), cout, dtype=dtype),
            )
        self.out_relu = ReLU()

    def forward(self, x):
        """x (N, cin, H, W) -> (N, cout, ceil(H/stride), ceil(W/stride))."""
        s = self.shortcut.forward(x) if self.shortcut is not None else x
        return self.out_relu.forward(self.branch.forward(x) + s)

    def backward(self, dout):
        d = self.out_relu.backward(dout)
        dx = self.branch.backward(d)
        return dx + (self.shortcut.backward(d) if self.shortcut is not None else d)


class ResNetBackbone(Module):
    """Stem and four stages of BasicBlocks; ``forward`` returns (C3, C4, C5).

    Parameters
    ----------
    stem_width : channels after the stem.
    widths : channels of stages 1-4 (C3, C4, C5 have widths[1], widths[2], widths[3]).
    depths : BasicBlocks per stage.
    gn_groups : GroupNorm groups (at most; fewer where they do not divide the channels).
    Every size comes from a preset (``model/presets.py``).
    """

    def __init__(self, stem_width, widths, depths, gn_groups, rng=None, dtype=np.float32):
        super().__init__()
        if len(widths) != 4 or len(depths) != 4:
            raise ValueError(f"widths and depths need 4 entries (stages 1-4), got {widths} and {depths}")
        if min(depths) < 1:
            raise ValueError(f"every stage needs at least one block, got depths {depths}")
        rng = rng if rng is not None else np.random.default_rng(0)
        self.stem = conv_norm_relu(3, stem_width, 2, rng, dtype, gn_groups)
        cin = stem_width
        stages = []
        for w, d in zip(widths, depths):
            blocks = [BasicBlock(cin if j == 0 else w, w, 2 if j == 0 else 1, rng, dtype, gn_groups)
                      for j in range(d)]
            stages.append(Sequential(*blocks))
            cin = w
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self.out_channels = tuple(widths[1:])

    def forward(self, x):
        """x (N, 3, H, W) -> C3 (N, w2, ceil(H/8), .), C4 (N, w3, ceil(H/16), .), C5 (N, w4, ceil(H/32), .)."""
        c2 = self.stage1.forward(self.stem.forward(x))
        c3 = self.stage2.forward(c2)
        c4 = self.stage3.forward(c3)
        c5 = self.stage4.forward(c4)
        return c3, c4, c5

    def backward(self, dc3, dc4, dc5, image_grad=True):
        """Gradients w.r.t. C3, C4, C5 -> gradient w.r.t. the images (None with ``image_grad=False``:
        the stem's conv then computes its weight's gradient alone)."""
        d = self.stage4.backward(dc5) + dc4
        d = self.stage3.backward(d) + dc3
        d = self.stage2.backward(d)
        return self.stem.backward(self.stage1.backward(d), need_dx=image_grad)
