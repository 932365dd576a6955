"""Exercises 6 and 7: the backward passes of GroupNorm and of the backbone's residual block.

GroupNorm (Wu & He 2018) normalises each (sample, group of channels) by statistics computed from
x itself, so x reaches the output along three paths; the residual block (He et al. 2016, the
``BasicBlock`` of ``model/backbone.py``) reads x twice, through its branch and its shortcut. The
typical mistakes drop a path; each is modelled here with the package's ops and compared with
the answer.
"""

from __future__ import annotations

import numpy as np

from numpy_retinanet.nn.functional import (
    conv2d_backward,
    conv2d_forward,
    group_norm_backward,
    group_norm_forward,
    relu_backward,
    relu_forward,
)
from numpy_retinanet.teaching.exercises import diagnose as dg
from numpy_retinanet.teaching.exercises.base import Diagnosis
from numpy_retinanet.teaching.exercises.gradients import GradientExercise, returned_array, returned_tuple

EPS = 1e-5  # group_norm_forward's default, which the exercises use


def _group_stats(x, num_groups, ddof=0):
    """xhat and 1/sqrt(var + eps) per (sample, group), broadcast to x's shape (N, C, H, W)."""
    n, c, h, w = x.shape
    xg = x.reshape(n, num_groups, -1)
    mu = xg.mean(axis=2, keepdims=True)
    inv_std = 1 / np.sqrt(xg.var(axis=2, ddof=ddof, keepdims=True) + EPS)
    return (((xg - mu) * inv_std).reshape(x.shape),
            np.broadcast_to(inv_std, xg.shape).reshape(x.shape))


def _group_mean(v, num_groups):
    """The mean of v over each (sample, group), broadcast back to v's shape."""
    vg = v.reshape(v.shape[0], num_groups, -1)
    return np.broadcast_to(vg.mean(axis=2, keepdims=True), vg.shape).reshape(v.shape)


