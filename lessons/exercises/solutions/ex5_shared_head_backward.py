"""Solution of exercise 5: a head shared over pyramid levels (§4), whose gradients accumulate.

Read it after trying. ``numpy-retinanet check`` compares every answer with this file, entry by
entry; it lives in the repository and is not installed with the package. ``forward`` is the one
the exercise gives; ``backward`` is the answer.
"""

import numpy as np

from numpy_retinanet.nn.functional import conv2d_backward, conv2d_forward

EXERCISE = 5


class SharedHead:
    """One 3x3 conv (padding 1) applied to every pyramid level with the same ``w`` and ``b``."""

    def __init__(self, w, b):
        self.params = {"w": w, "b": b}
        self.grads = {"w": np.zeros_like(w), "b": np.zeros_like(b)}
        self._caches = []

    def forward(self, levels):
        """[(N, C, H_l, W_l) per level] -> [(N, F, H_l, W_l) per level]; one cache per level."""
        outs = []
        for x in levels:
            y, cache = conv2d_forward(x, self.params["w"], self.params["b"], stride=1, padding=1)
            self._caches.append(cache)
            outs.append(y)
        return outs

    def backward(self, douts):
        """[(N, F, H_l, W_l) per level] -> [(N, C, H_l, W_l) per level]; adds into grads.

        The caches are a stack, the last level's on top, so the levels are walked in
        reverse. Every level used the same w and b, so their gradient is the sum of the
        levels' contributions, added to whatever ``grads`` already held.
        """
        dlevels = [None] * len(douts)
        for lvl in reversed(range(len(douts))):
            dx, dw, db = conv2d_backward(douts[lvl], self._caches.pop())
            self.grads["w"] += dw
            self.grads["b"] += db
            dlevels[lvl] = dx
        return dlevels
