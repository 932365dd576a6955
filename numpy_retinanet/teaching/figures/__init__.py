"""Every figure in figures/ is made here, from the package's own code (``numpy-retinanet figures``).

A figure is a function ``out_dir -> path`` registered under a name with ``@register_figure``;
``make_figures`` runs them. Each figure keeps its data apart from its drawing: a ``*_curves``
function computes the arrays with the package's own functions (tests compare them with the
paper's formulas), and a ``plot_*`` function draws exactly those arrays.

Figures of a trained model (detections, training curve, Figure 4) receive one from
``make_figures``: trained by ``train_figure_model`` (seeded, a few minutes on a CPU) or loaded
from a run's checkpoint, and named in each figure's title.

The PNGs are committed, so regenerating them must not change a byte: drawing uses the
object-oriented API on an Agg canvas (no pyplot, no GUI backend, no global figure state),
matplotlib's default style (a reader's matplotlibrc is ignored), a fixed dpi, and no
metadata (no "Software" version string, no timestamp). The bytes still depend on the
matplotlib and FreeType versions that render the text, and those of the trained model's
figures on the machine's floating-point arithmetic (its BLAS), which the training follows.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib.style
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.patheffects import withStroke
from PIL import Image

from numpy_retinanet.backend import array_module, to_host
from numpy_retinanet.data.shapes import ShapesDataset
from numpy_retinanet.data.batching import collate
from numpy_retinanet.detection.anchors import AnchorGenerator
from numpy_retinanet.detection.boxes import box_iou
from numpy_retinanet.detection.criterion import assign_targets
from numpy_retinanet.detection.matcher import BACKGROUND, IGNORED, match_anchors
from numpy_retinanet.engine.checkpoint import load_checkpoint
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.engine.inference import detect, evaluate_model
from numpy_retinanet.engine.trainer import train
from numpy_retinanet.model.presets import STRIDES, resolve_config
from numpy_retinanet.nn.losses import (
    sigmoid_cross_entropy_forward,
    sigmoid_focal_loss_backward,
    sigmoid_focal_loss_forward,
)
from numpy_retinanet.evaluation.visualize import DPI, draw_detections, plot_training_curve, save_figure

__all__ = [
    "FIGURES",
    "register_figure",
    "make_figures",
    "as_image",
    "GAMMAS",
    "focal_loss_curves",
    "focal_loss_gradient_curves",
    "plot_focal_loss_vs_pt",
    "plot_focal_loss_gradient",
    "FIGURE4_GAMMAS",
    "FIGURE_TRAINING",
    "FigureModel",
    "train_figure_model",
    "load_figure_model",
    "figure_image",
    "preset_anchor_generator",
    "anchors_per_level_data",
    "plot_anchors_per_level",
    "matched_anchors_data",
    "plot_matched_anchors",
    "loss_cdf_curves",
    "plot_loss_cdf",
    "detections_data",
    "plot_detections",
]

# name -> function(out_dir: Path) -> Path of the file written; in registration order.
FIGURES: dict = {}


def register_figure(name, needs_model=False):
    """Decorator: register ``fn(out_dir: Path) -> Path`` as the figure ``name``.

    With ``needs_model=True`` the function is ``fn(out_dir, trained: FigureModel) -> Path``:
    ``make_figures`` trains (or loads) one model and hands it to every such figure.
    The registered function draws in matplotlib's default style, so a reader's matplotlibrc
    cannot change the committed bytes.
    """

    def decorate(fn):
        if name in FIGURES:
            raise ValueError(f"figure name {name!r} is already registered; pick another name")

        @functools.wraps(fn)
        def make(out_dir, trained=None):
            if needs_model and trained is None:
                raise ValueError(f"figure {name!r} needs a trained model (a FigureModel); make_figures makes one")
            with matplotlib.style.context("default"):
                return fn(Path(out_dir), trained) if needs_model else fn(Path(out_dir))

        make.needs_model = needs_model
        FIGURES[name] = make
        return make

    return decorate


def make_figures(out_dir="figures", only=None, checkpoint=None, log=print):
    """Make the registered figures (all, or the names in ``only``) in ``out_dir``.

    Parameters
    ----------
    out_dir : folder for the PNGs, created if missing.
    only : None for every figure, or an iterable of figure names.
    checkpoint : None to train the figures' model (``train_figure_model``, minutes on a
        CPU) when a selected figure needs one, or a ``checkpoint.npz`` to load instead.
    log : receives the training progress lines.

    Returns
    -------
    list of ``pathlib.Path``, one per figure made, in registration order.
    """
    if only is None:
        names = list(FIGURES)
    else:
        wanted = list(only)
        unknown = [n for n in wanted if n not in FIGURES]
        if unknown or not wanted:
            raise ValueError(
                f"only must name figures among {sorted(FIGURES)}, got {wanted if not unknown else unknown}"
            )
        names = [n for n in FIGURES if n in wanted]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trained = None
    if any(FIGURES[n].needs_model for n in names):
        trained = load_figure_model(checkpoint) if checkpoint else train_figure_model(log=log)
    return [FIGURES[n](out, trained) for n in names]


def as_image(fig):
    """``fig`` rendered to a PIL image, as the PNGs are. A notebook cell ending with it shows the
    figure inline (Jupyter and VS Code display PIL images), without pyplot or a GUI backend."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba()))