class GroupNormBackward(GradientExercise):
    number, name = 6, "group_norm_backward"
    signature = "group_norm_backward(dout, x, gamma, beta, num_groups, eps) -> (dx, dgamma, dbeta)"
    title = "GroupNorm backward (Wu & He 2018; after every conv of the backbone)"
    typical_error = "1e-7"
    package_answers = ("numpy_retinanet.nn.functional.group_norm_backward",
                       "numpy_retinanet.nn.modules.GroupNorm.backward")
    hints = (
        "Split the forward in two steps: xhat = the normalised x, then y = gamma[c] xhat + beta[c].\n"
        "The second is a scale and a shift per channel: their gradients are sums over every axis\n"
        "but the channel (the batch too). Then pass the gradient on to xhat: dxhat = dout gamma[c].",
        "xhat = (x - mu) / sqrt(var + eps), and mu and var are computed from x itself. So x reaches\n"
        "xhat three ways: directly, through mu and through var. dx is the sum over the three paths;\n"
        "treating mu and var as constants keeps only the first.",
        "mu and var belong to one sample and one group of C/G consecutive channels: they are taken\n"
        "over its M = C/G * H * W entries (a reshape to (N, G, C/G, H, W) puts them on the last three\n"
        "axes). Over H and W alone is instance norm, right only when G = C.",
        "var is the biased variance, the mean of (x - mu)^2 over the M entries: divide by M, not\n"
        "M - 1, as the forward does. eps is added to var inside the square root.",
        "The full result, with dxhat = dout gamma, inv_std = 1 / sqrt(var + eps) and every mean\n"
        "over one (sample, group):\n"
        "    dx = inv_std (dxhat - mean(dxhat) - xhat mean(dxhat xhat))\n"
        "    dgamma[c] = sum_{n, h, w} dout xhat,    dbeta[c] = sum_{n, h, w} dout",
    )

    def cases(self):
        rng = np.random.default_rng(6)
        # N > 1 and uneven H, W; G = 1 (layer norm); G = C (instance norm); 2 channels per group.
        specs = [((2, 4, 3, 5), 2), ((1, 3, 4, 4), 1), ((2, 4, 2, 3), 4), ((3, 6, 3, 2), 3)]
        out = []
        for shape, g in specs:
            c = shape[1]
            # A mean far from 0 and a spread far from 1, so that neither path is negligible.
            out.append(dict(x=rng.normal(1.5, 2.0, shape), gamma=rng.normal(1.0, 0.5, c),
                            beta=rng.standard_normal(c), dout=rng.standard_normal(shape), num_groups=g))
        return out

    def describe(self, c):
        n, ch, h, w = c["x"].shape
        g = c["num_groups"]
        kind = " (instance norm)" if g == ch else " (layer norm)" if g == 1 else ""
        return f"x {c['x'].shape}, G={g}{kind}: M = {ch // g}*{h}*{w} = {ch // g * h * w} entries per group"

    def answer(self, impl, c):
        out = impl.group_norm_backward(c["dout"].copy(), c["x"].copy(), c["gamma"].copy(), c["beta"].copy(),
                                       c["num_groups"], EPS)
        return dict(zip(("x", "gamma", "beta"), returned_tuple(out, ("dx", "dgamma", "dbeta"))))

    def loss(self, c):
        x, gamma, beta = c["x"], c["gamma"], c["beta"]

        def f():
            return float(np.sum(group_norm_forward(x, gamma, beta, c["num_groups"], EPS)[0] * c["dout"]))

        return f, {"x": x, "gamma": gamma, "beta": beta}

    def diagnose(self, cases, rows):
        def dx_model(mean_path, var_path):
            def m(r):
                if r.name != "x":
                    return None
                c = cases[r.case - 1]
                g = c["num_groups"]
                xhat, inv_std = _group_stats(c["x"], g)
                dxhat = c["dout"] * c["gamma"][:, None, None]
                return inv_std * (dxhat - (_group_mean(dxhat, g) if mean_path else 0)
                                  - (xhat * _group_mean(dxhat * xhat, g) if var_path else 0))
            return m

        def per_channel(r):
            c = cases[r.case - 1]
            _, cache = group_norm_forward(c["x"], c["gamma"], c["beta"], c["x"].shape[1], EPS)
            return group_norm_backward(c["dout"], cache)[("x", "gamma", "beta").index(r.name)]

        def unbiased_dgamma(r):
            c = cases[r.case - 1]
            xhat, _ = _group_stats(c["x"], c["num_groups"], ddof=1)
            return np.sum(c["dout"] * xhat, axis=(0, 2, 3))

        if dg.matches(rows, dx_model(False, False)):
            return [Diagnosis("dx is dout * gamma / sqrt(var + eps) alone: mu and var are treated as constants, "
                              "but both are computed from x; add the paths through them", 2)]
        if dg.matches(rows, dx_model(True, False)):
            return [Diagnosis("dx has the path through mu but not the one through var", 2)]
        if dg.matches(rows, dx_model(False, True)):
            return [Diagnosis("dx has the path through var but not the one through mu", 2)]
        if dg.matches(rows, per_channel):
            return [Diagnosis("passes only when G = C: you normalise each channel on its own (instance norm); "
                              "the statistics are over a group of C/G channels", 3)]
        gamma_rows = [r for r in dg.failing(rows) if r.name == "gamma"]
        if gamma_rows and all(dg.same(r.got, unbiased_dgamma(r)) for r in gamma_rows):
            return [Diagnosis("dgamma is what the unbiased variance (divided by M - 1) gives: GroupNorm divides "
                              "by M", 4)]
        for r in dg.failing(rows):
            c = cases[r.case - 1]
            if r.name in ("gamma", "beta") and r.shape == (c["x"].shape[0], c["x"].shape[1]):
                return [Diagnosis(f"d{r.name} has shape {r.shape}, one per sample: sum over the batch too", 1)]
        return dg.generic(rows, 1)


# -------------------------------------------------------------------------------------------
# Exercise 7: the residual block
# -------------------------------------------------------------------------------------------

