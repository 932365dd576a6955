# %% [markdown]
# # Lesson 2: the focal loss, its gradient, and Figure 1
#
# Lesson 1 showed that the cross-entropy of ~$10^5$ easy negatives outweighs the few positives.
# The focal loss (§3.2) multiplies the cross-entropy by a factor that vanishes as an example becomes
# easy, so training concentrates on the hard ones. This lesson checks the paper's claims about that
# factor, draws Figure 1, and derives and checks the gradient of Appendix B.

# %%
import numpy as np
from scipy.optimize import brentq, minimize_scalar

from numpy_retinanet.gradcheck import check_gradients
from numpy_retinanet.nn.losses import (
    focal_loss_star_forward,
    sigmoid_cross_entropy_backward,
    sigmoid_cross_entropy_forward,
    sigmoid_focal_loss_backward,
    sigmoid_focal_loss_forward,
)
from numpy_retinanet.teaching.figures import (
    as_image,
    focal_loss_curves,
    focal_loss_gradient_curves,
    plot_focal_loss_gradient,
    plot_focal_loss_vs_pt,
)


def logit_of(p_t):
    """The logit of a positive (y = 1) whose p_t is the given probability."""
    p_t = np.asarray(p_t, dtype=np.float64)
    return np.log(p_t) - np.log1p(-p_t)


# %% [markdown]
# ## Definition (§3.2, eq. 4-5)
#
# $$\mathrm{FL}(p_t) = -(1 - p_t)^\gamma \log(p_t) \tag{4}$$
#
# $$\mathrm{FL}(p_t) = -\alpha_t (1 - p_t)^\gamma \log(p_t) \tag{5}$$
#
# Eq. 5 is the one used in all the paper's experiments.
#
# The *modulating factor* $(1 - p_t)^\gamma$ is near 1 for a misclassified example ($p_t$ small) and
# near 0 for an easy one ($p_t$ near 1). The *focusing parameter* $\gamma \ge 0$ sets how fast it falls.
# With $\gamma = 0$ the factor is 1 and FL is the cross-entropy, exactly (and eq. 5 the alpha-balanced
# cross-entropy of eq. 3). For $\gamma > 0$, $\mathrm{FL} \le \mathrm{CE}$ everywhere:

# %%
rng = np.random.default_rng(0)
x = rng.uniform(-8, 8, size=1000)
y = (rng.random(1000) < 0.5).astype(np.float64)
fl0, _ = sigmoid_focal_loss_forward(x, y, alpha=None, gamma=0.0)
fl0_alpha, _ = sigmoid_focal_loss_forward(x, y, alpha=0.25, gamma=0.0)
fl2, _ = sigmoid_focal_loss_forward(x, y, alpha=None, gamma=2.0)

# eq. 1-3 by hand (|x| <= 8, so the naive formulas are accurate here):
p = 1 / (1 + np.exp(-x))
p_t = np.where(y == 1, p, 1 - p)
ce_by_hand = -np.log(p_t)
alpha_t = np.where(y == 1, 0.25, 0.75)

# %% tags=["hide-input"]
np.testing.assert_allclose(fl0, ce_by_hand, rtol=1e-10)  # gamma = 0: CE
np.testing.assert_allclose(fl0_alpha, alpha_t * ce_by_hand, rtol=1e-10)  # gamma = 0: alpha-balanced CE (eq. 3)
np.testing.assert_allclose(fl2, (1 - p_t) ** 2 * ce_by_hand, rtol=1e-10)  # eq. 4
assert np.all(fl2 <= ce_by_hand)  # (1 - p_t)^gamma <= 1

# %% [markdown]
# ## The paper's numbers (§3.2)
#
# "With gamma = 2, an example classified with p_t = 0.9 would have 100x lower loss compared with CE
# and with p_t ~ 0.968 it would have 1000x lower loss." And for a misclassified example, p_t <= 0.5,
# the loss "is scaled down by at most 4x". The ratio CE / FL is $1 / (1 - p_t)^2$:

# %%
def ce_over_fl(p_t, gamma=2.0):
    x = logit_of(p_t)
    ones = np.ones_like(x)
    return sigmoid_cross_entropy_forward(x, ones)[0] / sigmoid_focal_loss_forward(x, ones, alpha=None, gamma=gamma)[0]


p_1000 = 1 - 10**-1.5
print(f"p_t = 0.9: CE/FL = {ce_over_fl(np.array([0.9]))[0]:.1f}")
print(f"p_t = {p_1000:.5f}: CE/FL = {ce_over_fl(np.array([p_1000]))[0]:.1f}")
hard = np.linspace(0.001, 0.5, 500)
print(f"p_t in (0, 0.5]: CE/FL at most {ce_over_fl(hard).max():.3f}")

