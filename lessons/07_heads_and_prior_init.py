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
from numpy_retinanet.gradcheck import check_gradients
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
# same structure and separate weights. Counted from the layers' shapes, the classification subnet has
# $2 (64 \cdot 64 \cdot 9 + 64) + 2 \cdot 2 \cdot 64 + (27 \cdot 64 \cdot 9 + 27) = 89{,}691$ parameters.

# %%
cfg = model.cfg
A = model.anchor_generator.num_anchors_per_location
cls_params = sum(v.size for k, v in model.params.items() if k.startswith("cls_head."))
print(f"head depth {cfg['head_depth']}, width {cfg['head_channels']}, A = {A}; "
      f"{cls_params:,} parameters in the classification subnet")

# %% tags=["hide-input"]
assert [type(layer) for layer in model.cls_head.subnet.layers] == [Conv2d, GroupNorm, ReLU] * 2 + [Conv2d]
# from the layer shapes: two 3x3 convs 64 -> 64 with biases, two GroupNorms (a scale and a shift per
# channel), a last 3x3 conv 64 -> A K = 9 x 3 with biases
assert cls_params == 2 * (64 * 64 * 9 + 64) + 2 * (2 * 64) + (9 * 3 * 64 * 9 + 9 * 3)

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
hidden = []  # the inputs of the last conv on each level, for the prior's section
for f in features:
    for layer in model.cls_head.subnet.layers[:-1]:
        f = layer.forward(f)
    hidden.append(f)
