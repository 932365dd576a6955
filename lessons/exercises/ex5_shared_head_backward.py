"""Exercise 5: a head shared over pyramid levels, whose gradients must accumulate (§4).

Task
----
Write ``SharedHead.backward``. RetinaNet runs the same classification and box subnets on
every pyramid level, P3 to P7: "parameters of this subnet are shared across all pyramid
levels" (§4). ``SharedHead`` below is the smallest such head, one 3x3 convolution with
padding 1 and one set of weights ``w`` and ``b``. Its ``forward`` is given: it runs the conv
on each level in turn and pushes each level's cache on a stack, ``self._caches``. Only
``backward`` is yours.

Math
----
The loss reads w through every level: L = sum over levels l of L_l(w, x_l). A variable used
in several places gets the sum of the gradients through each use (the multivariable chain
rule), so

    dL/dw = sum_l dL_l/dw,    dL/db = sum_l dL_l/db,    dL/dx_l = dL_l/dx_l.

``numpy_retinanet.nn.functional.conv2d_backward(dout_l, cache_l)`` returns one level's
(dx_l, dw_l, db_l). Two rules of the package (docs/ARCHITECTURE.md, "The module contract") make the rest:

* the caches are a stack, pushed level 0 first, so backward pops them *last level first*
  and pairs each with that level's ``dout``;
* backward *adds* into ``self.grads`` and never overwrites it: the sum over levels above is
  built by adding, and whatever ``grads`` held before (an earlier batch, until
  ``zero_grad``) stays in the sum.

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
        """[(N, F, H_l, W_l) per level] -> [(N, C, H_l, W_l) per level], adding into ``self.grads``.

        Pop the caches last level first, call ``conv2d_backward`` for each level, add its dw and
        db into ``self.grads["w"]`` and ``self.grads["b"]``, and return the levels' dx in level
        order (level 0 first).
        """
        raise NotImplementedError("Exercise 5: write SharedHead.backward, adding every level's dw, db into grads")
