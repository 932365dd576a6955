# %% [markdown]
# # Lesson 3: convolution forward and backward, and checking gradients
#
# Every layer of RetinaNet's backbone, feature pyramid and heads is a 2-D convolution (§4). There is
# no autograd in this package: each op is a pair `op_forward(inputs...) -> (out, cache)` and
# `op_backward(dout, cache) -> grads`, written by hand. This lesson runs the convolution both ways,
# then shows the tool that makes hand-written backward passes trustworthy: the gradient check. It then
# builds GroupNorm, the normalization after every convolution of the backbone, and checks its backward.

# %%
import numpy as np

from numpy_retinanet.data.batching import collate
from numpy_retinanet.data.shapes import ShapesDataset
from numpy_retinanet.detection.criterion import retinanet_loss
from numpy_retinanet.gradcheck import check_gradients, compare, directional_check, numerical_gradient
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.functional import (
    conv2d_backward,
    conv2d_forward,
    conv_output_size,
    group_norm_backward,
    group_norm_forward,
)

rng = np.random.default_rng(0)

# %% [markdown]
# ## Forward
#
# Images and feature maps are NCHW (batch, channels, height, width). A convolution with F filters
# w of shape (F, C, KH, KW), bias b (F,), stride s and zero padding p computes
#
# $$y_{n,f,i,j} = b_f + \sum_{c,u,v} w_{f,c,u,v}\, x^{\mathrm{pad}}_{n,c,\,s i + u,\,s j + v}$$
#
# (a cross-correlation, as in every deep-learning library). The output side is
# floor((H + 2p - K) / s) + 1: a 3x3 stride-2 conv with padding 1 halves a 128 px map, and
# rounds odd sizes up.

# %%
x = rng.standard_normal((2, 3, 7, 7))
w = rng.standard_normal((4, 3, 3, 3))
b = rng.standard_normal(4)
y, cache = conv2d_forward(x, w, b, stride=2, padding=1)
print("x", x.shape, "-> y", y.shape)

# %% tags=["hide-input"]
assert conv_output_size(128, kernel=3, stride=2, padding=1) == 64
assert conv_output_size(5, kernel=3, stride=2, padding=1) == 3  # ceil(5 / 2)
assert conv_output_size(16, kernel=3, stride=1, padding=1) == 16  # "same" at stride 1
assert y.shape == (2, 4, 4, 4)

# %% [markdown]
# The package computes all outputs with one matrix product (an "im2col" layout, explained in
# `nn/functional.py`). The formula above, for one output entry, agrees:

# %%
xpad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
for n, f, i, j in [(0, 0, 0, 0), (1, 3, 2, 1), (0, 2, 3, 3)]:
    by_hand = b[f] + np.sum(w[f] * xpad[n, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3])
    assert np.isclose(y[n, f, i, j], by_hand, rtol=1e-12)

# %% [markdown]
# ## Backward
#
# Given dout = dL/dy (same shape as y), the backward returns dL/dx, dL/dw and dL/db. Each follows
# from the sum above: y[n, f, i, j] depends on b[f] with slope 1, so db[f] is the sum of dout over
# n, i, j; it depends on w[f, c, u, v] with slope xpad[n, c, s*i + u, s*j + v], so dw correlates
# the input with dout; and each input pixel receives dout times the weights of every output window
# it fell into.

# %%
dout = rng.standard_normal(y.shape)
dx, dw, db = conv2d_backward(dout, cache)

# %% tags=["hide-input"]
assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape
np.testing.assert_allclose(db, dout.sum(axis=(0, 2, 3)), rtol=1e-12)
np.testing.assert_allclose(dw[1, 2, 0, 0], np.sum(dout[:, 1] * xpad[:, 2, 0:8:2, 0:8:2]), rtol=1e-12)

# %% [markdown]
# ## Checking gradients
#
# A hand-written backward can be wrong in a hundred small ways (a transposed axis, a forgotten
# stride, a lost padding row). The gradient check catches them: take the scalar
# f = sum(y * dout), whose gradient with respect to x is exactly what `conv2d_backward(dout, ...)` returns,
# and compare with central differences
#
# $$\frac{\partial f}{\partial x_k} \approx \frac{f(x + h e_k) - f(x - h e_k)}{2h}$$
#
# The error is $O(h^2)$ from truncation plus $O(\epsilon / h)$ from rounding; in float64 with h = 1e-5 both
# are 1e-10 or less, so a correct backward agrees to ~1e-8 relative error or better. On a function whose
# derivative we know, $\sum_k e^{x_k}$, the error follows the two terms: at h = 1e-2 it is the truncation
# $f^{(3)} h^2 / 6 = e^x h^2 / 6$ of Taylor's series, $h^2 / 6$ relative to $f' = e^x$; at h = 1e-12 the
# rounding, which grows like $\epsilon / h$, is far above 1e-6:

