"""The classification output (§3, §4 "Classification Subnet"): K sigmoids, not a softmax with background.

RetinaNet's classification subnet gives K logits per anchor and turns each into its own probability
with a sigmoid: K yes/no answers ("is an object of class k here?"), no background class; an anchor is
background when all K targets are 0. The other common design, a softmax over K + 1 classes with one
for background, turns the same logits into one choice among K + 1 answers. ``sigmoid_vs_softmax_data``
computes both for a few example anchors, the softmax with a background logit of 0 (softmax ignores a
shift common to all logits, so only the differences to it matter, and 0 makes the probability of a
class that is alone against the background its sigmoid). ``plot_sigmoid_vs_softmax`` draws exactly
those arrays. Registered as the figure "sigmoid_vs_softmax".
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from numpy_retinanet._checks import check_array
from numpy_retinanet.data.shapes import ALL_CLASS_NAMES
from numpy_retinanet.evaluation.visualize import save_figure
from numpy_retinanet.model.heads import prior_bias
from numpy_retinanet.nn.losses import sigmoid
from numpy_retinanet.teaching.figures.registry import register_figure

#: The figure's anchors: (what the logits say, the K = 3 logits of circle, square, triangle).
EXAMPLES = (
    ("at the prior (§3.3)", (prior_bias(0.01),) * 3),
    ("a circle", (3.0, -4.0, -4.0)),
    ("circle or square", (3.0, 3.0, -4.0)),
    ("unsure", (0.0, 0.0, 0.0)),
)


def softmax_with_background(logits, background_logit=0.0):
    """The (K + 1)-way softmax of each row of ``logits`` with ``background_logit`` appended last.

    Parameters
    ----------
    logits : (n, K) float array.
    background_logit : the logit of the background class.

    Returns
    -------
    (n, K + 1) float64, each row summing to 1; column K is the background.
    """
    logits = check_array("logits", np.asarray(logits, dtype=np.float64), ("n", "K"), nonempty=True, finite=True)
    z = np.concatenate([logits, np.full((len(logits), 1), float(background_logit))], axis=1)
    # Subtracting each row's largest logit changes nothing (the shift cancels in the ratio) and keeps
    # exp from overflowing.
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sigmoid_vs_softmax_data(examples=EXAMPLES, class_names=ALL_CLASS_NAMES[:3]):
    """The same logits as K per-class sigmoids (the paper) and as a softmax with a background class.

    Parameters
    ----------
    examples : sequence of (label, K logits) pairs, one per anchor.
    class_names : the K class names.

    Returns
    -------
    dict with "labels" (n,) the examples' labels, "class_names" (K,), "logits" (n, K), "sigmoid" (n, K)
    from ``nn.losses.sigmoid`` (each in (0, 1), independent of the others) and "softmax" (n, K + 1)
    from ``softmax_with_background`` (background last; rows sum to 1), all float64.
    """
    labels = [label for label, _ in examples]
    logits = np.array([x for _, x in examples], dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != len(class_names):
        raise ValueError(f"examples must each give {len(class_names)} logits (one per class), got {logits.shape}")
    return {"labels": labels, "class_names": tuple(class_names), "logits": logits,
            "sigmoid": sigmoid(logits), "softmax": softmax_with_background(logits)}


#: Class colours (ColorBrewer Set1: red, blue, green, ...); the background is grey.
CLASS_COLOURS = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628", "#f781bf")
BACKGROUND_COLOUR = "0.6"


def _bars(ax, probs, colours, names, width):
    """Grouped bars: one group per anchor (row of ``probs``), one bar per column, each with its value."""
    n, m = probs.shape
    for c in range(m):
        x = np.arange(n) + (c - (m - 1) / 2) * width
        ax.bar(x, probs[:, c], width=width, color=colours[c], edgecolor="0.2", linewidth=0.5, label=names[c])
        for xi, p in zip(x, probs[:, c]):
            ax.text(xi, p + 0.015, f"{p:.2f}", ha="center", va="bottom", fontsize=8.5, rotation=90)


def plot_sigmoid_vs_softmax(data):
    """Draw ``sigmoid_vs_softmax_data``: per-class sigmoids (left) beside a softmax with background (right).

    Each panel has one group of bars per example anchor, its logits under the group, and the sum of the
    group's probabilities above it. Returns the ``Figure``; its two axes hold the bars (``ax.patches``)
    column by column: class 0 of every anchor, then class 1, ... (then the background on the right).
    """
    names, logits = data["class_names"], data["logits"]
    k = len(names)
    colours = CLASS_COLOURS[:k]
    fig = Figure(figsize=(11.5, 5.6))
    left, right = fig.subplots(1, 2, sharey=True)
    _bars(left, data["sigmoid"], colours, names, width=0.8 / k)
    _bars(right, data["softmax"], colours + (BACKGROUND_COLOUR,), names + ("background",), width=0.8 / (k + 1))
    ticks = [f"{label}\nx = ({', '.join(f'{v:.3g}' for v in row)})" for label, row in zip(data["labels"], logits)]
    for ax, probs, title in (
            (left, data["sigmoid"], f"K = {k} sigmoids (the paper): one yes/no per class,\n"
                                    "background = every class 'no'"),
            (right, data["softmax"], f"softmax over K + 1 = {k + 1} (not the paper): one choice,\n"
                                     "background a class of its own (logit 0)")):
        ax.set_xticks(np.arange(len(ticks)), ticks, fontsize=9.5)
        for i, s in enumerate(probs.sum(axis=1)):
            ax.text(i, 1.2, f"sum {s:.2f}", ha="center", va="center", fontsize=9.5,
                    bbox={"facecolor": "white", "edgecolor": "0.6", "pad": 2.0})
        ax.set_title(title, fontsize=11)
        ax.set_ylim(0.0, 1.3)
        ax.set_yticks(np.linspace(0.0, 1.0, 6))
        ax.axhline(1.0, color="0.8", linewidth=0.8, zorder=0)
    left.set_ylabel("probability", fontsize=10.5)
    handles = [Patch(facecolor=c, edgecolor="0.2", label=n) for c, n in zip(colours, names)]
    handles.append(Patch(facecolor=BACKGROUND_COLOUR, edgecolor="0.2", label="background (softmax only)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=10, frameon=False)
    fig.suptitle("The same logits, two readings: sigmoids need not sum to 1; a softmax shares 1 among the classes "
                 "and background", fontsize=11.5)
    fig.subplots_adjust(left=0.065, right=0.99, top=0.83, bottom=0.2, wspace=0.06)
    return fig


@register_figure("sigmoid_vs_softmax")
def _sigmoid_vs_softmax(out_dir):
    return save_figure(plot_sigmoid_vs_softmax(sigmoid_vs_softmax_data()), out_dir / "sigmoid_vs_softmax.png")
