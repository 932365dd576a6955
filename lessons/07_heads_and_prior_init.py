# %% [markdown]
# # Lesson 7: the heads, and the prior initialization
#
# Two small fully convolutional subnets sit on every pyramid level: the classification subnet predicts
# K probabilities per anchor, the box subnet 4 deltas per anchor (§4). Both are *shared* across levels.
# The last layer of the classification subnet starts with a special bias, the *prior* of §3.3, without
# which the first iterations are dominated by the background. This lesson builds the heads, checks their
# output layout and their shared gradients, measures the initial loss with and without the prior, and shows
# why the K outputs of an anchor are K sigmoids rather than a softmax with a background class.

# %%
import numpy as np

from numpy_retinanet.data.batching import collate
from numpy_retinanet.data.shapes import ShapesDataset
from numpy_retinanet.detection.criterion import assign_targets, retinanet_loss
from numpy_retinanet.model.heads import prior_bias
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.losses import sigmoid
from numpy_retinanet.nn.modules import Conv2d, GroupNorm, ReLU
from numpy_retinanet.teaching.figures import (
    as_image,
    plot_sigmoid_vs_softmax,
    sigmoid_vs_softmax_data,
    softmax_with_background,
)

model = RetinaNet(num_classes=3, preset="default", seed=0)
images, targets = collate([ShapesDataset(8, image_size=128, num_classes=3, seed=0)[i] for i in range(8)])
print([type(layer).__name__ for layer in model.cls_head.subnet.layers])

# %% [markdown]
# ## Structure (§4, "Classification Subnet", "Box Regression Subnet")
#
# The paper's subnet is four 3x3 convs with 256 filters, each followed by ReLU, then a 3x3 conv to K A
# outputs (sigmoid) or 4 A outputs. The `default` preset uses two convs of 64 filters, each followed by
# GroupNorm and then ReLU: its one departure from the paper's heads, because this backbone is trained from
# scratch and the plain heads diverged (`model/retinanet.py` gives the numbers). The two subnets have the
# same structure and separate weights.

# %%
cfg = model.cfg
A = model.anchor_generator.num_anchors_per_location
print(f"head depth {cfg['head_depth']}, width {cfg['head_channels']}, A = {A}")

# %% tags=["hide-input"]
assert (cfg["head_depth"], cfg["head_channels"], cfg["head_norm_groups"]) == (2, 64, 8)
assert [type(layer) for layer in model.cls_head.subnet.layers] == [Conv2d, GroupNorm, ReLU] * 2 + [Conv2d]

# %%
last_cls, last_box = model.cls_head.subnet.layers[-1], model.box_head.subnet.layers[-1]

# %% tags=["hide-input"]
assert last_cls.params["weight"].shape == (9 * 3, 64, 3, 3) and last_box.params["weight"].shape == (9 * 4, 64, 3, 3)

# %% [markdown]
# ## Output layout
#
# On a level of H x W locations the last conv gives (N, A K, H, W), channel c = a K + k. The head moves
# channels last and flattens to (N, H W A, K), then concatenates the levels: row m of the output is
# anchor m of lesson 5 (level, row, column, anchor).

# %%
logits, deltas = model.forward(images, keep_cache=False)
print("logits", logits.shape, "deltas", deltas.shape)

features = model.fpn.forward(*model.backbone.forward(images))
p7_map = model.cls_head.subnet.forward(features[4])  # (N, A K, 1, 1): P7 has one location
model.clear_cache()

# %% tags=["hide-input"]
assert logits.shape == (8, 3069, 3) and deltas.shape == (8, 3069, 4)
np.testing.assert_allclose(logits[:, -9:, :], p7_map[:, :, 0, 0].reshape(8, 9, 3), rtol=1e-5)

# %% [markdown]
# The last 9 rows of the logits are exactly P7's single location, anchor a, class k at channel a K + k.
#
# ## One head, five levels: gradients add up
#
# The head runs once per level and keeps one cache per run; its backward walks the levels in reverse and
# *adds* each level's contribution into `grads`. So the gradient of a shared weight is the sum over
# levels. Check: backpropagate a gradient that is nonzero on one level at a time, and sum.