model.clear_cache()
M = 9 * sum((128 // 2**level) ** 2 for level in range(3, 8))  # lesson 5: 9 anchors per cell of P3..P7

# %% tags=["hide-input"]
assert logits.shape == (8, M, 3) and deltas.shape == (8, M, 4)
np.testing.assert_allclose(logits[:, -9:, :], p7_map[:, :, 0, 0].reshape(8, 9, 3), rtol=1e-5)

# %% [markdown]
# The last 9 rows of the logits are exactly P7's single location, anchor a, class k at channel a K + k.
#
# ## One head, five levels: gradients add up
#
# The head runs once per level and keeps one cache per run; its backward walks the levels in reverse and
# *adds* each level's contribution into `grads`. So the gradient of a shared weight is the sum over
# levels. Check: backpropagate a gradient that is nonzero on one level at a time, sum the five results,
# and compare the sum with central differences (lesson 3) of the whole output's loss
# $\sum \text{logits} \cdot \text{dlogits}$ (a head that kept only one level's gradient would fail this).

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


# %%
shared = tiny.params["cls_head.subnet.0.weight"]
rows = check_gradients(lambda: float(np.sum(tiny.forward(x, keep_cache=False)[0] * dlogits)), {"shared weight": shared},
                       {"shared weight": sum(per_level)}, max_entries=12)

# %% tags=["hide-input"]
assert rows[0].passed  # the sum of the five levels' backward passes is the numerical gradient of the whole
assert all(np.abs(g).max() > 0 for g in per_level)  # every level contributes

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
assert np.isclose(b, -np.log(0.99 / 0.01))  # -log 99
assert np.isclose(sigmoid(np.float64(b)), 0.01)
assert np.allclose(last_cls.params["bias"], b) and np.all(last_box.params["bias"] == 0)

# %%
for head in (model.cls_head, model.box_head):
    convs = [layer for layer in head.subnet.layers if isinstance(layer, Conv2d)]
    # n draws of N(0, 0.01^2): their sample std is off by about 0.01 / sqrt(2 n); allow 5 times that
    assert all(abs(conv.params["weight"].std() - 0.01) < 5 * 0.01 / np.sqrt(2 * conv.params["weight"].size)
               for conv in convs)
    assert all(np.all(conv.params["bias"] == 0) for conv in convs[:-1])
p = sigmoid(logits.astype(np.float64))
print(f"initial foreground probability of the {logits.size:,} outputs: median {np.median(p):.4f}, "
      f"range [{p.min():.4f}, {p.max():.4f}]")

# %% [markdown]
# How far from $\pi$? Each logit is $b$ plus $\sum w h$ over the $3 \times 3 \times 64$ inputs $h$ the last conv
# sees at that place. For given inputs, a sum of independent $N(0, 0.01^2)$ weights times $h$ is a draw of
# $N(0, s^2)$ with $s = 0.01 \lVert h \rVert$, the norm of that $3 \times 3 \times 64$ patch. (The GroupNorm
# layers scale the hidden features to unit variance, so $s$ is not tiny.) An offset beyond 6 of its own $s$
# has a chance of about $2 \cdot 10^{-9}$, so none of the batch's $8 \times 3069 \times 3 = 73{,}656$ outputs
# should have one:

# %%
def patch_norm(h):
    """||h|| over each 3 x 3 x C patch that a padded 3x3 conv sees: (N, H, W)."""
    sq = np.pad((h.astype(np.float64) ** 2).sum(axis=1), ((0, 0), (1, 1), (1, 1)))
    rows, cols = h.shape[2], h.shape[3]
    return np.sqrt(sum(sq[:, i:i + rows, j:j + cols] for i in range(3) for j in range(3)))


# s per output, in the logits' order (level, row, column, anchor; the same s for the A anchors and K classes)
s = np.concatenate([np.repeat(0.01 * patch_norm(h).reshape(8, -1), A, axis=1) for h in hidden], axis=1)
z = (logits.astype(np.float64) - b) / s[..., None]
print(f"s from {s.min():.3f} to {s.max():.3f}; largest |offset| / s: {np.abs(z).max():.2f}")

# %% tags=["hide-input"]
assert np.abs(z).max() < 6  # every output within 6 s of b
assert sigmoid(b - 6 * s.max()) < p.min() and p.max() < sigmoid(b + 6 * s.max())

# %% [markdown]
# So every output starts within $\sigma(b \pm 6 s)$ of the prior: near $\pi = 0.01$, the exact spread being
# a property of this draw of the weights.
#
# ## The initial loss with and without the prior
#
# Without the prior ($\pi = 0.5$, bias 0) every output starts near $p = 0.5$: each background output costs
# log 2 under CE, nearly all of the 73,656 outputs are background, and the sum is divided only by the
# number $P$ of positive anchors (§4.1). With the prior each costs $-\log 0.99$. Compare CE (eq. 2, no alpha) and
# FL (gamma = 2, alpha = 0.25), and the share of the gradient that comes from background outputs.
#
# Both follow from the counts if every output sat exactly at $p = \pi$. With $n$ background outputs and
# $P$ positive ones (one per positive anchor), the loss is
# $[(1 - \alpha) n \pi^\gamma (-\log(1 - \pi)) + \alpha P (1 - \pi)^\gamma (-\log \pi)] / P$ (CE: $\gamma = 0$ and
# both weights 1). A background output's gradient is $(1 - \alpha) g(\pi)$ and a positive one's $\alpha g(1 - \pi)$,
# with $g(u) = u^\gamma (u - \gamma (1 - u) \log(1 - u))$ (the derivative of eq. 5 through the sigmoid; for CE
# $g(u) = u$).

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
        out[name] = (losses["classification"], share, losses["num_positive"], int(background.sum()))
    return out


def at_prior(pi, n, P, alpha, gamma):
    """(loss, background's share of the gradient) if every output sat at p = pi; alpha None: both weights 1."""
    w_neg, w_pos = (1.0, 1.0) if alpha is None else (1 - alpha, alpha)
    g = lambda u: u**gamma * (u - gamma * (1 - u) * np.log(1 - u))  # noqa: E731
    loss = (w_neg * n * pi**gamma * -np.log(1 - pi) + w_pos * P * (1 - pi) ** gamma * -np.log(pi)) / P
    return loss, w_neg * n * g(pi) / (w_neg * n * g(pi) + w_pos * P * g(1 - pi))


results = {prior: initial_loss(prior) for prior in (0.5, 0.01)}
formula = {}
for prior, res in results.items():
    for name, (loss, share, P, n) in res.items():
        formula[prior, name] = at_prior(prior, n, P, *((None, 0.0) if name == "CE" else (0.25, 2.0)))
        print(f"pi = {prior:<4}  {name}: classification loss {loss:8.2f} (at p = pi: {formula[prior, name][0]:8.2f}), "
              f"background's share of the gradient {share:.1%} (at p = pi: {formula[prior, name][1]:.1%})")


# %% tags=["hide-input"]
# the targets depend on boxes and anchors, not on the network: the same n and P for both priors
assert results[0.01]["CE"][2:] == results[0.5]["CE"][2:] == results[0.5]["FL"][2:]
# the logits spread a little around b (above), so the measured values are near the formula's, not on it
assert all(np.isclose(results[prior][name][0], loss, rtol=0.1) and np.isclose(results[prior][name][1], share, rtol=0.25)
           for (prior, name), (loss, share) in formula.items())
assert formula[0.5, "CE"][1] > 0.99 and formula[0.01, "CE"][1] > 0.9 and formula[0.01, "FL"][1] < 0.02
assert results[0.01]["FL"][1] < 0.02
assert all(results[0.5][name][0] > 10 * results[0.01][name][0] for name in ("CE", "FL"))

# %% [markdown]
# The measured losses and shares are close to the formula's (the outputs sit near, not exactly at, $\pi$).
# Without the prior, $n / (n + P)$ of CE's gradient, more than 99% here, comes from background outputs: the
# first steps mostly teach "everything is background", hard, which the paper found makes CE diverge. The
# prior lowers the first loss more than tenfold, for CE and FL. It removes the initial imbalance; the focal
# loss removes the imbalance that remains once the network is training: with the prior, background still
# drives about $n \pi / (n \pi + P (1 - \pi))$ of CE's gradient, over 90% here, but less than 2% of FL's, whose
# $g(\pi) \approx 3 \pi^3$ for background outputs (against $g(1 - \pi) \approx 1$ for a positive).

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
assert cls_t.shape == (8, M, 3)
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
x_circle, x_square, x_triangle = compared["logits"][2]  # "circle or square": two equal logits
softmax_two = np.exp(x_circle) / (2 * np.exp(x_circle) + np.exp(x_triangle) + np.exp(0))  # background's logit 0

# %% tags=["hide-input"]
np.testing.assert_allclose(compared["sigmoid"], 1 / (1 + np.exp(-compared["logits"])), rtol=1e-12)
np.testing.assert_allclose(compared["softmax"], np.exp(np.c_[compared["logits"], np.zeros(4)])
                           / np.exp(np.c_[compared["logits"], np.zeros(4)]).sum(axis=1, keepdims=True), rtol=1e-12)
np.testing.assert_allclose(compared["softmax"][:, :3] / (compared["softmax"][:, :3] + compared["softmax"][:, 3:]),
                           compared["sigmoid"], rtol=1e-12)  # a class against background alone: its sigmoid
assert x_circle == x_square > x_triangle and np.allclose(compared["sigmoid"][2, :2], 1 / (1 + np.exp(-x_circle)))
assert np.allclose(compared["softmax"][2, :2], softmax_two) and softmax_two < 1 / 2  # two equal shares of < 1
assert np.allclose(compared["sigmoid"][0], 0.01) and np.isclose(compared["sigmoid"][0].sum(), 3 * 0.01)

# %% mystnb={"image":{"alt":"Four anchors' logits as 3 sigmoid probabilities and as a softmax with background"}}
as_image(plot_sigmoid_vs_softmax(compared))

# %% [markdown]
# The two read the same numbers differently:
#
# - **K sigmoids** are K independent answers and need not sum to 1. The anchor whose circle and square
#   logits are both 3 gets $\sigma(3) = 0.95$ for each; the anchor at the prior gets 0.01 for each class, 0.03 in all.
#   Background is not an output: it is every answer being "no".
# - **A softmax** makes one choice among K + 1 answers that sum to 1, so the classes compete: the same
#   circle-or-square anchor gets $e^3 / (2 e^3 + e^{-4} + e^0) = 0.488$ for each, less than half, and raising
#   one class's logit lowers every other probability, background's included.
#
# Why the paper's choice suits its loss and its initialization:
#
# - The focal loss (eq. 5) is a loss of one probability $p$ and a target $y \in \{0, 1\}$. With K sigmoids
#   every one of the N M K outputs is such a binary example with its own $p_t$, so $(1 - p_t)^\gamma$
#   down-weights each easy (anchor, class) output on its own: the 73,656 outputs above, of which the
#   background ones gave less than 2% of FL's gradient at the start. (§3 notes that a multi-class focal loss is
#   possible; the paper uses the binary one.)
# - The prior of §3.3 applies to each of the K outputs: the one bias $b = -\log((1 - \pi) / \pi)$ on every
#   class output starts each at $p = \pi$, whatever K is. With a softmax and class logits 0, each class
#   would start at $\pi$ only through the background's logit, $b_{bg} = \log(1 / \pi - K)$, which depends on
#   K, and the classes would stay coupled through the shared sum:

# %%
b = prior_bias(0.01)
print(f"sigmoids, any K: bias {b:.3f} -> each class starts at {sigmoid(np.float64(b)):.4f}")
starts = {}
for k in (3, 80):  # the shapes' classes, and COCO's
    b_bg = np.log(1 / 0.01 - k)
    starts[k] = softmax_with_background(np.zeros((1, k)), background_logit=b_bg)[0, :k]
    print(f"softmax, K = {k:>2}: background logit {b_bg:.3f} -> each class starts at {starts[k][0]:.4f}")

# %% tags=["hide-input"]
# by hand: each class gets e^0 / (K e^0 + e^b_bg) = 1 / (K + 1 / pi - K) = pi
assert all(np.allclose(start, 1 / (k + np.exp(np.log(1 / 0.01 - k))), rtol=1e-12) for k, start in starts.items())
assert all(np.allclose(start, 0.01, rtol=1e-12) for start in starts.values())

# %% [markdown]
# ## Summary
#
# - The classification and box subnets are small conv stacks shared over P3-P7; outputs are (N, M, K)
#   and (N, M, 4), in the anchors' order.
# - A shared weight's gradient is the sum over levels: the module's backward adds into `grads`.
# - The prior $b = -\log((1 - \pi) / \pi) = -\log 99 = -4.59512$ for $\pi = 0.01$ starts every output near
#   $p = 0.01$, and lowers the initial loss of this batch more than tenfold.
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
