# %% [markdown]
# # Lesson 6: matching anchors to objects, and coding boxes
#
# Training needs a target for every anchor: which class it should predict (or background), and, for
# anchors on an object, how to move the anchor onto that object's box. The matcher assigns each
# anchor a box by IoU (§4, "Matching"); the box coder turns an (anchor, box) pair into four regression
# targets and back (§4, "Box Regression Subnet"). `detection.criterion` combines both into the
# training targets and the loss.

# %%
import numpy as np

from numpy_retinanet.detection.boxes import DELTA_CLAMP, box_iou, decode_boxes, encode_boxes
from numpy_retinanet.detection.criterion import assign_targets, retinanet_loss
from numpy_retinanet.detection.matcher import BACKGROUND, IGNORED, match_anchors
from numpy_retinanet.gradcheck import check_gradients
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.losses import smooth_l1_backward, smooth_l1_forward
from numpy_retinanet.teaching.figures import as_image, figure_image, matched_anchors_data, plot_matched_anchors

model = RetinaNet(num_classes=3, preset="default")
anchors = model.anchors(128, 128).astype(np.float64)
picture, target, class_names = figure_image()
boxes = target["boxes"].astype(np.float64)
print("boxes (x1, y1, x2, y2):\n", boxes, "\nlabels:", [class_names[k] for k in target["labels"]])
print(len(anchors), "anchors")