# %%
tiny = RetinaNet(num_classes=3, preset="tiny", dtype=np.float64, seed=0)
x = images[:2, :, :64, :64].astype(np.float64)
rng = np.random.default_rng(0)
out_logits, out_deltas = tiny.forward(x)
tiny.clear_cache()
dlogits = rng.standard_normal(out_logits.shape)
bounds = np.concatenate([[0], np.cumsum(tiny.level_sizes(64, 64))])


def head_weight_grad(d):
    tiny.zero_grad()
    tiny.forward(x)
    tiny.backward(d, np.zeros_like(out_deltas))
    return tiny.grads["cls_head.subnet.0.weight"].copy()


full = head_weight_grad(dlogits)
per_level = []
for lo, hi in zip(bounds[:-1], bounds[1:]):
    d = np.zeros_like(dlogits)
    d[:, lo:hi] = dlogits[:, lo:hi]
    per_level.append(head_weight_grad(d))


# %% tags=["hide-input"]
np.testing.assert_allclose(full, sum(per_level), rtol=1e-10, atol=1e-14)

# %%
print("the shared weight's gradient is the sum of its", len(per_level), "levels' gradients")

# %% [markdown]
# ## The prior (§3.3)
#
# "We introduce the concept of a 'prior' for the value of p estimated by the model for the rare class
# (foreground) at the start of training." All new conv layers start with weights N(0, 0.01) and bias 0,
# except the classification subnet's last bias, $b = -\log((1 - \pi) / \pi)$ with $\pi = 0.01$ (§4.1). With
# weights that small the logits at the start stay close to b, so every anchor starts with foreground
# probability near pi.

# %%
b = prior_bias(0.01)
print(f"b = {b:.5f}")

# %% tags=["hide-input"]
assert round(b, 5) == -4.59512 and np.isclose(sigmoid(np.float64(b)), 0.01)
assert np.allclose(last_cls.params["bias"], b) and np.all(last_box.params["bias"] == 0)

# %%
for head in (model.cls_head, model.box_head):
    convs = [layer for layer in head.subnet.layers if isinstance(layer, Conv2d)]
    assert all(abs(conv.params["weight"].std() - 0.01) < 0.001 for conv in convs)
    assert all(np.all(conv.params["bias"] == 0) for conv in convs[:-1])
p = sigmoid(logits.astype(np.float64))
print(f"initial foreground probability: mean {p.mean():.4f}, range [{p.min():.4f}, {p.max():.4f}]")

# %% tags=["hide-input"]
assert logits.size == 73_656
assert 0.0095 < p.mean() < 0.0105 and 0.003 < p.min() and p.max() < 0.04

# %% [markdown]
# All 73,656 (anchor, class) outputs of the batch start between 0.003 and 0.04, with mean 0.01. (The
# GroupNorm layers scale the hidden features to unit variance, so the last conv's small weights still
# spread the logits a little around b.)
#
# ## The initial loss with and without the prior
#
# Without the prior ($\pi = 0.5$, bias 0) every output starts at $p = 0.5$: each background output costs
# log 2 under CE, nearly all of the 73,656 outputs are background, and the sum is divided only by the
# number of positive anchors (§4.1). With the prior each costs -log 0.99. Compare CE (eq. 2, no alpha) and FL
# (gamma = 2, alpha = 0.25), and the share of the gradient that comes from background outputs:

# %%
def initial_loss(prior):
    m = RetinaNet(num_classes=3, preset="default", seed=0, prior=prior)
    lo, de = m.forward(images, keep_cache=False)
    anchors = m.anchors(128, 128)
    cls_t, _, _, valid = assign_targets(anchors, targets, num_classes=3)
    background = (cls_t == 0) & valid[..., None]
    out = {}
    for name, kw in (("CE", dict(loss="ce", alpha=None)), ("FL", dict(alpha=0.25, gamma=2.0))):
        losses, dl, _ = retinanet_loss(lo, de, anchors, targets, **kw)
        share = float(np.abs(dl[background]).sum() / np.abs(dl).sum())
        out[name] = (losses["classification"], share, losses["num_positive"])
    return out


