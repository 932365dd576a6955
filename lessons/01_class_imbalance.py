# %% [markdown]
# # Lesson 1: class imbalance and the cross-entropy
#
# A one-stage detector such as RetinaNet scores every *anchor*, a box of fixed size and shape placed at
# every position of every feature map, once for each of K object classes: is an object of class k here?
# An anchor where all K answers are "no" is background (there is no background class: lesson 7 says why).
# Almost every anchor is background. This lesson counts how lopsided that is, and shows why the
# ordinary cross-entropy then spends most of its effort on examples that are already easy. That is
# the problem the focal loss (lesson 2) solves. Paper: §1 and §3.1 ("Cross Entropy Loss").
#
# Run it with `python lessons/01_class_imbalance.py`, or open it as a notebook (jupytext) or as
# cells in VS Code. Every number the text states is computed and checked by an `assert` below it.

# %%
import numpy as np

from numpy_retinanet.data.shapes import ShapesDataset
from numpy_retinanet.detection.anchors import AnchorGenerator
from numpy_retinanet.detection.matcher import BACKGROUND, IGNORED, match_anchors
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.losses import (
    sigmoid_cross_entropy_backward,
    sigmoid_cross_entropy_forward,
    sigmoid_focal_loss_forward,
)

# %% [markdown]
# ## How many anchors?
#
# The paper places 9 anchors (3 aspect ratios x 3 scales) at every location of five feature maps,
# P3 to P7, with strides 8 to 128 pixels (§4). The paper says a one-stage detector must process
# "~100k locations that densely cover the image" (§1). A level of stride S has ceil(800 / S) x ceil(800 / S)
# locations on an 800 x 800 image (100, 50, 25, 13 and 7 a side; lesson 4 says why the sides round up), so
# the paper's anchors number 9 x (100^2 + 50^2 + 25^2 + 13^2 + 7^2):

# %%
paper_anchors = AnchorGenerator()  # the paper's sizes 32..512, strides 8..128, 3 ratios, 3 scales
num_paper = len(paper_anchors.anchors(800, 800))
print(f"anchors on an 800x800 image: {num_paper:,}")

