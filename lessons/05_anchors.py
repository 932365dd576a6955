# %% [markdown]
# # Lesson 5: anchors
#
# An *anchor* is a fixed reference box. At every location of every pyramid level RetinaNet places A
# of them, and for each it predicts K class probabilities and 4 numbers that move the anchor onto an
# object (§4, "Anchors"). This lesson builds them with `detection.anchors.AnchorGenerator`, checks
# their sizes, centres and order, draws them, and measures how well they cover the objects of the
# shapes dataset, a miniature of Table 1c.

# %%
import numpy as np

from numpy_retinanet.data.shapes import ShapesDataset
from numpy_retinanet.detection.anchors import AnchorGenerator
from numpy_retinanet.detection.boxes import box_iou
from numpy_retinanet.model.presets import PRESETS, STRIDES
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.teaching.figures import anchors_per_level_data, as_image, figure_image, plot_anchors_per_level

# %% [markdown]
# ## The paper's anchors (§4)
#
# "The anchors have areas of $32^2$ to $512^2$ on pyramid levels P3 to P7": the side at scale 1 is 4x the
# stride. At each level there are 3 aspect ratios {1:2, 1:1, 2:1} and 3 scales $\{2^0, 2^{1/3}, 2^{2/3}\}$,
# so $A = 9$. An anchor of size $s$, scale $c$ and ratio $r = h / w$ has area $(s c)^2$:
#
# $$w = \frac{s c}{\sqrt{r}}, \qquad h = s c \sqrt{r}.$$

# %%
paper = AnchorGenerator()  # the defaults are the paper's
print("sizes", paper.sizes, "strides", paper.strides, "A =", paper.num_anchors_per_location)

# %% tags=["hide-input"]
assert all(size == 4 * stride for size, stride in zip(paper.sizes, paper.strides))

# %%
cell = paper.cell_anchors(0)  # the 9 anchors of one P3 location, centred on (0, 0)
w, h = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
for k in range(9):
    print(f"anchor {k}: {w[k]:6.1f} x {h[k]:6.1f}   h/w = {h[k] / w[k]:.2f}   sqrt(area) = {np.sqrt(w[k] * h[k]):.1f}")


# %% tags=["hide-input"]
np.testing.assert_allclose(np.sqrt(w * h), np.tile(32 * np.array([1, 2 ** (1 / 3), 2 ** (2 / 3)]), 3))
np.testing.assert_allclose(h / w, np.repeat([0.5, 1.0, 2.0], 3))

# %% [markdown]
# ### One location, by hand
#
# The nine anchors of one location are two loops and the two formulas above: for each ratio $r$ (the outer
# loop), for each scale $c$ (the inner loop), a box of width $w$ and height $h$ centred on (0, 0).

# %%
def cell_anchors_by_hand(size, ratios=(0.5, 1.0, 2.0), scales=(1, 2 ** (1 / 3), 2 ** (2 / 3))):
    """The A = len(ratios) * len(scales) anchors of one location, centred on (0, 0): (A, 4)."""
    rows = []
    for r in ratios:  # ratio-major ...
        for c in scales:  # ... scale-minor
            w, h = size * c / np.sqrt(r), size * c * np.sqrt(r)
            rows.append([-w / 2, -h / 2, w / 2, h / 2])
    return np.array(rows)


by_hand = cell_anchors_by_hand(32)
print(np.round(by_hand, 1))

# %% tags=["hide-input"]
np.testing.assert_allclose(by_hand, paper.cell_anchors(0), rtol=1e-15, atol=0)  # the package's P3 location
assert all(np.allclose(cell_anchors_by_hand(size), paper.cell_anchors(level), rtol=1e-15, atol=0)
           for level, size in enumerate(paper.sizes))

# %% [markdown]
# They equal `AnchorGenerator.cell_anchors` on every level of the paper's pyramid. The anchor index is
# ratio-major, scale-minor: anchors 0-2 have ratio 1:2, 3-5 are square, 6-8 are
# 2:1. Together the levels "cover the scale range 32 - 813 pixels" (§4): from 32 on P3 to
# $512 \times 2^{2/3}$ on P7.

