# %% [markdown]
# # Lesson 10: the paper's analyses in miniature
#
# §5.1 of the paper studies the focal loss in two ways: ablations that train a detector with different
# losses and compare AP (Table 1), and an analysis of how the loss of a *trained* detector is spread over
# its anchors (Figure 4). Both are repeated here at CPU scale. The paper's detector trains for 90k
# iterations on 8 GPUs; ours for 4000 (about ten minutes on a 2-core CPU), so read every number here as
# an illustration of the method, not as a reproduction of the paper's values.
#
# Figure 4 uses the detector that ships with the package (`numpy-retinanet train`'s default recipe, AP
# about 0.70 on the held-out shapes), the model of lessons 8 and 9 and of the repository's figures;
# Table 1 is read from the committed ablation. Nothing is trained here. Fast mode
# (`NUMPY_RETINANET_FAST=1`) scores the model on fewer held-out images.

# %%
import json
import os
import pathlib

import numpy as np

from numpy_retinanet.data.batching import collate
from numpy_retinanet.detection.criterion import assign_targets
from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL
from numpy_retinanet.teaching.figures import as_image, load_figure_model, loss_cdf_curves, plot_loss_cdf

FAST = os.environ.get("NUMPY_RETINANET_FAST") == "1"

# %% [markdown]
# ## The trained model
#
# `load_figure_model` loads a checkpoint with its loss history and training settings; `held_out()` draws
# the images the run was scored on (its evaluation seed), which it never trained on.

# %%
trained = load_figure_model(SHIPPED_MODEL)
held_out = trained.held_out(num_images=50 if FAST else 200)
print(trained.caption(), f"- {len(held_out)} held-out images of {held_out.image_size} px")

# %% tags=["hide-input"]
assert trained.step == 4000 and trained.train_config["loss"] == "focal" and trained.train_config["gamma"] == 2.0

# %% [markdown]
# ## Figure 4: where does the loss come from?
#
# "We compute FL for ~$10^7$ negative windows and ~$10^5$ positive windows. Next, we normalize the loss such
# that it sums to one; given the normalized loss, we can sort the loss from lowest to highest and plot
# its cumulative distribution function for both positive and negative samples and for different settings
# for gamma" (§5.1). The model was trained with $\gamma = 2$; the values of $\gamma$ below only change how its outputs
# are *scored*.
#
# `loss_cdf_curves` runs the model on held-out images. A positive sample is the output of an anchor matched
# to a box, for that box's class; a negative sample is any class output of a background anchor. Alpha is
# one constant per group, so normalization removes it.

# %% mystnb={"image":{"alt":"Figure 4: cumulative normalized loss of positives and negatives for gamma 0 to 2"}}
curves = loss_cdf_curves(trained.model, held_out, gammas=(0.0, 0.5, 1.0, 2.0))
print(f"{curves['num_positive']:,} positive and {curves['num_negative']:,} negative samples")
q = curves["fraction"]


def hardest_share(kind, gamma, top):
    """Share of the group's loss held by its hardest ``top`` fraction of samples."""
    return 1.0 - curves[kind][gamma][np.searchsorted(q, 1.0 - top)]


for kind in ("positive", "negative"):
    print(kind, "  ".join(f"gamma {g:g}: hardest 10% hold {hardest_share(kind, g, 0.1):.0%}"
                          for g in curves["gammas"]))
as_image(plot_loss_cdf(curves, trained.caption()))

# %% [markdown]
# Two properties hold for any model:
#
# - each curve rises from 0 to 1 and stays on or below the diagonal (sorted lowest first, the first x% of
#   samples hold at most x% of the loss);
# - a higher $\gamma$'s curve lies on or below a lower $\gamma$'s: FL falls as $p_t$ rises for every $\gamma$, so
#   the samples sort the same way, and raising $\gamma$ multiplies each loss by $(1 - p_t)^\gamma$, which is larger
#   for the harder samples.

# %%
gammas = curves["gammas"]
for kind in ("positive", "negative"):
    for g in gammas:
        c = curves[kind][g]
        assert c[0] == 0.0 and c[-1] == 1.0 and np.all(np.diff(c) >= 0) and np.all(c <= q + 1e-12)
    for lo, hi in zip(gammas[:-1], gammas[1:]):
        assert np.all(curves[kind][hi] <= curves[kind][lo] + 1e-9)

# %% [markdown]
# The curves can be recomputed by hand from the model's outputs: the logits of each group, the focal loss
# $-(1 - p_t)^\gamma \log p_t$ of each output (eq. 5 without alpha; $\log p_t$ from the logit $x$ as
# $-\log(1 + e^{-x})$ for a positive, $-\log(1 + e^{x})$ for a negative), sorted, summed cumulatively and
# divided by the total. The hardest `top` fraction of a group holds what the lowest $1 - $ `top` do not:

# %%
def sample_logits(model, dataset, batch_size=16):
    """The logits of the positive samples (target 1) and of the negative samples (target 0), float64."""
    anchors = model.anchors(dataset.image_size, dataset.image_size)
    pos, neg = [], []
    for start in range(0, len(dataset), batch_size):
        images, targets = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        logits, _ = model.forward(images.astype(model.dtype), keep_cache=False)
        cls_t, _, positive, valid = assign_targets(anchors, targets, model.num_classes)
        pos.append(logits[cls_t == 1])  # the matched box's class of each positive anchor
        neg.append(logits[valid & ~positive].ravel())  # every class of each background anchor
    return np.concatenate(pos).astype(np.float64), np.concatenate(neg).astype(np.float64)


def focal_by_hand(x, target, gamma):
    """FL (eq. 5, no alpha) of logits x (n,) that all have this target (0 or 1): (n,)."""
    log_pt = -np.logaddexp(0.0, -x if target == 1 else x)
    return -((1 - np.exp(log_pt)) ** gamma) * log_pt


def hardest_share_by_hand(loss, top):
    """Share of the summed loss (n,) held by its hardest ``top`` fraction (at the figure's grid point 1 - top)."""
    low = np.sort(loss)[: int(np.floor(q[np.searchsorted(q, 1.0 - top)] * len(loss)))]
    return 1.0 - low.sum() / loss.sum()


x_pos, x_neg = sample_logits(trained.model, held_out)
loss_by_hand = {(kind, g): focal_by_hand(x, y, g) for kind, x, y in (("positive", x_pos, 1), ("negative", x_neg, 0))
                for g in gammas}

# %% tags=["hide-input"]
assert (len(x_pos), len(x_neg)) == (curves["num_positive"], curves["num_negative"])
assert all(np.isclose(loss.sum(), curves["loss_sum"][kind][g], rtol=1e-6) for (kind, g), loss in loss_by_hand.items())
assert all(np.isclose(hardest_share_by_hand(loss, top), hardest_share(kind, g, top), rtol=0, atol=1e-9)
           for (kind, g), loss in loss_by_hand.items() for top in (0.01, 0.1, 0.2))

# %% [markdown]
# The paper's finding depends on the model: raising gamma changes the negatives' distribution far more
# than the positives'. The shipped model is one trained model (its numbers are a property of that run, not
# constants), so the checks below test the paper's statements on it, not values pasted from it:
#
# - at $\gamma = 0$ the hardest 20% of the positives hold roughly half of the positives' loss, as in the paper
#   ("roughly 20% of the hardest positive samples account for roughly half of the positive loss"), while the
#   hardest 1% of the negatives hold a minority of the negatives' loss;
# - at $\gamma = 2$ that 1% of the negatives holds the bulk of it: the focal loss "effectively discounts the
#   effect of easy negatives, focusing all attention on the hard negative examples" (§5.1);
# - the positives move too, more than in the paper, but much less: at $\gamma = 2$ the hardest 1% of the
#   positives hold far less of their group's loss than the hardest 1% of the negatives, and the area
#   between the $\gamma = 0$ and $\gamma = 2$ curves is smaller for the positives than for the negatives.

# %%
def area_between(kind):
    return float(np.trapezoid(curves[kind][0.0] - curves[kind][2.0], q))


for kind in ("positive", "negative"):
    print(f"{kind}: hardest 20% hold {hardest_share(kind, 0.0, 0.2):.0%} (gamma 0), "
          f"{hardest_share(kind, 2.0, 0.2):.0%} (gamma 2); hardest 1% hold {hardest_share(kind, 0.0, 0.01):.1%} "
          f"(gamma 0), {hardest_share(kind, 2.0, 0.01):.1%} (gamma 2); area between the curves "
          f"{area_between(kind):.3f}")

# %% tags=["hide-input"]
assert abs(hardest_share_by_hand(loss_by_hand["positive", 0.0], 0.2) - 0.5) < 0.1  # the paper's "roughly half"
assert hardest_share_by_hand(loss_by_hand["negative", 0.0], 0.01) < 0.5 < hardest_share_by_hand(
    loss_by_hand["negative", 2.0], 0.01)
assert hardest_share_by_hand(loss_by_hand["positive", 2.0], 0.01) < hardest_share_by_hand(
    loss_by_hand["negative", 2.0], 0.01)
assert area_between("positive") < area_between("negative")