# ----------------------------------------------------------------------------------------
# Figure 1 of the paper (§3.2): the focal loss against p_t, and its gradient (Appendix B)
# ----------------------------------------------------------------------------------------

GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)  # Figure 1's curves
FIGURE4_GAMMAS = (0.0, 0.5, 1.0, 2.0)  # Figure 4's curves


def _check_1d_grid(name, a, low=None, high=None):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got NaN or inf")
    if low is not None and not (np.all(a > low) and np.all(a < high)):
        raise ValueError(f"{name} must lie in the open interval ({low}, {high}), got [{a.min()}, {a.max()}]")
    return a


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


def focal_loss_gradient_curves(gammas=GAMMAS, x=None):
    """dFL/dx against the logit x for a positive (y = 1), from ``sigmoid_focal_loss_backward``.

    Appendix B: dFL/dx = (1 - p)^gamma (gamma p log p + p - 1), p = sigmoid(x), no alpha.
    gamma = 0 is the cross-entropy's p - 1.

    Parameters
    ----------
    gammas : focusing parameters, each >= 0.
    x : 1-D array of finite logits; default 1001 points from -10 to 10.

    Returns
    -------
    dict with "x" (n,) and "grad": {gamma: (n,)}, all float64.
    """
    if x is None:
        x = np.linspace(-10.0, 10.0, 1001)
    x = _check_1d_grid("x", x)
    y = np.ones_like(x)
    grad = {}
    for g in gammas:
        _, cache = sigmoid_focal_loss_forward(x, y, alpha=None, gamma=g)
        grad[g] = sigmoid_focal_loss_backward(np.ones_like(x), cache)
    return {"x": x, "grad": grad}


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
    zero line.
    """
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


# ----------------------------------------------------------------------------------------
# Anchors (§4, "Anchors") and matching (§4, "Matching"), on one image of the shapes data
# ----------------------------------------------------------------------------------------

#: The picture behind the anchor figures: held-out image 9 (seed 1000), four shapes of
#: three classes from 17 to 57 px, so every anchor size has something to match.
FIGURE_IMAGE_SEED = 1000
FIGURE_IMAGE_INDEX = 9
RATIO_NAMES = {0.5: "1:2", 1.0: "1:1", 2.0: "2:1"}  # r = h / w


def figure_image(image_size=128, num_classes=3):
    """The picture of the anchor figures: ``(uint8 (H, W, 3), {"boxes", "labels"}, class names)``."""
    ds = ShapesDataset(FIGURE_IMAGE_INDEX + 1, image_size, num_classes, seed=FIGURE_IMAGE_SEED)
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


def _rect(box, halo=None, **kw):
    """An unfilled rectangle; ``halo`` draws a wider outline of that colour under it, so the
    line stays visible over any picture."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if halo is not None:
        kw["path_effects"] = [withStroke(linewidth=kw.get("linewidth", 1.0) + 1.2, foreground=halo)]
    return Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **kw)


