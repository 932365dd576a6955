"""Tests of teaching/figures/: the plotted data is the paper's formula, each written figure draws what the
tests compute again on their own, and the PNGs regenerate byte for byte.

The content checks read the artists (lines, patches, texts, images) back from the very Figure each
registered figure writes (``recording_figures``) and compare them with data derived independently: the
paper's formulas, anchors and matching written out from §4, a brute-force dependency count, the
package's inference run again, the loss history read from the shipped checkpoint with NumPy. The
model figures are made once from the shipped model; a tiny model serves the data functions' tests.
"""

import contextlib
import json
import re
import sys
from pathlib import Path

import matplotlib.style
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from numpy_retinanet.data.batching import collate
from numpy_retinanet.data.build import DataConfig, build_dataset
from numpy_retinanet.data.shapes import ShapesDataset
from numpy_retinanet.detection.boxes import box_iou
from numpy_retinanet.detection.criterion import assign_targets
from numpy_retinanet.detection.matcher import BACKGROUND, IGNORED, match_anchors
from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL, save_checkpoint
from numpy_retinanet.engine.inference import predict_dataset
from numpy_retinanet.evaluation import visualize
from numpy_retinanet.evaluation.coco import evaluate_detections
from numpy_retinanet.evaluation.visualize import DRAW_SCORE_THRESHOLD, PALETTE, draw_detections, save_figure
from numpy_retinanet.model.backbone import BasicBlock
from numpy_retinanet.model.heads import prior_bias
from numpy_retinanet.model.presets import PRESETS, STRIDES
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.modules import Conv2d, GroupNorm, ReLU, Sequential
from numpy_retinanet.teaching.figures import (
    FIGURE4_GAMMAS,
    FIGURES,
    GAMMAS,
    anchors_per_level_data,
    detections_data,
    figure_image,
    focal_loss_curves,
    focal_loss_gradient_curves,
    load_figure_model,
    loss_cdf_curves,
    make_figures,
    matched_anchors_data,
    nms_data,
    plot_anchors_per_level,
    plot_detections,
    plot_focal_loss_gradient,
    plot_focal_loss_vs_pt,
    plot_loss_cdf,
    plot_matched_anchors,
    plot_precision_recall,
    plot_receptive_field,
    plot_sigmoid_vs_softmax,
    precision_recall_data,
    preset_anchor_generator,
    receptive_field,
    receptive_field_data,
    register_figure,
    sigmoid_vs_softmax_data,
    softmax_with_background,
    train_figure_model,
)
from numpy_retinanet.teaching.figures.sigmoid_vs_softmax import EXAMPLES

COMMITTED = Path(__file__).resolve().parent.parent / "figures"
NAMES = ["focal_loss_vs_pt", "focal_loss_gradient"]
# Figures made from the code alone, quick enough to regenerate in every test run.
QUICK = [n for n, make in FIGURES.items() if not make.needs_model]
MODEL_FIGURES = ["detections", "training_curve", "figure4_loss_cdf", "nms_before_after", "precision_recall"]


def _same_bytes(a, b):
    """Whether two files hold the same bytes: a bool, so that a failing assert does not make pytest diff two
    PNGs byte by byte (minutes)."""
    return Path(a).read_bytes() == Path(b).read_bytes()


@contextlib.contextmanager
def recording_figures():
    """Yields a dict that collects every matplotlib Figure a registered figure saves, by the file's stem.

    ``save_figure`` is wrapped where the figure modules (and ``evaluation.visualize``, for the training
    curve) look it up, so a test reads back the artists (lines, patches, texts, images) of the very
    figure that was written, not of a second drawing made for the test.
    """
    drawn = {}

    def record(fig, path):
        drawn[Path(path).stem] = fig
        return save_figure(fig, path)

    modules = [visualize] + [m for name, m in list(sys.modules.items())
                             if name.startswith("numpy_retinanet.teaching.figures.")]
    with pytest.MonkeyPatch.context() as mp:
        for module in modules:
            if getattr(module, "save_figure", None) is save_figure:
                mp.setattr(module, "save_figure", record)
        yield drawn


def test_figure_1_data_is_ce_and_fl_of_p_t():
    curves = focal_loss_curves()
    p_t = curves["p_t"]
    assert p_t.min() > 0 and p_t.max() < 1 and p_t.size > 1000
    assert tuple(curves["fl"]) == GAMMAS == (0.0, 0.5, 1.0, 2.0, 5.0)  # the paper's Figure 1
    np.testing.assert_allclose(curves["ce"], -np.log(p_t), rtol=1e-10, atol=0)  # eq. 2
    for g, fl in curves["fl"].items():  # eq. 4
        np.testing.assert_allclose(fl, -((1 - p_t) ** g) * np.log(p_t), rtol=1e-10, atol=0, err_msg=g)


def test_figure_1_draws_exactly_its_data():
    curves = focal_loss_curves(gammas=(0.0, 2.0), p_t=np.array([0.1, 0.5, 0.9]))
    fig = plot_focal_loss_vs_pt(curves)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    expected = {r"CE $= -\log p_t$": curves["ce"],
                r"FL, $\gamma = 0$": curves["fl"][0.0], r"FL, $\gamma = 2$": curves["fl"][2.0]}
    assert set(lines) == set(expected)
    for label, y in expected.items():
        np.testing.assert_array_equal(lines[label].get_xdata(), curves["p_t"])
        np.testing.assert_array_equal(lines[label].get_ydata(), y)
    assert fig.axes[0].get_ylim() == (0.0, 5.0)


def test_gradient_figure_data_is_appendix_b():
    curves = focal_loss_gradient_curves()
    x = curves["x"]
    assert x.min() == -10 and x.max() == 10
    p = 1 / (1 + np.exp(-x))
    for g, grad in curves["grad"].items():
        np.testing.assert_allclose(grad, (1 - p) ** g * (g * p * np.log(p) + p - 1), rtol=1e-9, atol=0,
                                   err_msg=g)


def test_gradient_figure_draws_exactly_its_data():
    curves = focal_loss_gradient_curves(gammas=(0.0, 5.0), x=np.array([-3.0, 0.0, 3.0]))
    fig = plot_focal_loss_gradient(curves)
    drawn = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("FL")]
    assert len(drawn) == 2
    for line, grad in zip(drawn, curves["grad"].values()):
        np.testing.assert_array_equal(line.get_ydata(), grad)
    # the gamma = 5 dip below -1 stays inside the axes
    assert fig.axes[0].get_ylim()[0] < curves["grad"][5.0].min()


@pytest.mark.parametrize("target", [1, 0])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_gradient_data_is_appendix_b_on_both_branches_with_and_without_alpha(target, alpha):
    # Appendix B, dFL/dx = y' alpha_t (1 - p_t)^gamma (gamma p_t log p_t + p_t - 1), written out in p = sigmoid(x):
    #   y' = +1 (p_t = p, alpha_t = alpha):          alpha (1 - p)^gamma (gamma p log p + p - 1)
    #   y' = -1 (p_t = 1 - p, alpha_t = 1 - alpha):  (1 - alpha) p^gamma (p - gamma (1 - p) log(1 - p))
    x = np.linspace(-8.0, 8.0, 161)
    curves = focal_loss_gradient_curves(gammas=(0.0, 0.5, 2.0, 5.0), x=x, target=target, alpha=alpha)
    p = 1 / (1 + np.exp(-x))
    alpha_t = 1.0 if alpha is None else alpha if target == 1 else 1 - alpha
    for g, grad in curves["grad"].items():
        if target == 1:
            expected = alpha_t * (1 - p) ** g * (g * p * np.log(p) + p - 1)
        else:
            expected = alpha_t * p ** g * (p - g * (1 - p) * np.log(1 - p))
        np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=0, err_msg=g)
        # a positive's loss falls as its logit grows, a negative's rises
        assert np.all(grad < 0) if target == 1 else np.all(grad > 0)
    assert (curves["target"], curves["alpha"]) == (target, alpha)


