"""Exercises 3-5: the backward passes of the convolution, the FPN's upsampling and a shared head.

Their mistakes are about *where* a gradient goes: a window that starts at oh instead of s*oh,
an assignment where windows overlap, a block's mean instead of its sum, a level's cache paired
with another level's dout, a weight's gradient assigned instead of accumulated. Each is
recognised by the cases it fails (a pattern) or by recomputing what it gives (a model).
"""

from __future__ import annotations

import numpy as np

from numpy_retinanet.nn.functional import (
    conv2d_backward,
    conv2d_forward,
    conv_output_size,
    upsample_nearest_forward,
)
from numpy_retinanet.teaching.exercises import diagnose as dg
from numpy_retinanet.teaching.exercises.base import Diagnosis
from numpy_retinanet.teaching.exercises.gradients import (
    GradientExercise,
    WrongReturn,
    returned_array,
    returned_tuple,
)


class Conv2dBackward(GradientExercise):
    number, name = 3, "conv2d_backward"
    signature = "conv2d_backward(dout, x, w, b, stride, padding) -> (dx, dw, db)"
    title = "conv2d backward (every layer of the backbone, FPN and heads)"
    typical_error = "1e-8"
    package_answers = ("numpy_retinanet.nn.functional.conv2d_backward",
                       "numpy_retinanet.nn.modules.Conv2d.backward")
    hints = (
        "Write one output pixel y[n, f, oh, ow] as the sum the forward computes, then ask of each\n"
        "input which terms contain it: b[f] is in every output pixel of filter f; w[f, c, i, j] in\n"
        "every output pixel of filter f, times the input pixel it meets there; an input pixel in\n"
        "every window that covers it, times the weight it meets there.",
        "The window of output pixel (oh, ow) starts at row s*oh and column s*ow of xpad (s the\n"
        "stride), not at (oh, ow). The forward is a cross-correlation: w is used as it is, not\n"
        "flipped, so the gradient uses w as it is too.",
        "Windows overlap when the stride is smaller than the kernel: an input pixel read by several\n"
        "windows gets the sum of their contributions. Add each window's contribution into a zero\n"
        "array of xpad's shape; never assign it. dx is that array without the padding (the\n"
        "padding's zeros are constants: their gradient is dropped).",
        "The full result, sums over every index not on the left:\n"
        "    db[f]          = sum_{n, oh, ow} dout[n, f, oh, ow]\n"
        "    dw[f, c, i, j] = sum_{n, oh, ow} dout[n, f, oh, ow] xpad[n, c, s oh + i, s ow + j]\n"
        "    dxpad[n, c, r, q] = sum over (f, oh, ow, i, j) with s oh + i = r and s ow + j = q of\n"
        "                        dout[n, f, oh, ow] w[f, c, i, j]\n"
        "A loop over the output pixels, with the sums over n, f and c done by np.tensordot or\n"
        "np.einsum, is fast enough.",
    )

    def cases(self):
        rng = np.random.default_rng(3)
        # Non-square inputs and kernels; stride 2 with an input row or column that no
        # window reaches (case 3); a 1x1 kernel; a kernel of 2 with stride 2 and padding 1.
        specs = [((2, 3, 5, 7), (4, 3, 3, 3), 1, 1), ((1, 2, 7, 6), (3, 2, 3, 3), 2, 1),
                 ((2, 2, 6, 5), (2, 2, 3, 2), 2, 0), ((1, 3, 4, 5), (2, 3, 1, 1), 1, 0),
                 ((2, 2, 4, 6), (3, 2, 2, 2), 2, 1)]
        out = []
        for xs, ws, s, p in specs:
            oh = conv_output_size(xs[2], ws[2], s, p)
            ow = conv_output_size(xs[3], ws[3], s, p)
            out.append(dict(x=rng.standard_normal(xs), w=rng.standard_normal(ws),
                            b=rng.standard_normal(ws[0]),
                            dout=rng.standard_normal((xs[0], ws[0], oh, ow)), stride=s, padding=p))
        return out

    def describe(self, c):
        kh, kw = c["w"].shape[2:]
        overlap = ", windows overlap" if c["stride"] < max(kh, kw) else ""
        return (f"x {c['x'].shape}, w {c['w'].shape}, stride={c['stride']}, padding={c['padding']}"
                f" -> out {c['dout'].shape}{overlap}")

    def answer(self, impl, c):
        out = impl.conv2d_backward(c["dout"].copy(), c["x"].copy(), c["w"].copy(), c["b"].copy(),
                                   c["stride"], c["padding"])
        return dict(zip(("x", "w", "b"), returned_tuple(out, ("dx", "dw", "db"))))

    def loss(self, c):
        x, w, b = c["x"], c["w"], c["b"]

        def f():
            y, _ = conv2d_forward(x, w, b, c["stride"], c["padding"])
            return float(np.sum(y * c["dout"]))

        return f, {"x": x, "w": w, "b": b}

    def diagnose(self, cases, rows):
        def overlap(c):
            return c["stride"] < max(c["w"].shape[2:])

        def flipped(r):
            c = cases[r.case - 1]
            if r.name != "x":
                return None
            _, cache = conv2d_forward(c["x"], np.ascontiguousarray(c["w"][:, :, ::-1, ::-1]), c["b"],
                                      c["stride"], c["padding"])
            return conv2d_backward(c["dout"], cache)[0]

        if dg.fails_exactly_where(rows, cases, overlap, names={"x"}):
            return [Diagnosis("fails only where windows overlap (stride < kernel), and only in dx: a window's "
                              "contribution is assigned to dxpad instead of added (+=)", 3)]
        if dg.fails_exactly_where(rows, cases, lambda c: c["stride"] > 1):
            return [Diagnosis("fails only where stride > 1: the window of output pixel (oh, ow) starts at "
                              "(s*oh, s*ow), not (oh, ow)", 2)]
        if dg.matches(rows, flipped):
            return [Diagnosis("dx is what a flipped kernel gives: the forward is a cross-correlation, so use w "
                              "as it is (no [::-1, ::-1])", 2)]
        for r in dg.failing(rows):
            c = cases[r.case - 1]
            p = c["padding"]
            if r.name == "x" and r.shape == tuple(np.add(c["x"].shape, (0, 0, 2 * p, 2 * p))):
                return [Diagnosis(f"case {r.case}'s dx still has its padding: shape {r.shape}; drop the "
                                  f"padding, {p} on each side of H and W", 3)]
        return dg.generic(rows, 1)