# %% tags=["hide-input"]
assert np.isclose(ce_over_fl(np.array([0.9]))[0], 100.0, rtol=1e-9)
assert np.isclose(ce_over_fl(np.array([p_1000]))[0], 1000.0, rtol=1e-9) and round(p_1000, 3) == 0.968
assert np.isclose(ce_over_fl(hard).max(), 4.0, rtol=1e-9)

# %% [markdown]
# ## Back to lesson 1's toy
#
# 100,000 easy negatives (p_t = 0.99), 100 misclassified positives (p_t = 0.1) and 100 hard
# negatives (p_t = 0.1). Under CE and under FL with gamma = 2:

# %%
logits = np.concatenate([np.full(100_000, -logit_of(0.99)), np.full(100, logit_of(0.1)),
                         np.full(100, -logit_of(0.1))])
targets = np.concatenate([np.zeros(100_000), np.ones(100), np.zeros(100)])
easy_neg = np.zeros(len(logits), dtype=bool)
easy_neg[:100_000] = True
hard_neg = np.zeros(len(logits), dtype=bool)
hard_neg[-100:] = True

share = {}
for name, loss in (("CE", sigmoid_cross_entropy_forward(logits, targets)[0]),
                   ("FL", sigmoid_focal_loss_forward(logits, targets, alpha=None, gamma=2.0)[0])):
    share[name] = (loss[easy_neg].sum() / loss.sum(), loss[hard_neg].sum() / loss[targets == 0].sum())
    print(f"{name}: easy negatives hold {share[name][0]:.2%} of the loss; "
          f"hard negatives hold {share[name][1]:.2%} of the negatives' loss")


# %% [markdown]
# Each anchor's loss is easy to write down: CE is $-\log 0.99 = 0.01005$ for an easy negative and
# $-\log 0.1 = 2.303$ for each of the 200 hard examples; FL multiplies these by $(1 - p_t)^2$, $10^{-4}$
# and 0.81. The same shares by hand:

# %%
share_by_hand = {}
for name, factor_easy, factor_hard in (("CE", 1.0, 1.0), ("FL", 0.01**2, 0.9**2)):  # (1 - p_t)^gamma
    easy, hard = factor_easy * -np.log(0.99), factor_hard * -np.log(0.1)  # one anchor's loss
    share_by_hand[name] = (100_000 * easy / (100_000 * easy + 200 * hard), 100 * hard / (100_000 * easy + 100 * hard))
    print(f"{name} by hand: {share_by_hand[name][0]:.2%}, {share_by_hand[name][1]:.2%}")

# %% tags=["hide-input"]
np.testing.assert_allclose([share["CE"], share["FL"]], [share_by_hand["CE"], share_by_hand["FL"]], rtol=1e-12)
assert round(share_by_hand["CE"][0], 2) == 0.69 and round(share_by_hand["CE"][1], 3) == 0.186
assert share_by_hand["FL"][0] < 0.0005 and share_by_hand["FL"][1] > 0.999

# %% [markdown]
# The easy negatives' share of the loss falls from 69% to less than 0.05%, and the hard negatives'
# share of the negatives' loss rises from 18.6% to more than 99.9%: the loss is *focused*. Nothing
# was sampled or thrown away; every anchor still contributes.
#
# ## Figure 1
#
# `numpy_retinanet.teaching.figures` makes every figure of the repository from the package's own functions;
# `focal_loss_curves` computes the curves of Figure 1 with `sigmoid_focal_loss_forward`. `as_image`
# renders a figure to an image, which Jupyter and VS Code show below the cell (a script also saves it as
# a PNG in `lesson_outputs/02/` and prints where).

# %% mystnb={"image":{"alt":"Figure 1: loss against p_t for CE and FL with gamma 0.5 to 5; FL of easy examples near 0"}}
curves = focal_loss_curves()
fig = plot_focal_loss_vs_pt(curves)
i = np.searchsorted(curves["p_t"], 0.9)
as_image(fig)

# %% tags=["hide-input"]
assert np.isclose(curves["p_t"][i], 0.9) and np.isclose(curves["ce"][i] / curves["fl"][2.0][i], 100.0)