# %% tags=["hide-input"]
# lesson 5: A = 3 ratios x 3 scales at each cell of P3..P7; stride 2^l gives (128 / 2^l)^2 cells
assert len(anchors) == 3 * 3 * sum((128 // 2**level) ** 2 for level in range(3, 8))

# %% [markdown]
# ## IoU, by hand
#
# (To write IoU and the matcher yourself before reading them, do exercise 8 first:
# `lessons/exercises/ex8_iou_and_matcher.py`.)
#
# Every rule below compares an anchor and a box by their intersection over union. The intersection of two
# boxes is a box too: its left edge is the larger of the two left edges, its right edge the smaller of the two
# right edges, and likewise in y. When the boxes do not overlap, that "box" has a negative width or height,
# which must count as 0:
#
# $$|A \cap B| = \max(0, \min(x_2, x_2') - \max(x_1, x_1')) \cdot \max(0, \min(y_2, y_2') - \max(y_1, y_1')),$$
#
# $$\mathrm{IoU} = \frac{|A \cap B|}{|A| + |B| - |A \cap B|}.$$

# %%
def area(b):
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def iou_by_hand(a, b):
    """IoU of every box of a (N, 4) with every box of b (M, 4): (N, M)."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)  # apart in x or in y: no overlap
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


apart = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])  # apart in x and y
iw = ih = min(apart[0, 2], apart[1, 2]) - max(apart[0, 0], apart[1, 0])
print("sides of the 'intersection':", iw, ih, " their product:", iw * ih)
print("IoU by hand:", iou_by_hand(apart[:1], apart[1:])[0, 0])
iou_hand = iou_by_hand(anchors, boxes)  # every anchor against the image's boxes, for the checks below

# %% tags=["hide-input"]
assert iw == ih == -10 and iw * ih == 100 == area(apart[:1])[0]  # without the clamp: as large as a box
np.testing.assert_array_equal(iou_by_hand(apart[:1], apart[1:]), box_iou(apart[:1], apart[1:]))
np.testing.assert_allclose(iou_hand, box_iou(anchors, boxes), rtol=1e-15, atol=0)

# %% [markdown]
# Without the clamp, two boxes apart in both x and y would multiply two negative sides into a positive
# "intersection", here as large as a whole box. With it, `iou_by_hand` equals the package's `box_iou` on
# these two boxes and on all the anchors against the image's boxes. (`box_iou` also gives 0 where two
# boxes of zero area would make $0 / 0$.)
#
# ## The rules (§4)
#
# "Anchors are assigned to ground-truth object boxes using an intersection-over-union (IoU) threshold
# of 0.5; and to background if their IoU is in [0, 0.4). ... Anchors with IoU in [0.4, 0.5) are
# ignored during training." Each anchor takes at most one box: the one it overlaps most.
# `match_anchors` returns, per anchor, the index of its box, `BACKGROUND` (-1) or `IGNORED` (-2).

# %%
matches = match_anchors(anchors, boxes)
iou = box_iou(anchors, boxes)  # (M, G)
best = iou.max(axis=1)
n_pos, n_ign, n_bg = int(np.sum(matches >= 0)), int(np.sum(matches == IGNORED)), int(np.sum(matches == BACKGROUND))
print(f"{n_pos} positive, {n_ign} ignored, {n_bg} background of {len(anchors)}")
positive = matches >= 0
low_quality = positive & (best < 0.5)
# by hand, for the checks: each anchor's best IoU, and whether it reaches some box's highest IoU
best_hand = iou_hand.max(axis=1)
reach_hand = np.any(iou_hand == iou_hand.max(axis=0), axis=1)

# %% tags=["hide-input"]
# the counts, by hand: the quoted rules on the by-hand IoUs, plus the anchors that reach a box's highest IoU
assert n_bg == np.sum(best_hand < 0.4) and np.array_equal(low_quality, reach_hand & (best_hand < 0.5))
assert n_pos == np.sum(best_hand >= 0.5) + low_quality.sum() > np.sum(best_hand >= 0.5)
assert n_ign == np.sum((best_hand >= 0.4) & (best_hand < 0.5)) - low_quality.sum()
assert np.all(matches[best >= 0.5] >= 0)  # IoU >= 0.5: positive
assert np.all(matches[best < 0.4] == BACKGROUND)  # IoU < 0.4: background
assert np.all(matches[(best >= 0.4) & (best < 0.5) & ~low_quality] == IGNORED)  # in between: ignored
assert np.array_equal(matches[positive], iou_hand[positive].argmax(axis=1))  # each takes its best box

# %% [markdown]
# The counts are the quoted rules applied to `iou_by_hand`, except that
# some anchor with IoU in [0.4, 0.5) is positive anyway: the exception of the next section.
#
# ## Low-quality matches
#
# The picture is one seeded draw of the shapes dataset. In it box 2, the triangle from (7, 39) to (62, 96),
# is 62 - 7 = 55 by 96 - 39 = 57 px, centred at (34.5, 67.5), and falls between two levels. The default
# preset's anchor sizes are 12, 24, 48, ... on P3, P4, P5 (lesson 5). P4's largest square anchor,
# $24 \times 2^{2/3} = 38.1$ px, is too small for it: on P4's 16 px grid the one centred at
# $(2.5 \cdot 16, 4.5 \cdot 16) = (40, 72)$ lies inside the box, so its IoU is its area over the box's,
# $38.1^2 / (55 \cdot 57) = 0.463$. P5's square anchors ($48 \times 2^{2/3} = 76.2$ px at the largest) have
# centres 32 px apart (16, 48, 80, ...); the nearest, at (48, 80), is 13.5 and 12.5 px off the box's centre
# and stays below that. By the rules above the box would get no positive anchor and never be learned.
# torchvision and detectron2 (and this package, `allow_low_quality=True`) therefore also make positive,
# for each box, the anchor(s) with that box's highest IoU.

# %%
box_best = iou.max(axis=0)
strict = match_anchors(anchors, boxes, allow_low_quality=False)
print("best IoU of each box:", np.round(box_best, 3))
print("positives per box, strict rules:", [int(np.sum(strict == g)) for g in range(len(boxes))],
      " with low-quality matches:", [int(np.sum(matches == g)) for g in range(len(boxes))])


# %%
level_of = np.repeat(np.arange(3, 8), model.level_sizes(128, 128))  # the pyramid level P_l of each anchor
best_anchor = anchors[iou[:, 2].argmax()]
best_p5 = iou[level_of == 5, 2].max()
print(f"box 2's best anchor: P{level_of[iou[:, 2].argmax()]}, centre {(best_anchor[:2] + best_anchor[2:]) / 2}, "
      f"side {best_anchor[2] - best_anchor[0]:.1f} px; best P5 anchor IoU {best_p5:.3f}")


# %%
def square(centre, side):
    """The square box (1, 4) of this side around this centre."""
    return np.array([[centre[0] - side / 2, centre[1] - side / 2, centre[0] + side / 2, centre[1] + side / 2]])


# the anchors the text names, from lesson 5's formulas, and box 2 as the text reads it from the print
triangle = np.array([[7.0, 39.0, 62.0, 96.0]])
p4_square, p5_square = square((2.5 * 16, 4.5 * 16), 24 * 2 ** (2 / 3)), square((1.5 * 32, 2.5 * 32), 48 * 2 ** (2 / 3))
inside = (24 * 2 ** (2 / 3)) ** 2 / ((62 - 7) * (96 - 39))  # the P4 square's area over the box's

# %% tags=["hide-input"]
assert level_of[iou[:, 2].argmax()] == 4 and np.allclose(best_anchor, p4_square[0])
assert np.all(p4_square[0, :2] >= triangle[0, :2]) and np.all(p4_square[0, 2:] <= triangle[0, 2:])  # inside
assert np.isclose(box_best[2], inside)  # so its IoU is its area over the box's
assert np.isclose(best_p5, iou_by_hand(p5_square, triangle)[0, 0]) and best_p5 < box_best[2] < 0.5
assert np.sum(strict == 2) == 0 and np.sum(matches == 2) == np.sum(iou_hand[:, 2] == iou_hand[:, 2].max())

# %% [markdown]
# ### The matcher, by hand
#
# The two rules fit in a few lines: each anchor takes its best box (the argmax of its row of IoUs) and is
# positive, ignored or background by that best IoU; then, for each box, the anchors that reach the box's
# highest IoU are made positive too, taking *their own* best box.

# %%
def match_by_hand(anchors, boxes, fg_iou=0.5, bg_iou=0.4, require_overlap=True):
    """Per anchor: the index of its box, BACKGROUND (-1) or IGNORED (-2). (M,) int."""
    if len(boxes) == 0:
        return np.full(len(anchors), BACKGROUND)
    iou = iou_by_hand(anchors, boxes)  # (M, G)
    best_box, best_iou = iou.argmax(axis=1), iou.max(axis=1)
    matches = np.where(best_iou >= fg_iou, best_box,
                       np.where(best_iou < bg_iou, BACKGROUND, IGNORED))
    for g in range(len(boxes)):  # the low-quality rule
        highest = iou[:, g].max()
        if highest > 0 or not require_overlap:
            reach = iou[:, g] == highest  # all of them on a tie
            matches[reach] = best_box[reach]
    return matches


counts = np.bincount(match_by_hand(anchors, boxes) + 2)  # -2, -1, 0, 1, ... -> 0, 1, 2, 3, ...
print("by hand:", counts, "(ignored, background, box 0, box 1, ...)")

# %% tags=["hide-input"]
np.testing.assert_array_equal(match_by_hand(anchors, boxes), matches)
np.testing.assert_array_equal(match_by_hand(anchors, np.zeros((0, 4))), match_anchors(anchors, np.zeros((0, 4))))
assert all(np.array_equal(match_by_hand(anchors, boxes, fg, bg), match_anchors(anchors, boxes, fg, bg))
           for fg, bg in ((0.6, 0.5), (0.4, 0.3), (0.5, 0.5)))

# %% [markdown]
# `match_by_hand` equals `match_anchors` on this image, on an image without boxes (every anchor background)
# and with other thresholds. One line deserves a second look: `highest > 0`. Take three anchors in a row and
# two boxes, one over the first anchor and one that no anchor touches:

# %%
row = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0], [40.0, 0.0, 50.0, 10.0]])
two = np.array([[1.0, 1.0, 11.0, 11.0], [100.0, 100.0, 110.0, 110.0]])
print("IoU (anchors x boxes):\n", np.round(iou_by_hand(row, two), 3))
print("without 'highest > 0':", match_by_hand(row, two, require_overlap=False),
      " with it:", match_by_hand(row, two), " match_anchors:", match_anchors(row, two))

# %% tags=["hide-input"]
assert iou_by_hand(row, two)[:, 1].max() == 0 and iou_by_hand(row, two)[1:, 0].max() == 0
np.testing.assert_array_equal(match_by_hand(row, two, require_overlap=False), [0, 0, 0])
np.testing.assert_array_equal(match_by_hand(row, two), [0, BACKGROUND, BACKGROUND])
np.testing.assert_array_equal(match_anchors(row, two), match_by_hand(row, two))

# %% [markdown]
# Box 1's highest IoU is 0, reached by *every* anchor: a tie. Promoting the anchors that reach it would make
# all three positive, and each takes its own best box, the argmax of a row: for anchors 1 and 2, whose rows
# are all zeros, the first box. Training would then ask two anchors that see nothing of box 0 to predict box
# 0's class and regress onto it, and box 1 would still have no anchor. A box nobody overlaps has no anchor to
# give, so it promotes nothing; `match_anchors` does the same (torchvision's matcher has no such guard).

# %% [markdown]
# The figure (`figures/matched_anchors.png`) shows the positive anchors in the colour of the box they take,
# the low-quality one dotted, and the ignored ones dashed; on the right, the counts per level. All
# positives come from P3 and P4, whose anchor sides run from P3's narrowest, $12 / \sqrt 2 = 8.5$ px, to P4's
# longest, $24 \cdot 2^{2/3} \sqrt 2 = 53.9$ px ($w = s c / \sqrt r$, lesson 5), about the objects' sides printed
# below.

# %%
data = matched_anchors_data(picture, target, model.anchor_generator)
print("object sides (w, h):", (boxes[:, 2:] - boxes[:, :2]).tolist())
by_hand = match_by_hand(anchors, boxes)  # the matches by hand, for the checks here and below
cells = [(128 // 2**level) ** 2 for level in range(3, 8)]  # 16^2, 8^2, ... cells of P3..P7, 9 anchors each
positives_per_level = np.bincount(np.repeat(np.arange(5), 9 * np.array(cells))[by_hand >= 0], minlength=5)

# %% tags=["hide-input"]
assert np.array_equal(data["matches"], by_hand) and np.array_equal(data["low_quality"], reach_hand & (best_hand < 0.5))
assert data["counts"]["positive"] == positives_per_level.tolist() and positives_per_level[2:].sum() == 0

# %% mystnb={"image":{"alt":"Positive anchors coloured by box on a shapes image; bars of anchor kinds per level"}}
p3_p4 = anchors[data["level"] <= 1]
sides = np.concatenate([p3_p4[:, 2] - p3_p4[:, 0], p3_p4[:, 3] - p3_p4[:, 1]])
as_image(plot_matched_anchors(data, picture, class_names))

# %% tags=["hide-input"]
assert np.isclose(sides.min(), 12 / np.sqrt(2)) and np.isclose(sides.max(), 24 * 2 ** (2 / 3) * np.sqrt(2))

# %% [markdown]
# ## Box coding (R-CNN deltas)
#
# The box subnet does not predict corners. For an anchor with centre $(x_a, y_a)$ and size $(w_a, h_a)$ and a
# box with centre $(x, y)$ and size $(w, h)$, it predicts
#
# $$d_x = \frac{x - x_a}{w_a} \qquad d_y = \frac{y - y_a}{h_a} \qquad d_w = \log\frac{w}{w_a}
# \qquad d_h = \log\frac{h}{h_a}$$
#
# (weights (1, 1, 1, 1), as Detectron). Shifts are in units of the anchor's size and sizes are log
# ratios, so the targets have similar ranges for every level. `decode_boxes` inverts the coding.
#
# By hand, from centres and sizes, and back:

# %%
def centres_sizes(b):
    x1, y1, x2, y2 = b.T
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1


def encode_by_hand(anchors, boxes):
    """(dx, dy, dw, dh) of each box against the anchor of its row: (N, 4)."""
    xa, ya, wa, ha = centres_sizes(anchors)
    x, y, w, h = centres_sizes(boxes)
    return np.stack([(x - xa) / wa, (y - ya) / ha, np.log(w / wa), np.log(h / ha)], axis=1)


def decode_by_hand(anchors, deltas):
    """The boxes (N, 4) that deltas (N, 4) describe: solve the four equations for x, y, w, h."""
    xa, ya, wa, ha = centres_sizes(anchors)
    x, y = xa + deltas[:, 0] * wa, ya + deltas[:, 1] * ha
    w, h = wa * np.exp(deltas[:, 2]), ha * np.exp(deltas[:, 3])
    return np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1)

# %%
anchor = np.array([[0.0, 0.0, 32.0, 32.0]])
box = np.array([[8.0, 4.0, 40.0, 36.0]])  # same size, centre moved by (8, 4)
deltas = encode_boxes(anchor, box)
print("deltas:", deltas)

# %% tags=["hide-input"]
np.testing.assert_allclose(deltas, [[8 / 32, 4 / 32, np.log(32 / 32), np.log(32 / 32)]])
np.testing.assert_allclose(decode_boxes(anchor, deltas), box)

# %%
pos = np.flatnonzero(positive)
t = encode_boxes(anchors[pos], boxes[matches[pos]])

# %% tags=["hide-input"]
np.testing.assert_allclose(decode_boxes(anchors[pos], t), boxes[matches[pos]], atol=1e-9)
np.testing.assert_allclose(encode_by_hand(anchors[pos], boxes[matches[pos]]), t, rtol=1e-12, atol=1e-15)
np.testing.assert_allclose(decode_by_hand(anchors[pos], t), decode_boxes(anchors[pos], t), rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(decode_by_hand(anchors[pos], encode_by_hand(anchors[pos], boxes[matches[pos]])),
                           boxes[matches[pos]], atol=1e-9)

# %% [markdown]
# On the positives of this image the hand-written coder gives `encode_boxes`'s targets, the hand-written
# decoder gives `decode_boxes`'s boxes, and decoding the encoded targets returns the ground-truth boxes (to
# rounding: a round trip through log and exp).

# %% [markdown]
# A positive's targets are small, and its IoU says how small. The intersection is at most the narrower of
# the two widths times a height, so $\mathrm{IoU} \le \min(w, w_a) / \max(w, w_a)$: $|d_w| \le -\log \mathrm{IoU}$,
# and likewise $|d_h|$. The intersection is also at most $(w + w_a)/2 - |x - x_a|$ wide, and
# $\mathrm{IoU} \le |A \cap B| / (w_a h_a)$, so
# $|d_x| \le (w / w_a + 1)/2 - \mathrm{IoU} \le (1 / \mathrm{IoU} + 1)/2 - \mathrm{IoU}$.
# The lowest IoU of these positives is the low-quality 0.463: $|d_w|, |d_h| \le 0.77$.

# %%
iou_pos = iou_hand[pos, matches[pos]]
print(f"targets of the {len(pos)} positives: |dx|, |dy| <= {np.abs(t[:, :2]).max():.2f}, "
      f"|dw|, |dh| <= {np.abs(t[:, 2:]).max():.2f}; lowest IoU {iou_pos.min():.3f}")


# %% tags=["hide-input"]
assert np.all(np.abs(t[:, 2:]) <= -np.log(iou_pos)[:, None] + 1e-12)
assert np.all(np.abs(t[:, :2]) <= ((1 / iou_pos + 1) / 2 - iou_pos)[:, None] + 1e-12)
assert iou_pos.min() == box_best[2]  # the low-quality anchor's

# %% [markdown]
# When decoding, dw and dh are clamped at log(1000 / 16) [Detectron], so a wild prediction early in
# training grows a box by at most 1000 / 16 = 62.5x instead of overflowing exp:

# %%
wild = decode_boxes(anchor, np.array([[0.0, 0.0, 50.0, 50.0]]))
print("width after dw = 50:", wild[0, 2] - wild[0, 0])

# %% tags=["hide-input"]
assert np.isclose(DELTA_CLAMP, np.log(1000 / 16)) and np.isclose(wild[0, 2] - wild[0, 0], 32 * 1000 / 16)

# %% [markdown]
# ## Targets for a batch
#
# `assign_targets` runs the matcher and the coder for each image: one-hot class targets (all zeros for
# background), box targets for positives, and two masks. Ignored anchors are left out of both losses.

# %%
cls_t, box_t, is_pos, valid = assign_targets(anchors, [target], num_classes=3)
print("cls targets", cls_t.shape, "box targets", box_t.shape)
pos_hand = np.flatnonzero(by_hand >= 0)  # the positives by hand

# %% tags=["hide-input"]
# the by-hand matcher and coder give the targets
np.testing.assert_array_equal(cls_t[0].sum(axis=1), by_hand >= 0)  # one 1 per positive, all 0 otherwise
np.testing.assert_array_equal(cls_t[0, pos_hand].argmax(axis=1), target["labels"][by_hand[pos_hand]])
np.testing.assert_array_equal(~valid[0], by_hand == IGNORED)
np.testing.assert_allclose(box_t[0, pos_hand], encode_by_hand(anchors[pos_hand], boxes[by_hand[pos_hand]]), atol=1e-12)

# %% [markdown]
# ## The loss (§4.1)
#
# The classification loss is the focal loss summed over all anchors that are not ignored, and the box
# loss is smooth L1 summed over positives; both are divided by the number of positive anchors, not by
# the ~3,000 anchors: the easy negatives are already down-weighted by the focal term. An image without
# objects still trains; it divides by max(1, P).

# %%
rng = np.random.default_rng(0)
logits = rng.standard_normal((1, len(anchors), 3)) - 4.0
deltas_out = 0.1 * rng.standard_normal((1, len(anchors), 4))
losses, dlogits, ddeltas = retinanet_loss(logits, deltas_out, anchors, [target])
print(losses)

# %% tags=["hide-input"]
assert losses["num_positive"] == len(pos_hand)
assert np.all(dlogits[0, by_hand == IGNORED] == 0) and np.all(ddeltas[0, by_hand < 0] == 0)

# %%
empty = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, dtype=np.int64)}
losses_empty, _, _ = retinanet_loss(logits, deltas_out, anchors, [empty])
p = 1 / (1 + np.exp(-logits))  # no object: every output has target 0, FL = -(1 - alpha) p^gamma log(1 - p)

# %% tags=["hide-input"]
assert losses_empty["num_positive"] == 0 and losses_empty["box_regression"] == 0.0
np.testing.assert_allclose(losses_empty["classification"], np.sum(-(1 - 0.25) * p**2 * np.log(1 - p)) / 1, rtol=1e-10)

# %% [markdown]
# Ignored anchors get zero gradient, and only positives get a box gradient. Without objects the
# classification loss is the focal loss (alpha = 0.25, gamma = 2) of every output against target 0,
# divided by max(1, 0) = 1.
#
# ## Smooth L1
#
# With $d$ = prediction - target, smooth L1 is
#
# $$\mathrm{smooth}_{L_1}(d) = \begin{cases} 0.5\, d^2 / \beta & \text{if } |d| < \beta \\
# |d| - 0.5\, \beta & \text{otherwise} \end{cases}$$
#
# with $\beta = 0.11$ [Detectron]: quadratic near 0, so the gradient shrinks as the box gets close, and
# linear far away, so an outlier cannot dominate. The two pieces meet with equal value and slope:

# %%
beta = 0.11
d = np.array([beta - 1e-9, beta + 1e-9])
value, cache = smooth_l1_forward(d, np.zeros(2), beta=beta)
slope = smooth_l1_backward(np.ones(2), cache)
print("value at beta:", value, "slope:", slope)

pred, goal, dout = rng.standard_normal((6, 4)) * 0.2, rng.standard_normal((6, 4)) * 0.2, rng.standard_normal((6, 4))
dpred = smooth_l1_backward(dout, smooth_l1_forward(pred, goal)[1])

# %% tags=["hide-input"]
np.testing.assert_allclose(value, 0.5 * beta, atol=1e-8)
np.testing.assert_allclose(slope, 1.0, atol=1e-7)

# %%
rows = check_gradients(lambda: float(np.sum(smooth_l1_forward(pred, goal)[0] * dout)), {"pred": pred}, {"pred": dpred})

# %% tags=["hide-input"]
assert rows[0].passed

# %% [markdown]
# ## Summary
#
# - IoU >= 0.5 positive, < 0.4 background, in between ignored; each anchor takes the box it overlaps
#   most; each box also takes its best anchor (low-quality match), so no object is left without one.
# - Box targets are R-CNN deltas: shifts in anchor units, log size ratios; decoding clamps dw, dh at
#   log(62.5).
# - The loss sums focal loss over non-ignored anchors and smooth L1 over positives, divided by
#   max(1, number of positives).
#
# ## Exercises
#
# 1. Write the backward pass of smooth L1: `lessons/exercises/ex2_smooth_l1_backward.py`
#    (`numpy-retinanet check lessons/exercises/ex2_smooth_l1_backward.py`).
# 2. Match with `fg_iou=0.6, bg_iou=0.5` and with `fg_iou=0.4, bg_iou=0.3`. How do the counts change?
# 3. Two boxes of one image are both some anchor's best box, and that anchor overlaps the other box
#    more. Which box does it regress to? Read the docstring of `detection.matcher` and build the case.
# 4. Write IoU and the matcher yourself, the low-quality rule included: `lessons/exercises/ex8_iou_and_matcher.py`
#    (`numpy-retinanet check lessons/exercises/ex8_iou_and_matcher.py`).