BRANCH = ("w1", "gamma1", "beta1", "w2", "gamma2", "beta2")
SHORTCUT = ("w_s", "gamma_s", "beta_s")


def block_forward(x, p, stride, num_groups):
    """out = relu(F(x) + S(x)) with the package's ops, as the stub's ``ResidualBlock.forward``.

    F(x) = GN(conv3x3(relu(GN(conv3x3(x, stride))))), S(x) = x, or GN(conv1x1(x, stride)) when
    ``p`` has "w_s". Returns out and the caches (conv1, gn1, relu1, conv2, gn2, conv_s, gn_s, relu).
    """
    z1, conv1 = conv2d_forward(x, p["w1"], None, stride, 1)
    n1, gn1 = group_norm_forward(z1, p["gamma1"], p["beta1"], num_groups, EPS)
    a1, relu1 = relu_forward(n1)
    z2, conv2 = conv2d_forward(a1, p["w2"], None, 1, 1)
    n2, gn2 = group_norm_forward(z2, p["gamma2"], p["beta2"], num_groups, EPS)
    conv_s = gn_s = None
    if "w_s" in p:
        zs, conv_s = conv2d_forward(x, p["w_s"], None, stride, 0)
        s, gn_s = group_norm_forward(zs, p["gamma_s"], p["beta_s"], num_groups, EPS)
    else:
        s = x
    out, relu_out = relu_forward(n2 + s)
    return out, (conv1, gn1, relu1, conv2, gn2, conv_s, gn_s, relu_out), (n1, n2 + s)


def block_gradients(c, branch_mask=True, skip_mask=True, skip=True):
    """The gradients a backward pass gives with the named paths changed (every flag True: the right ones).

    branch_mask, skip_mask : whether the final ReLU's mask reaches the branch, the shortcut.
    skip : whether the shortcut's gradient is added into dx (and its parameters get one).
    """
    _, (conv1, gn1, relu1, conv2, gn2, conv_s, gn_s, relu_out), _ = block_forward(
        c["x"], c["params"], c["stride"], c["num_groups"])
    masked = relu_backward(c["dout"], relu_out)
    d = masked if branch_mask else c["dout"]
    g = {}
    dz2, g["gamma2"], g["beta2"] = group_norm_backward(d, gn2)
    da1, g["w2"], _ = conv2d_backward(dz2, conv2)
    dz1, g["gamma1"], g["beta1"] = group_norm_backward(relu_backward(da1, relu1), gn1)
    dx, g["w1"], _ = conv2d_backward(dz1, conv1)
    ds = masked if skip_mask else c["dout"]
    if conv_s is not None:
        dzs, g["gamma_s"], g["beta_s"] = group_norm_backward(ds, gn_s)
        dxs, g["w_s"], _ = conv2d_backward(dzs, conv_s)
        if not skip:
            g["gamma_s"], g["beta_s"], g["w_s"] = (np.zeros_like(g[k]) for k in ("gamma_s", "beta_s", "w_s"))
    else:
        dxs = ds
    g["x"] = dx + dxs if skip else dx
    return g