results = {prior: initial_loss(prior) for prior in (0.5, 0.01)}
for prior, res in results.items():
    for name, (loss, share, _) in res.items():
        print(f"pi = {prior:<4}  {name}: classification loss {loss:8.2f}, "
              f"background's share of the gradient {share:.1%}")


# %% tags=["hide-input"]
assert results[0.01]["CE"][2] == results[0.5]["CE"][2] == 68
assert results[0.5]["CE"][0] > 700 and results[0.5]["FL"][0] > 100
assert results[0.01]["CE"][0] < 16 and results[0.01]["FL"][0] < 1.2
assert results[0.5]["CE"][1] > 0.99 and results[0.5]["FL"][1] > 0.99
assert 0.9 < results[0.01]["CE"][1] < 0.95 and results[0.01]["FL"][1] < 0.02

# %% [markdown]
# The batch has 68 positive anchors. Without the prior the first loss is above 700 with CE and above 100
# with FL, and more than 99% of the gradient comes from background outputs: the first steps mostly teach
# "everything is background", hard, which the paper found makes CE diverge. With the prior the loss starts
# below 16 (CE) and below 1.2 (FL). The prior removes the initial imbalance; the focal loss removes the
# imbalance that remains once the network is training: with the prior, background still drives 90-95% of
# CE's gradient, but less than 2% of FL's.

# %% [markdown]
# ## K sigmoids, not a softmax with a background class (§3, §4)
#
# The classification subnet's last conv gives K A outputs per location, with a sigmoid on each (§4,
# "Classification Subnet"): for every anchor K probabilities, one per class, each answering its own yes/no
# question, "is an object of class k here?". There is **no background class**. An anchor matched to
# background (lesson 6) is trained with all K targets 0; a positive anchor with 1 for its box's class and 0
# for the others:

# %%
cls_t, _, positive, valid = assign_targets(model.anchors(128, 128), targets, num_classes=3)
negative = valid & ~positive
print(f"{negative.sum()} background anchors: every target 0 -> {not cls_t[negative].any()}")
print(f"{positive.sum()} positive anchors: exactly one target 1 each -> {np.all(cls_t[positive].sum(axis=-1) == 1)}")

# %% tags=["hide-input"]
assert cls_t.shape == (8, 3069, 3) and positive.sum() == 68
assert not cls_t[negative].any() and np.all(cls_t[positive].sum(axis=-1) == 1)

# %% [markdown]
# Many classifiers end instead in a *softmax* over K + 1 classes, one of them background. Put the same
# logits through both. The softmax needs a logit for background too; it ignores any shift common to all
# logits, so take the background's as 0: then a class alone against background gets exactly its sigmoid,
# $e^x / (e^x + e^0) = \sigma(x)$. Four anchors of the shapes' K = 3 classes (circle, square, triangle):

# %%
compared = sigmoid_vs_softmax_data()
for label, x_row, sig, soft in zip(compared["labels"], compared["logits"], compared["sigmoid"],
                                   compared["softmax"]):
    print(f"{label:<20} x = {np.round(x_row, 2)}")
    print(f"{'':<20} sigmoids {np.round(sig, 3)}, sum {sig.sum():.2f}")
    print(f"{'':<20} softmax  {np.round(soft[:3], 3)}, background {soft[3]:.3f}")

# %% tags=["hide-input"]
np.testing.assert_allclose(compared["sigmoid"], 1 / (1 + np.exp(-compared["logits"])), rtol=1e-12)
np.testing.assert_allclose(compared["softmax"], np.exp(np.c_[compared["logits"], np.zeros(4)])
                           / np.exp(np.c_[compared["logits"], np.zeros(4)]).sum(axis=1, keepdims=True), rtol=1e-12)
np.testing.assert_allclose(compared["softmax"][:, :3] / (compared["softmax"][:, :3] + compared["softmax"][:, 3:]),
                           compared["sigmoid"], rtol=1e-12)  # a class against background alone: its sigmoid