def _faded(picture):
    """The picture in light grey, so that coloured boxes drawn over it stand out."""
    grey = picture.astype(np.float64).mean(axis=2)
    return np.clip(0.45 * grey + 0.55 * 255, 0, 255).astype(np.uint8)


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
    fig.suptitle(f"Anchors (§4) of the {data['preset']} preset on a {size} px image: A = {gen.num_anchors_per_location} "
                 "per location, shown at the middle location of each level (dots: all locations)", fontsize=10)
    fig.subplots_adjust(left=0.03, right=0.99, top=0.80, bottom=0.16, wspace=0.25)
    return fig


def matched_anchors_data(picture, target, generator, fg_iou=0.5, bg_iou=0.4):
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


def plot_matched_anchors(data, picture, class_names):
    """Draw ``matched_anchors_data``: positive and ignored anchors on the image, counts per level.

    Left: the picture in grey, ground-truth boxes (thick black), positive anchors in the colour
    of the box they take (dotted when positive only by the low-quality rule), ignored anchors
    dashed grey. Right: anchors per level and kind, log scale. Returns the ``Figure``.
    """
    anchors, matches = data["anchors"], data["matches"]
    h, w = data["image_size"]
    fg, bg = f"{data['fg_iou']:g}", f"{data['bg_iou']:g}"
    fig = Figure(figsize=(13.0, 6.2))
    ax, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1.0]})
    ax.imshow(_faded(picture), extent=(0, w, h, 0), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    for a in np.flatnonzero(matches == IGNORED):
        ax.add_patch(_rect(anchors[a], edgecolor="0.6", linewidth=0.7, linestyle="--"))
    for a in np.flatnonzero(matches >= 0):
        ax.add_patch(_rect(anchors[a], edgecolor=f"C{matches[a]}", linewidth=1.3,
                           linestyle=":" if data["low_quality"][a] else "-"))
    for g, (box, label) in enumerate(zip(data["boxes"], data["labels"])):
        ax.add_patch(_rect(box, edgecolor="black", linewidth=2.4))
        ax.text(box[0], box[1] - 2.0, f"box {g}: {class_names[int(label)]}", color="black", fontsize=8,
                bbox={"facecolor": "white", "edgecolor": f"C{g}", "linewidth": 1.5, "pad": 1.0})
    shown = anchors[matches != BACKGROUND]
    _limits(ax, np.concatenate([shown, data["boxes"]]) if len(shown) else data["boxes"], max(h, w))
    handles = [Line2D([], [], color="black", linewidth=2.4, label="ground-truth box"),
               Line2D([], [], color="C0", linewidth=1.3, label=f"positive anchor (IoU >= {fg})"),
               Line2D([], [], color="C0", linewidth=1.3, linestyle=":",
                      label=f"positive: its box's best anchor (IoU < {fg})"),
               Line2D([], [], color="0.6", linewidth=0.7, linestyle="--", label=f"ignored ({bg} <= IoU < {fg})")]
    # below the picture, where it can hide no box
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2, fontsize=8, frameon=False)
    ax.set_title("anchors matched to the boxes (colour: the box each takes)", fontsize=10)

    counts = data["counts"]
    x = np.arange(len(counts["positive"]))
    for k, (kind, colour) in enumerate((("positive", "C2"), ("ignored", "0.6"), ("background", "C0"))):
        heights = np.asarray(counts[kind])
        # a count of 0 has no bar on a log axis; its number is written at the axis floor
        rects = bars.bar(x + (k - 1) * 0.27, np.where(heights > 0, heights, np.nan), width=0.27, color=colour,
                         label=f"{kind}: {heights.sum()}")
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
    fig.subplots_adjust(left=0.04, right=0.98, top=0.88, bottom=0.17, wspace=0.18)
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