def test_the_gradient_figure_draws_a_positive_only_and_says_so():
    negative = focal_loss_gradient_curves(x=np.array([-1.0, 1.0]), target=0, alpha=0.25)
    with pytest.raises(ValueError, match=r"curves must be a positive's without alpha \(target 1, alpha None\), "
                                         r"got target 0, alpha 0.25"):
        plot_focal_loss_gradient(negative)
    with pytest.raises(ValueError, match="target must be 0 or 1, got -1"):
        focal_loss_gradient_curves(target=-1)
    fig = plot_focal_loss_gradient(focal_loss_gradient_curves(x=np.array([-1.0, 1.0])))
    assert "positive ($y = 1$)" in fig.axes[0].get_xlabel()


def test_the_figure_1_written_draws_eq_2_and_eq_4_at_the_papers_gammas(quick_drawn):
    lines = {line.get_label(): line for line in quick_drawn["focal_loss_vs_pt"].axes[0].get_lines()}
    gammas = []
    for label, line in lines.items():
        p_t, loss = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        assert 0 < p_t.min() and p_t.max() < 1 and p_t.size > 1000
        if label == r"CE $= -\log p_t$":  # eq. 2
            np.testing.assert_allclose(loss, -np.log(p_t), rtol=1e-12, atol=0)
            continue
        g = float(re.fullmatch(r"FL, \$\\gamma = ([\d.]+)\$", label).group(1))  # eq. 4 at the gamma it names
        np.testing.assert_allclose(loss, -((1 - p_t) ** g) * np.log(p_t), rtol=1e-10, atol=0, err_msg=label)
        gammas.append(g)
    assert sorted(gammas) == [0.0, 0.5, 1.0, 2.0, 5.0] and len(lines) == 6  # Figure 1's five curves and CE


def test_the_gradient_figure_written_draws_appendix_b_for_a_positive(quick_drawn):
    ax = quick_drawn["focal_loss_gradient"].axes[0]
    gammas = []
    for line in ax.get_lines():
        match = re.fullmatch(r"FL, \$\\gamma = ([\d.]+)\$( \(= CE\))?", line.get_label())
        if match is None:  # the zero line
            assert set(line.get_ydata()) == {0.0}
            continue
        g = float(match.group(1))
        x, grad = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        p = 1 / (1 + np.exp(-x))
        np.testing.assert_allclose(grad, (1 - p) ** g * (g * p * np.log(p) + p - 1), rtol=1e-9, atol=0)
        if match.group(2):  # "(= CE)": the cross-entropy's gradient p - 1 = -1 / (1 + e^x)
            assert g == 0.0
            np.testing.assert_allclose(grad, -1 / (1 + np.exp(x)), rtol=1e-12, atol=0)
        assert ax.get_ylim()[0] < grad.min() and ax.get_ylim()[1] > grad.max()  # nothing clipped
        gammas.append(g)
    assert sorted(gammas) == [0.0, 0.5, 1.0, 2.0, 5.0]


@pytest.mark.parametrize("p_t", [np.array([0.0, 0.5]), np.array([0.5, 1.0]), np.array([[0.5]]), np.array([])])
def test_figure_1_refuses_p_t_outside_the_open_interval(p_t):
    with pytest.raises(ValueError, match="p_t"):
        focal_loss_curves(p_t=p_t)


@pytest.fixture(scope="module")
def two_renderings(tmp_path_factory):
    """The quick figures' PNGs made twice, and the Figures of the first making (``recording_figures``)."""
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    with recording_figures() as drawn:
        first = make_figures(a, only=QUICK)
    return first, make_figures(b, only=QUICK), drawn


@pytest.fixture(scope="module")
def quick_drawn(two_renderings):
    return two_renderings[2]


def test_every_figure_is_registered_and_only_the_model_figures_need_a_model():
    quick = NAMES + ["receptive_field", "anchors_per_level", "matched_anchors", "sigmoid_vs_softmax", "shapes_clutter"]
    assert list(FIGURES) == quick + MODEL_FIGURES
    assert QUICK == quick


def test_make_figures_writes_every_quick_figure(two_renderings):
    first, _, drawn = two_renderings
    assert [p.name for p in first] == [n + ".png" for n in QUICK]
    assert list(drawn) == QUICK  # each wrote one Figure, which the content tests below read back
    for p in first:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_regenerate_byte_identical(two_renderings):
    for p, q in zip(two_renderings[0], two_renderings[1]):
        assert _same_bytes(p, q), p.name


@pytest.mark.parametrize("name", QUICK)
def test_committed_figures_match_a_fresh_rendering(two_renderings, name):
    fresh = {p.name: p for p in two_renderings[0]}[name + ".png"]
    committed = COMMITTED / (name + ".png")
    assert committed.exists(), f"{committed} is missing: run `numpy-retinanet figures`"
    assert _same_bytes(fresh, committed), (
        f"{committed} is out of date (or was made with another matplotlib): run `numpy-retinanet figures`"
    )


def test_only_selects_and_unknown_names_are_refused(tmp_path):
    paths = make_figures(tmp_path, only=["focal_loss_gradient"])
    assert [p.name for p in paths] == ["focal_loss_gradient.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["focal_loss_gradient.png"]
    with pytest.raises(ValueError, match=r"only.*focal_loss_vs_pt.*no_such_figure"):
        make_figures(tmp_path, only=["no_such_figure"])
    with pytest.raises(ValueError, match=r"only"):
        make_figures(tmp_path, only=[])


def test_a_figure_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="focal_loss_vs_pt.*already registered"):
        register_figure("focal_loss_vs_pt")(lambda out_dir: out_dir)


# ----------------------------------------------------------------------------------------
# Anchors and matching
# ----------------------------------------------------------------------------------------