# %% [markdown]
# ## The gradient (Appendix B)
#
# With $y' = 2y - 1 \in \{-1, +1\}$ and $x_t = y' x$, so that $p_t = \sigma(x_t)$, the chain rule gives
#
# $$\frac{\partial \mathrm{FL}}{\partial x} = y' (1 - p_t)^\gamma
# \left(\gamma p_t \log(p_t) + p_t - 1\right)$$
#
# (times $\alpha_t$ for eq. 5). For $\gamma = 0$ this is the cross-entropy's
# $y' (p_t - 1) = p - y$. `sigmoid_focal_loss_backward` evaluates it from the logit
# ($\log p_t = -\mathrm{softplus}(-x_t)$, $(1 - p_t)^\gamma = e^{-\gamma\, \mathrm{softplus}(x_t)}$), so it is finite
# for every finite logit.
#
# Is it right? A *gradient check* compares it with central differences,
# $(f(x + h) - f(x - h)) / 2h$, on a scalar $f = \sum \mathrm{FL} \cdot \mathit{dout}$ with a random upstream
# gradient dout. In float64 with $h = 10^{-5}$ a correct backward agrees to a relative error of about 1e-8 or better;
# a wrong one is off by 1e-2 or more (`numpy_retinanet.gradcheck` explains why).

# %%
x = rng.uniform(-6, 6, size=(4, 5))
y = (rng.random((4, 5)) < 0.3).astype(np.float64)
dout = rng.standard_normal((4, 5))
loss, cache = sigmoid_focal_loss_forward(x, y, alpha=0.25, gamma=2.0)
dx = sigmoid_focal_loss_backward(dout, cache)
rows = check_gradients(lambda: float(np.sum(sigmoid_focal_loss_forward(x, y, alpha=0.25, gamma=2.0)[0] * dout)),
                       {"x": x}, {"x": dx})


# %% tags=["hide-input"]
assert rows[0].passed and rows[0].max_rel_error < 1e-6 and rows[0].norm_rel_error < 1e-9

# %% [markdown]
# Every entry agrees to a relative error below 1e-6, and the whole gradient to below 1e-9 (norm of
# the difference over the norm of the gradient).
#
# How much smaller is the push on an easy example? At $x = 3$ a positive has $p = 0.953$:

# %%
x3, one = np.array([3.0]), np.ones(1)
g_fl = sigmoid_focal_loss_backward(one, sigmoid_focal_loss_forward(x3, one, alpha=None, gamma=2.0)[1])[0]
g_ce = sigmoid_cross_entropy_backward(one, sigmoid_cross_entropy_forward(x3, one)[1])[0]
print(f"dCE/dx = {g_ce:.5f}, dFL/dx = {g_fl:.5f}, ratio {g_fl / g_ce:.2%}")
p3 = 1 / (1 + np.exp(-3.0))
ratio_by_hand = (1 - p3) ** 2 * (2 * p3 * np.log(p3) + p3 - 1) / (p3 - 1)  # Appendix B over p - y
print(f"by hand: p = {p3:.3f}, ratio {ratio_by_hand:.2%}")

# %% tags=["hide-input"]
assert round(p3, 3) == 0.953
assert np.isclose(g_fl / g_ce, ratio_by_hand, rtol=1e-10) and ratio_by_hand < 0.01

# %% [markdown]
# The ratio is $(1 - p)^2 (2 p \log p + p - 1) / (p - 1)$ at $p = 0.953$: less than 1% of the cross-entropy's
# gradient. The figure shows dFL/dx for all logits of a positive.
# For gamma = 5 its magnitude is largest at $x = 0$ among all $x \ge 0$ ($p_t \ge 0.5$), where it is
# $0.5^5 (0.5 + 5 \cdot 0.5 \log 2) = 0.0698$, against CE's 0.5. On hard positives (x < 0: the network
# says "background") it is the other way round. CE's gradient $p - 1$ never goes below -1, but FL's does:
# for gamma = 5 at every x below -1.72, down to -1.31 near x = -2.9 (gamma = 2 reaches -1.13 near
# x = -2.8). So a misclassified positive is pushed
# *harder* than the cross-entropy would push it: the focal loss does not only shrink the gradient, it
# moves it from the easy examples to the hard ones.

# %%
grad_curves = focal_loss_gradient_curves()
gx, g0, g2, g5 = grad_curves["x"], grad_curves["grad"][0.0], grad_curves["grad"][2.0], grad_curves["grad"][5.0]


def grad_by_hand(x, gamma):
    """Appendix B for a positive (y = 1, so x_t = x, p_t = p): (1 - p)^gamma (gamma p log p + p - 1)."""
    p = 1 / (1 + np.exp(-x))
    return (1 - p) ** gamma * (gamma * p * np.log(p) + p - 1)


g5_at_0 = abs(grad_by_hand(0.0, 5.0))  # 0.5^5 (0.5 + 2.5 log 2)

# %% tags=["hide-input"]
assert all(np.allclose(g, grad_by_hand(gx, gamma), rtol=1e-9, atol=1e-15) for gamma, g in ((0.0, g0), (2.0, g2),
                                                                                          (5.0, g5)))
