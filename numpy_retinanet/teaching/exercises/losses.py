"""Exercises 1 and 2: the backward passes of the two losses of §4.1 (focal loss, smooth L1).

Both losses are computed entry by entry, so an answer is one array shaped like its input and a
mistake usually has an entry-wise signature (a sign on the negatives only, a factor alpha /
alpha_t, a zone |d| < 1): each is modelled from the case and compared with the answer.
"""

from __future__ import annotations

import numpy as np

from numpy_retinanet.nn.losses import sigmoid_focal_loss_forward, smooth_l1_forward
from numpy_retinanet.teaching.exercises import diagnose as dg
from numpy_retinanet.teaching.exercises.base import Diagnosis
from numpy_retinanet.teaching.exercises.gradients import GradientExercise, returned_array, zero_one_targets


def _without_dout(rows, cases):
    """The answer forgot the upstream gradient: yours * dout is the right one."""
    return dg.matches(rows, lambda r: r.expected / cases[r.case - 1]["dout"])


class FocalLossBackward(GradientExercise):
    number, name = 1, "focal_loss_backward"
    signature = "focal_loss_backward(dout, logits, targets, alpha, gamma) -> dlogits"
    title = "sigmoid focal loss backward (§3.2 eq. 5, Appendix B)"
    typical_error = "1e-8"
    package_answers = ("numpy_retinanet.nn.losses.sigmoid_focal_loss_backward",)
    hints = (
        "Name the pieces of §3: for one entry, x is the logit, y in {0, 1} the target, y' = 2y - 1,\n"
        "x_t = y' x, p_t = sigmoid(x_t) and alpha_t = alpha if y = 1, else 1 - alpha. FL depends on x\n"
        "only through x_t, so dFL/dx = y' dFL/dx_t: the sign of the gradient flips on the negatives.\n"
        "Multiply by dout at the end. A check on paper: gamma = 0 must give alpha_t (p - y).",
        "FL = -alpha_t m log p_t with the modulating factor m = (1 - p_t)^gamma. m depends on p_t too:\n"
        "the product rule gives two terms, dm/dp_t log p_t and m / p_t. Treating m as a constant\n"
        "keeps only the second, which is right only when gamma = 0. The pieces: dp_t/dx_t =\n"
        "p_t (1 - p_t), dm/dp_t = -gamma (1 - p_t)^(gamma - 1), d(log p_t)/dp_t = 1 / p_t.",
        "The weight is alpha_t, not alpha: positives weigh alpha, negatives 1 - alpha (eq. 3). It\n"
        "multiplies the whole gradient of each entry, as it multiplies the loss.",
        "The full result (Appendix B, with alpha_t):\n"
        "    dFL/dx = y' alpha_t (1 - p_t)^gamma (gamma p_t log p_t + p_t - 1)\n"
        "Stable forms from the logit: 1 - p_t = sigmoid(-x_t), log p_t = -softplus(-x_t),\n"
        "(1 - p_t)^gamma = exp(-gamma softplus(x_t)) (sigmoid, softplus: numpy_retinanet.nn.losses).",
    )

    def cases(self):
        rng = np.random.default_rng(1)
        # gamma = 0 is the alpha-balanced cross-entropy; 0.5 and 5 catch a hard-coded gamma = 2.
        specs = [((4, 6), 0.25, 2.0), ((2, 5, 3), 0.25, 0.0), ((3, 4), 0.75, 1.0),
                 ((7,), 0.5, 0.5), ((2, 3, 4), 0.25, 5.0)]
        return [dict(logits=rng.uniform(-5, 5, shape), targets=zero_one_targets(rng, shape),
                     dout=rng.standard_normal(shape), alpha=alpha, gamma=gamma)
                for shape, alpha, gamma in specs]

    def describe(self, c):
        extra = " (the alpha-balanced cross-entropy)" if c["gamma"] == 0 else ""
        return f"logits {c['logits'].shape}, alpha={c['alpha']}, gamma={c['gamma']}{extra}"

    def answer(self, impl, c):
        out = impl.focal_loss_backward(c["dout"].copy(), c["logits"].copy(), c["targets"].copy(),
                                       c["alpha"], c["gamma"])
        return {"logits": returned_array(out, "dlogits")}

    def loss(self, c):
        logits = c["logits"]

        def f():
            loss, _ = sigmoid_focal_loss_forward(logits, c["targets"], c["alpha"], c["gamma"])
            return float(np.sum(loss * c["dout"]))

        return f, {"logits": logits}

    def diagnose(self, cases, rows):
        def case(r):
            return cases[r.case - 1]

        def alpha_t(c):
            return np.where(c["targets"] == 1, c["alpha"], 1 - c["alpha"])

        if dg.fails_exactly_where(rows, cases, lambda c: c["gamma"] != 0):
            return [Diagnosis("passes only when gamma = 0: the modulating factor (1 - p_t)^gamma is treated as "
                              "a constant; it depends on p_t, so the product rule gives a second term", 2)]
        if dg.fails_exactly_where(rows, cases, lambda c: c["gamma"] != 2):
            return [Diagnosis("passes only when gamma = 2: gamma is hard-coded; use the gamma argument", 4)]
        if dg.matches(rows, lambda r: np.where(case(r)["targets"] == 1, r.expected, -r.expected)):
            return [Diagnosis("the sign is wrong exactly where the target is 0: the factor dx_t/dx = y' = 2y - 1 "
                              "is missing", 1)]
        if dg.matches(rows, lambda r: r.expected * case(r)["alpha"] / alpha_t(case(r))):
            return [Diagnosis("alpha in place of alpha_t: the negatives (target 0) must weigh 1 - alpha", 3)]
        if dg.matches(rows, lambda r: r.expected / alpha_t(case(r))):
            return [Diagnosis("the weight alpha_t is missing: every entry is the right one divided by alpha_t", 3)]
        if _without_dout(rows, cases):
            return [Diagnosis("the upstream gradient is missing: multiply your dFL/dx by dout", 1)]
        return dg.generic(rows, 1)