def test_anchors_per_level_are_the_generators_at_the_middle_location():
    data = anchors_per_level_data(image_size=128, preset="default")
    gen = data["generator"]
    assert [lv["shape"] for lv in data["levels"]] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    for lvl, lv in enumerate(data["levels"]):
        (h, w), s = lv["shape"], lv["stride"]
        i, j = lv["location"]
        assert (i, j) == ((h - 1) // 2, (w - 1) // 2) and s == gen.strides[lvl]
        # the centres are the patch centres ((j + 0.5) S, (i + 0.5) S), row-major
        cy, cx = np.meshgrid((np.arange(h) + 0.5) * s, (np.arange(w) + 0.5) * s, indexing="ij")
        np.testing.assert_allclose(lv["centers"], np.stack([cx.ravel(), cy.ravel()], 1))
        # the 9 anchors: that location's centre plus the cell anchors, so areas (size * scale)^2
        a = lv["anchors"]
        np.testing.assert_allclose(a, gen.cell_anchors(lvl) + [(j + .5) * s, (i + .5) * s] * 2, rtol=1e-12)
        areas = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        np.testing.assert_allclose(areas, np.tile((lv["size"] * np.asarray(gen.scales)) ** 2, 3), rtol=1e-9)


def test_anchors_figure_draws_exactly_each_levels_anchors():
    data = anchors_per_level_data()
    picture, _, _ = figure_image()
    fig = plot_anchors_per_level(data, picture)
    for ax, lv in zip(fig.axes, data["levels"]):
        rects = [p for p in ax.patches if isinstance(p, Rectangle)]
        drawn = np.array([[r.get_x(), r.get_y(), r.get_x() + r.get_width(), r.get_y() + r.get_height()]
                          for r in rects])
        np.testing.assert_allclose(drawn, lv["anchors"])
        x1, x2 = ax.get_xlim()
        assert x1 <= lv["anchors"][:, 0].min() and x2 >= lv["anchors"][:, 2].max()  # every anchor is in view


def test_matched_anchors_follow_the_rules_of_section_4():
    picture, target, _ = figure_image()
    gen = preset_anchor_generator()
    data = matched_anchors_data(picture, target, gen)
    m, best = data["matches"], data["best_iou"]
    anchors = gen.anchors(128, 128, dtype=np.float64)
    np.testing.assert_array_equal(m, match_anchors(anchors, target["boxes"].astype(np.float64)))
    np.testing.assert_allclose(best, box_iou(anchors, target["boxes"].astype(np.float64)).max(axis=1))
    assert np.all(m[best >= 0.5] >= 0) and np.all(m[best < 0.4] == BACKGROUND)
    assert np.all(m[(best >= 0.4) & (best < 0.5) & ~data["low_quality"]] == IGNORED)
    assert np.array_equal(data["low_quality"], (m >= 0) & (best < 0.5)) and data["low_quality"].any()
    counts = data["counts"]
    assert np.array_equal(np.sum([counts[k] for k in counts], axis=0), gen.level_sizes(128, 128))
    assert sum(counts["positive"]) == np.sum(m >= 0) and sum(counts["ignored"]) == np.sum(m == IGNORED)


def test_matched_figure_draws_every_positive_and_ignored_anchor():
    picture, target, names = figure_image()
    data = matched_anchors_data(picture, target, preset_anchor_generator())
    fig = plot_matched_anchors(data, picture, names)
    drawn = {(r.get_x(), r.get_y(), r.get_width(), r.get_height())
             for r in fig.axes[0].patches if isinstance(r, Rectangle)}
    shown = np.concatenate([data["anchors"][data["matches"] != BACKGROUND], data["boxes"]])
    assert drawn == {(a[0], a[1], a[2] - a[0], a[3] - a[1]) for a in shown.tolist()}


def _closed_form_anchors(image_size=128, preset="default"):
    """Every anchor of a square image written out from §4, not read from AnchorGenerator: level P_l has stride
    2^l and ceil(image_size / 2^l) locations a side; location (i, j) is centred at ((j + 0.5) 2^l, (i + 0.5) 2^l)
    and holds, per ratio r = h / w and scale s, an anchor of area (size_l s)^2: w = size_l s / sqrt(r),
    h = size_l s sqrt(r). Ordered level, row, column, ratio, scale.

    Returns (M, 4) float64 boxes and (M, 5) int: level index (0 for P3), row, column, ratio index, scale index.
    """
    cfg = PRESETS[preset]
    boxes, where = [], []
    for lvl, size in enumerate(cfg["anchor_sizes"]):
        stride = 2 ** (lvl + 3)
        n = -(-image_size // stride)
        for i in range(n):
            for j in range(n):
                cx, cy = (j + 0.5) * stride, (i + 0.5) * stride
                for ri, r in enumerate(cfg["aspect_ratios"]):
                    for si, scale in enumerate(cfg["scales"]):
                        w, h = size * scale / np.sqrt(r), size * scale * np.sqrt(r)
                        boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
                        where.append((lvl, i, j, ri, si))
    return np.array(boxes), np.array(where)


def _drawn_boxes(ax):
    """The rectangles of ``ax`` as (n, 4) boxes (x1, y1, x2, y2), and the patches themselves."""
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    return np.array([[r.get_x(), r.get_y(), r.get_x() + r.get_width(), r.get_y() + r.get_height()]
                     for r in rects]).reshape(-1, 4), rects


def _same_boxes(drawn, expected):
    """For each drawn box, the row of ``expected`` it is (to 1e-9 px); every row of ``expected`` drawn once."""
    assert len(drawn) == len(expected)
    rows = [int(np.argmin(np.abs(expected - box).max(axis=1))) for box in drawn]
    np.testing.assert_allclose(drawn, expected[rows], rtol=0, atol=1e-9)
    assert sorted(rows) == list(range(len(expected)))
    return rows


def _iou(a, b):
    """IoU of every box of ``a`` (n, 4) with every box of ``b`` (m, 4), written out: the tests' own."""
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    area_a, area_b = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return iw * ih / (area_a[:, None] + area_b[None, :] - iw * ih)


def _rules_of_section_4(iou):
    """Each anchor's label read off its IoU with the boxes (anchors x boxes) by §4's rules: best IoU >= 0.5 takes
    its best box (the lowest index on a tie), < 0.4 is background (-1), in between ignored (-2); then every anchor
    that reaches a box's highest IoU (when above 0) is made positive, taking its own best box."""
    if iou.shape[1] == 0:
        return np.full(len(iou), -1)
    best, top = iou.argmax(axis=1), iou.max(axis=1)
    labels = np.where(top >= 0.5, best, np.where(top < 0.4, -1, -2))
    for g in range(iou.shape[1]):
        reach = (iou[:, g] == iou[:, g].max()) & (iou[:, g] > 0)
        labels[reach] = best[reach]
    return labels


def test_the_anchors_figure_written_draws_each_levels_middle_anchors_and_every_centre(quick_drawn):
    fig = quick_drawn["anchors_per_level"]
    boxes, where = _closed_form_anchors()
    legend = {h.get_label(): h for h in fig.legends[0].legend_handles}
    sizes, scales = PRESETS["default"]["anchor_sizes"], PRESETS["default"]["scales"]
    for lvl, ax in enumerate(fig.axes):
        mine = where[:, 0] == lvl
        n = where[mine, 1].max() + 1
        middle = mine & (where[:, 1] == (n - 1) // 2) & (where[:, 2] == (n - 1) // 2)
        drawn, rects = _drawn_boxes(ax)
        _same_boxes(drawn, boxes[middle])
        for box, rect in zip(drawn, rects):  # the legend tells each anchor's ratio by colour, its scale by width
            w, h = box[2:] - box[:2]
            ratio = {0.5: "1:2", 1.0: "1:1", 2.0: "2:1"}[min((0.5, 1.0, 2.0), key=lambda r: abs(h / w - r))]
            assert rect.get_edgecolor() == to_rgba(legend[f"ratio h:w = {ratio}"].get_color())
            scale = min(scales, key=lambda s: abs(np.sqrt(w * h) / sizes[lvl] - s))
            assert rect.get_linewidth() == legend[f"scale {scale:.3g}"].get_linewidth()
        (dots,) = [line for line in ax.get_lines() if line.get_marker() == "o"]
        first = boxes[mine & (where[:, 3] == 0) & (where[:, 4] == 0)]  # one anchor per location
        centres = (first[:, :2] + first[:, 2:]) / 2
        np.testing.assert_allclose(np.stack([dots.get_xdata(), dots.get_ydata()], 1), centres, rtol=0, atol=1e-9)
        assert len(centres) == n * n and ax.get_title().startswith(f"P{lvl + 3}: stride {2 ** (lvl + 3)}, {n}x{n}")


def test_the_matched_anchors_figure_written_draws_the_labels_of_section_4(quick_drawn):
    fig = quick_drawn["matched_anchors"]
    picture_ax, bars = fig.axes
    _, target, names = figure_image()
    gt = target["boxes"].astype(np.float64)
    anchors, where = _closed_form_anchors()
    iou = _iou(anchors, gt)
    labels = _rules_of_section_4(iou)
    drawn, rects = _drawn_boxes(picture_ax)
    is_gt = np.array([r.get_edgecolor() == to_rgba("black") and r.get_linewidth() == 2.6 for r in rects])
    _same_boxes(drawn[is_gt], gt)
    shown = np.flatnonzero(labels != -1)  # positive and ignored anchors; background is not drawn
    rows = _same_boxes(drawn[~is_gt], anchors[shown])
    with matplotlib.style.context("default"):  # the figures' style: C0, C1, ... its colour cycle
        box_colour = [to_rgba(f"C{g}") for g in range(len(gt))]
    for a, rect in zip(shown[rows], np.array(rects, dtype=object)[~is_gt]):
        if labels[a] == -2:  # ignored: dashed grey
            assert rect.get_linestyle() == "--" and 0.4 <= iou[a].max() < 0.5
        else:  # positive: the colour of its box; dotted when only the low-quality rule made it positive
            assert rect.get_edgecolor() == box_colour[labels[a]]
            assert rect.get_linestyle() == (":" if iou[a].max() < 0.5 else "-")
    # the bars: anchors per level and kind, and the totals in the legend and the title
    counts = {kind: [int(np.sum((where[:, 0] == lvl) & test)) for lvl in range(5)]
              for kind, test in (("positive", labels >= 0), ("ignored", labels == -2), ("background", labels == -1))}
    for container, (kind, per_level) in zip(bars.containers, counts.items()):
        heights = [r.get_height() for r in container]
        np.testing.assert_array_equal(heights, [n if n else np.nan for n in per_level])
        assert container.get_label() == f"{kind}: {sum(per_level)}"
    assert (f"{sum(counts['positive'])} positive, {sum(counts['ignored'])} ignored, "
            f"{sum(counts['background'])} background") in fig._suptitle.get_text()
    for g, label in enumerate(target["labels"]):
        n = int(np.sum(labels == g))
        assert any(t.get_text().startswith(f"box {g}: {names[label]}: {n} positive anchor")
                   for t in picture_ax.get_legend().get_texts())


# ----------------------------------------------------------------------------------------
# Receptive fields: each level's stride and window, against a brute-force dependency count
# ----------------------------------------------------------------------------------------


def _conv_reads(conv, reads):
    """Forward through ``conv`` along one axis: which image pixels each output pixel depends on.
    ``reads`` is (n, L) bool, row i = the pixels input pixel i depends on; zero padding reads nothing."""
    k, s, p = conv.params["weight"].shape[-1], conv.stride, conv.padding
    n_out = (len(reads) + 2 * p - k) // s + 1
    out = np.zeros((n_out, reads.shape[1]), dtype=bool)
    for o in range(n_out):
        for t in range(k):
            if 0 <= s * o - p + t < len(reads):
                out[o] |= reads[s * o - p + t]
    return out


def _forward_reads(module, reads):
    if isinstance(module, Conv2d):
        return _conv_reads(module, reads)
    if isinstance(module, Sequential):
        for layer in module.layers:
            reads = _forward_reads(layer, reads)
        return reads
    if isinstance(module, BasicBlock):
        skip = _forward_reads(module.shortcut, reads) if module.shortcut is not None else reads
        return _forward_reads(module.branch, reads) | skip
    assert isinstance(module, (ReLU, GroupNorm))
    return reads


def _pyramid_reads(model, length, top_down=True):
    """P3..P7's dependencies on a 1-D image of ``length`` pixels, computed forwards, layer by layer."""
    bb, fpn = model.backbone, model.fpn
    c3 = _forward_reads(bb.stage2, _forward_reads(bb.stage1, _forward_reads(bb.stem, np.eye(length, dtype=bool))))
    c4 = _forward_reads(bb.stage3, c3)
    c5 = _forward_reads(bb.stage4, c4)
    m5 = _forward_reads(fpn.lateral5, c5)
    m4 = _forward_reads(fpn.lateral4, c4)
    if top_down:
        m4 = m4 | np.repeat(m5, 2, axis=0)[:len(m4)]  # nearest x2, cropped
    m3 = _forward_reads(fpn.lateral3, c3)
    if top_down:
        m3 = m3 | np.repeat(m4, 2, axis=0)[:len(m3)]
    p5 = _forward_reads(fpn.output5, m5)
    p6 = _forward_reads(fpn.p6, c5 if fpn.p6_from == "c5" else p5)
    return [_forward_reads(fpn.output3, m3), _forward_reads(fpn.output4, m4), p5, p6, _forward_reads(fpn.p7, p6)]


def _brute_force_fields(model, top_down):
    """P3..P7's (stride, receptive field) from the dependency count: the spacing of two neighbouring windows
    and the largest window over 32 middle locations (as LOCATIONS), none of which touches the border."""
    length = 128 * 40  # P7 gets 40 locations: 32 in the middle whose windows (< 5 x 128 px) miss the border
    fields = []
    for reads in _pyramid_reads(model, length, top_down):
        middle = range(len(reads) // 2 - 16, len(reads) // 2 + 16)
        spans = [np.flatnonzero(reads[i]) for i in middle]
        assert all(0 < sp[0] and sp[-1] < length - 1 for sp in spans)  # no window touches the border
        fields.append((spans[1][0] - spans[0][0], max(sp[-1] - sp[0] + 1 for sp in spans)))
    return fields


@pytest.mark.parametrize("preset", ["default", "tiny"])
def test_receptive_fields_match_a_brute_force_dependency_count(preset):
    model = RetinaNet(3, preset=preset)
    for top_down in (True, False):
        for lvl, (stride, rf) in enumerate(_brute_force_fields(model, top_down)):
            assert receptive_field(model, lvl + 3, top_down=top_down)[1] == rf, (preset, top_down, lvl)
            if not top_down:
                assert receptive_field(model, lvl + 3, top_down=False)[0] == stride == STRIDES[lvl]


def test_bottom_up_receptive_fields_follow_the_recurrence():
    # r grows by (k - 1) times the stride so far at each conv of the path: image -> C_l -> P_l
    model = RetinaNet(3, preset="default")
    bb, fpn = model.backbone, model.fpn
    stages = [bb.stem, bb.stage1, bb.stage2, bb.stage3, bb.stage4]

    def path_convs(module):  # the convs of the branch of each block (the longest path), in order
        if isinstance(module, Conv2d):
            return [module]
        if isinstance(module, BasicBlock):
            return path_convs(module.branch)
        if isinstance(module, Sequential):
            return [c for layer in module.layers for c in path_convs(layer)]
        return []

    c_path = {3: stages[:3], 4: stages[:4], 5: stages[:5]}
    paths = {lvl: [c for m in c_path[lvl] for c in path_convs(m)] + [getattr(fpn, f"lateral{lvl}"),
                                                                      getattr(fpn, f"output{lvl}")]
             for lvl in (3, 4, 5)}
    paths[6] = [c for m in stages for c in path_convs(m)] + [fpn.p6]
    paths[7] = paths[6] + [fpn.p7]
    for lvl, convs in paths.items():
        r, j = 1, 1
        for conv in convs:
            r += (conv.params["weight"].shape[-1] - 1) * j
            j *= conv.stride
        assert receptive_field(model, lvl, top_down=False) == (j, r) and j == STRIDES[lvl - 3]
    assert [receptive_field(model, lvl, top_down=False)[1] for lvl in (3, 4, 5)] == [55, 119, 247]


def test_receptive_field_data_places_each_shape_on_its_best_anchors_level():
    data = receptive_field_data("default", image_size=128, num_images=30)
    gen = preset_anchor_generator("default")
    anchors = gen.anchors(128, 128, dtype=np.float64)
    first = np.cumsum([0] + gen.level_sizes(128, 128))
    expected = [[] for _ in STRIDES]
    for _, target in build_dataset(DataConfig(image_size=128), "train", num_images=30):
        for x1, y1, x2, y2 in target["boxes"].astype(np.float64):
            inter = (np.clip(np.minimum(anchors[:, 2], x2) - np.maximum(anchors[:, 0], x1), 0, None)
                     * np.clip(np.minimum(anchors[:, 3], y2) - np.maximum(anchors[:, 1], y1), 0, None))
            union = (x2 - x1) * (y2 - y1) + (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1]) - inter
            best = int(np.argmax(inter / union))
            expected[int(np.searchsorted(first, best, side="right")) - 1].append(np.sqrt((x2 - x1) * (y2 - y1)))
    for lvl, lv in enumerate(data["levels"]):
        np.testing.assert_allclose(lv["objects"], np.sort(expected[lvl]), rtol=1e-12)
        size, scales = PRESETS["default"]["anchor_sizes"][lvl], PRESETS["default"]["scales"]
        # sides size * scale / sqrt(r) and size * scale * sqrt(r) for r = h / w in {1/2, 1, 2}
        np.testing.assert_allclose(lv["anchor_sides"], (size * min(scales) / np.sqrt(2), size * max(scales) * np.sqrt(2)))
        assert lv["stride"] == STRIDES[lvl] and lv["rf"] >= lv["rf_bottom_up"]
    # small shapes go to the fine levels: every shape on P3 is smaller than every shape on P5
    assert data["levels"][0]["objects"].max() < data["levels"][2]["objects"].min()


def test_receptive_field_figure_draws_exactly_its_data():
    shapes = receptive_field_data("tiny", image_size=64, num_images=4)
    paper = receptive_field_data("tiny", image_size=64, num_images=0)
    fig = plot_receptive_field(shapes, paper)
    for ax, data in zip(fig.axes, (shapes, paper)):
        markers = {line.get_marker(): line for line in ax.get_lines() if line.get_marker() in ("v", "_")}
        filled = [line for line in ax.get_lines() if line.get_marker() == "v" and line.get_color() != "white"]
        assert len(filled) == 1
        np.testing.assert_array_equal(filled[0].get_ydata(), [lv["rf"] for lv in data["levels"]])
        np.testing.assert_array_equal(markers["_"].get_ydata(), [lv["stride"] for lv in data["levels"]])
        dots = np.concatenate([line.get_ydata() for line in ax.get_lines() if line.get_marker() == "o"] or [[]])
        np.testing.assert_array_equal(dots, np.concatenate([lv["objects"] for lv in data["levels"]]))


def test_the_receptive_field_figure_written_draws_the_counted_fields_anchors_and_shapes(quick_drawn):
    fig = quick_drawn["receptive_field"]
    train = build_dataset(DataConfig(image_size=128), "train", num_images=200)  # the left panel's shapes
    sides = [np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])) for b in (t["boxes"].astype(np.float64) for _, t in train)]
    for ax, preset, size in zip(fig.axes, ("default", "paper"), (128, 800)):
        lines = ax.get_lines()
        counted = {top_down: _brute_force_fields(RetinaNet(3, preset=preset), top_down) for top_down in (True, False)}
        filled = [line for line in lines if line.get_marker() == "v" and line.get_color() != "white"]
        hollow = [line for line in lines if line.get_marker() == "v" and line.get_color() == "white"]
        ticks = [line for line in lines if line.get_marker() == "_"]
        assert len(filled) == len(hollow) == len(ticks) == 1
        np.testing.assert_array_equal(filled[0].get_ydata(), [rf for _, rf in counted[True]])
        np.testing.assert_array_equal(hollow[0].get_ydata(), [rf for _, rf in counted[False]])
        np.testing.assert_array_equal(ticks[0].get_ydata(), [stride for stride, _ in counted[False]])
        np.testing.assert_array_equal(ticks[0].get_ydata(), [2 ** l for l in range(3, 8)])  # stride 2^l on P_l
        # the anchor bars: sides size * scale / sqrt(r) .. size * scale * sqrt(r), r = h / w in {1/2, 1, 2}
        bars = [line for line in lines if line.get_linewidth() == 9]
        scales = PRESETS[preset]["scales"]
        expected = [(a * min(scales) / np.sqrt(2), a * max(scales) * np.sqrt(2)) for a in PRESETS[preset]["anchor_sizes"]]
        np.testing.assert_allclose([line.get_ydata() for line in bars], expected, rtol=1e-12)
        assert [line.get_ydata()[0] for line in lines if line.get_linestyle() == "--"] == [size]  # the image's side
        dots = [line for line in lines if line.get_marker() == "o"]
        if preset == "paper":
            assert dots == []
            continue
        # every shape of the 200 training images is one dot, in the column whose label counts it
        np.testing.assert_allclose(np.sort(np.concatenate([d.get_ydata() for d in dots])), np.sort(np.concatenate(sides)))
        per_level = [sum(int(np.sum(np.round(d.get_xdata()) == lvl)) for d in dots) for lvl in range(5)]
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == [f"P{lvl + 3}\n{n} shapes" for lvl, n in enumerate(per_level)]