# ----------------------------------------------------------------------------------------
# A trained model: detections, training curve and Figure 4 (§5.1, "Analysis of the Focal Loss")
# ----------------------------------------------------------------------------------------

#: How ``numpy-retinanet figures`` trains the model behind the figures that need one: the
#: default preset for 600 steps (minutes on a CPU), seeded, so it is the same model every time
#: on one machine. A schedule for a short run: twice the default rate after a 50-step warm-up,
#: with the gradient norm clipped at 10 for safety, decayed late (at 80% and 93% of the steps)
#: so that most steps learn at the full rate.
FIGURE_TRAINING = dict(preset="default", iterations=600, batch_size=8, lr=0.02, warmup_steps=50,
                       decay_at=(0.8, 0.93), clip_grad_norm=10.0, seed=0, data_seed=0, eval_images=0,
                       log_every=50, checkpoint_every=10**9)
#: Held-out images for the detections, their AP and Figure 4.
FIGURE_EVAL_IMAGES = 200


@dataclass
class FigureModel:
    """A trained model and what the figures say about it."""

    model: object
    history: dict  # the trainer's loss history
    train_config: dict  # TrainConfig.to_dict()
    step: int
    source: str  # "trained by numpy-retinanet figures" or the checkpoint's path

    def caption(self, sep=" "):
        """What the model is and where it came from; ``sep`` goes before the source."""
        c = self.train_config
        return (f"RetinaNet '{c['preset']}' preset, {self.step} steps x {c['batch_size']} images, "
                f"seed {c['seed']}{sep}({self.source})")

    def held_out(self, num_images=FIGURE_EVAL_IMAGES):
        """The held-out shapes images (the run's eval seed, never trained on)."""
        c = self.train_config
        return ShapesDataset(num_images, c["image_size"], self.model.num_classes, seed=c["eval_seed"])


def train_figure_model(log=print, **overrides):
    """Train the figures' model (``FIGURE_TRAINING`` with ``overrides``) in a temporary run folder."""
    config = TrainConfig(**{**FIGURE_TRAINING, **overrides})
    with tempfile.TemporaryDirectory(prefix="numpy-retinanet-figures-") as run:
        metrics = train(config, run, log=log)
        model, info = load_checkpoint(Path(run) / "checkpoint.npz")
    return FigureModel(model, metrics["history"], config.to_dict(), info["step"],
                       "trained by numpy-retinanet figures")


def load_figure_model(checkpoint):
    """A ``FigureModel`` from a run's ``checkpoint.npz`` (it must hold the loss history)."""
    model, info = load_checkpoint(checkpoint)
    history = info["extra"].get("history")
    if not history or not history.get("step"):
        raise ValueError(f"checkpoint {checkpoint!r} holds no loss history; the training curve needs "
                         "the checkpoint of a run made by `numpy-retinanet train`")
    config = TrainConfig.from_dict(info["train_config"]).to_dict()
    return FigureModel(model, history, config, info["step"], str(checkpoint))


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
    fractions = _check_1d_grid("fractions", fractions)
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


def plot_detections(data, class_names, title, score_threshold=0.3, columns=4, scale=3):
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


@register_figure("training_curve", needs_model=True)
def _training_curve(out_dir, trained):
    return plot_training_curve(trained.history, out_dir / "training_curve.png",
                               title="Training loss\n" + trained.caption(sep="\n"))


@register_figure("figure4_loss_cdf", needs_model=True)
def _figure4_loss_cdf(out_dir, trained):
    curves = loss_cdf_curves(trained.model, trained.held_out())
    return save_figure(plot_loss_cdf(curves, trained.caption()), out_dir / "figure4_loss_cdf.png")
