"""Exercise 5: a head shared over pyramid levels, whose gradients must accumulate (§4).

Task
----
Write ``SharedHead.backward``. RetinaNet runs the same classification and box subnets on
every pyramid level, P3 to P7: "parameters of this subnet are shared across all pyramid
levels" (§4). ``SharedHead`` below is the smallest such head, one 3x3 convolution with
padding 1 and one set of weights ``w`` and ``b``. Its ``forward`` is given: it runs the conv
on each level in turn and pushes each level's cache on a stack, ``self._caches``. Only
``backward`` is yours.

``numpy_retinanet.nn.functional.conv2d_backward(dout_l, cache_l)`` returns one level's
(dx_l, dw_l, db_l) (exercise 3 is that function; here you may use the package's). What is the
gradient of a weight that every level uses, and in which order do the caches come back? The
hints (``numpy-retinanet check FILE --hint 1``, then 2, 3) lead you there, gentlest first; the
package's rules for modules are in docs/ARCHITECTURE.md, "The module contract".

Shapes: level l is x_l (N, C, H_l, W_l) and its output (N, F, H_l, W_l); ``douts`` is the
list of the outputs' gradients, level 0 first; w (F, C, 3, 3), b (F,). Return the list of
dx_l, level 0 first. All arrays are float64 NumPy arrays.

What the checker compares
-------------------------
Run ``numpy-retinanet check lessons/exercises/ex5_shared_head_backward.py``. Three cases: 3
levels, 4 levels (8x6 down to 1x1), and 2 levels of the same size (where pairing a dout with
the wrong cache raises no shape error). ``grads`` start at random nonzero values, and the
checker compares what backward *added* to them. It also checks that backward popped every
cache. Rows: w, b and each level's input, each against central differences of the forward
(float64, h = 1e-5) and against the reference solution, on every entry. A correct answer
reaches a max relative error around 1e-7 (its smallest entries carry the most rounding; a row
passes below about 1e-6); a mistake is usually off by 1e-2 or more.
"""

import numpy as np

from numpy_retinanet.nn.functional import conv2d_backward, conv2d_forward  # noqa: F401 -- backward is for your answer

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
        """[(N, F, H_l, W_l) per level] -> [(N, C, H_l, W_l) per level], level 0 first.

        The gradients of ``w`` and ``b`` go into ``self.grads["w"]`` and ``self.grads["b"]``, as
        in every module of the package.
        """
        raise NotImplementedError("Exercise 5: write SharedHead.backward")