def test_receptive_field_refuses_a_level_outside_the_pyramid():
    with pytest.raises(ValueError, match="level must be one of 3..7"):
        receptive_field(RetinaNet(3, preset="tiny"), 2)


# ----------------------------------------------------------------------------------------
# The classification output: K sigmoids beside a softmax with background
# ----------------------------------------------------------------------------------------


def test_sigmoid_vs_softmax_data_are_the_closed_forms():
    data = sigmoid_vs_softmax_data()
    x = data["logits"]
    assert x.shape == (4, 3) and data["class_names"] == ("circle", "square", "triangle")
    np.testing.assert_allclose(data["sigmoid"], 1 / (1 + np.exp(-x)), rtol=1e-12)
    e = np.exp(x)
    expected = np.concatenate([e, np.ones((len(x), 1))], axis=1) / (1 + e.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(data["softmax"], expected, rtol=1e-12)
    # against the background alone, a class's softmax share is its sigmoid: e^x / (e^x + e^0)
    np.testing.assert_allclose(data["softmax"][:, :3] / (data["softmax"][:, :3] + data["softmax"][:, 3:]),
                               data["sigmoid"], rtol=1e-12)
    np.testing.assert_allclose(data["sigmoid"][0], 0.01, rtol=1e-9)  # the first example sits at the prior
    assert np.allclose(x[0], prior_bias(0.01))


def test_softmax_with_background_is_stable_and_checks_its_input():
    p = softmax_with_background(np.array([[1000.0, 0.0], [-1000.0, -1000.0]]))
    np.testing.assert_allclose(p, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], atol=1e-300)
    with pytest.raises(ValueError, match="logits"):
        softmax_with_background(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="examples must each give 3 logits"):
        sigmoid_vs_softmax_data(examples=[("two", (1.0, 2.0))])