class SmoothL1Backward(GradientExercise):
    number, name = 2, "smooth_l1_backward"
    signature = "smooth_l1_backward(dout, pred, target, beta) -> dpred"
    title = "smooth L1 backward (§4.1 box regression)"
    typical_error = "1e-9"
    package_answers = ("numpy_retinanet.nn.losses.smooth_l1_backward",)
    hints = (
        "The loss has two pieces in d = pred - target. Differentiate each with respect to d, then\n"
        "use dd/dpred = 1 (and multiply by dout). The two pieces meet with the same value and the\n"
        "same slope at |d| = beta, so your gradient must be continuous there: check it on paper.",
        "Which piece applies is decided by |d| < beta, whatever beta is (|d| < 1 is the zone of\n"
        "beta = 1 only). For beta = 0 there is no quadratic zone: the L1 loss |d|, and no division\n"
        "by beta.",
        "The full result: d / beta inside the zone |d| < beta, sign(d) outside; sign(d) everywhere\n"
        "for beta = 0. Times dout.",
    )

    def cases(self):
        rng = np.random.default_rng(2)
        out = []
        for shape, beta in [((6, 4), 0.11), ((3, 4), 1.0), ((2, 5, 4), 0.5), ((8,), 0.0)]:
            size = int(np.prod(shape))
            if beta > 0:
                # Half the entries inside the quadratic zone, half outside, none within
                # 0.05 beta of the kink at |d| = beta or of 0.
                inside = rng.permutation(size) < size // 2
                mag = beta * np.where(inside, rng.uniform(0.05, 0.9, size), rng.uniform(1.1, 3.0, size))
            else:
                mag = rng.uniform(0.05, 2.0, size)
            d = (mag * rng.choice([-1.0, 1.0], size)).reshape(shape)
            target = rng.standard_normal(shape)
            out.append(dict(pred=target + d, target=target, dout=rng.standard_normal(shape), beta=beta))
        return out

    def describe(self, c):
        if c["beta"] == 0:
            return f"pred {c['pred'].shape}, beta=0.0 (the L1 loss)"
        n_in = int(np.sum(np.abs(c["pred"] - c["target"]) < c["beta"]))
        return f"pred {c['pred'].shape}, beta={c['beta']} ({n_in} of {c['pred'].size} entries have |d| < beta)"

    def answer(self, impl, c):
        out = impl.smooth_l1_backward(c["dout"].copy(), c["pred"].copy(), c["target"].copy(), c["beta"])
        return {"pred": returned_array(out, "dpred")}

    def loss(self, c):
        pred = c["pred"]

        def f():
            return float(np.sum(smooth_l1_forward(pred, c["target"], c["beta"])[0] * c["dout"]))

        return f, {"pred": pred}

    def diagnose(self, cases, rows):
        def model(zone=None, divide=True, clip=True):
            """The slope with one piece of the formula changed, as a function of a row."""
            def m(r):
                c = cases[r.case - 1]
                d, beta = c["pred"] - c["target"], c["beta"]
                if beta == 0:
                    return c["dout"] * np.sign(d)
                quad = d / beta if divide else d
                inside = np.abs(d) < (beta if zone is None else zone)
                return c["dout"] * (np.where(inside, quad, np.sign(d)) if clip else quad)
            return m

        if dg.matches(rows, model(zone=1.0, divide=False)):
            return [Diagnosis("beta is hard-coded to 1 (the zone |d| < 1, the slope d inside it): use the beta "
                              "argument; right only for beta = 1", 2)]
        if dg.matches(rows, model(zone=1.0)):
            return [Diagnosis("the quadratic zone is |d| < beta, not |d| < 1: right only for beta = 1", 2)]
        if dg.matches(rows, model(divide=False)):
            return [Diagnosis("inside the zone the slope is d / beta: yours is d, right only for beta = 1", 1)]
        if dg.matches(rows, model(clip=False)):
            return [Diagnosis("outside the zone |d| < beta the slope is sign(d): yours is d / beta everywhere", 2)]
        if _without_dout(rows, cases):
            return [Diagnosis("the upstream gradient is missing: multiply your slope by dout", 1)]
        return dg.generic(rows, 1)
