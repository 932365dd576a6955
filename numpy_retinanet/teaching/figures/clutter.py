"""The cluttered shapes regime (``data/clutter.py``): example images, their objects and their distractors.

``clutter_examples_data`` draws held-out images of "shapes-clutter" at the regime's side and
counts their anchors with the matcher (§4); ``plot_clutter_examples`` draws exactly those
arrays: each labelled object boxed in its class's colour and named, each distractor (never
labelled) in a dotted box tagged with its kind. Registered as the figure "shapes_clutter".
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from numpy_retinanet.data.build import DataConfig, build_dataset
from numpy_retinanet.data.clutter import REGIME_IMAGE_SIZE
from numpy_retinanet.detection.matcher import BACKGROUND, match_anchors
from numpy_retinanet.evaluation.visualize import PALETTE, save_figure
from numpy_retinanet.teaching.figures.anchors import preset_anchor_generator
from numpy_retinanet.teaching.figures.registry import _rect, register_figure

#: The distractors' tags in the figure.
KIND_TAGS = {"other": "other shape", "outline": "outline", "fragment": "fragment"}


def clutter_examples_data(num_images=6, image_size=REGIME_IMAGE_SIZE, preset="default"):
    """The first ``num_images`` held-out images of "shapes-clutter" and their anchor counts.

    Returns
    -------
    dict with "class_names", "image_size", "anchors" (per image, the preset's), and "images":
    a list of dicts with "picture" (H, W, 3) uint8, "target" {"boxes", "labels"}, "distractors"
    {"boxes", "kinds"}, and "positive" / "negative": the anchors ``match_anchors`` makes
    foreground / background for that image.
    """
    ds = build_dataset(DataConfig(dataset="shapes-clutter", image_size=image_size), "eval", num_images=num_images)
    anchors = preset_anchor_generator(preset).anchors(image_size, image_size, dtype=np.float64)
    images = []
    for i in range(num_images):
        picture, target = ds.raw(i)
        matched = match_anchors(anchors, target["boxes"])
        d = ds.distractors(i)
        images.append({"picture": picture, "target": target, "distractors": {"boxes": d["boxes"], "kinds": d["kinds"]},
                       "positive": int((matched >= 0).sum()), "negative": int((matched == BACKGROUND).sum())})
    return {"class_names": ds.class_names, "image_size": image_size, "anchors": len(anchors), "images": images}


def _tag(ax, box, text, colour, size):
    """``text`` on ``colour`` above ``box``; below it near the top edge, right-aligned near the right
    edge, so that no tag leaves its image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    right = x1 > 0.75 * size
    top = y1 < 0.06 * size
    ax.text(x2 if right else x1, y2 + 1 if top else y1 - 1, text, fontsize=7, color="white",
            va="top" if top else "bottom", ha="right" if right else "left",
            bbox=dict(boxstyle="square,pad=0.1", facecolor=colour, edgecolor="none"))


def plot_clutter_examples(data, columns=3):
    """Draw ``clutter_examples_data``: objects boxed and named, distractors dotted and tagged."""
    images = data["images"]
    rows = -(-len(images) // columns)
    fig = Figure(figsize=(3.6 * columns, 3.75 * rows + 0.9))
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax, d in zip(axes, images):
        ax.imshow(d["picture"], interpolation="nearest")
        for box, kind in zip(d["distractors"]["boxes"], d["distractors"]["kinds"]):
            ax.add_patch(_rect(box, halo="black", edgecolor="white", linewidth=0.8, linestyle=":"))
            _tag(ax, box, KIND_TAGS[kind], "0.25", data["image_size"])
        for box, label in zip(d["target"]["boxes"], d["target"]["labels"]):
            colour = np.array(PALETTE[int(label) % len(PALETTE)]) / 255
            ax.add_patch(_rect(box, halo="white", edgecolor=colour, linewidth=1.6))
            _tag(ax, box, data["class_names"][int(label)], colour, data["image_size"])
        n = len(d["target"]["labels"])
        ratio = f"1 : {d['negative'] / d['positive']:,.0f}" if d["positive"] else "no positive"
        ax.set_title(f"{n} object{'s' * (n != 1)}, {len(d['distractors']['kinds'])} distractors; "
                     f"anchors {d['positive']} positive, {ratio}", fontsize=8)
        ax.set_xlim(0, data["image_size"])
        ax.set_ylim(data["image_size"], 0)
        ax.set_axis_off()
    for ax in axes[len(images):]:
        ax.set_axis_off()
    pos = sum(d["positive"] for d in images)
    neg = sum(d["negative"] for d in images)
    fig.suptitle(f"shapes-clutter (data/clutter.py), {data['image_size']} px: boxed and named, the objects "
                 f"({', '.join(data['class_names'])}); dotted, the distractors, never labelled.\n"
                 f"Anchors (default preset, {data['anchors']:,} per image) matched by §4's rules: "
                 f"{pos} positive, {neg:,} negative in these {len(images)} images (1 : {neg / max(1, pos):,.0f}); "
                 f"titles: each image's ratio", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.9 / (3.75 * rows + 0.9), bottom=0.01, wspace=0.04,
                        hspace=0.12)
    return fig


@register_figure("shapes_clutter")
def _shapes_clutter(out_dir):
    return save_figure(plot_clutter_examples(clutter_examples_data()), out_dir / "shapes_clutter.png")