def test_sigmoid_vs_softmax_figure_draws_exactly_its_data():
    data = sigmoid_vs_softmax_data()
    fig = plot_sigmoid_vs_softmax(data)
    for ax, probs in zip(fig.axes, (data["sigmoid"], data["softmax"])):
        heights = [bar.get_height() for bar in ax.patches]  # column by column
        np.testing.assert_array_equal(heights, probs.T.ravel())
        sums = [t.get_text() for t in ax.texts if t.get_text().startswith("sum")]
        assert sums == [f"sum {s:.2f}" for s in probs.sum(axis=1)]


def test_the_sigmoid_vs_softmax_figure_written_draws_the_closed_forms_of_its_logits(quick_drawn):
    left, right = quick_drawn["sigmoid_vs_softmax"].axes
    x = np.array([logits for _, logits in EXAMPLES])
    sig = 1 / (1 + np.exp(-x))
    soft = np.concatenate([np.exp(x), np.ones((len(x), 1))], axis=1) / (1 + np.exp(x).sum(axis=1, keepdims=True))
    for ax, probs in ((left, sig), (right, soft)):
        np.testing.assert_allclose([bar.get_height() for bar in ax.patches], probs.T.ravel(), rtol=1e-12)
        values = [t.get_text() for t in ax.texts if not t.get_text().startswith("sum")]
        assert values == [f"{p:.2f}" for p in probs.T.ravel()]
        assert [t.get_text() for t in ax.texts if t.get_text().startswith("sum")] == [f"sum {v:.2f}" for v in probs.sum(1)]
    assert [t.get_text().split("\n")[0] for t in left.get_xticklabels()] == [label for label, _ in EXAMPLES]


# ----------------------------------------------------------------------------------------
# Figure 4 and the model figures, on a tiny untrained model
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_curves():
    model = RetinaNet(3, preset="tiny", seed=0)
    # Fresh from the prior, every output is p ~ 0.01 and gamma would barely reorder anything;
    # larger last-layer weights spread the logits as training does.
    model.cls_head.subnet.layers[-1].params["weight"][...] *= 300
    dataset = ShapesDataset(6, image_size=64, num_classes=3, seed=1000)
    return model, dataset, loss_cdf_curves(model, dataset, gammas=FIGURE4_GAMMAS, batch_size=4)