# %% [markdown]
# ## Table 1b: higher gamma wants lower alpha
#
# Table 1b gives the best $\alpha$ for each $\gamma$: 0.75 for $\gamma = 0$, 0.5 for 0.5, 0.25 for 1, 2 and 5. One
# way to see the trend: alpha weights the positives' total loss against the negatives'
# ($\alpha L_{pos}$ against $(1 - \alpha) L_{neg}$). The $\alpha$ that makes the two equal is
# $L_{neg} / (L_{pos} + L_{neg})$.
# On our model's held-out outputs:

# %%
loss_sum = curves["loss_sum"]
balance = {g: loss_sum["negative"][g] / (loss_sum["negative"][g] + loss_sum["positive"][g]) for g in gammas}
paper_best_alpha = {0.0: 0.75, 0.5: 0.5, 1.0: 0.25, 2.0: 0.25}
for g in gammas:
    print(f"gamma {g:<3g}: balancing alpha {balance[g]:.3f}   (Table 1b's best alpha: {paper_best_alpha[g]})")

# %% tags=["hide-input"]
assert all(balance[hi] < balance[lo] for lo, hi in zip(gammas[:-1], gammas[1:]))
assert all(np.isclose(balance[g], loss_by_hand["negative", g].sum() / (loss_by_hand["negative", g].sum()
                                                                       + loss_by_hand["positive", g].sum()))
           for g in gammas)  # the by-hand losses give the same alphas

# %% [markdown]
# The balancing alpha falls as gamma rises: the focal term removes the easy negatives' loss, so less weight
# on the positives is needed to hold the balance. (The paper's best values also reflect AP, not only this
# balance.)
#
# ## Table 1a/1b: ablations at an equal budget
#
# An ablation trains the same detector with one setting changed. `numpy_retinanet.tools.ablate` holds the
# seven losses of the paper's Table 1a/1b; `ablation_config` gives the training settings of one cell:
# only `loss`, `alpha` and `gamma` differ between cells, everything else (model, data, schedule, steps)
# is shared, which is what "equal budget" means.

# %%
from numpy_retinanet.tools.ablate import PAPER_TABLE1, SETTINGS, ablation_config

configs = {name: ablation_config(name, seed=0, iterations=800) for name, *_ in SETTINGS}
for name, c in configs.items():
    print(f"{name:<26} loss {c.loss:<5} gamma {c.gamma:<3g} alpha {c.alpha:.2f}")
shared = {k for k in configs["CE, alpha .75"].to_dict() if k not in ("loss", "gamma", "alpha")}

# %% tags=["hide-input"]
assert all(c.to_dict()[k] == configs["CE, alpha .75"].to_dict()[k] for c in configs.values() for k in shared)
assert (configs["FL, gamma 2, alpha .25"].loss, configs["FL, gamma 2, alpha .25"].gamma) == ("focal", 2.0)

# %% [markdown]
# `numpy-retinanet ablate` trains every cell with 3 seeds (7 x 3 runs of 800 steps, about half an hour on a
# 2-core CPU) and writes `figures/table1_shapes.json`, `.md` and `.png` to the repository. A few runs of
# a few hundred steps would measure mostly noise, so the committed results are read here instead. Their
# per-seed APs come from that command (the JSON names it) and are not rerun here; everything else is
# derived from them below: the means and spreads, by hand, are the committed table's (`.md`) numbers.

# %%
def find_committed(name):
    """``figures/<name>`` of the repository: above this script (``python lessons/10_...py`` from anywhere)
    or above the working folder (a notebook runs in ``lessons/``, where ``__file__`` is not defined)."""
    starts = [pathlib.Path(__file__).resolve().parent] if "__file__" in globals() else []
    for start in starts + [pathlib.Path.cwd()]:
        for folder in (start, *start.parents):
            if (folder / "figures" / name).is_file():
                return folder / "figures" / name
    raise FileNotFoundError(f"figures/{name} not found above {starts + [pathlib.Path.cwd()]}; run this lesson "
                            "inside the repository")


table = json.loads(find_committed("table1_shapes.json").read_text())
seeds_ap = {name: [run["AP"] for run in table["runs"][name]] for name in table["settings"]}
ap = {name: sum(v) / len(v) for name, v in seeds_ap.items()}  # the mean over seeds, by hand
spread = {name: (max(v) - min(v)) / 2 for name, v in seeds_ap.items()}  # +- half the range
for name in table["settings"]:
    print(f"{name:<28} AP {100 * ap[name]:.1f} +- {100 * spread[name]:.1f}   seeds: "
          + ", ".join(f"{100 * v:.1f}" for v in seeds_ap[name]))
print(f"{table['command']!r}: positives per image {table['positive_anchors_per_image']:.2f} "
      f"of {table['anchors_per_image']} anchors")