# %%
largest = paper.sizes[-1] * paper.scales[-1]
print(f"largest anchor side: {largest:.1f}")

# %% tags=["hide-input"]
assert round(largest) == 813

# %% [markdown]
# ## Anchors for the shapes dataset
#
# The shapes are 10 to 70 px in 128 px images, smaller than COCO's objects in 800 px images, so the
# `default` preset uses sizes of 1.5x the stride (12 to 192 px) with the paper's ratios, scales and
# strides (the `tiny` preset uses 2x). Why not 2x? A 10 px shape centred on a 16 px anchor has IoU
# 100 / 256 = 0.39, below the 0.5 that makes an anchor positive (lesson 6); on a 12 px anchor,
# 100 / 144 = 0.69.

# %%
model = RetinaNet(num_classes=3, preset="default")
gen = model.anchor_generator
print(gen)
ten = np.array([[-5.0, -5.0, 5.0, 5.0]])
iou_16 = box_iou(ten, np.array([[-8.0, -8.0, 8.0, 8.0]]))[0, 0]
iou_12 = box_iou(ten, np.array([[-6.0, -6.0, 6.0, 6.0]]))[0, 0]
anchors = model.anchors(128, 128)
shapes = model.level_shapes(128, 128)
print("level shapes:", shapes, "-> anchors:", anchors.shape)

# %% tags=["hide-input"]
assert gen.strides == tuple(2**lvl for lvl in range(3, 8))  # P_l: stride 2^l, 8 to 128
assert all(size == 1.5 * stride for size, stride in zip(gen.sizes, gen.strides))  # 12 to 192
assert all(size == 2 * stride for size, stride in zip(PRESETS["tiny"]["anchor_sizes"], STRIDES))
# The 10 px square lies inside the centred anchor: IoU = its area over the anchor's.
assert np.isclose(iou_16, 100 / 16**2) and np.isclose(iou_12, 100 / 12**2)
assert anchors.shape == (3069, 4) == (9 * (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1), 4)

# %% [markdown]
# ## Centres and order
#
# The anchors of row i, column j of a level with stride S are centred at ((j + 0.5) S, (i + 0.5) S),
# the centre of the S x S patch of the image that the location covers. The (M, 4) array is ordered
# level, row, column, anchor: the anchor of level l, row i, column j and index a is row
# `offset_l + (i * W_l + j) * A + a`. This is exactly the order in which the heads flatten their
# outputs (lesson 7), so anchor m and output m belong together.

# %%
A = gen.num_anchors_per_location
offsets = np.concatenate([[0], np.cumsum(model.level_sizes(128, 128))])
for level, i, j, a in [(0, 0, 0, 0), (0, 3, 5, 4), (2, 1, 2, 8), (4, 0, 0, 6)]:
    W, S = shapes[level][1], gen.strides[level]
    row = offsets[level] + (i * W + j) * A + a
    centre = np.array([(j + 0.5) * S, (i + 0.5) * S] * 2)
    cell_by_hand = cell_anchors_by_hand(gen.sizes[level], gen.aspect_ratios, gen.scales)
    np.testing.assert_allclose(anchors[row], centre + cell_by_hand[a], rtol=1e-6)
print("the first anchor of P3:", anchors[0], "centre", (anchors[0, :2] + anchors[0, 2:]) / 2)

# %% tags=["hide-input"]
assert np.allclose((anchors[0, :2] + anchors[0, 2:]) / 2, [4.0, 4.0])

# %% [markdown]
# ### Every anchor, by hand
#
# A level of $H_l \times W_l$ locations is the cell anchors moved to each centre, row by row and, within a row,
# column by column; the levels follow one another. $H_l = \lceil 128 / S \rceil$: a stride-2 convolution
# maps $n$ pixels to $\lceil n / 2 \rceil$ (lesson 4).

