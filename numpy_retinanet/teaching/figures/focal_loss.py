"""Figure 1 of the paper (§3.2): the focal loss against p_t, and its gradient (Appendix B).

``focal_loss_curves`` and ``focal_loss_gradient_curves`` compute the arrays with the package's
own losses (``nn.losses``; tests compare them with the paper's formulas), and
``plot_focal_loss_vs_pt`` and ``plot_focal_loss_gradient`` draw exactly those arrays. Registered
as the figures "focal_loss_vs_pt" and "focal_loss_gradient".
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from numpy_retinanet.evaluation.visualize import save_figure
from numpy_retinanet.nn.losses import (
    sigmoid_cross_entropy_forward,
    sigmoid_focal_loss_backward,
    sigmoid_focal_loss_forward,
)
from numpy_retinanet.teaching.figures.registry import _check_1d_grid, register_figure

GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)  # Figure 1's curves


def focal_loss_curves(gammas=GAMMAS, p_t=None):
    """The data of Figure 1 (§3.2): CE(p_t) and FL(p_t) for each gamma, no alpha.

    Computed with ``sigmoid_cross_entropy_forward`` and ``sigmoid_focal_loss_forward`` at the
    logits x = log(p_t / (1 - p_t)) of a positive (y = 1), so CE = -log p_t (eq. 2) and
    FL = -(1 - p_t)^gamma log p_t (eq. 4). p_t = 1 would need an infinite logit, hence the
    open interval.

    Parameters
    ----------
    gammas : focusing parameters, each >= 0.
    p_t : 1-D array in (0, 1); default 1999 points from 0.0005 to 0.9995.

    Returns
    -------
    dict with "p_t" (n,), "ce" (n,) and "fl": {gamma: (n,)}, all float64.
    """
    if p_t is None:
        p_t = np.linspace(0.0, 1.0, 2001)[1:-1]
    p_t = _check_1d_grid("p_t", p_t, 0.0, 1.0)
    x = np.log(p_t) - np.log1p(-p_t)
    y = np.ones_like(x)
    ce = sigmoid_cross_entropy_forward(x, y)[0]
    fl = {g: sigmoid_focal_loss_forward(x, y, alpha=None, gamma=g)[0] for g in gammas}
    return {"p_t": p_t, "ce": ce, "fl": fl}


def focal_loss_gradient_curves(gammas=GAMMAS, x=None, target=1, alpha=None):
    """dFL/dx against the logit x, from ``sigmoid_focal_loss_backward``; the figure draws a positive.

    Appendix B, with y' = +1 for a positive (target 1) and -1 for a negative (target 0),
    p_t = sigmoid(y' x) and alpha_t = alpha for a positive, 1 - alpha for a negative:
    dFL/dx = y' alpha_t (1 - p_t)^gamma (gamma p_t log p_t + p_t - 1). For a positive without
    alpha that is (1 - p)^gamma (gamma p log p + p - 1), p = sigmoid(x); gamma = 0 is the
    cross-entropy's p - 1.

    Parameters
    ----------
    gammas : focusing parameters, each >= 0.
    x : 1-D array of finite logits; default 1001 points from -10 to 10.
    target : 1 (a positive, the figure's) or 0 (a negative).
    alpha : None (no weighting, eq. 4; the figure's) or the weight of the positives in [0, 1] (eq. 5).

    Returns
    -------
    dict with "x" (n,), "target", "alpha" and "grad": {gamma: (n,)}, all float64.
    """
    if x is None:
        x = np.linspace(-10.0, 10.0, 1001)
    x = _check_1d_grid("x", x)
    if target not in (0, 1):
        raise ValueError(f"target must be 0 or 1, got {target!r}")
    y = np.full_like(x, float(target))
    grad = {}
    for g in gammas:
        _, cache = sigmoid_focal_loss_forward(x, y, alpha=alpha, gamma=g)
        grad[g] = sigmoid_focal_loss_backward(np.ones_like(x), cache)
    return {"x": x, "target": target, "alpha": alpha, "grad": grad}


def _gamma_label(g):
    return rf"FL, $\gamma = {g:g}$"


def plot_focal_loss_vs_pt(curves):
    """Draw Figure 1 from ``focal_loss_curves``: loss against p_t, CE on top, FL below it.

    Returns the ``Figure``; its axes hold one line per curve, labelled "CE" and ``FL, gamma = g``.
    """
    fig = Figure(figsize=(7.0, 4.8))
    ax = fig.add_subplot()
    p_t = curves["p_t"]
    ax.axvspan(0.5, 1.0, color="0.92", zorder=0)
    ax.text(0.75, 1.6, "well-classified\nexamples\n($p_t > 0.5$)", ha="center", va="center", fontsize=11)
    # CE drawn wide underneath, so the dashed gamma = 0 curve is seen to lie exactly on it
    ax.plot(p_t, curves["ce"], color="0.55", linewidth=5, label=r"CE $= -\log p_t$")
    for g, fl in curves["fl"].items():
        ax.plot(p_t, fl, linewidth=1.8, linestyle="--" if g == 0 else "-", label=_gamma_label(g))
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 5.0)
    ax.set_xlabel("probability of ground truth class $p_t$")
    ax.set_ylabel("loss")
    ax.set_title(r"Focal loss (Figure 1, §3.2): FL $= -(1 - p_t)^\gamma \log p_t$")
    ax.legend(loc="upper right")
    return fig


def plot_focal_loss_gradient(curves):
    """Draw dFL/dx against x from ``focal_loss_gradient_curves`` (Appendix B), one line per gamma.

    Returns the ``Figure``; its axes hold one line per gamma, labelled ``FL, gamma = g``, after a
    zero line. The labels and the shaded half are a positive's: ``curves`` must be one without alpha.
    """
    if (curves["target"], curves["alpha"]) != (1, None):
        raise ValueError(f"curves must be a positive's without alpha (target 1, alpha None), "
                         f"got target {curves['target']!r}, alpha {curves['alpha']!r}")
    fig = Figure(figsize=(7.0, 4.8))
    ax = fig.add_subplot()
    x = curves["x"]
    ax.axvspan(0.0, x.max(), color="0.92", zorder=0)
    ax.text(0.5 * x.max(), -0.6, "well-classified\n($p_t > 0.5$)", ha="center", va="center", fontsize=11)
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    for g, grad in curves["grad"].items():
        ax.plot(x, grad, linewidth=1.8, label=_gamma_label(g) + (" (= CE)" if g == 0 else ""))
    ax.set_xlim(x.min(), x.max())
    # large gamma overshoots -1 just left of x = 0: (1 - p)^gamma gamma p log p adds to p - 1
    low = min(float(grad.min()) for grad in curves["grad"].values())
    ax.set_ylim(min(low, -1.0) - 0.05, 0.05)
    ax.set_xlabel("logit $x$ of a positive ($y = 1$)")
    ax.set_ylabel(r"$\partial\,$FL$\,/\,\partial x$")
    ax.set_title(r"Focal loss gradient (Appendix B): $(1 - p)^\gamma\,(\gamma\, p \log p + p - 1)$")
    ax.legend(loc="upper left")
    return fig


@register_figure("focal_loss_vs_pt")
def _focal_loss_vs_pt(out_dir):
    return save_figure(plot_focal_loss_vs_pt(focal_loss_curves()), out_dir / "focal_loss_vs_pt.png")


@register_figure("focal_loss_gradient")
def _focal_loss_gradient(out_dir):
    return save_figure(plot_focal_loss_gradient(focal_loss_gradient_curves()), out_dir / "focal_loss_gradient.png")
