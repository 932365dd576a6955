"""Receptive fields and the scale of each pyramid level (§4; FPN, Lin et al. 2017, §3).

A location of P_l sits on a grid of spacing ``stride`` (8 px on P3 ... 128 px on P7) and sees a window
of the image, its *theoretical receptive field*: the span of input pixels that can change it through
the convolutions' windows. Both are derived here from the layers of a built model, not from a table:
``receptive_field`` walks each layer backwards, mapping the pixels an output reads to the pixels its
input reads (a conv of kernel k, stride s, padding p: outputs a..b read inputs s a - p .. s b - p + k - 1;
nearest x2 upsampling: outputs a..b read a // 2 .. b // 2; a sum reads the union of its terms). GroupNorm
is counted as reading its window only: its mean and variance span the whole map, so strictly every
pixel moves every output a little; the receptive field counts the windows, as is usual.

``receptive_field_data`` puts each level's stride and receptive field beside the anchor sides of that
level and the objects whose best anchor lies on it; ``plot_receptive_field`` draws exactly those
arrays, for the ``default`` preset on the shapes (left) and the ``paper`` preset against COCO's size
ranges (right). Registered as the figure "receptive_field".
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from numpy_retinanet.data.build import DataConfig, build_dataset
from numpy_retinanet.detection.boxes import box_iou
from numpy_retinanet.evaluation.visualize import save_figure
from numpy_retinanet.model.backbone import BasicBlock
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.modules import Conv2d, GroupNorm, ReLU, Sequential
from numpy_retinanet.teaching.figures.registry import register_figure

#: COCO's object sizes, as the side sqrt(w h) of a box: small below 32 px, large above 96 px
#: (areas 32^2 and 96^2, pycocotools' areaRng), medium between.
COCO_SIZES = {"small": (0.0, 32.0), "medium": (32.0, 96.0), "large": (96.0, np.inf)}
#: Output locations tried per level: the span can differ by location when an upsampling rounds
#: (a // 2); its pattern repeats every 2^(levels below) locations, far fewer than this.
LOCATIONS = 32


def _reads(module, lo, hi):
    """The input pixels [lo', hi'] (along one axis, indices unclipped by the border) that the output
    pixels lo..hi of ``module`` read through its windows."""
    if isinstance(module, Conv2d):
        k = module.params["weight"].shape[-1]
        return module.stride * lo - module.padding, module.stride * hi - module.padding + k - 1
    if isinstance(module, Sequential):
        for layer in reversed(module.layers):
            lo, hi = _reads(layer, lo, hi)
        return lo, hi
    if isinstance(module, BasicBlock):  # relu(branch(x) + shortcut(x)): the union of both paths
        a = _reads(module.branch, lo, hi)
        b = _reads(module.shortcut, lo, hi) if module.shortcut is not None else (lo, hi)
        return min(a[0], b[0]), max(a[1], b[1])
    if isinstance(module, (ReLU, GroupNorm)):  # elementwise (GroupNorm's statistics aside: see above)
        return lo, hi
    raise TypeError(f"module must be a Conv2d, ReLU, GroupNorm, Sequential or BasicBlock, got {type(module)}")


def _union(*spans):
    return min(s[0] for s in spans), max(s[1] for s in spans)


def _image_span(model, level, lo, hi, top_down):
    """The image pixels that pixels lo..hi of pyramid level ``level`` (3..7) read; ``top_down=False``
    follows only the bottom-up path (P3-P5: through C_l alone, as without the top-down pathway)."""
    bb, fpn = model.backbone, model.fpn
    below = {3: (bb.stem, bb.stage1, bb.stage2), 4: (bb.stage3,), 5: (bb.stage4,)}  # C_{l-1} -> C_l

    def from_c(l, lo, hi):  # C_l -> image
        for lvl in range(l, 2, -1):
            for stage in reversed(below[lvl]):
                lo, hi = _reads(stage, lo, hi)
        return lo, hi

    def from_m(l, lo, hi):  # M_l = lateral_l(C_l) + up2(M_{l+1}) cropped (the crop drops pixels, adds none)
        span = from_c(l, *_reads(getattr(fpn, f"lateral{l}"), lo, hi))
        if top_down and l < 5:
            span = _union(span, from_m(l + 1, lo // 2, hi // 2))  # nearest x2: output pixel i copies input i // 2
        return span

    if level <= 5:
        return from_m(level, *_reads(getattr(fpn, f"output{level}"), lo, hi))
    if level == 6:
        lo, hi = _reads(fpn.p6, lo, hi)
        if fpn.p6_from == "c5":
            return from_c(5, lo, hi)
        return _image_span(model, 5, lo, hi, top_down)
    return _image_span(model, 6, *_reads(fpn.p7, lo, hi), top_down)  # P7 = conv(ReLU(P6))


def receptive_field(model, level, top_down=True):
    """Stride and theoretical receptive field of pyramid level ``level`` (3..7) of ``model``.

    Returns
    -------
    (stride, size): how far apart in the image two neighbouring locations' windows are, and the
    largest window of a location over ``LOCATIONS`` locations (in pixels, unclipped by the border).
    """
    if level not in range(3, 8):
        raise ValueError(f"level must be one of 3..7 (P3..P7), got {level!r}")
    # On the bottom-up path every step from one location to the next moves the window by the same
    # amount, the stride; the rounding of up2 makes the top-down path's steps uneven.
    starts = [_image_span(model, level, i, i, top_down=False)[0] for i in range(2)]
    spans = [_image_span(model, level, i, i, top_down) for i in range(LOCATIONS)]
    return starts[1] - starts[0], max(hi - lo + 1 for lo, hi in spans)


def _level_of_best_anchor(anchors, boxes, level_sizes):
    """The pyramid level index (0 for P3) of each box's highest-IoU anchor (the anchor the matcher's
    low-quality rule gives each box, even below IoU 0.5)."""
    level = np.repeat(np.arange(len(level_sizes)), level_sizes)
    return level[box_iou(anchors, boxes).argmax(axis=0)]


def receptive_field_data(preset="default", image_size=128, num_images=200):
    """Each pyramid level's geometry for one preset, and, with ``num_images`` > 0, the shapes on it.

    Parameters
    ----------
    preset : a model preset name (``model/presets.py``).
    image_size : side of the (square) images, in pixels.
    num_images : training images of the shapes dataset (``DataConfig`` defaults, that image size)
        whose objects are placed on the level of their best anchor; 0 for none.

    Returns
    -------
    dict with "preset", "image_size", and "levels": a list of dicts, one per level P3..P7, with "name",
    "stride", "rf" (the theoretical receptive field) and "rf_bottom_up" (the same through C_l alone, no
    top-down path), "anchor_sides" (the smallest and largest side over the level's A anchors), and
    "objects" (n_l,) float64: the side sqrt(w h) of each object whose best anchor is on that level.
    """
    model = RetinaNet(3, preset=preset)
    gen = model.anchor_generator
    cell = [gen.cell_anchors(lvl) for lvl in range(len(gen.strides))]
    objects = [np.zeros(0)] * len(gen.strides)
    if num_images:
        ds = build_dataset(DataConfig(image_size=image_size), "train", num_images=num_images)
        anchors = gen.anchors(image_size, image_size, dtype=np.float64)
        sides, levels = [], []
        for i in range(len(ds)):
            boxes = ds[i][1]["boxes"].astype(np.float64)
            if len(boxes):
                sides.append(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
                levels.append(_level_of_best_anchor(anchors, boxes, gen.level_sizes(image_size, image_size)))
        sides, levels = np.concatenate(sides), np.concatenate(levels)
        objects = [np.sort(sides[levels == lvl]) for lvl in range(len(gen.strides))]
    out = []
    for lvl in range(len(gen.strides)):
        stride, rf = receptive_field(model, lvl + 3)
        anchor_sides = np.concatenate([cell[lvl][:, 2] - cell[lvl][:, 0], cell[lvl][:, 3] - cell[lvl][:, 1]])
        out.append({"name": f"P{lvl + 3}", "stride": stride, "rf": rf,
                    "rf_bottom_up": receptive_field(model, lvl + 3, top_down=False)[1],
                    "anchor_sides": (float(anchor_sides.min()), float(anchor_sides.max())), "objects": objects[lvl]})
    return {"preset": preset, "image_size": image_size, "levels": out}


def _panel(ax, data, title, ylim, with_objects):
    """One preset's levels on a log2 pixel axis: anchors (bar), stride, receptive fields, objects."""
    levels = data["levels"]
    x = np.arange(len(levels))
    for i, lv in enumerate(levels):
        lo, hi = lv["anchor_sides"]
        ax.plot([i - 0.12, i - 0.12], [lo, hi], color="#377eb8", linewidth=9, solid_capstyle="butt")
        if len(lv["objects"]):
            # objects spread sideways by their rank, so that equal sizes do not hide each other
            spread = np.linspace(-0.1, 0.1, len(lv["objects"])) if len(lv["objects"]) > 1 else np.zeros(1)
            ax.plot(i + 0.22 + spread, lv["objects"], "o", color="#e41a1c", markersize=2.5, alpha=0.5,
                    markeredgewidth=0)
    ax.plot(x - 0.12, [lv["stride"] for lv in levels], "_", color="black", markersize=22, markeredgewidth=2.5)
    # the bottom-up field (hollow) under the full one (filled), joined by a line where the top-down path widens it
    for i, lv in enumerate(levels):
        ax.plot([i - 0.36] * 2, [lv["rf_bottom_up"], lv["rf"]], color="#4daf4a", linewidth=1.2)
    ax.plot(x - 0.36, [lv["rf_bottom_up"] for lv in levels], "v", color="white", markersize=8,
            markeredgecolor="#4daf4a", markeredgewidth=1.6)
    ax.plot(x - 0.36, [lv["rf"] for lv in levels], "v", color="#4daf4a", markersize=9, markeredgecolor="black",
            markeredgewidth=0.6)
    ax.axhline(data["image_size"], color="0.3", linestyle="--", linewidth=1.0)
    ax.set_yscale("log", base=2)
    ax.set_ylim(*ylim)
    ticks = 2.0 ** np.arange(np.log2(ylim[0]), np.log2(ylim[1]) + 1)
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    counts = [f"\n{len(lv['objects'])} shapes" if with_objects else "" for lv in levels]
    ax.set_xticks(x, [lv["name"] + c for lv, c in zip(levels, counts)])
    ax.set_xlim(-0.5, len(levels) - 0.5)
    ax.set_ylabel("pixels (log scale)", fontsize=10.5)
    ax.tick_params(labelsize=10)
    ax.set_title(title, fontsize=10.5)
    ax.grid(axis="y", color="0.9", linewidth=0.8)
    ax.set_axisbelow(True)


def plot_receptive_field(shapes, paper):
    """Draw two ``receptive_field_data`` results: the ``default`` preset with the shapes that each
    level's anchors take (left), the ``paper`` preset against COCO's small, medium and large (right).

    Per level: the anchor sides (blue bar), the stride (black tick), the theoretical receptive field
    (green triangle; hollow: through C_l alone). Returns the ``Figure``.
    """
    fig = Figure(figsize=(12.0, 6.6))
    left, right = fig.subplots(1, 2)
    n_objects = sum(len(lv["objects"]) for lv in shapes["levels"])
    _panel(left, shapes, f"'{shapes['preset']}' preset, {shapes['image_size']} px shapes images:\n"
                         f"{n_objects} shapes, each drawn on the level of its best anchor", (4, 1024), True)
    _panel(right, paper, f"'{paper['preset']}' preset, {paper['image_size']} px images (anchors 4 x stride, "
                         "as the paper's):\nagainst COCO's object sizes", (4, 2048), False)
    for name, (lo, hi), shade in zip(COCO_SIZES, COCO_SIZES.values(), ("0.97", "0.91", "0.85")):
        right.axhspan(max(lo, 4.0), min(hi, 2048.0), color=shade, zorder=0)
        label_at = np.sqrt(max(lo, 8.0) * hi) if np.isfinite(hi) else 2.0 * lo  # mid-band on the log axis
        right.text(len(paper["levels"]) - 0.55, label_at, f"COCO {name}", fontsize=9.5, ha="right", va="center",
                   color="0.25")
    handles = [Line2D([], [], color="#377eb8", linewidth=9, label="anchor sides (3 ratios x 3 scales)"),
               Line2D([], [], color="black", marker="_", markersize=14, markeredgewidth=2.5, linestyle="",
                      label="stride (spacing of the locations)"),
               Line2D([], [], color="#4daf4a", marker="v", markersize=9, markeredgecolor="black", linestyle="",
                      label="receptive field"),
               Line2D([], [], color="white", marker="v", markersize=7, markeredgecolor="#4daf4a",
                      markeredgewidth=1.4, linestyle="", label="receptive field through C_l alone (no top-down path)"),
               Line2D([], [], color="#e41a1c", marker="o", markersize=4, linestyle="",
                      label="a shape: sqrt(w h) of its box"),
               Line2D([], [], color="0.3", linestyle="--", linewidth=1.0, label="the image's side")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9.5, frameon=False)
    fig.suptitle("Each pyramid level's stride, anchors and receptive field (the window of the image one location "
                 "sees)", fontsize=11.5)
    fig.subplots_adjust(left=0.065, right=0.99, top=0.85, bottom=0.2, wspace=0.17)
    return fig


@register_figure("receptive_field")
def _receptive_field(out_dir):
    shapes = receptive_field_data("default", image_size=128)
    paper = receptive_field_data("paper", image_size=800, num_images=0)
    return save_figure(plot_receptive_field(shapes, paper), out_dir / "receptive_field.png")
