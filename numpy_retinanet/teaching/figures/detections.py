"""Detections (§4.1, inference) of the figures' trained model on held-out shapes images.

``detections_data`` runs ``engine.inference.detect``; ``plot_detections`` draws its boxes with
``visualize.draw_detections`` over the ground truth. Registered as the figure "detections",
titled with the model's AP on the held-out images.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from numpy_retinanet.backend import array_module
from numpy_retinanet.engine.inference import detect, evaluate_model
from numpy_retinanet.evaluation.visualize import DPI, DRAW_SCORE_THRESHOLD, draw_detections, save_figure
from numpy_retinanet.teaching.figures.registry import _rect, register_figure


def detections_data(model, dataset, indices):
    """Detections (§4.1 inference) of ``model`` on images ``indices`` of ``dataset``.

    Returns a list of dicts with "picture" (H, W, 3) uint8, "target" (ground truth) and
    "detections" (``engine.inference.detect``, sorted by score).
    """
    indices = list(indices)
    images = np.stack([dataset[i][0] for i in indices]).astype(model.dtype)
    dets = detect(model, array_module(model.anchors(*images.shape[2:])).asarray(images))
    return [{"picture": dataset.raw(i)[0], "target": dataset.raw(i)[1], "detections": d}
            for i, d in zip(indices, dets)]


def plot_detections(data, class_names, title, score_threshold=DRAW_SCORE_THRESHOLD, columns=4, scale=3):
    """Draw ``detections_data`` with ``visualize.draw_detections``; ground truth dashed white.

    Each panel is as many inches as the drawn picture has hundreds of pixels, so at the
    figures' dpi the labels keep their pixels rather than being resampled.
    """
    rows = -(-len(data) // columns)
    side = data[0]["picture"].shape[0] * scale / DPI
    fig = Figure(figsize=(side * columns, side * rows + 0.7))
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax, d in zip(axes, data):
        ax.imshow(draw_detections(d["picture"], d["detections"], class_names, score_threshold, scale=scale),
                  interpolation="nearest")
        for box in d["target"]["boxes"]:
            ax.add_patch(_rect(box * scale, edgecolor="white", linewidth=1.0, linestyle="--"))
        ax.set_axis_off()
    for ax in axes[len(data):]:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.75 / (side * rows + 0.7), bottom=0.01,
                        wspace=0.03, hspace=0.03)
    return fig


@register_figure("detections", needs_model=True)
def _detections(out_dir, trained):
    held_out = trained.held_out()
    ap = evaluate_model(trained.model, held_out)
    data = detections_data(trained.model, held_out, range(8))
    title = (f"Detections (score >= 0.3) on held-out shapes; dashed: ground truth. "
             f"AP {ap['AP']:.3f}, AP50 {ap['AP50']:.3f} on {len(held_out)} images\n{trained.caption()}")
    return save_figure(plot_detections(data, held_out.class_names, title), out_dir / "detections.png")