assert np.all(g0 > -1.0) and g0[gx == 0.0][0] == -0.5  # p - 1, with p = 1/2 at x = 0
assert np.isclose(np.abs(g5[gx >= 0]).max(), g5_at_0, rtol=1e-12) and round(g5_at_0, 4) == 0.0698

# %%
below = gx[g5 < -1.0]  # where FL (gamma = 5) pushes harder than CE ever does
# The same points found on the formula itself rather than on the grid: a root and two minima (scipy).
crossing = brentq(lambda t: grad_by_hand(t, 5.0) + 1.0, -3.0, -1.0)
low5, low2 = (minimize_scalar(grad_by_hand, bounds=(-6.0, 0.0), args=(g,), method="bounded") for g in (5.0, 2.0))
step = gx[1] - gx[0]

# %% tags=["hide-input"]
assert below.max() <= crossing < below.max() + step and np.all(g5[gx < below.max()] < -1.0)
assert all(low.fun - 1e-9 <= g.min() < low.fun + 1e-3 and abs(gx[g.argmin()] - low.x) < step  # grid vs optimum
           for low, g in ((low5, g5), (low2, g2)))
assert round(crossing, 2) == -1.72 and (round(low5.fun, 2), round(low5.x, 1)) == (-1.31, -2.9)
assert (round(low2.fun, 2), round(low2.x, 1)) == (-1.13, -2.8)

# %% mystnb={"image":{"alt":"dFL/dx of a positive against x for several gamma: near 0 for x > 0, below -1 for x < -2"}}
print(f"FL gamma=5: below -1 for x < {below.max():.2f}, minimum {g5.min():.3f} at x = {gx[g5.argmin()]:.2f}; "
      f"gamma=2: minimum {g2.min():.3f} at x = {gx[g2.argmin()]:.2f}")
as_image(plot_focal_loss_gradient(grad_curves))

# %% [markdown]
# ## Stable for any logit
#
# A detector's logits reach tens or hundreds. The package's focal loss and its gradient stay finite
# for logits of +-10^4, in float32 too, with no clipping of probabilities:

# %%
big = np.array([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=np.float32)
for target in (0.0, 1.0):
    t = np.full(5, target, dtype=np.float32)
    loss, cache = sigmoid_focal_loss_forward(big, t, alpha=0.25, gamma=2.0)
    grad = sigmoid_focal_loss_backward(np.ones_like(loss), cache)
    assert loss.dtype == grad.dtype == np.float32
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
print("finite for logits of +-1e4")

# %% [markdown]
# ## Other forms (Appendix A)
#
# The exact form matters little, the paper says.
# $\mathrm{FL}^* = -\log(\sigma(\gamma x_t + \beta)) / \gamma$ also down-weights easy examples;
# $\gamma = 1, \beta = 0$ is the cross-entropy again. Table 3 reports 33.8 AP for $\gamma = 2, \beta = 1$
# against 34.0 for FL.

# %%
star, _ = focal_loss_star_forward(x, y, gamma=1.0, beta=0.0)

# %% tags=["hide-input"]
np.testing.assert_allclose(star, np.log1p(np.exp(-np.where(y == 1, x, -x))), rtol=1e-12)  # -log sigmoid(x_t)

# %% [markdown]
# ## Summary
#
# - $\mathrm{FL} = -\alpha_t (1 - p_t)^\gamma \log(p_t)$ (eq. 5); $\gamma = 0$ is the ($\alpha$-balanced) CE
#   exactly.
# - With gamma = 2: 100x lower than CE at p_t = 0.9, 1000x at p_t = 0.968, at most 4x for p_t <= 0.5.
# - On an imbalanced set the loss moves from the many easy negatives to the few hard examples.
# - $\partial \mathrm{FL} / \partial x = y' (1 - p_t)^\gamma (\gamma p_t \log p_t + p_t - 1)$ (Appendix B), checked
#   against central differences (relative error below 1e-6); evaluated from the logit, it is finite everywhere.
#
# ## Exercises
#
# 1. Write the backward pass yourself: `lessons/exercises/ex1_focal_loss_backward.py`, then run
#    `numpy-retinanet check lessons/exercises/ex1_focal_loss_backward.py`.
# 2. Derive Appendix B's gradient on paper from dx_t/dx = y', dp_t/dx_t = p_t (1 - p_t). Check the two
#    limits: gamma = 0 gives p - y, and the gradient vanishes as p_t -> 1.
# 3. For which p_t is FL with gamma = 2 exactly 10x lower than CE? Check with `ce_over_fl`.
# 4. Plot FL* (Appendix A) for gamma = 2, beta = 1 and gamma = 4, beta = 0 against p_t beside FL.