def test_figure4_curves_are_cumulative_shares_ordered_by_gamma(tiny_curves):
    _, _, curves = tiny_curves
    q = curves["fraction"]
    assert q[0] == 0.0 and q[-1] == 1.0 and np.all(np.diff(q) > 0)
    assert curves["gammas"] == FIGURE4_GAMMAS == (0.0, 0.5, 1.0, 2.0)
    for kind in ("positive", "negative"):
        for g in FIGURE4_GAMMAS:
            c = curves[kind][g]
            assert c[0] == 0.0 and c[-1] == 1.0 and np.all(np.diff(c) >= 0)
            assert np.all(c <= q + 1e-12)  # sorted lowest first: the first x% hold at most x%
        # a higher gamma multiplies the harder samples' loss by more, so its curve lies lower
        for lo, hi in zip(FIGURE4_GAMMAS[:-1], FIGURE4_GAMMAS[1:]):
            assert np.all(curves[kind][hi] <= curves[kind][lo] + 1e-9)
        assert np.any(curves[kind][2.0] < curves[kind][0.0] - 1e-3)


def test_figure4_curves_are_the_focal_loss_of_the_models_outputs(tiny_curves):
    model, dataset, curves = tiny_curves
    images, targets = collate([dataset[i] for i in range(len(dataset))])
    # the same batches as the fixture's batch_size=4: float32 sums depend on the batch shape
    logits = np.concatenate([model.forward(images[:4], keep_cache=False)[0],
                             model.forward(images[4:], keep_cache=False)[0]])
    cls_t, _, positive, valid = assign_targets(model.anchors(64, 64), targets, 3)
    pos = logits[cls_t == 1].astype(np.float64)
    neg = logits[valid & ~positive].ravel().astype(np.float64)
    assert curves["num_positive"] == positive.sum() == pos.size
    assert curves["num_negative"] == 3 * (valid & ~positive).sum() == neg.size
    for kind, x, y in (("positive", pos, 1.0), ("negative", neg, 0.0)):
        p_t = 1 / (1 + np.exp(-x)) if y == 1 else 1 / (1 + np.exp(x))
        for g in FIGURE4_GAMMAS:
            fl = np.sort(-((1 - p_t) ** g) * np.log(p_t))  # eq. 4
            assert np.isclose(curves["loss_sum"][kind][g], fl.sum(), rtol=1e-9)
            for i in np.searchsorted(curves["fraction"], [0.3, 0.9, 0.999]):
                k = int(np.floor(curves["fraction"][i] * len(fl)))
                assert np.isclose(curves[kind][g][i], fl[:k].sum() / fl.sum(), rtol=1e-9, atol=1e-15)


def test_figure4_refuses_a_bad_grid(tiny_curves):
    model, dataset, _ = tiny_curves
    with pytest.raises(ValueError, match="fractions"):
        loss_cdf_curves(model, dataset, fractions=np.array([0.1, 0.5, 1.0]))


def test_figure4_draws_exactly_its_data(tiny_curves):
    _, _, curves = tiny_curves
    fig = plot_loss_cdf(curves, "caption")
    for ax, kind in zip(fig.axes, ("positive", "negative")):
        lines = {line.get_label(): line for line in ax.get_lines() if line.get_label().startswith("$")}
        assert len(lines) == len(FIGURE4_GAMMAS)
        for g in FIGURE4_GAMMAS:
            np.testing.assert_array_equal(lines[rf"$\gamma = {g:g}$"].get_ydata(), curves[kind][g])
    assert "caption" in fig._suptitle.get_text()


def test_detections_figure_draws_one_panel_per_image(tiny_curves):
    model, dataset, _ = tiny_curves
    data = detections_data(model, dataset, [0, 2, 3])
    assert [d["picture"].shape for d in data] == [(64, 64, 3)] * 3
    assert all(len(d["detections"]["boxes"]) == len(d["detections"]["scores"]) for d in data)
    fig = plot_detections(data, dataset.class_names, "title", columns=2)
    assert len(fig.axes) == 4 and [len(ax.images) for ax in fig.axes] == [1, 1, 1, 0]
    n_gt = [sum(isinstance(p, Rectangle) for p in ax.patches) for ax in fig.axes[:3]]
    assert n_gt == [len(d["target"]["boxes"]) for d in data]  # dashed ground truth


TINY_RUN = dict(preset="tiny", image_size=64, iterations=3, batch_size=2, warmup_steps=1, train_images=4)


def test_the_figure_model_trains_with_overrides_and_says_what_it_is():
    trained = train_figure_model(log=lambda line: None, **TINY_RUN)
    assert trained.step == 3 and len(trained.history["total"]) == 3
    assert trained.caption() == "RetinaNet 'tiny' preset, 3 steps x 2 images, seed 0 (trained by numpy-retinanet figures)"
    held_out = trained.held_out(num_images=5)
    assert len(held_out) == 5 and held_out.image_size == 64 and held_out.seed == 1000