assert np.all(compared["sigmoid"][2, :2] > 0.95) and np.all(compared["softmax"][2, :2] < 0.49)
assert np.allclose(compared["sigmoid"][0], 0.01) and round(compared["sigmoid"][0].sum(), 2) == 0.03

# %% mystnb={"image":{"alt":"Four anchors' logits as 3 sigmoid probabilities and as a softmax with background"}}
as_image(plot_sigmoid_vs_softmax(compared))

# %% [markdown]
# The two read the same numbers differently:
#
# - **K sigmoids** are K independent answers and need not sum to 1. The anchor whose circle and square
#   logits are both 3 gets 0.95 for each; the anchor at the prior gets 0.01 for each class, 0.03 in all.
#   Background is not an output: it is every answer being "no".
# - **A softmax** makes one choice among K + 1 answers that sum to 1, so the classes compete: the same
#   circle-or-square anchor gets less than 0.49 for each, and raising one class's logit lowers every other
#   probability, background's included.
#
# Why the paper's choice suits its loss and its initialization:
#
# - The focal loss (eq. 5) is a loss of one probability $p$ and a target $y \in \{0, 1\}$. With K sigmoids
#   every one of the N M K outputs is such a binary example with its own $p_t$, so $(1 - p_t)^\gamma$
#   down-weights each easy (anchor, class) output on its own: the 73,656 outputs above, of which the
#   background ones gave less than 2% of FL's gradient. (§3 notes that a multi-class focal loss is
#   possible; the paper uses the binary one.)
# - The prior of §3.3 applies to each of the K outputs: the one bias $b = -\log((1 - \pi) / \pi)$ on every
#   class output starts each at $p = \pi$, whatever K is. With a softmax and class logits 0, each class
#   would start at $\pi$ only through the background's logit, $b_{bg} = \log(1 / \pi - K)$, which depends on
#   K, and the classes would stay coupled through the shared sum:

# %%
b = prior_bias(0.01)
print(f"sigmoids, any K: bias {b:.3f} -> each class starts at {sigmoid(np.float64(b)):.4f}")
for k in (3, 80):  # the shapes' classes, and COCO's
    b_bg = np.log(1 / 0.01 - k)
    start = softmax_with_background(np.zeros((1, k)), background_logit=b_bg)
    print(f"softmax, K = {k:>2}: background logit {b_bg:.3f} -> each class starts at {start[0, 0]:.4f}")

# %% tags=["hide-input"]
assert np.isclose(np.log(1 / 0.01 - 3), np.log(97)) and np.isclose(np.log(1 / 0.01 - 80), np.log(20))
np.testing.assert_allclose(softmax_with_background(np.zeros((1, 80)), background_logit=np.log(20))[0, :80], 0.01)

# %% [markdown]
# ## Summary
#
# - The classification and box subnets are small conv stacks shared over P3-P7; outputs are (N, M, K)
#   and (N, M, 4), in the anchors' order.
# - A shared weight's gradient is the sum over levels: the module's backward adds into `grads`.
# - The prior $b = -\log((1 - \pi) / \pi) = -4.59512$ for $\pi = 0.01$ starts every output at $p \approx 0.01$, and
#   lowers the initial CE of this batch from more than 700 to less than 16.
# - The K outputs of an anchor are K sigmoids, K independent yes/no answers; background is all K "no", not a
#   class. A softmax over K + 1 would make the classes compete and sum to 1. The sigmoids make every
#   (anchor, class) output one binary example for the focal loss, and let one bias set the prior of each.
#
# ## Exercises
#
# 1. Write the backward pass of a head shared over levels: `lessons/exercises/ex5_shared_head_backward.py`
#    (`numpy-retinanet check lessons/exercises/ex5_shared_head_backward.py`).
# 2. With the trainer of lesson 8, train `TrainConfig(preset="tiny", image_size=64, loss="ce", alpha=0.5,
#    model_overrides={"prior": 0.5})` for 50 steps, then the same with the default prior. Compare the
#    classification losses in `metrics["history"]`.
# 3. Why is the box subnet's last bias 0 and not something like the prior?