best_ce = max((n for n in ap if n.startswith("CE")), key=ap.get)
best_fl = max((n for n in ap if n.startswith("FL")), key=ap.get)
markdown = find_committed("table1_shapes.md").read_text()  # the committed table, to compare
fl2, ce75 = "FL, gamma 2, alpha .25", "CE, alpha .75"

# %% tags=["hide-input"]
# the committed table's AP column, and the JSON's summary, are these means and spreads
assert all(f"| {name} | {100 * ap[name]:.1f} +- {100 * spread[name]:.1f} |" in markdown for name in table["settings"])
assert all(np.allclose(table["summary"][n]["AP"], [ap[n], spread[n]], rtol=1e-12) for n in table["settings"])
assert len(seeds_ap["CE, alpha .75"]) == table["seeds"] == 3 and table["iterations"] == 800
assert table["anchors_per_image"] == 9 * sum((128 // 2**level) ** 2 for level in range(3, 8))  # lesson 5
assert best_ce == ce75 and best_fl == "FL, gamma 0.5, alpha .50"
assert ap[fl2] + spread[fl2] < ap[ce75] - spread[ce75]  # the paper's FL loses to the best CE, beyond the spreads
assert 0 < ap[best_fl] - ap[best_ce] < spread[best_fl] + spread[best_ce]  # the best FL wins within the spreads
assert ap[ce75] > ap["CE, alpha .50"] > ap["CE, alpha .25"]  # CE wants a large alpha (1a)
# alpha .25 keeps much more of alpha .75's AP here than on COCO (Table 1a: 10.8 against 31.1)
assert ap["CE, alpha .25"] / ap[ce75] > PAPER_TABLE1["CE, alpha .25"][0] / PAPER_TABLE1[ce75][0]
assert ap[fl2] > ap["FL, gamma 5, alpha .25"]  # too large a gamma hurts (1b)

# %% [markdown]
# What the committed table says (800 steps of a light model, 3 seeds, at most 2 shapes per image so that
# about 1 anchor in 3069 / 6.68 = 460 is positive; the paper has about 1 in 1000). In this miniature **the
# paper's headline does not hold**:
#
# - The paper's focal loss, gamma 2 with alpha .25 (34.0 AP in Table 1b, 34.0 - 31.1 = 2.9 points above the
#   best CE), falls *below* the best alpha-balanced CE here (alpha .75), by more than the two settings'
#   spreads over the seeds.
# - The best focal loss here is the mildest, gamma 0.5. It beats the best CE by less than the two settings'
#   spreads added together: not a clear win.
# - What does carry over: CE prefers alpha .75 to .50 to .25, as in Table 1a (though alpha .25 keeps far
#   more of alpha .75's AP than on COCO, where it falls to a third), and gamma 5 is worse than gamma 2, as
#   in Table 1b.
#
# The per-seed APs are what one run of `numpy-retinanet ablate` measured; they are not recomputed here, and
# a rerun with later versions of the code need not repeat them to the last digit. A later issue reruns the
# ablation at convergence.
#
# Why? Candidate reasons, not conclusions: the runs are short (800 steps against the paper's 90k), and a
# large gamma switches off the loss of every well-classified anchor, which a converged detector needs
# and a young one does not yet have; the shapes' backgrounds are plain gradients with noise, so almost no
# negative is *hard*, while the focal loss is built for the ~$10^5$ cluttered negatives of a real image.
# Figure 4 above shows the mechanism working on the shipped model; whether it pays off in AP needs a
# regime with hard negatives and converged runs.
#
# ## Summary
#
# - Figure 4: normalized, sorted FL of a trained model's positives and negatives. Raising gamma moves the
#   negatives' loss onto a small set of hard ones and leaves the positives' nearly unchanged.
# - A higher gamma removes the easy negatives' loss, so the alpha that balances positives and negatives
#   falls: Table 1b's "higher gamma wants lower alpha".
# - An ablation changes one setting (here the loss) and compares AP on held-out images; `numpy-retinanet
#   ablate` makes the committed `figures/table1_shapes.md`. In this miniature the paper's gamma 2 loses to
#   the best alpha-balanced CE: the mechanism of Figure 4 is there, its payoff in AP is not (yet).
#
# ## Exercises
#
# 1. Rerun the ablation longer: `numpy-retinanet ablate --iterations 3000 --out runs/table1` (a few hours
#    on a CPU). Does gamma 2 overtake gamma 0.5 as training goes on?
# 2. Table 1a says CE with a small alpha fails; why does weighting the positives down hurt CE but not FL?
# 3. Redraw Figure 4 with gamma 5. What share of the negatives' loss do the hardest 1% hold?
# 4. `numpy-retinanet figures --only figure4_loss_cdf` draws this figure for the repository; the README
#    lists every figure and the command that made it.