# %%
h = 1e-5
t = np.linspace(0.5, 1.5, 11)
relative_error = {}
for step in (1e-2, h, 1e-12):
    estimate = numerical_gradient(lambda: float(np.sum(np.exp(t))), t, h=step)
    relative_error[step] = np.max(np.abs(estimate - np.exp(t)) / np.exp(t))
    print(f"h = {step:.0e}: largest relative error {relative_error[step]:.1e}")

# %% tags=["hide-input"]
assert np.isclose(relative_error[1e-2], 1e-2**2 / 6, rtol=1e-3)  # truncation: h^2 / 6 (+ h^4 / 120)
assert relative_error[h] < 1e-8 and relative_error[1e-12] > 1e-6  # both terms small only in between

# %% [markdown]
# `check_gradients` perturbs each entry in place, restores it, and prints one row per input.

# %%
def f():
    return float(np.sum(conv2d_forward(x, w, b, stride=2, padding=1)[0] * dout))


rows = check_gradients(f, {"x": x, "w": w, "b": b}, {"x": dx, "w": dw, "b": db})

# %% tags=["hide-input"]
assert all(r.passed for r in rows)
assert max(r.max_rel_error for r in rows) < 1e-6 and max(r.norm_rel_error for r in rows) < 1e-9

# %% [markdown]
# Every entry of all three gradients agrees to a relative error below 1e-6, and each gradient as a
# whole (the norm of the difference over the norm of the gradient) to below 1e-9. Now a plausible bug:
# flipping the kernel in dw, as a *convolution* (not a correlation) would. The check fails, by a
# large margin:

# %%
buggy_dw = dw[:, :, ::-1, ::-1]
row = compare("w (flipped kernel bug)", buggy_dw, numerical_gradient(f, w))
print(row.format())

# %% tags=["hide-input"]
assert not row.passed and row.max_rel_error > 0.1

# %% [markdown]
# float32 cannot be checked this way: its rounding error (~1e-7 relative) divided by h = 1e-5 is
# already of order 1e-2. The same central differences of $e^x$, in float32:

# %%
t32, h32 = t.astype(np.float32), np.float32(h)
estimate32 = (np.exp(t32 + h32) - np.exp(t32 - h32)) / (2 * h32)
relative_error32 = np.max(np.abs(estimate32 - np.exp(t)) / np.exp(t))
print(f"float32, h = {h:.0e}: largest relative error {relative_error32:.1e} "
      f"(eps32 / h = {np.finfo(np.float32).eps / h:.1e})")

# %% tags=["hide-input"]
assert estimate32.dtype == np.float32 and relative_error32 > 1e-3  # ~eps32 / h, a thousand times the 1e-6 limit

# %% [markdown]
# The checker refuses float32 rather than report noise:

# %%
try:
    check_gradients(f, {"x": x.astype(np.float32)}, {"x": dx.astype(np.float32)})
except ValueError as e:
    print("refused:", str(e)[:80], "...")
else:
    raise AssertionError("float32 should be refused")

# %% [markdown]
# ## GroupNorm: forward and backward (Wu & He 2018)
#
# Every convolution of the backbone, and every hidden convolution of the `default` preset's heads, is
# followed by *group normalization* (README: "GroupNorm in the backbone"). It splits the C channels of each image into G
# groups of C/G consecutive channels, and normalizes each (image, group) by its own mean and variance
# over its $M = C/G \cdot H \cdot W$ entries; then each channel c gets its own scale $\gamma_c$ and shift
# $\beta_c$:
#
# $$\mu_{n,g} = \frac{1}{M} \sum_{i \in (n,g)} x_i, \qquad
# \sigma^2_{n,g} = \frac{1}{M} \sum_{i \in (n,g)} (x_i - \mu_{n,g})^2, \qquad
# \hat x_i = \frac{x_i - \mu_{n,g}}{\sqrt{\sigma^2_{n,g} + \epsilon}}, \qquad y_i = \gamma_c \hat x_i + \beta_c$$
#
# In NumPy that is a reshape to (N, G, C/G H W), two means, and a reshape back:

# %%
N, C, H, W, G = 2, 6, 4, 5, 3
x = rng.standard_normal((N, C, H, W)) * 3 + 1
gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
eps = 1e-5