def test_a_model_figure_refuses_to_run_without_a_model(tmp_path):
    with pytest.raises(ValueError, match="'detections' needs a trained model"):
        FIGURES["detections"](tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_model_figures_from_a_checkpoint(tmp_path):
    from numpy_retinanet.engine.config import TrainConfig
    from numpy_retinanet.engine.trainer import train

    train(TrainConfig(**TINY_RUN, eval_images=0), tmp_path / "run", log=lambda line: None)
    ckpt = tmp_path / "run" / "checkpoint.npz"
    assert load_figure_model(ckpt).source == str(ckpt)
    paths = make_figures(tmp_path / "out", only=["training_curve"], checkpoint=ckpt)
    assert [p.name for p in paths] == ["training_curve.png"] and paths[0].read_bytes()[:4] == b"\x89PNG"
    bare = tmp_path / "bare.npz"
    save_checkpoint(bare, RetinaNet(3, preset="tiny"))
    with pytest.raises(ValueError, match="no loss history"):
        load_figure_model(bare)


# ----------------------------------------------------------------------------------------
# The committed model figures: drawn from the shipped model (loaded, not trained)
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def figure_model():
    return load_figure_model(SHIPPED_MODEL)


def test_the_model_figures_are_drawn_from_the_shipped_model(figure_model):
    assert figure_model.source == "the shipped model"
    assert figure_model.caption() == "RetinaNet 'default' preset, 4000 steps x 8 images, seed 0 (the shipped model)"


@pytest.fixture(scope="module")
def model_renderings(figure_model, tmp_path_factory):
    """The model figures made once from the shipped model: their PNGs, and their Figures (``recording_figures``)."""
    out = tmp_path_factory.mktemp("model_figures")
    with recording_figures() as drawn:
        paths = [FIGURES[name](out, figure_model) for name in MODEL_FIGURES]
    assert list(drawn) == MODEL_FIGURES
    return paths, drawn


@pytest.fixture(scope="module")
def model_drawn(model_renderings):
    return model_renderings[1]


def test_figure4_written_shows_the_papers_finding_on_the_samples_of_section_4(model_drawn, figure_model):
    fig = model_drawn["figure4_loss_cdf"]
    curves, q = {}, None
    for ax, kind in zip(fig.axes, ("positive", "negative")):
        lines = {line.get_label(): line for line in ax.get_lines()}
        q = np.asarray(lines[r"$\gamma = 0$"].get_xdata())
        curves[kind] = {g: np.asarray(lines[rf"$\gamma = {g:g}$"].get_ydata()) for g in FIGURE4_GAMMAS}
        assert q[0] == 0 and q[-1] == 1 and np.all(np.diff(q) > 0) and len(lines) == len(FIGURE4_GAMMAS) + 1
        for g, c in curves[kind].items():  # cumulative shares of a loss sorted lowest first
            assert c[0] == 0 and c[-1] == 1 and np.all(np.diff(c) >= 0) and np.all(c <= q + 1e-12), (kind, g)

    def hardest(kind, gamma, top):
        return 1 - curves[kind][gamma][np.searchsorted(q, 1 - top)]

    def area(kind):
        return np.trapezoid(curves[kind][0.0] - curves[kind][2.0], q)

    # §5.1 (PAPER.md): for the positives the hardest ~20% carry about half the loss; at gamma 2 nearly all
    # of the negatives' loss comes from a tiny fraction of them; gamma moves the negatives more
    assert 0.45 < hardest("positive", 0.0, 0.2) < 0.6
    assert hardest("negative", 0.0, 0.01) < 0.2 and hardest("negative", 2.0, 0.01) > 0.9
    assert hardest("positive", 2.0, 0.01) < 0.15
    assert area("negative") > 1.5 * area("positive")
    # the samples: on the 200 held-out images, one per positive anchor (its box's class) and K = 3 per
    # background anchor, by §4's rules on the tests' own anchors and IoU; the model's anchors are float32, the
    # nearest float32 to each corner (in float64, one anchor of image 154 has IoU 0.5 exactly, in float32 less)
    anchors = _closed_form_anchors()[0].astype(np.float32).astype(np.float64)
    labels = np.concatenate([_rules_of_section_4(_iou(anchors, target["boxes"].astype(np.float64)))
                             for _, target in figure_model.held_out()])
    assert [ax.get_title() for ax in fig.axes] == [f"positive samples ({np.sum(labels >= 0):,})",
                                                    f"negative samples ({3 * np.sum(labels == -1):,})"]


def test_committed_model_figures_match_a_fresh_rendering(model_renderings):
    for fresh in model_renderings[0]:
        assert _same_bytes(fresh, COMMITTED / fresh.name), (
            f"figures/{fresh.name} is out of date: run `numpy-retinanet figures`")


def _outline(box, scale, shape):
    """The middle line of a box's outline as ``draw_detections`` draws it (``scale`` px wide, inside the box
    magnified ``scale`` times; the middle line on either rounding of a corner), corners left out: a bool mask."""
    x1, y1, x2, y2 = (int(np.floor(v * scale)) for v in box)
    top, bottom, left, right = y1 + 1, y2 - 2, x1 + 1, x2 - 2
    mask = np.zeros(shape, dtype=bool)
    mask[[top, bottom], left + scale:right - scale + 1] = True
    mask[top + scale:bottom - scale + 1, [left, right]] = True
    return mask


def _label_band(box, scale, shape):
    """Where ``draw_detections`` may write a box's label (at most 14 px high, from 11 px above the box's top):
    above the box and to its right, down to 2 px into the box's top edge; for a box near the top of the picture,
    at the top of the picture."""
    x1, y1 = (int(np.floor(v * scale)) for v in box[:2])
    mask = np.zeros(shape, dtype=bool)
    mask[max(y1 - 14, 0):max(y1, 14) + 3, x1:] = True
    return mask


def _footprint(box, scale, shape):
    """Every pixel ``draw_detections`` may paint for a box: its outline (1 px of slack each side) and its label."""
    x1, y1, x2, y2 = (int(np.floor(v * scale)) for v in box)
    mask = np.zeros(shape, dtype=bool)
    mask[max(y1 - 1, 0):y2 + 2, max(x1 - 1, 0):x2 + 2] = True
    mask[y1 + scale + 2:y2 - scale - 1, x1 + scale + 2:x2 - scale - 1] = False
    return mask | _label_band(box, scale, shape)


def test_the_detections_figure_written_draws_the_detections_the_model_returns(model_drawn, figure_model):
    fig = model_drawn["detections"]
    held_out = figure_model.held_out(num_images=8)  # the figure's 8 pictures (image i depends on (seed, i) only)
    detections, _ = predict_dataset(figure_model.model, held_out)  # the package's inference, run again here
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == len(detections) == 8 and len(fig.axes) == 8
    for k, (ax, dets) in enumerate(zip(panels, detections)):
        picture, target = held_out.raw(k)
        shown = np.asarray(ax.images[0].get_array())
        assert shown.shape == (3 * 128, 3 * 128, 3)
        # exactly the drawing of these detections: boxes, class names and scores >= 0.3
        np.testing.assert_array_equal(shown, np.asarray(draw_detections(picture, dets, held_out.class_names, scale=3)))
        # and, read from the pixels alone: each detection scored >= 0.3 shows its class's colour wherever its
        # outline is in view, not under its own label or a higher-scored detection (drawn later, on top); one
        # anchor's box detected in two classes is one box, the higher class on top
        drawn = np.flatnonzero(dets["scores"] >= DRAW_SCORE_THRESHOLD)
        assert len(drawn) >= 1 and np.all(np.diff(dets["scores"]) <= 0)
        checked = 0
        for n, i in enumerate(drawn):
            covered = np.any([_footprint(dets["boxes"][j], 3, shown.shape[:2]) for j in drawn[:n]], axis=0)
            visible = _outline(dets["boxes"][i], 3, shown.shape[:2]) & ~covered & ~_label_band(dets["boxes"][i], 3,
                                                                                              shown.shape[:2])
            if visible.sum() >= 20:
                share = np.mean(np.all(shown[visible] == PALETTE[dets["labels"][i]], axis=1))
                assert share > 0.9, (k, i, share)
                checked += 1
        assert checked >= 1
        # nothing drawn where no detection is: outside the footprints of the drawn boxes the picture is the
        # image magnified 3 times
        untouched = ~np.any([_footprint(dets["boxes"][i], 3, shown.shape[:2]) for i in drawn], axis=0)
        magnified = picture.repeat(3, axis=0).repeat(3, axis=1)
        np.testing.assert_array_equal(shown[untouched], magnified[untouched])
        # the ground truth, dashed white, in the magnified picture's pixels
        gt_drawn, rects = _drawn_boxes(ax)
        _same_boxes(gt_drawn, target["boxes"].astype(np.float64) * 3)
        assert all(r.get_linestyle() == "--" and r.get_edgecolor() == to_rgba("white") for r in rects)


def test_the_training_curve_written_draws_the_loss_history_saved_with_the_shipped_model(model_drawn):
    ax = model_drawn["training_curve"].axes[0]
    with np.load(SHIPPED_MODEL, allow_pickle=False) as z:  # read here with NumPy, not with the package's loader
        meta = json.loads(str(z["meta"]))
    history = meta["extra"]["history"]
    steps = np.asarray(history["step"], dtype=np.float64)
    assert len(steps) == meta["step"] == 4000 and steps[0] == 1 and np.all(np.diff(steps) == 1)
    lines = ax.get_lines()
    assert len(lines) == 6  # per loss part, the raw curve and its moving average
    for (raw, smooth), key, label in zip(zip(lines[::2], lines[1::2]), ("total", "classification", "box_regression"),
                                         ("total", "focal loss", "smooth L1")):
        values = np.asarray(history[key], dtype=np.float64)
        np.testing.assert_array_equal(raw.get_xdata(), steps)
        np.testing.assert_array_equal(raw.get_ydata(), values)
        k = len(values) // 50  # the mean of each k consecutive losses: 2% of the run
        cum = np.concatenate([[0.0], np.cumsum(values)])
        np.testing.assert_allclose(smooth.get_ydata(), (cum[k:] - cum[:-k]) / k, rtol=1e-9)
        np.testing.assert_array_equal(smooth.get_xdata(), steps[k - 1:])
        assert smooth.get_label() == label and smooth.get_color() == raw.get_color()
    np.testing.assert_allclose(np.asarray(history["total"]),
                               np.asarray(history["classification"]) + np.asarray(history["box_regression"]),
                               rtol=1e-5)
    assert ax.get_yscale() == "log" and "(the shipped model)" in ax.get_title()


# ----------------------------------------------------------------------------------------
# NMS and the precision-recall curve
# ----------------------------------------------------------------------------------------


def _dets(boxes, scores, labels):
    return {"boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4), "scores": np.array(scores, dtype=np.float64),
            "labels": np.array(labels, dtype=np.int64)}


def test_precision_recall_data_of_a_case_worked_by_hand():
    a, b, c, far = [0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 25, 25], [60, 60, 70, 70]
    gts = [{"boxes": np.array([a, b, far], dtype=np.float64), "labels": np.array([0, 0, 1])},
           {"boxes": np.array([c], dtype=np.float64), "labels": np.array([0])}]
    # by score: on a (TP), far (FP), on c (TP), on b (TP), a again (FP: a is taken); class 1 on far is not class 0
    dets = [_dets([a, far, b, a, far], [0.9, 0.8, 0.6, 0.5, 0.95], [0, 0, 0, 0, 1]), _dets([c], [0.7], [0])]
    data = precision_recall_data(dets, gts, class_index=0, iou_threshold=0.5)
    np.testing.assert_allclose(data["recall"], [1 / 3, 1 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(data["precision"], [1, 1 / 2, 2 / 3, 3 / 4, 3 / 5])
    np.testing.assert_allclose(data["envelope"], [1, 3 / 4, 3 / 4, 3 / 4, 3 / 5])
    # recall 0..0.33 first reached by detection 1 (envelope 1); 0.34..0.66 by detection 3 and 0.67..1 by
    # detection 4 (envelope 3/4 both)
    np.testing.assert_allclose(data["samples"], [1.0] * 34 + [0.75] * 67)
    assert data["num_gt"] == 3 and np.isclose(data["ap"], (34 + 67 * 0.75) / 101)
    coco = evaluate_detections(dets, gts, num_classes=2, iou_thresholds=[0.5])
    assert np.isclose(data["ap"], coco["per_class_AP"][0], rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="class_index"):
        precision_recall_data(dets, [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0)}] * 2, 0, 0.5)


def test_precision_recall_figure_draws_exactly_its_data():
    gts = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float64), "labels": np.array([0, 0])}]
    data = precision_recall_data([_dets([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8], [0, 0])], gts, 0, 0.5)
    fig = plot_precision_recall(data, "square", "caption")
    raw, envelope, samples = fig.axes[0].get_lines()
    np.testing.assert_array_equal(raw.get_ydata(), data["precision"])
    np.testing.assert_array_equal(envelope.get_ydata(), data["envelope"])
    np.testing.assert_array_equal(samples.get_xdata(), np.linspace(0, 1, 101))
    np.testing.assert_array_equal(samples.get_ydata(), data["samples"])
    assert f"{(51 * 1.0) / 101:.3f}" in fig._suptitle.get_text() and "caption" in fig._suptitle.get_text()