# %% tags=["hide-input"]
assert num_paper == 9 * (100**2 + 50**2 + 25**2 + 13**2 + 7**2) == 120_087
assert [-(-800 // s) for s in paper_anchors.strides] == [100, 50, 25, 13, 7]  # ceil(800 / S)
assert paper_anchors.num_anchors_per_location == 9 == len(paper_anchors.aspect_ratios) * len(paper_anchors.scales)
assert paper_anchors.strides == (8, 16, 32, 64, 128)  # P3..P7

# %% [markdown]
# 120,087 anchors, for the handful of objects in a typical photograph. This course trains on a synthetic
# dataset of coloured shapes in 128 px images (`numpy_retinanet.data.shapes`), with the CPU-sized
# `default` preset of the model: the same strides on a 128 px side give 16, 8, 4, 2 and 1 locations a side,
# so 9 x (16^2 + 8^2 + 4^2 + 2^2 + 1) = 3,069 anchors per image. The matcher of §4 (lesson 6) labels an
# anchor *positive* when it overlaps a box with IoU >= 0.5 (and each box's best anchors, whatever their IoU),
# *background* below 0.4, and *ignored* in between. Over 100 training images:

# %%
model = RetinaNet(num_classes=3, preset="default")
anchors = model.anchors(128, 128).astype(np.float64)
dataset = ShapesDataset(100, image_size=128, num_classes=3, seed=0)
counts = {"positive": 0, "ignored": 0, "background": 0}
num_objects = 0
for i in range(len(dataset)):
    _, target = dataset[i]
    matches = match_anchors(anchors, target["boxes"].astype(np.float64))
    counts["positive"] += int(np.sum(matches >= 0))
    counts["ignored"] += int(np.sum(matches == IGNORED))
    counts["background"] += int(np.sum(matches == BACKGROUND))
    num_objects += len(target["boxes"])
total = sum(counts.values())
print(f"{len(anchors):,} anchors per image, {num_objects} objects in {len(dataset)} images")
print(counts, f"-> {counts['background'] / counts['positive']:.0f} background anchors per positive")

# %% [markdown]
# The same counts from the IoU alone (intersection over union of two boxes; lesson 6 builds the matcher):

# %%
def labels_by_hand(anchors, boxes):
    """The three labels from the IoU alone: (positive, ignored, background) counts for one image."""
    lo, hi = np.maximum(anchors[:, None, :2], boxes[None, :, :2]), np.minimum(anchors[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)  # (anchors, boxes)
    areas = [np.prod(b[:, 2:] - b[:, :2], axis=1) for b in (anchors, boxes)]
    iou = inter / (areas[0][:, None] + areas[1][None, :] - inter)
    best = iou.max(axis=1) if len(boxes) else np.zeros(len(anchors))
    positive = (best >= 0.5) | np.any((iou == iou.max(axis=0, initial=0)) & (iou > 0), axis=1)  # or a box's best
    background = (best < 0.4) & ~positive
    return positive.sum(), (~positive & ~background).sum(), background.sum()


recount = np.sum([labels_by_hand(anchors, dataset[i][1]["boxes"].astype(np.float64)) for i in range(len(dataset))],
                 axis=0)
print("recounted:", dict(zip(counts, recount.tolist())))

# %% tags=["hide-input"]
assert len(anchors) == 9 * (16**2 + 8**2 + 4**2 + 2**2 + 1) == 3069
assert tuple(recount) == (counts["positive"], counts["ignored"], counts["background"])
# The counts depend on the images drawn; the imbalance does not: only anchors of about a box's size, centred
# near it, reach IoU 0.5, a handful per box, and an image holds at most `max_objects` = 4 boxes.
assert dataset.max_objects == 4 and counts["positive"] / total < 0.01
assert counts["background"] / counts["positive"] > 100

# %% [markdown]
# The counts depend on the images drawn (a recount from the IoU alone gives the same), but not their
# order of magnitude: only an anchor of about a box's size, centred near it, reaches IoU 0.5 with it, a
# handful per box, and an image holds at most 4 boxes. Fewer than 1 anchor in 100 is positive: hundreds
# of background anchors per positive one. With bigger images and smaller objects the ratio grows
# (exercise 2).
#
# ## The cross-entropy, from the logit
#
# The network outputs a logit $x$ for each anchor and class; $p = \sigma(x) = 1 / (1 + e^{-x})$ is the
# probability that the class is present, $y \in \{0, 1\}$ the truth. The paper writes the binary
# cross-entropy with $p_t$, the probability given to the *correct* answer (eq. 1-2):
#
# $$p_t = \begin{cases} p & \text{if } y = 1 \\ 1 - p & \text{otherwise} \end{cases}
# \qquad\qquad \mathrm{CE}(p_t) = -\log(p_t)$$
#
# `sigmoid_cross_entropy_forward(logits, targets)` returns one loss per entry (no sum).
# An example is *easy* when $p_t$ is near 1. Even then its loss is not zero:

# %%
def logit_of(p_t):
    """The logit of a positive (y = 1) whose p_t is the given probability."""
    p_t = np.asarray(p_t, dtype=np.float64)
    return np.log(p_t) - np.log1p(-p_t)


p_t = np.array([0.1, 0.5, 0.9, 0.99])
ce, _ = sigmoid_cross_entropy_forward(logit_of(p_t), np.ones(4))
for p, loss in zip(p_t, ce):
    print(f"p_t = {p:<5}  CE = {loss:.4f}")


# %% tags=["hide-input"]
np.testing.assert_allclose(ce, -np.log(p_t), rtol=1e-12)  # eq. 2, by hand

# %% [markdown]
# An easy example with $p_t = 0.99$ still costs $-\log 0.99 = 0.0101$, and a confident one with $p_t = 0.9$
# costs $-\log 0.9 = 0.105$, 15% of the $\log 2 = 0.693$ of a coin flip ($p_t = 0.5$).
#
# The package never forms $p$ and takes its log: it computes $-\log p_t = \mathrm{softplus}(-x_t)$ with
# $x_t = x$ if $y = 1$, else $x_t = -x$ (see the docstring of `numpy_retinanet.nn.losses`). The naive formula
# breaks for large logits, which a detector produces all the time:

# %%
x = np.array([-800.0])  # a positive the network is very sure is background
with np.errstate(over="ignore", divide="ignore"):
    naive = -np.log(1.0 / (1.0 + np.exp(-x)))  # exp(800) overflows, sigmoid is 0, log(0) = -inf
stable, _ = sigmoid_cross_entropy_forward(x, np.ones(1))
print(f"naive: {naive[0]}, stable: {stable[0]}")

# %% tags=["hide-input"]
assert np.isinf(naive[0]) and stable[0] == 800.0  # softplus(800) = 800 + log(1 + e^-800): e^-800 is below float64

# %% [markdown]
# ## Easy negatives drown the rare positives (§3.1)
#
# "When summed over a large number of easy examples, these small loss values can overwhelm the rare
# class" (§3.1). Take a detector early in training: 100,000 background anchors that it already
# rejects (p_t = 0.99 each), and 100 positive anchors it still gets wrong (p_t = 0.1 each).
# Which group does the loss, and the gradient, come from?

# %%
num_neg, num_pos = 100_000, 100
neg_logits = np.full(num_neg, -logit_of(0.99))  # y = 0, p = 0.01, so p_t = 0.99
pos_logits = np.full(num_pos, logit_of(0.1))  # y = 1, p = p_t = 0.1
logits = np.concatenate([neg_logits, pos_logits])
targets = np.concatenate([np.zeros(num_neg), np.ones(num_pos)])
is_neg = targets == 0

ce, cache = sigmoid_cross_entropy_forward(logits, targets)
dce = sigmoid_cross_entropy_backward(np.ones_like(ce), cache)  # dCE/dx = p - y
loss_share = ce[is_neg].sum() / ce.sum()
grad_share = np.abs(dce[is_neg]).sum() / np.abs(dce).sum()
print(f"loss: negatives {ce[is_neg].sum():.1f}, positives {ce[~is_neg].sum():.1f} -> negatives' share {loss_share:.1%}")
print(f"gradient magnitude: negatives' share {grad_share:.1%}")

# %% [markdown]
# Every anchor of a group has the same loss, so the shares need no arrays: $-\log 0.99 = 0.01005$ per easy
# negative and $-\log 0.1 = 2.303$ per positive; $|\partial \mathrm{CE} / \partial x| = |p - y|$ is 0.01 and 0.9.

# %%
ce_easy, ce_hard = -np.log(0.99), -np.log(0.1)  # one anchor's CE at p_t = 0.99 and at p_t = 0.1
loss_share_by_hand = num_neg * ce_easy / (num_neg * ce_easy + num_pos * ce_hard)  # 1005 / (1005 + 230)
grad_share_by_hand = num_neg * 0.01 / (num_neg * 0.01 + num_pos * 0.9)  # 1000 / (1000 + 90)
print(f"by hand: negatives' share of the loss {loss_share_by_hand:.1%}, of the gradient {grad_share_by_hand:.1%}")

# %% tags=["hide-input"]
np.testing.assert_allclose(dce, 1 / (1 + np.exp(-logits)) - targets, atol=1e-12)
assert np.isclose(loss_share, loss_share_by_hand, rtol=1e-12) and np.isclose(grad_share, grad_share_by_hand, rtol=1e-12)
assert round(loss_share_by_hand, 2) == 0.81 and round(grad_share_by_hand, 2) == 0.92

# %% [markdown]
# The easy negatives, each one nearly solved, hold 81% of the loss and 92% of the gradient
# magnitude: SGD's step mostly pushes already-correct anchors a little further. This is the
# "inefficient training" of §3 ("most locations are easy negatives that contribute no useful
# learning signal").
#
# ## Balancing with alpha does not tell easy from hard (§3.1, eq. 3)
#
# The usual fix is a weight $\alpha \in [0, 1]$ for the positives and $1 - \alpha$ for the negatives,
# the $\alpha$-balanced CE: $\mathrm{CE}(p_t) = -\alpha_t \log(p_t)$ (eq. 3). Choosing alpha so that both groups weigh
# the same is easy. But alpha scales every negative by the same factor. Add 100 *hard* negatives
# (p_t = 0.1, a shape the detector wrongly finds) to the 100,000 easy ones and watch two shares as
# alpha changes: the positives' share of the whole loss, and the hard negatives' share of the
# negatives' loss.

# %%
logits_hard = np.concatenate([logits, np.full(100, -logit_of(0.1))])  # hard negatives: p = 0.9, y = 0
targets_hard = np.concatenate([targets, np.zeros(100)])
hard = np.zeros(len(logits_hard), dtype=bool)
hard[-100:] = True
negatives = targets_hard == 0

positive_share, hard_share = {}, {}
for alpha in (None, 0.25, 0.75):
    loss, _ = sigmoid_cross_entropy_forward(logits_hard, targets_hard, alpha=alpha)
    positive_share[alpha] = loss[~negatives].sum() / loss.sum()
    hard_share[alpha] = loss[hard].sum() / loss[negatives].sum()
    print(f"CE, alpha = {alpha}: positives hold {positive_share[alpha]:5.1%} of the loss; "
          f"hard negatives hold {hard_share[alpha]:.1%} of the negatives' loss")
fl, _ = sigmoid_focal_loss_forward(logits_hard, targets_hard, alpha=0.25, gamma=2.0)
fl_hard_share = fl[hard].sum() / fl[negatives].sum()
print(f"FL, alpha = 0.25, gamma = 2: hard negatives hold {fl_hard_share:.2%} of the negatives' loss")

# %% [markdown]
# By hand again: the positives weigh $\alpha$ each, the negatives $1 - \alpha$ (no $\alpha$: 1 each), and
# the focal loss multiplies each CE by $(1 - p_t)^2$:

# %%
negatives_ce = num_neg * ce_easy + 100 * ce_hard  # the 100,000 easy and the 100 hard negatives, no alpha
weights = {None: (1.0, 1.0), 0.25: (0.25, 0.75), 0.75: (0.75, 0.25)}  # alpha_t of a positive, of a negative
share_by_hand = {a: w_pos * num_pos * ce_hard / (w_pos * num_pos * ce_hard + w_neg * negatives_ce)
                 for a, (w_pos, w_neg) in weights.items()}
hard_share_by_hand = 100 * ce_hard / negatives_ce  # 1 - alpha multiplies numerator and denominator
fl_easy, fl_hard = 0.01**2 * ce_easy, 0.9**2 * ce_hard  # (1 - p_t)^2 CE; alpha cancels among negatives
fl_share_by_hand = 100 * fl_hard / (num_neg * fl_easy + 100 * fl_hard)
print("positives' share:", {a: f"{v:.1%}" for a, v in share_by_hand.items()},
      f"hard negatives' share: CE {hard_share_by_hand:.1%}, FL {fl_share_by_hand:.2%}")

# %% tags=["hide-input"]
assert all(np.isclose(positive_share[a], share_by_hand[a], rtol=1e-12) for a in share_by_hand)
assert all(np.isclose(hard_share[a], hard_share_by_hand, rtol=1e-12) for a in hard_share)
assert [round(share_by_hand[a], 3) for a in (0.25, None, 0.75)] == [0.058, 0.157, 0.359]
assert round(hard_share_by_hand, 3) == 0.186
assert np.isclose(fl_hard_share, fl_share_by_hand, rtol=1e-12) and fl_share_by_hand > 0.999

# %% [markdown]
# $\alpha$ moves the balance between the classes: the positives' share of the loss goes from 5.8%
# ($\alpha = 0.25$) through 15.7% (no $\alpha$) to 35.9% ($\alpha = 0.75$). But among the negatives nothing
# moves: whatever $\alpha$ is, the 100 hard negatives hold $230 / (1005 + 230) = 18.6\%$ of the negatives' loss
# and the 100,000 easy ones the other 81%, because $\alpha$ multiplies every negative by the same $1 - \alpha$.
# $\alpha$ balances positives against negatives; it cannot focus training on the hard examples. The
# focal loss (lesson 2) down-weights each example by how easy it already is: with $\gamma = 2$ an easy
# negative's loss is multiplied by $(1 - 0.99)^2 = 10^{-4}$ and a hard one's by $0.9^2 = 0.81$, and the same
# 100 hard negatives hold over 99.9% of the negatives' loss.
#
# ## Summary
#
# - A dense detector scores ~$10^5$ anchors per image (120,087 at 800 px in the paper's design;
#   3,069 at 128 px here), and fewer than 1 in 100 is positive.
# - $\mathrm{CE} = -\log p_t$ is small but not zero for easy examples; summed over ~10^5 easy negatives it
#   outweighs the few positives, in the loss and in the gradient.
# - The package computes every loss from the logit (softplus), so it stays finite where the naive
#   -log(sigmoid(x)) overflows.
# - Alpha-balanced CE (eq. 3) reweights classes, not difficulty.
#
# ## Exercises
#
# 1. Find the alpha at which positives and negatives contribute equally to the CE of the toy above
#    (100,000 easy negatives at p_t = 0.99, 100 positives at p_t = 0.1). Is it near the paper's
#    best CE value alpha = 0.75 (Table 1a)? Why might it differ?
# 2. Repeat the anchor count for 256 px images of the shapes dataset (`ShapesDataset(..., image_size=256)`
#    and `model.anchors(256, 256)`). How does the background-to-positive ratio change, and why?
# 3. Show from eq. 2 that $\partial \mathrm{CE} / \partial x = p - y$,
#    and check it with `sigmoid_cross_entropy_backward`.
