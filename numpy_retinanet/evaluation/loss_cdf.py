"""Figure 4 of the paper (§5.1, "Analysis of the Focal Loss"): the cumulative distribution of
the normalized focal loss of positive and negative samples, for several gamma.

``loss_cdf_curves`` computes it with ``nn.losses``' focal loss of a trained model's outputs on
held-out images; ``plot_loss_cdf`` draws exactly those arrays. The figures' model draws it as
"figure4_loss_cdf" (teaching/figures/figure4.py) and the Table 1 ablation from its gamma-2
model of each regime (tools/ablate.py), so it lives below both.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from numpy_retinanet._checks import check_array
from numpy_retinanet.backend import array_module, to_host
from numpy_retinanet.data.batching import collate
from numpy_retinanet.detection.criterion import assign_targets
from numpy_retinanet.nn.losses import sigmoid_focal_loss_forward

FIGURE4_GAMMAS = (0.0, 0.5, 1.0, 2.0)  # Figure 4's curves


def loss_cdf_curves(model, dataset, gammas=FIGURE4_GAMMAS, batch_size=16, fractions=None):
    """The data of Figure 4 (§5.1): cumulative distribution of the normalized focal loss.

    The model's logits on every image of ``dataset`` are split as the loss sees them: a
    *positive sample* is the output of an anchor matched to a box for that box's class
    (target 1); a *negative sample* is any class output of a background anchor (target 0);
    ignored anchors and the other classes of positive anchors are left out. For each gamma,
    FL (eq. 4, no alpha: alpha_t is one constant per group, so normalization removes it) of
    each group is sorted from lowest to highest and divided by its sum; the curve is the
    share of the group's loss held by the lowest-loss ``fraction`` of its samples.

    Since FL decreases in p_t for every gamma, the samples sort the same way for every
    gamma, and raising gamma multiplies each loss by (1 - p_t)^gamma, which grows along that
    order: a higher gamma's curve lies on or below a lower gamma's (the loss concentrates on
    the hardest samples). Every curve runs from 0 to 1, never decreases and stays on or below
    the diagonal.

    Parameters
    ----------
    model : a RetinaNet (its images' dtype and device).
    dataset : a ShapesDataset (images of one size).
    gammas : focusing parameters.
    fractions : increasing grid from 0 to 1; default 1001 even steps plus 60 steps within
        the last 0.1%, where the negatives' curve rises.

    Returns
    -------
    dict with "fraction" (F,), "gammas", "num_positive", "num_negative"; "positive" and
    "negative": {gamma: (F,) float64}, the share of the loss held by the lowest-loss
    ``floor(fraction * n)`` samples; and "loss_sum": {"positive"/"negative": {gamma: float}},
    each group's summed FL before normalization.
    """
    if fractions is None:
        fractions = np.union1d(np.linspace(0.0, 1.0, 1001), 1.0 - np.logspace(-6, -3, 61))
    fractions = check_array("fractions", np.asarray(fractions, dtype=np.float64), ("n",), nonempty=True,
                            finite=True)
    if fractions[0] != 0.0 or fractions[-1] != 1.0 or np.any(np.diff(fractions) <= 0):
        raise ValueError("fractions must increase from exactly 0 to exactly 1")
    size = dataset.image_size
    anchors = model.anchors(size, size)
    pos, neg = [], []
    for start in range(0, len(dataset), batch_size):
        images, targets = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        logits, _ = model.forward(array_module(anchors).asarray(images.astype(model.dtype)), keep_cache=False)
        cls_t, _, positive, valid = assign_targets(anchors, targets, model.num_classes)
        background = valid & ~positive
        pos.append(to_host(logits[cls_t == 1]))
        neg.append(to_host(logits[background]).ravel())
    samples = {"positive": np.concatenate(pos).astype(np.float64), "negative": np.concatenate(neg).astype(np.float64)}
    out = {"fraction": fractions, "gammas": tuple(gammas), "loss_sum": {}}
    for kind, x in samples.items():
        if x.size == 0:
            raise ValueError(f"dataset holds no {kind} samples; use more images")
        y = np.ones_like(x) if kind == "positive" else np.zeros_like(x)
        out["num_" + kind] = int(x.size)
        out[kind], out["loss_sum"][kind] = {}, {}
        for g in gammas:
            loss = np.sort(sigmoid_focal_loss_forward(x, y, alpha=None, gamma=g)[0])
            cum = np.concatenate([[0.0], np.cumsum(loss)])
            out[kind][g] = cum[np.floor(fractions * x.size).astype(np.int64)] / cum[-1]
            out["loss_sum"][kind][g] = float(cum[-1])
    return out


def plot_loss_cdf(curves, caption=""):
    """Draw Figure 4 from ``loss_cdf_curves``: positives left, negatives right, one line per gamma."""
    fig = Figure(figsize=(11.0, 4.9))
    axes = fig.subplots(1, 2)
    q = curves["fraction"]
    for ax, kind in zip(axes, ("positive", "negative")):
        ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle=":", label="equal loss per sample")
        for k, g in enumerate(curves["gammas"]):
            ax.plot(q, curves[kind][g], color=f"C{k}", linewidth=1.8, label=rf"$\gamma = {g:g}$")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel(f"fraction of {kind} samples (sorted by loss, lowest first)")
        ax.set_ylabel("cumulative normalized loss")
        ax.set_title(f"{kind} samples ({curves['num_' + kind]:,})", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left")
    fig.suptitle("Figure 4 (§5.1): cumulative distribution of the normalized focal loss on held-out images\n"
                 + caption, fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.85, bottom=0.12, wspace=0.22)
    return fig