class UpsampleBackward(GradientExercise):
    number, name = 4, "upsample_nearest_backward"
    signature = "upsample_nearest_backward(dout, factor) -> dx"
    title = "nearest-neighbour upsampling backward (the FPN's top-down path)"
    typical_error = "1e-8"
    package_answers = ("numpy_retinanet.nn.functional.upsample_nearest_backward",)
    hints = (
        "Each input pixel x[n, c, h, w] is copied into factor x factor output pixels. A value used\n"
        "in several places gets the sum of the gradients of its uses: not their mean, not one of\n"
        "them.",
        "Which input pixel did output pixel (i, j) copy? Row i // factor and column j // factor.\n"
        "So x[n, c, h, w]'s block is rows h*factor ... h*factor + factor - 1 and the same for the\n"
        "columns.",
        "A reshape can put each block on axes of its own: row i of the output is h*factor + a with\n"
        "a < factor, so H*factor splits into (H, factor), in that order (h varies slowest); the\n"
        "columns likewise. Then sum over the two factor axes.",
        "The full result: dx[n, c, h, w] = sum over a, b < factor of dout[n, c, h*factor + a, w*factor + b].",
    )

    def cases(self):
        rng = np.random.default_rng(4)
        out = []
        for shape, k in [((2, 3, 3, 5), 2), ((1, 2, 2, 4), 3), ((3, 1, 4, 2), 2), ((1, 2, 3, 2), 4)]:
            n, c, h, w = shape
            out.append(dict(x=rng.standard_normal(shape), dout=rng.standard_normal((n, c, h * k, w * k)),
                            factor=k))
        return out

    def describe(self, c):
        return f"x {c['x'].shape}, factor={c['factor']} -> out {c['dout'].shape}"

    def answer(self, impl, c):
        out = impl.upsample_nearest_backward(c["dout"].copy(), c["factor"])
        return {"x": returned_array(out, "dx")}

    def loss(self, c):
        x = c["x"]

        def f():
            return float(np.sum(upsample_nearest_forward(x, c["factor"])[0] * c["dout"]))

        return f, {"x": x}

    def diagnose(self, cases, rows):
        def model(pick):
            def m(r):
                c = cases[r.case - 1]
                d, k = c["dout"], c["factor"]
                n, ch, hk, wk = d.shape
                return pick(d, k, n, ch, hk // k, wk // k)
            return m

        if dg.matches(rows, model(lambda d, k, n, c, h, w: d.reshape(n, c, h, k, w, k).mean(axis=(3, 5)))):
            return [Diagnosis("each failing row is the right gradient times c = 1/factor^2 (0.25 for factor 2): "
                              "the mean of each block instead of its sum", 1)]
        if dg.matches(rows, model(lambda d, k, n, c, h, w: d[:, :, ::k, ::k])):
            return [Diagnosis("one pixel of each block instead of the block's sum: every copy of x[n, c, h, w] "
                              "adds its gradient", 1)]
        if dg.matches(rows, model(lambda d, k, n, c, h, w: d[:, :, :h, :w])):
            return [Diagnosis("dx[h, w] reads dout[h, w]: the output pixels that copied x[h, w] are rows "
                              "h*factor ... h*factor + factor - 1 (index i // factor)", 2)]
        if dg.matches(rows, model(lambda d, k, n, c, h, w: d.reshape(n, c, k, h, k, w).sum(axis=(2, 4)))):
            return [Diagnosis("the blocks are split the wrong way round: H*factor is (H, factor), h varying "
                              "slowest, not (factor, H)", 3)]
        return dg.generic(rows, 1)


class SharedHeadBackward(GradientExercise):
    number, name = 5, "SharedHead"
    signature = "SharedHead.backward(self, douts) -> [dx per level], adding dw, db into self.grads"
    title = "a head shared over pyramid levels (§4): gradients accumulate"
    typical_error = "1e-7"
    # conv2d_backward is allowed here: one level's backward is exercise 3, this one is the sum.
    package_answers = ("numpy_retinanet.nn.modules.Conv2d.backward",)
    hints = (
        "The loss reads w through every level: L = sum over levels l of L_l(w, x_l). A variable used\n"
        "in several places gets the sum of the gradients through each use, so dL/dw = sum_l dL_l/dw,\n"
        "dL/db likewise, and dL/dx_l = dL_l/dx_l. conv2d_backward(dout_l, cache_l) gives one level's\n"
        "(dx_l, dw_l, db_l).",
        "The caches are a stack, pushed level 0 first: pop them last level first and pair each with\n"
        "that level's dout. Return the list of dx_l in level order, level 0 first.",
        "backward adds into self.grads and never assigns: the sum over levels is built by adding, and\n"
        "what grads held before (an earlier batch, until zero_grad) stays in the sum. The checker's\n"
        "grads start non-zero to see this.",
    )

    def cases(self):
        rng = np.random.default_rng(5)
        # The last case has two levels of the same size, so walking them in the wrong
        # order raises no shape error and must be caught by the numbers.
        specs = [([(2, 3, 6, 5), (2, 3, 3, 3), (2, 3, 2, 2)], 4),
                 ([(1, 2, 8, 6), (1, 2, 4, 3), (1, 2, 2, 2), (1, 2, 1, 1)], 3),
                 ([(2, 2, 3, 3), (2, 2, 3, 3)], 2)]
        out = []
        for shapes, f in specs:
            c = shapes[0][1]
            w, b = rng.standard_normal((f, c, 3, 3)), rng.standard_normal(f)
            levels = [rng.standard_normal(s) for s in shapes]
            douts = [rng.standard_normal((s[0], f, s[2], s[3])) for s in shapes]
            # grads start nonzero, as after an earlier batch: backward must add to them.
            out.append(dict(w=w, b=b, levels=levels, douts=douts,
                            grads0={"w": rng.standard_normal(w.shape), "b": rng.standard_normal(b.shape)}))
        return out

    def describe(self, c):
        sizes = ", ".join(f"{x.shape[2]}x{x.shape[3]}" for x in c["levels"])
        return (f"{len(c['levels'])} levels ({sizes}) of N={c['levels'][0].shape[0]}, "
                f"C={c['levels'][0].shape[1]}; w {c['w'].shape}; grads start non-zero")

    def answer(self, impl, c):
        head = impl.SharedHead(c["w"].copy(), c["b"].copy())
        for k in ("w", "b"):
            head.grads[k][...] = c["grads0"][k]
        head.forward([x.copy() for x in c["levels"]])
        dlevels = head.backward([d.copy() for d in c["douts"]])
        n = len(c["levels"])
        if not (isinstance(dlevels, (list, tuple)) and len(dlevels) == n):
            raise WrongReturn(f"backward must return a list of {n} gradients, one per level, got "
                              f"{type(dlevels).__name__}"
                              + (f" of length {len(dlevels)}" if isinstance(dlevels, (list, tuple)) else ""))
        if head._caches:
            raise WrongReturn(f"backward left {len(head._caches)} of {n} caches on the stack; "
                              "pop one per level, last level first")
        # What backward added is the gradient; grads0 is what an earlier batch left there.
        got = {k: returned_array(head.grads[k], f'grads["{k}"]') - c["grads0"][k] for k in ("w", "b")}
        for i, d in enumerate(dlevels):
            got[f"levels[{i}]"] = returned_array(d, f"the gradient of level {i}")
        return got

    def loss(self, c):
        w, b = c["w"], c["b"]

        def f():
            return float(sum(np.sum(conv2d_forward(x, w, b, 1, 1)[0] * d)
                             for x, d in zip(c["levels"], c["douts"])))

        inputs = {"w": w, "b": b}
        inputs.update({f"levels[{i}]": x for i, x in enumerate(c["levels"])})
        return f, inputs

    def diagnose(self, cases, rows):
        def level_grads(c, pairing):
            """Each level's (dx, dw, db), pairing dout l with the input of level pairing[l]."""
            out = []
            for d, j in zip(c["douts"], pairing):
                _, cache = conv2d_forward(c["levels"][j], c["w"], c["b"], 1, 1)
                out.append(conv2d_backward(d, cache))
            return out

        def assigned(r):
            """grads after an assignment of the whole sum: what backward 'added' is -grads0 + sum."""
            return r.expected - cases[r.case - 1]["grads0"][r.name] if r.name in ("w", "b") else None

        def overwritten(r):
            """Assigned level by level, last level first: only level 0's gradient survives."""
            if r.name not in ("w", "b"):
                return None
            c = cases[r.case - 1]
            d0 = level_grads(c, range(len(c["levels"])))[0][1 if r.name == "w" else 2]
            return d0 - c["grads0"][r.name]

        def reversed_pairing(r):
            c = cases[r.case - 1]
            n = len(c["levels"])
            if r.name != "w" or any(x.shape != c["levels"][0].shape for x in c["levels"]):
                return None
            return sum(g[1] for g in level_grads(c, [n - 1 - i for i in range(n)]))

        if dg.matches(rows, assigned):
            return [Diagnosis("grads started non-zero, and your gradient differs from the right one by exactly "
                              "minus what they held: backward assigned the sum instead of adding it (+=)", 3)]
        if dg.matches(rows, overwritten):
            return [Diagnosis("grads hold only level 0's gradient: each level's dw, db was assigned, so the "
                              "last level walked overwrote the others; add them (+=)", 3)]
        raised = [r for r in dg.failing(rows) if r.name == "" and r.note.startswith("raised ValueError")]
        if raised and dg.matches([r for r in rows if r.name != ""], reversed_pairing):
            return [Diagnosis("each dout was paired with another level's cache (a shape error where the sizes "
                              "differ, a wrong dw where they are equal): pop the caches last level first", 2)]
        by_case = {}
        for r in rows:
            if r.name.startswith("levels[") and r.got is not None:
                by_case.setdefault(r.case, []).append(r)
        for k, lv in by_case.items():
            got = [r.got.shape for r in lv]
            want = [x.shape for x in cases[k - 1]["levels"]]
            if got != want and got == want[::-1]:
                return [Diagnosis("the level gradients come back last level first: return them in level order, "
                                  "level 0 first", 2)]
        return dg.generic(rows, 1)