xg = x.reshape(N, G, C // G * H * W)  # one row per (image, group): M = 2 * 4 * 5 = 40 entries
mu = xg.mean(axis=2, keepdims=True)
var = ((xg - mu) ** 2).mean(axis=2, keepdims=True)
xhat = ((xg - mu) / np.sqrt(var + eps)).reshape(N, C, H, W)
y_by_hand = gamma[:, None, None] * xhat + beta[:, None, None]

y, cache = group_norm_forward(x, gamma, beta, num_groups=G, eps=eps)
print("group_norm_forward equals the five lines above:", np.allclose(y, y_by_hand, rtol=1e-12, atol=1e-12))

# %% tags=["hide-input"]
np.testing.assert_allclose(y, y_by_hand, rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(xhat.reshape(N, G, -1).mean(axis=2), 0, atol=1e-12)  # each group: mean 0
np.testing.assert_allclose(xhat.reshape(N, G, -1).var(axis=2), var[..., 0] / (var[..., 0] + eps), rtol=1e-12)
# image 0 normalized without the batch:
np.testing.assert_allclose(group_norm_forward(x[:1], gamma, beta, num_groups=G, eps=eps)[0], y_by_hand[:1],
                           rtol=1e-12, atol=1e-12)

# %% [markdown]
# Before $\gamma$ and $\beta$, every (image, group) has mean 0 and variance $\sigma^2 / (\sigma^2 + \epsilon)$,
# 1 up to $\epsilon$. Nothing is averaged over the batch (unlike BatchNorm): image 0 normalized alone
# gives the same output as in the batch, which is why it suits the small batches this backbone trains with.
#
# ### The backward: three paths from x to the loss
#
# Given dout = dL/dy, `group_norm_backward` returns dL/dx, dL/d$\gamma$ and dL/d$\beta$. The last two are sums
# over the batch and the positions, as the conv's db was. dL/dx is where the care goes: an entry $x_i$
# reaches the loss by **three paths**, and the chain rule adds them:
#
# 1. directly, through its own $\hat x_i$ (the numerator $x_i - \mu$);
# 2. through the group's mean $\mu$, which every entry of the group helps make, and which every $\hat x_j$
#    of the group subtracts;
# 3. through the group's variance $\sigma^2$, which likewise sits in every $\hat x_j$ of the group.
#
# A backward that keeps only path 1, treating $\mu$ and $\sigma^2$ as constants, is a common mistake. The
# gradient check catches it at once:

# %%
dout = rng.standard_normal(y.shape)
dx, dgamma, dbeta = group_norm_backward(dout, cache)
direct_only = (dout * gamma[:, None, None]).reshape(N, G, -1) / np.sqrt(var + eps)  # path 1 alone


def f():
    return float(np.sum(group_norm_forward(x, gamma, beta, num_groups=G, eps=eps)[0] * dout))


rows = check_gradients(f, {"x": x, "gamma": gamma, "beta": beta}, {"x": dx, "gamma": dgamma, "beta": dbeta})
row = compare("x (path 1 alone)", direct_only.reshape(x.shape), numerical_gradient(f, x))
print(row.format())

# %% tags=["hide-input"]
assert all(r.passed for r in rows) and max(r.max_rel_error for r in rows) < 1e-6
assert not row.passed and row.max_rel_error > 0.1

# %% [markdown]
# The package's backward passes on all three inputs; path 1 alone fails. Paths 2 and 3 have a meaning you
# can see without any algebra. Adding the same constant to every entry of a group changes neither its
# $\hat x$ nor the loss, so the gradient must sum to 0 over each group; scaling a group's
# $x - \mu$ changes $\hat x$ only through the tiny $\epsilon$, so the gradient is (nearly) orthogonal to
# $x - \mu$ within each group. Path 1 alone breaks both; paths 2 and 3 remove those two parts:

# %%
per_group = dx.reshape(N, G, -1)
xhat_g = xhat.reshape(N, G, -1)  # x - mu, scaled per group
for name, d in (("dx", per_group), ("path 1 alone", direct_only)):
    print(f"{name:>12}: largest |sum over a group| {np.abs(d.sum(axis=2)).max():.1e}, "
          f"largest |sum of d * xhat over a group| {np.abs((d * xhat_g).sum(axis=2)).max():.1e}")

# %% tags=["hide-input"]
assert np.all(np.abs(per_group.sum(axis=2)) < 1e-12 * np.abs(per_group).sum(axis=2))
assert np.all(np.abs((per_group * xhat_g).sum(axis=2)) < 1e-5 * np.abs(per_group).sum(axis=2))  # ~eps / var
assert np.all(eps / (var + eps) < 1e-5)  # x = 3 N(0, 1) + 1: each group's variance is near 9, eps is 1e-5
# Path 1 alone: 40 terms of random sign do not cancel; their sum is of order 1/sqrt(40) of their absolute sum.
assert np.all(np.abs(direct_only.sum(axis=2)) > 1e-3 * np.abs(direct_only).sum(axis=2))
assert np.all(np.abs((direct_only * xhat_g).sum(axis=2)) > 1e-3 * np.abs(direct_only).sum(axis=2))

# %% [markdown]
# Deriving the full formula is **exercise 6**: `lessons/exercises/ex6_group_norm_backward.py`, checked by
# `numpy-retinanet check lessons/exercises/ex6_group_norm_backward.py`.
#
# ## The whole detector at once
#
# A module (`nn/modules.py`) wraps an op with its parameters; `RetinaNet.backward` runs every module's
# backward in reverse order, and the gradients land in `model.grads`. The `tiny` preset in float64 is
# small enough to check end to end: from the parameters, through the backbone, pyramid, heads and the
# training loss of §4.1 (lessons 4 to 7 explain each part).

# %%
model = RetinaNet(num_classes=3, preset="tiny", dtype=np.float64, seed=0)
images, targets = collate([ShapesDataset(2, image_size=64, num_classes=3, seed=0)[i] for i in range(2)])
images = images.astype(np.float64)
anchors = model.anchors(64, 64)


def total_loss():
    logits, deltas = model.forward(images, keep_cache=False)
    return retinanet_loss(logits, deltas, anchors, targets)[0]["total"]


logits, deltas = model.forward(images)
losses, dlogits, ddeltas = retinanet_loss(logits, deltas, anchors, targets)
model.zero_grad()
model.backward(dlogits, ddeltas)
grads = {k: g.copy() for k, g in model.grads.items()}
print(f"{model.num_parameters():,} parameters in {len(grads)} arrays; loss {losses['total']:.4f}")

# %% [markdown]
# Checking every parameter entry by entry would take two forward passes per parameter (lesson 4 counts the
# parameters of a preset from its layers' shapes). Two cheaper checks
# cover them: a few random entries of some parameters, and one random *direction* over all of them
# at once, compared with (f(theta + h d) - f(theta - h d)) / (2h).

# %%
some = ["backbone.stem.0.weight", "fpn.p6.weight", "cls_head.subnet.0.weight", "box_head.subnet.2.bias"]
params = model.params
rows = check_gradients(total_loss, {k: params[k] for k in some}, {k: grads[k] for k in some}, max_entries=6)
row = directional_check(total_loss, params, grads)

# %% tags=["hide-input"]
assert all(r.passed for r in rows) and row.passed and row.max_rel_error < 1e-6

# %% [markdown]
# Both pass; the random direction over all the parameters agrees to better than 1e-6. This is how
# every backward pass of the package is tested (`tests/`).
#
# ## Summary
#
# - A convolution's output side is $\lfloor (H + 2p - K) / s \rfloor + 1$; its backward gives db = sum of dout,
#   dw = input patches correlated with dout, and dx = dout spread back through the weights.
# - A gradient check compares the backward with central differences in float64; correct code agrees
#   to better than 1e-6 per entry (usually ~1e-8), a bug is off by 1e-1 or more. float32 is refused.
# - GroupNorm normalizes each (image, group of C/G channels) by its own mean and variance, then scales and
#   shifts each channel. In its backward each entry reaches the loss three ways (directly, through the group's
#   mean, through its variance): the gradient sums to 0 over each group and is orthogonal to $\hat x$ there
#   (up to $\epsilon$); the direct path alone fails the check.
# - `check_gradients` checks entries (all, or `max_entries` at random); `directional_check` checks a
#   whole model in two forward passes.
#
# ## Exercises
#
# 1. Write the convolution's backward yourself: `lessons/exercises/ex3_conv2d_backward.py`, checked by
#    `numpy-retinanet check lessons/exercises/ex3_conv2d_backward.py`.
# 2. The nearest-neighbour upsampling of the feature pyramid has a backward too:
#    `lessons/exercises/ex4_upsample_backward.py`.
# 3. Vary h in `numerical_gradient(f, w, h=...)` from 1e-1 to 1e-12 and plot the max relative error
#    against h. Where is it smallest, and why does it grow on both sides?
# 4. Introduce another bug (drop the last row of dx, or swap dw's axes) and see which row of the
#    report fails.
# 5. Derive GroupNorm's backward: `lessons/exercises/ex6_group_norm_backward.py`
#    (`numpy-retinanet check lessons/exercises/ex6_group_norm_backward.py`).