def _greedy_nms(boxes, scores, threshold):
    """NMS as §4.1 describes it, one box at a time: the test's own, to check postprocess's."""
    left, keep = list(np.argsort(-scores, kind="stable")), []
    while left:
        keep.append(left.pop(0))
        left = [i for i in left if box_iou(boxes[keep[-1]][None], boxes[i][None])[0, 0] <= threshold]
    return keep


def test_nms_data_is_the_raw_candidates_and_their_per_class_nms_as_the_written_figure_draws(figure_model, model_drawn):
    model = figure_model.model
    held_out = figure_model.held_out(num_images=20)
    data = nms_data(model, held_out, 19)
    before, after = data["before"], data["after"]
    # before: every (anchor, class) of sigmoid score > 0.05, at most 1000 per level (§4.1)
    logits, _ = model.forward(held_out[19][0][None].astype(model.dtype), keep_cache=False)
    p = 1 / (1 + np.exp(-logits[0].astype(np.float64)))
    bounds = np.cumsum([0] + model.level_sizes(128, 128))
    expected = sum(min(int(np.sum(p[lo:hi] > 0.05)), 1000) for lo, hi in zip(bounds[:-1], bounds[1:]))
    assert len(before["boxes"]) == expected > 100
    # after: greedy NMS of those, class by class, best 100
    kept = []
    for k in np.unique(before["labels"]):
        members = np.flatnonzero(before["labels"] == k)
        kept += [members[i] for i in _greedy_nms(before["boxes"][members], before["scores"][members], 0.5)]
    kept = sorted(kept, key=lambda i: -before["scores"][i])[:100]
    np.testing.assert_array_equal(after["boxes"], before["boxes"][kept])
    np.testing.assert_array_equal(after["labels"], before["labels"][kept])
    fig = model_drawn["nms_before_after"]  # the figure written from the same image
    names, gt = held_out.class_names, data["target"]["boxes"].astype(np.float64)
    for ax, dets, when in zip(fig.axes, (before, after), ("before", "after")):
        boxes, rects = _drawn_boxes(ax)
        np.testing.assert_array_equal(boxes[:len(gt)], gt)  # the ground truth first, dashed white
        assert all(r.get_linestyle() == "--" and r.get_edgecolor() == to_rgba("white") for r in rects[:len(gt)])
        shown = np.flatnonzero(dets["scores"] >= DRAW_SCORE_THRESHOLD)[::-1]  # lowest first, the best on top
        np.testing.assert_allclose(boxes[len(gt):], dets["boxes"][shown], rtol=0, atol=1e-9)
        for rect, label in zip(rects[len(gt):], dets["labels"][shown]):  # each in its class's colour
            assert rect.get_edgecolor()[:3] == tuple(c / 255 for c in PALETTE[label])
        assert ax.get_title().startswith(f"{when} NMS") and f"{len(shown)} boxes" in ax.get_title()
        if when == "after":  # named: class and score above each box
            assert [t.get_text() for t in ax.texts] == [f"{names[dets['labels'][i]]} {dets['scores'][i]:.2f}"
                                                        for i in shown]
    assert np.sum(before["scores"] >= 0.3) > 5 * np.sum(after["scores"] >= 0.3)  # NMS removed most boxes


def test_precision_recall_of_the_shipped_model_is_cocos_ap_as_the_written_figure_draws(figure_model, model_drawn):
    held_out = figure_model.held_out(num_images=50)
    detections, ground_truths = predict_dataset(figure_model.model, held_out)
    data = precision_recall_data(detections, ground_truths, 2, 0.75)
    coco = evaluate_detections(detections, ground_truths, 3, iou_thresholds=[0.75])
    assert np.isclose(data["ap"], coco["per_class_AP"][2], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(data["samples"], coco["precision"][0, :, 2])
    # the envelope differs from the raw curve: some false positive outranks a true one
    assert np.any(data["envelope"] > data["precision"]) and 0.3 < data["ap"] < 0.95
    # the written figure (the same 50 images, triangles at IoU 0.75), re-derived from its own points
    fig = model_drawn["precision_recall"]
    raw, envelope, samples = fig.axes[0].get_lines()
    recall, precision = np.asarray(raw.get_xdata()), np.asarray(raw.get_ydata())
    tp = np.round(precision * np.arange(1, len(precision) + 1))  # after n detections precision is TP / n ...
    np.testing.assert_allclose(precision * np.arange(1, len(precision) + 1), tp, rtol=0, atol=1e-9)
    np.testing.assert_allclose(recall * data["num_gt"], tp, rtol=0, atol=1e-9)  # ... and recall TP / objects
    assert set(np.diff(np.concatenate([[0], tp]))) <= {0.0, 1.0}  # each detection adds one TP or none
    np.testing.assert_array_equal(envelope.get_ydata(), [precision[i:].max() for i in range(len(precision))])
    # COCO's 101 points: at recall t, the envelope at the first detection whose recall reaches t; 0 past the last
    thresholds = np.linspace(0.0, 1.0, 101)
    expected = [envelope.get_ydata()[np.argmax(recall >= t)] if np.any(recall >= t) else 0.0 for t in thresholds]
    np.testing.assert_array_equal(samples.get_xdata(), thresholds)
    np.testing.assert_array_equal(samples.get_ydata(), expected)
    np.testing.assert_array_equal(samples.get_ydata(), coco["precision"][0, :, 2])
    assert f"AP = mean of the 101 samples = {np.mean(expected):.3f}" in fig._suptitle.get_text()
