"""Anchors (§4, "Anchors") and matching (§4, "Matching"), on one image of the shapes data.

``anchors_per_level_data`` reads the anchors of each pyramid level out of ``AnchorGenerator``
and ``matched_anchors_data`` labels every anchor with ``match_anchors``; ``plot_anchors_per_level``
and ``plot_matched_anchors`` draw exactly those arrays over ``figure_image``. Registered as the
figures "anchors_per_level" and "matched_anchors".
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from numpy_retinanet.data.build import DataConfig, build_dataset
from numpy_retinanet.detection.anchors import AnchorGenerator
from numpy_retinanet.detection.boxes import box_iou
from numpy_retinanet.detection.matcher import BACKGROUND, BG_IOU, FG_IOU, IGNORED, match_anchors
from numpy_retinanet.evaluation.visualize import save_figure
from numpy_retinanet.model.presets import STRIDES, resolve_config
from numpy_retinanet.teaching.figures.registry import _rect, register_figure

#: The picture behind the anchor figures: held-out image 9 (seed 1000), four shapes of
#: three classes from 17 to 57 px, so every anchor size has something to match.
FIGURE_IMAGE_SEED = 1000
FIGURE_IMAGE_INDEX = 9
RATIO_NAMES = {0.5: "1:2", 1.0: "1:1", 2.0: "2:1"}  # r = h / w


def figure_image(image_size=128, num_classes=3):
    """The picture of the anchor figures: ``(uint8 (H, W, 3), {"boxes", "labels"}, class names)``."""
    held_out = DataConfig(image_size=image_size, num_classes=num_classes, eval_seed=FIGURE_IMAGE_SEED)
    ds = build_dataset(held_out, "eval", num_images=FIGURE_IMAGE_INDEX + 1)
    picture, target = ds.raw(FIGURE_IMAGE_INDEX)
    return picture, target, ds.class_names


def preset_anchor_generator(preset="default"):
    """The ``AnchorGenerator`` a ``RetinaNet`` of this preset builds (no network is built)."""
    cfg = resolve_config(preset, {})
    return AnchorGenerator(sizes=cfg["anchor_sizes"], strides=STRIDES, aspect_ratios=cfg["aspect_ratios"],
                           scales=cfg["scales"])


def anchors_per_level_data(image_size=128, preset="default"):
    """The anchors of each pyramid level for one image size, from ``AnchorGenerator.anchors``.

    For each level P3..P7: the centres of all its locations, and the A anchors of its middle
    location (row and column ``(H_l - 1) // 2``), read out of the (M, 4) anchor array at
    ``offset_l + (i W_l + j) A`` (the order documented in ``detection.anchors``).

    Returns
    -------
    dict with "image_size", "preset", "generator", and "levels": a list of dicts, one per level, with
    "name" ("P3"..), "stride", "size", "shape" (H_l, W_l), "location" (i, j),
    "centers" (H_l W_l, 2) float64 and "anchors" (A, 4) float64.
    """
    gen = preset_anchor_generator(preset)
    anchors = gen.anchors(image_size, image_size, dtype=np.float64)
    a = gen.num_anchors_per_location
    levels, offset = [], 0
    for lvl, ((h, w), stride, size) in enumerate(zip(gen.level_shapes(image_size, image_size), gen.strides,
                                                     gen.sizes)):
        block = anchors[offset:offset + h * w * a]
        i, j = (h - 1) // 2, (w - 1) // 2
        first = block[::a]  # anchor 0 of every location: all anchors of a location share its centre
        levels.append({"name": f"P{lvl + 3}", "stride": stride, "size": size, "shape": (h, w), "location": (i, j),
                       "centers": np.stack([(first[:, 0] + first[:, 2]) / 2, (first[:, 1] + first[:, 3]) / 2], 1),
                       "anchors": block[(i * w + j) * a:(i * w + j + 1) * a]})
        offset += h * w * a
    return {"image_size": image_size, "preset": preset, "generator": gen, "levels": levels}


#: Anchor colours by aspect ratio (ColorBrewer Set1: red, blue, green).
RATIO_COLOURS = ("#e41a1c", "#377eb8", "#4daf4a")


def _anchor_style(gen, k):
    """Colour by aspect ratio, line width by scale, for anchor index k (ratio-major)."""
    r, c = divmod(k, len(gen.scales))
    return {"edgecolor": RATIO_COLOURS[r % len(RATIO_COLOURS)], "linewidth": 1.0 + 0.8 * c}


def _faded(picture):
    """The picture as grey silhouettes: each pixel's colour distance from the background (the
    median colour), square-rooted so faint shapes show too: light background and darker shapes
    in [120, 215]. Grey keeps the colours for the boxes; the distance, unlike the luminance,
    separates every shape from the background (a brown circle and a blue background have nearly
    the same luminance)."""
    rgb = picture.astype(np.float64)
    distance = np.linalg.norm(rgb - np.median(rgb.reshape(-1, 3), axis=0), axis=2)
    return np.clip(215.0 - 95.0 * np.sqrt(distance / max(float(distance.max()), 1.0)), 0, 255).astype(np.uint8)


def _limits(ax, boxes, size, margin=0.04):
    """Axes that show the whole image and every box, image rows downwards, equal aspect."""
    lo = min(0.0, float(boxes[:, :2].min()))
    hi = max(float(size), float(boxes[:, 2:].max()))
    pad = margin * (hi - lo)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(hi + pad, lo - pad)
    ax.set_aspect("equal")


def plot_anchors_per_level(data, picture):
    """Draw ``anchors_per_level_data``: one panel per level, the image, its location centres and
    the A anchors of the middle location. Returns the ``Figure``; the rectangles of panel l
    are exactly ``data["levels"][l]["anchors"]``."""
    gen, size, levels = data["generator"], data["image_size"], data["levels"]
    fig = Figure(figsize=(3.0 * len(levels), 3.9))
    axes = fig.subplots(1, len(levels))
    for ax, lv in zip(axes, levels):
        ax.imshow(picture, extent=(0, size, size, 0), interpolation="nearest")
        for k, box in enumerate(lv["anchors"]):
            ax.add_patch(_rect(box, halo="white", **_anchor_style(gen, k)))
        ax.plot(lv["centers"][:, 0], lv["centers"][:, 1], "o", color="white", markersize=2.0,
                markeredgecolor="black", markeredgewidth=0.4)
        _limits(ax, lv["anchors"], size)
        h, w = lv["shape"]
        sides = lv["anchors"][:, 2:] - lv["anchors"][:, :2]
        ax.set_title(f"{lv['name']}: stride {lv['stride']}, {h}x{w} locations\n"
                     f"size {lv['size']:g} px, sides {sides.min():.0f}-{sides.max():.0f} px", fontsize=9)
        ax.tick_params(labelsize=7)
    handles = [Line2D([], [], color=RATIO_COLOURS[r % len(RATIO_COLOURS)],
                      label=f"ratio h:w = {RATIO_NAMES.get(ratio, f'{ratio:g}')}")
               for r, ratio in enumerate(gen.aspect_ratios)]
    handles += [Line2D([], [], color="0.3", linewidth=1.0 + 0.8 * c, label=f"scale {s:.3g}")
                for c, s in enumerate(gen.scales)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"Anchors (§4) of the {data['preset']} preset on a {size} px image: "
                 f"A = {gen.num_anchors_per_location} per location, shown at the middle location of each level "
                 "(dots: all locations)", fontsize=10)
    fig.subplots_adjust(left=0.03, right=0.99, top=0.80, bottom=0.16, wspace=0.25)
    return fig


def matched_anchors_data(picture, target, generator, fg_iou=FG_IOU, bg_iou=BG_IOU):
    """Every anchor of one image labelled positive, ignored or background by ``match_anchors`` (§4).

    Returns
    -------
    dict with "anchors" (M, 4), "matches" (M,) (box index, ``BACKGROUND`` or ``IGNORED``),
    "best_iou" (M,) the anchor's highest IoU with any box, "level" (M,) 0..4 for P3..P7,
    "low_quality" (M,) bool: positive only by the low-quality rule (best IoU < fg_iou),
    "boxes", "labels", "image_size", "fg_iou", "bg_iou", and "counts": {"positive", "ignored",
    "background"} per level (lists of 5 ints).
    """
    h, w = picture.shape[:2]
    anchors = generator.anchors(h, w, dtype=np.float64)
    boxes = np.asarray(target["boxes"], dtype=np.float64)
    matches = match_anchors(anchors, boxes, fg_iou=fg_iou, bg_iou=bg_iou)
    best_iou = box_iou(anchors, boxes).max(axis=1) if len(boxes) else np.zeros(len(anchors))
    level = np.repeat(np.arange(len(generator.strides)), generator.level_sizes(h, w))
    kinds = {"positive": matches >= 0, "ignored": matches == IGNORED, "background": matches == BACKGROUND}
    counts = {k: np.bincount(level[m], minlength=len(generator.strides)).tolist() for k, m in kinds.items()}
    return {"anchors": anchors, "matches": matches, "best_iou": best_iou, "level": level,
            "low_quality": (matches >= 0) & (best_iou < fg_iou), "boxes": boxes,
            "labels": np.asarray(target["labels"]), "image_size": (h, w), "fg_iou": fg_iou, "bg_iou": bg_iou,
            "counts": counts}


def _box_labels(ax, boxes, names, colours, left, right, min_gap):
    """Name each box in the margin beside the drawing (left of ``left`` or right of ``right``, on the
    side nearer the box), joined to the box by a thin line, so that no label covers an anchor."""
    sides = {"left": [], "right": []}
    for g, box in enumerate(boxes):
        sides["left" if (box[0] + box[2]) / 2 < (left + right) / 2 else "right"].append(g)
    for side, members in sides.items():
        y_prev = -np.inf
        for g in sorted(members, key=lambda g: (boxes[g][1] + boxes[g][3]) / 2):
            box = boxes[g]
            y = max((box[1] + box[3]) / 2, y_prev + min_gap)  # labels on one side kept min_gap apart
            y_prev = y
            x_box = box[0] if side == "left" else box[2]
            ax.annotate(names[g], xy=(x_box, (box[1] + box[3]) / 2), xytext=(left if side == "left" else right, y),
                        ha="right" if side == "left" else "left", va="center", fontsize=8, color="black",
                        bbox={"facecolor": "white", "edgecolor": colours[g], "linewidth": 1.8, "pad": 2.0},
                        arrowprops={"arrowstyle": "-", "color": colours[g], "linewidth": 1.0,
                                    "shrinkA": 0, "shrinkB": 0})


def plot_matched_anchors(data, picture, class_names):
    """Draw ``matched_anchors_data``: positive and ignored anchors on the image, counts per level.

    Left: the picture in light grey, ground-truth boxes (thick black), positive anchors in the
    colour of the box they take (dotted when positive only by the low-quality rule), ignored anchors
    dashed grey; each box is named in the margin in its colour, and the legend below says which
    colour is which box and class. Right: anchors per level and kind, log scale, in greys (the
    colours of the left panel belong to the boxes). Returns the ``Figure``.
    """
    anchors, matches = data["anchors"], data["matches"]
    h, w = data["image_size"]
    fg, bg = f"{data['fg_iou']:g}", f"{data['bg_iou']:g}"
    colours = [f"C{g}" for g in range(len(data["boxes"]))]
    fig = Figure(figsize=(13.0, 6.6))
    ax, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.45, 1.0]})
    ax.imshow(_faded(picture), extent=(0, w, h, 0), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    for a in np.flatnonzero(matches == IGNORED):
        ax.add_patch(_rect(anchors[a], edgecolor="0.35", linewidth=0.8, linestyle="--"))
    for a in np.flatnonzero(matches >= 0):
        ax.add_patch(_rect(anchors[a], edgecolor=colours[matches[a]], linewidth=1.6,
                           linestyle=":" if data["low_quality"][a] else "-"))
    for box in data["boxes"]:
        ax.add_patch(_rect(box, halo="white", edgecolor="black", linewidth=2.6))
    shown = anchors[matches != BACKGROUND]
    _limits(ax, np.concatenate([shown, data["boxes"]]) if len(shown) else data["boxes"], max(h, w))
    lo, hi = ax.get_xlim()
    margin = 0.3 * (hi - lo)  # room for the boxes' names, outside every anchor
    ax.set_xlim(lo - margin, hi + margin)
    names = [f"box {g}: {class_names[int(label)]}" for g, label in enumerate(data["labels"])]
    _box_labels(ax, data["boxes"], names, colours, lo - 0.04 * margin, hi + 0.04 * margin, min_gap=0.06 * (hi - lo))
    n_per_box = [int(np.sum(matches == g)) for g in range(len(data["boxes"]))]
    handles = [Line2D([], [], color=colours[g], linewidth=2.0,
                      label=f"{names[g]}: {n_per_box[g]} positive anchor{'s' if n_per_box[g] != 1 else ''}")
               for g in range(len(names))]
    handles += [Line2D([], [], color="black", linewidth=2.6, label="ground-truth box"),
                Line2D([], [], color="0.2", linewidth=1.6, label=f"positive anchor: IoU >= {fg} (solid)"),
                Line2D([], [], color="0.2", linewidth=1.6, linestyle=":",
                       label=f"positive: its box's best anchor, IoU < {fg} (dotted)"),
                Line2D([], [], color="0.35", linewidth=0.8, linestyle="--", label=f"ignored: {bg} <= IoU < {fg}")]
    # below the picture, where it can hide no box: colours (the boxes) in column 1, line styles in column 2
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2, fontsize=8, frameon=False)
    ax.set_title("anchors matched to the boxes (colour: the box each takes)", fontsize=10)
    ax.tick_params(labelsize=7)

    counts = data["counts"]
    x = np.arange(len(counts["positive"]))
    for k, (kind, colour) in enumerate((("positive", "0.15"), ("ignored", "0.55"), ("background", "0.85"))):
        heights = np.asarray(counts[kind])
        # a count of 0 has no bar on a log axis; its number is written at the axis floor
        rects = bars.bar(x + (k - 1) * 0.27, np.where(heights > 0, heights, np.nan), width=0.27, color=colour,
                         edgecolor="0.15", linewidth=0.6, label=f"{kind}: {heights.sum()}")
        for r, n in zip(rects, heights):
            bars.text(r.get_x() + r.get_width() / 2, max(n, 0.6) * 1.15, str(n), ha="center", fontsize=7)
    bars.set_yscale("log")
    bars.set_ylim(0.5, 10 * max(counts["background"]))
    bars.set_xticks(x, [f"P{l + 3}" for l in x])
    bars.set_ylabel("anchors")
    bars.legend(fontsize=8)
    bars.set_title(f"{len(anchors)} anchors per level and kind", fontsize=10)
    n_pos, n_ign = int(np.sum(matches >= 0)), int(np.sum(matches == IGNORED))
    fig.suptitle(f"Matching (§4): IoU >= {fg} positive, < {bg} background, in between ignored; "
                 f"{n_pos} positive, {n_ign} ignored, {len(anchors) - n_pos - n_ign} background", fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.88, bottom=0.22, wspace=0.12)
    return fig


@register_figure("anchors_per_level")
def _anchors_per_level(out_dir):
    picture, _, _ = figure_image()
    return save_figure(plot_anchors_per_level(anchors_per_level_data(), picture), out_dir / "anchors_per_level.png")


@register_figure("matched_anchors")
def _matched_anchors(out_dir):
    picture, target, names = figure_image()
    data = matched_anchors_data(picture, target, preset_anchor_generator())
    return save_figure(plot_matched_anchors(data, picture, names), out_dir / "matched_anchors.png")