# %%
def level_anchors_by_hand(size, stride, height, width):
    """All anchors of one level: (H * W * A, 4), ordered row, column, anchor."""
    cell = cell_anchors_by_hand(size, gen.aspect_ratios, gen.scales)
    rows = []
    for i in range(height):  # rows (y) ...
        for j in range(width):  # ... then columns (x)
            cx, cy = (j + 0.5) * stride, (i + 0.5) * stride
            rows.append(cell + [cx, cy, cx, cy])
    return np.concatenate(rows)


def anchors_by_hand(image_height, image_width):
    """The anchors of every level, P3 first: (M, 4), ordered level, row, column, anchor."""
    levels = []
    for size, stride in zip(gen.sizes, gen.strides):
        height, width = -(-image_height // stride), -(-image_width // stride)  # ceil(n / S)
        levels.append(level_anchors_by_hand(size, stride, height, width))
    return np.concatenate(levels)


all_by_hand = anchors_by_hand(128, 128)
wide_by_hand = anchors_by_hand(96, 160)  # not square: a row/column mix-up would show
print("by hand:", all_by_hand.shape, "  a 96 x 160 image:", wide_by_hand.shape)

# %% tags=["hide-input"]
np.testing.assert_allclose(all_by_hand, gen.anchors(128, 128, dtype=np.float64), rtol=1e-15, atol=1e-12)
np.testing.assert_allclose(wide_by_hand, gen.anchors(96, 160, dtype=np.float64), rtol=1e-15, atol=1e-12)
assert np.array_equal(all_by_hand.astype(np.float32), anchors)  # the model's float32 anchors, same order
assert len(wide_by_hand) == 9 * sum(-(-96 // s) * -(-160 // s) for s in gen.strides)

# %% [markdown]
# The loops give `AnchorGenerator`'s anchors, in its order, for a square and a wide image; the package does
# the same with a broadcast sum (`centers[:, :, None, :] + cell[None, None, :, :]`) instead of loops.

# %% [markdown]
# ## A picture
#
# One location per level (the middle one) with its 9 anchors, and a dot at every location. On P7 a
# single location holds anchors larger than the image. This figure is `figures/anchors_per_level.png`,
# made by `numpy-retinanet figures`.

# %%
picture, target, class_names = figure_image()
data = anchors_per_level_data(image_size=128, preset="default")
middle_by_hand = []  # the figure's anchors by hand: the middle location of each level
for size, stride in zip(gen.sizes, gen.strides):
    side = -(-128 // stride)  # ceil(128 / S) locations a side
    k = (side - 1) // 2  # its middle row and column, centred at ((k + 0.5) S, (k + 0.5) S)
    level_cell = cell_anchors_by_hand(size, gen.aspect_ratios, gen.scales)
    middle_by_hand.append(((side, side), (k, k), (k + 0.5) * stride + level_cell))  # the same shift for x and y

# %% tags=["hide-input"]
assert all(lv["shape"] == shape and lv["location"] == location and np.allclose(lv["anchors"], a)
           for lv, (shape, location, a) in zip(data["levels"], middle_by_hand))

# %% mystnb={"image":{"alt":"The 9 anchors of one location on each of P3-P7 over a 128 px image, growing per level"}}
p7 = data["levels"][4]["anchors"]
as_image(plot_anchors_per_level(data, picture))

# %% tags=["hide-input"]
# P7's narrowest side, 192 / sqrt(2) = 136 px (ratio 1:2 or 2:1 at scale 1), exceeds the 128 px image.
assert np.isclose((p7[:, 2:] - p7[:, :2]).min(), 192 / np.sqrt(2)) and 192 / np.sqrt(2) > 128

# %% [markdown]
# ## Do the anchors cover the objects? (Table 1c in miniature)
#
# An object is learned mainly from the anchors that overlap it with IoU >= 0.5 (lesson 6). Table 1c
# compares anchor sets by AP, from 1 scale x 1 ratio (30.3 AP) to 3 x 3 (34.0). A quick proxy needs no
# training: the fraction of ground-truth boxes whose best anchor reaches IoU 0.5, over 200 images.

# %%
dataset = ShapesDataset(200, image_size=128, num_classes=3, seed=0)
gt_boxes = [dataset.raw(i)[1]["boxes"].astype(np.float64) for i in range(len(dataset))]
gt_boxes = [b for b in gt_boxes if len(b)]
coverage, best = {}, {}
for name, ratios, scales in (("1 scale x 1 ratio", (1.0,), (1.0,)),
                             ("3 scales x 1 ratio", (1.0,), gen.scales),
                             ("3 scales x 3 ratios", gen.aspect_ratios, gen.scales)):
    g = AnchorGenerator(sizes=gen.sizes, strides=gen.strides, aspect_ratios=ratios, scales=scales)
    a = g.anchors(128, 128, dtype=np.float64)
    best[name] = np.concatenate([box_iou(a, b).max(axis=0) for b in gt_boxes])  # each box's best IoU
    coverage[name] = float(np.mean(best[name] >= 0.5))
    print(f"{name:<20} {len(a):>5} anchors: {coverage[name]:.1%} of {len(best[name])} boxes "
          "have an anchor with IoU >= 0.5")
boxes = np.concatenate(gt_boxes)
h_over_w = (boxes[:, 3] - boxes[:, 1]) / (boxes[:, 2] - boxes[:, 0])
gain_scales = coverage["3 scales x 1 ratio"] - coverage["1 scale x 1 ratio"]
gain_ratios = coverage["3 scales x 3 ratios"] - coverage["3 scales x 1 ratio"]
print(f"box h/w from {h_over_w.min():.2f} to {h_over_w.max():.2f}; the scales add {gain_scales:.1%} of the "
      f"boxes, the ratios {gain_ratios:.1%}")


# %% tags=["hide-input"]
# Each set holds the previous one (scale 1, ratio 1:1 is among them), so no box's best IoU can fall.
assert np.all(best["1 scale x 1 ratio"] <= best["3 scales x 1 ratio"])
assert np.all(best["3 scales x 1 ratio"] <= best["3 scales x 3 ratios"])
# Every shape is drawn in a square frame, so every box is nearly square: h/w within a factor sqrt(2) of 1,
# the geometric middle between 1:1 and 2:1, where a square anchor of the box's area, centred on it, overlaps
# it more than a 1:2 or 2:1 one. The ratios can then help only through position; the scales matter for every
# size between two levels'.
assert np.all(np.abs(np.log(h_over_w)) < np.log(np.sqrt(2)))
assert gain_scales > gain_ratios

# %% [markdown]
# The fractions depend on the images drawn; their order does not. Each set contains the previous one, so
# no box's best IoU can fall as anchors are added. The scales add many boxes: a box whose side falls
# between two levels' sizes (a factor 2 apart) finds an anchor within a factor $2^{1/6}$ of its side. The
# ratios add few, because every shape is drawn in a square frame and so has a nearly square box (the
# printed h/w, within a factor $\sqrt{2}$ of 1, where a square anchor of its area fits it better than a 1:2
# or 2:1 one); COCO's people and cars are not square, which is why the paper keeps them.
#
# ## Summary
#
# - A = 9 anchors per location: 3 ratios x 3 scales; the paper's sizes are 4x the stride (32-512 px,
#   covering 32-813 px), the `default` preset's 1.5x (12-192 px), so that small shapes can match.
# - Anchors are centred on their patch, ((j + 0.5) S, (i + 0.5) S), and ordered level, row, column,
#   anchor: the order of the heads' outputs.
# - More anchors per location cover more objects (each set contains the smaller ones): a quick proxy for
#   Table 1c. On the nearly square shapes, the scales matter far more than the ratios.
#
# ## Exercises
#
# 1. torchvision centres anchors at (j S, i S). Shift `anchors` by -S/2 on each level and recompute the
#    coverage. What changes, and for which levels most?
# 2. Add a fourth scale $2^{3/3} = 2$ (`AnchorGenerator(..., scales=(1, 2**(1/3), 2**(2/3), 2))`). Table 1c
#    (4 x 3: 33.8 AP) says it no longer helps. Does coverage agree?
# 3. For an object of 20 x 20 px centred on a P3 location, which of the 9 anchors matches best, with
#    what IoU?