class ResidualBlockBackward(GradientExercise):
    number, name = 7, "ResidualBlock"
    signature = "ResidualBlock.backward(self, dout) -> dx, adding every parameter's gradient into self.grads"
    title = "the residual block's backward (He et al. 2016; the backbone's BasicBlock)"
    typical_error = "1e-7"
    # conv2d_backward, group_norm_backward and relu_backward are allowed: the block is the exercise.
    package_answers = ("numpy_retinanet.model.backbone.BasicBlock.backward",)
    hints = (
        "Walk the forward backwards, one op at a time: the last op is the final ReLU, then the add,\n"
        "then each branch's ops in reverse order. Each op's backward is given (conv2d_backward,\n"
        "group_norm_backward, relu_backward) and reads the cache its forward left.",
        "x is read twice: by the residual branch F and by the shortcut S. Its gradient is the sum of\n"
        "the gradients through both. With the identity shortcut, the gradient of the sum reaches x\n"
        "unchanged: that is the path that lets a deep ResNet train.",
        "The final ReLU comes after the add: its mask multiplies the gradient of the sum *before*\n"
        "it splits, so both terms of the sum get the same masked gradient (the gradient of a sum\n"
        "passes unchanged to each term).",
        "With a projection shortcut, S(x) = GN(conv1x1(x, stride)) has parameters of its own: walk\n"
        "it back like the branch (GroupNorm, then the 1x1 conv) and add its dx to the branch's.",
    )

    def cases(self):
        rng = np.random.default_rng(7)
        # An identity block; a projection (1x1 stride-2 conv + GN, 2 -> 4 channels, odd sizes);
        # an identity block with G = 1 at N = 1.
        specs = [((2, 4, 4, 5), 4, 1, 2), ((2, 2, 5, 6), 4, 2, 2), ((1, 2, 3, 3), 2, 1, 1)]
        return [self._case(rng, *s) for s in specs]

    def _case(self, rng, xshape, cout, stride, g):
        cin = xshape[1]
        while True:
            names = BRANCH + (SHORTCUT if (stride, cin) != (1, cout) else ())
            p = {}
            for k in names:  # the rows' order: branch first, then the shortcut
                if k.startswith("w"):
                    p[k] = rng.normal(0, 0.5, (cout, cin if k != "w2" else cout) + ((1, 1) if k == "w_s" else (3, 3)))
                elif k.startswith("gamma"):
                    p[k] = rng.normal(1.0, 0.3, cout)
                else:
                    p[k] = rng.normal(0.0, 0.5, cout)
            x = rng.standard_normal(xshape)
            _, _, (pre1, pre_out) = block_forward(x, p, stride, g)
            # A central difference (h = 1e-5) must not step across a ReLU's kink, where it would
            # disagree with any correct answer: draw again until every pre-activation is clear of 0.
            if min(np.abs(pre1).min(), np.abs(pre_out).min()) > 2e-3:
                return dict(x=x, params=p, stride=stride, num_groups=g,
                            dout=rng.standard_normal(pre_out.shape))

    def describe(self, c):
        short = (f"projection shortcut (1x1 conv, stride {c['stride']}, + GN)" if "w_s" in c["params"]
                 else "identity shortcut")
        return f"x {c['x'].shape} -> out {c['dout'].shape}, G={c['num_groups']}, {short}"

    def answer(self, impl, c):
        block = impl.ResidualBlock({k: v.copy() for k, v in c["params"].items()}, c["stride"], c["num_groups"])
        block.forward(c["x"].copy())
        dx = block.backward(c["dout"].copy())
        got = {"x": returned_array(dx, "dx")}
        for k in c["params"]:
            got[k] = returned_array(block.grads.get(k), f'grads["{k}"]')
        return got

    def loss(self, c):
        x, p = c["x"], c["params"]

        def f():
            return float(np.sum(block_forward(x, p, c["stride"], c["num_groups"])[0] * c["dout"]))

        return f, {"x": x, **p}

    def diagnose(self, cases, rows):
        def model(**changed):
            return lambda r: block_gradients(cases[r.case - 1], **changed).get(r.name)

        if dg.matches(rows, model(skip=False)):
            return [Diagnosis("dx misses the skip path: x is read by the branch and by the shortcut, so its "
                              "gradient is the sum of both", 2)]
        if dg.matches(rows, model(branch_mask=False, skip_mask=False)):
            return [Diagnosis("the final ReLU's mask is missing: out = relu(F(x) + S(x)), so dout passes "
                              "through relu_backward before anything else", 3)]
        if dg.matches(rows, model(skip_mask=False)):
            return [Diagnosis("the final ReLU's mask reaches the branch but not the shortcut: it acts on the "
                              "sum, so both terms get the masked gradient", 3)]
        if dg.matches(rows, model(branch_mask=False)):
            return [Diagnosis("the final ReLU's mask reaches the shortcut but not the branch: it acts on the "
                              "sum, so both terms get the masked gradient", 3)]
        return dg.generic(rows, 1)
