"""ResNet-50 (He et al. 2016) with frozen batch norm, returning C3, C4, C5 at strides 8, 16, 32:
the backbone of the paper's RetinaNet (§4) as torchvision builds it (``torchvision.models.resnet50``).

    stem:   conv1 7x7 stride 2 (no bias) -> bn1 -> ReLU -> 3x3 max-pool stride 2     (stride 4)
    layer1: 3 bottlenecks,  64 -> 256 channels                                        (C2, stride 4)
    layer2: 4 bottlenecks, 128 -> 512 channels, the first with stride 2               (C3, stride 8)
    layer3: 6 bottlenecks, 256 -> 1024 channels, the first with stride 2              (C4, stride 16)
    layer4: 3 bottlenecks, 512 -> 2048 channels, the first with stride 2              (C5, stride 32)

A bottleneck is 1x1 conv (width) -> 3x3 conv (width, the block's stride) -> 1x1 conv (4 x width),
each followed by a frozen batch norm, ReLU after the first two and after the sum with the
shortcut (a 1x1 conv of the block's stride + batch norm when the shape changes). The stride sits
on the 3x3 conv ("ResNet v1.5", torchvision's choice; the original paper strides the first 1x1).

Every stride-2 layer maps a side of n to ceil(n / 2) (7x7 pad 3, 3x3 pad 1, 1x1 pad 0 alike), so
C_l has side ceil(n / 2^l), like the small backbone of ``model/backbone.py``.

The names of the parameters are torchvision's without its ``body.`` prefix (``conv1.weight``,
``layer2.0.downsample.1.running_var``), so a state dict converts name for name
(``tools/torchvision_weights.py``).
"""

from __future__ import annotations

import numpy as np

from numpy_retinanet.nn.modules import Conv2d, FrozenBatchNorm2d, MaxPool2d, Module, ReLU, Sequential

#: Bottlenecks per stage (layer1..layer4) and their widths: ResNet-50.
DEPTHS = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)
EXPANSION = 4  # a bottleneck's output has 4 x its width channels


class Bottleneck(Module):
    """relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))) + shortcut(x)); conv2 carries the stride."""

    def __init__(self, cin, width, stride, bn_eps, rng, dtype):
        super().__init__()
        cout = width * EXPANSION

        def conv(a, b, k, s=1):
            return Conv2d(a, b, k, stride=s, padding=k // 2, bias=False, init="he", rng=rng, dtype=dtype)

        self.conv1, self.bn1, self.relu1 = conv(cin, width, 1), FrozenBatchNorm2d(width, bn_eps, dtype), ReLU()
        self.conv2, self.bn2 = conv(width, width, 3, stride), FrozenBatchNorm2d(width, bn_eps, dtype)
        self.relu2 = ReLU()
        self.conv3, self.bn3 = conv(width, cout, 1), FrozenBatchNorm2d(cout, bn_eps, dtype)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = Sequential(conv(cin, cout, 1, stride), FrozenBatchNorm2d(cout, bn_eps, dtype))
        self.relu3 = ReLU()
        self.branch = [self.conv1, self.bn1, self.relu1, self.conv2, self.bn2, self.relu2, self.conv3, self.bn3]

    def forward(self, x):
        """x (N, cin, H, W) -> (N, 4 width, ceil(H / stride), ceil(W / stride))."""
        y = x
        for layer in self.branch:
            y = layer.forward(y)
        return self.relu3.forward(y + (self.downsample.forward(x) if self.downsample is not None else x))

    def backward(self, dout):
        d = self.relu3.backward(dout)
        dx_shortcut = self.downsample.backward(d) if self.downsample is not None else d
        for layer in reversed(self.branch):
            d = layer.backward(d)
        return d + dx_shortcut


class ResNet50(Module):
    """ResNet-50 with frozen batch norms (eps ``bn_eps``); forward gives C3, C4, C5."""

    def __init__(self, bn_eps=1e-5, rng=None, dtype=np.float32, depths=DEPTHS, widths=WIDTHS):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.conv1 = Conv2d(3, 64, 7, stride=2, padding=3, bias=False, init="he", rng=rng, dtype=dtype)
        self.bn1, self.relu, self.maxpool = FrozenBatchNorm2d(64, bn_eps, dtype), ReLU(), MaxPool2d(3, 2, 1)
        cin = 64
        self.stages = []
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(Bottleneck(cin, width, stride, bn_eps, rng, dtype))
                cin = width * EXPANSION
            stage = Sequential(*blocks)
            setattr(self, f"layer{i + 1}", stage)
            self.stages.append(stage)
        self.out_channels = tuple(w * EXPANSION for w in widths[1:])  # C3, C4, C5: (512, 1024, 2048)

    def forward(self, x, keep_cache=True):
        """x (N, 3, H, W) -> C3, C4, C5 of sides ceil(H / 8), ceil(H / 16), ceil(H / 32).

        ``keep_cache=False`` (inference) drops each stage's caches as soon as the stage is done, so the
        caches of one stage at a time are held, not those of the whole network (at 800 x 1088 pixels,
        gigabytes: every conv caches its column matrix)."""
        y = self.maxpool.forward(self.relu.forward(self.bn1.forward(self.conv1.forward(x))))
        outs = []
        for stage in self.stages:
            if not keep_cache:
                self.clear_cache()  # the stem's or the previous stage's
            y = stage.forward(y)
            outs.append(y)
        if not keep_cache:
            self.clear_cache()
        return tuple(outs[1:])

    def backward(self, dc3, dc4, dc5):
        """Gradients w.r.t. C3, C4, C5 -> gradient w.r.t. the image (parameters' gradients added)."""
        d = self.stages[3].backward(dc5) + dc4
        d = self.stages[2].backward(d) + dc3
        d = self.stages[0].backward(self.stages[1].backward(d))
        return self.conv1.backward(self.bn1.backward(self.relu.backward(self.maxpool.backward(d))))
