# %% [markdown]
# # Lesson 10: the paper's analyses in miniature
#
# §5.1 of the paper studies the focal loss in two ways: ablations that train a detector with different
# losses and compare AP (Table 1), and an analysis of how the loss of a *trained* detector is spread over
# its anchors (Figure 4). Both are repeated here at CPU scale. The paper's detector trains for 90k
# iterations on 8 GPUs; the shipped model for 4000 (about six minutes on a 2-core CPU), the ablation's models
# for 12000 on the plain shapes and 24000 in the clutter, so read every number here as an illustration of the
# method, not as a reproduction of the paper's values.
#
# Figure 4 uses the detector that ships with the package (`numpy-retinanet train`'s default recipe, AP
# 0.68 on the held-out shapes, lesson 8), the model of lessons 8 and 9 and of the repository's figures;
# Table 1 is read from the committed ablations of two regimes. Nothing is trained here. Fast mode
# (`NUMPY_RETINANET_FAST=1`) scores the model on fewer held-out images.

# %%
import json
import os
import pathlib
import textwrap

import numpy as np
from matplotlib.figure import Figure

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
# ## Table 1a/1b: ablations at an equal budget, in two regimes
#
# An ablation trains the same detector with one setting changed. `numpy_retinanet.tools.table1` holds the
# seven losses of the paper's Table 1a/1b; `ablation_config` gives the training settings of one cell. Within a
# table only `loss`, `alpha`, `gamma` and the learning rate differ: each loss trains at the rate a small sweep
# chose for it (three rates, one seed, 1500 steps on the plain shapes, the same budget for every loss:
# `figures/table1_lr_sweep.md`), so that no loss loses only because its rate was tuned for another. Everything
# else (model, data, schedule, steps) is shared, which is what "equal budget" means.
#
# The ablation runs in two regimes (`--dataset`): the plain shapes of the other lessons, and the cluttered
# regime built for the paper's problem (`data/clutter.py`): smaller shapes at 144 px among distractors
# (other shapes, outlines, fragments) that are not among the classes, so that some negatives are hard.

# %%
from numpy_retinanet.tools.ablate_report import figure4_curves, ordering_statement
from numpy_retinanet.tools.table1 import (
    ABLATION_IMAGE_SIZE,
    ABLATION_ITERATIONS,
    ABLATION_LRS,
    PAPER_TABLE1,
    SETTINGS,
    ablation_config,
    table_stem,
)

regimes = tuple(ABLATION_IMAGE_SIZE)
budget = ABLATION_ITERATIONS  # steps per cell, per regime
configs = {(d, name): ablation_config(name, seed=0, iterations=budget[d], dataset=d)
           for d in regimes for name, *_ in SETTINGS}
for name, *_ in SETTINGS:
    c = configs[regimes[0], name]
    print(f"{name:<26} loss {c.loss:<5} gamma {c.gamma:<3g} alpha {c.alpha:.2f}  lr {c.lr:g}")
print("image sizes:", {d: configs[d, SETTINGS[0][0]].image_size for d in regimes}, "- steps:", budget)
cell_settings = ("loss", "gamma", "alpha", "lr")
# the clutter's cell trained as long as the plain one, to compare the regimes' other settings
same_steps = ablation_config("FL, gamma 2, alpha .25", seed=0, iterations=budget[regimes[0]], dataset=regimes[1])

# %% tags=["hide-input"]
assert all(configs[d, n].to_dict()[k] == configs[d, SETTINGS[0][0]].to_dict()[k] for d in regimes
           for n, *_ in SETTINGS for k in configs[d, n].to_dict() if k not in cell_settings)
assert all(configs[d, n].lr == ABLATION_LRS[n] for d in regimes for n, *_ in SETTINGS)
# between the regimes only the dataset, the image size and the steps differ
assert {k for k, v in configs[regimes[0], "FL, gamma 2, alpha .25"].to_dict().items()
        if v != same_steps.to_dict()[k]} == {"dataset", "image_size"}

# %% [markdown]
# `numpy-retinanet ablate --dataset shapes --jobs 2` and `--dataset shapes-clutter` train every cell with 3
# seeds (7 x 3 runs of 12000 steps on the plain shapes and of 24000 in the clutter; the tables' text gives the time)
# and write `figures/table1_shapes.*` and `figures/table1_shapes_clutter.*`. A few runs of a few hundred steps
# would measure mostly noise, so the committed results are read here. Their per-seed APs come from those
# commands (the JSON names them) and are not rerun here; everything else is derived from them below, by hand.

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


tables = {d: json.loads(find_committed(f"{table_stem(d)}.json").read_text()) for d in regimes}
ap, spread = {}, {}
for d, table in tables.items():
    for name in table["settings"]:
        seeds = [run["AP"] for run in table["runs"][name]]
        ap[d, name] = sum(seeds) / len(seeds)  # the mean over seeds, by hand
        spread[d, name] = (max(seeds) - min(seeds)) / 2  # +- half the range
print(f"{'':<26}" + "".join(f"{d + ' AP':>22}" for d in regimes) + f"{'paper AP':>10}")
for name, *_ in SETTINGS:
    print(f"{name:<26}" + "".join(f"{100 * ap[d, name]:>15.1f} +- {100 * spread[d, name]:<3.1f}" for d in regimes)
          + f"{PAPER_TABLE1[name][0]:>10.1f}")
imbalance = {}
for d, table in tables.items():
    size = table["image_size"]
    anchors = 9 * sum(int(np.ceil(size / 2**level)) ** 2 for level in range(3, 8))  # lesson 5, 9 anchors a place
    imbalance[d] = anchors / table["positive_anchors_per_image"]
    print(f"{d}: {table['positive_anchors_per_image']:.2f} positive anchors per image of {anchors:,} "
          f"(1 : {imbalance[d]:.0f})\n  made by {table['command']!r}")

# %% tags=["hide-input"]
# the committed tables' AP columns, and the JSON's summaries, are these numbers
assert all(f"| {name} | {ABLATION_LRS[name]:g} | {100 * ap[d, name]:.1f} +- {100 * spread[d, name]:.1f} |"
           in find_committed(f"{table_stem(d)}.md").read_text() for d in regimes for name in tables[d]["settings"])
assert all(np.allclose(t["summary"][n]["AP"], [ap[d, n], spread[d, n]], rtol=1e-12)
           for d, t in tables.items() for n in t["settings"])
assert all(t["anchors_per_image"] == 9 * sum(int(np.ceil(t["image_size"] / 2**lv)) ** 2 for lv in range(3, 8))
           and t["seeds"] == 3 and t["iterations"] == budget[d] for d, t in tables.items())
assert imbalance["shapes"] < 1000 < imbalance["shapes-clutter"]  # only the cluttered regime reaches the paper's

# %% [markdown]
# ### Converged?
#
# Seed 0 of CE $\alpha$ .75 and of FL $\gamma$ 0.5 and $\gamma$ 2 also trained for half and for twice the steps in
# each regime (the same recipe, the cosine schedule stretched to each run's length). If the budget were
# enough, twice as long would change AP little:

# %% mystnb={"image":{"alt":"AP against training steps for CE alpha .75, FL gamma 0.5 and FL gamma 2 in both regimes"}}
longer = {(d, name): r["AP"] for d, table in tables.items() for name, r in table["longer"].items()}
curve = {(d, name): {table["shorter"][name]["iterations"]: table["shorter"][name]["AP"],
                     table["iterations"]: table["runs"][name][0]["AP"],
                     table["longer"][name]["iterations"]: r["AP"]}
         for d, table in tables.items() for name, r in table["longer"].items()}
fig = Figure(figsize=(9, 3.5))
for i, d in enumerate(regimes):
    ax = fig.add_subplot(1, len(regimes), i + 1)
    steps = sorted({n for (regime, _), points in curve.items() if regime == d for n in points})
    print(f"{d}: AP at {', '.join(map(str, steps))} steps (seed 0), and the last doubling")
    for (regime, name), points in curve.items():
        if regime == d:
            ax.plot(list(points), [100 * v for v in points.values()], "o-", label=name)
            print(f"  {name:<26}" + "".join(f"{100 * v:6.1f}" for v in points.values())
                  + f"   {longer[d, name] / tables[d]['runs'][name][0]['AP']:.2f}x")
    ax.set_xscale("log", base=2)  # each point twice the steps of the one before
    ax.set_xticks(steps, [str(n) for n in steps], minor=False)
    ax.minorticks_off()
    ax.set(xlabel="steps (each point its own run, seed 0)", ylabel="AP (%)", title=d, ylim=(0, 100))
    ax.legend(fontsize=8)
fig.tight_layout()
as_image(fig)

# %% [markdown]
# ### What the models err on, and who carries their loss
#
# Beside each table, the seed-0 model of every loss on 64 held-out images: the share of its own loss and
# gradient held by the easy negatives ($p_t > 0.9$) and by the hardest 1 % of the negatives
# (`tools/negatives.py`, the measure of `data/clutter.py`'s table), and what its false positives at score
# 0.3 (the score `detect` draws boxes at) are (`tools/false_positives.py`).

# %%
for d, table in tables.items():
    ev = table["evidence"]
    print(f"{d}: share of the loss (of the gradient) held by")
    for name in ("CE, alpha .75", "FL, gamma 2, alpha .25"):
        s = ev["shares"][name]
        print(f"  {name:<24} easy negatives {100 * s['loss']['easy_negatives']:5.1f} % "
              f"({100 * s['gradient']['easy_negatives']:5.1f} %)   "
              f"hardest 1 % {100 * s['loss']['hardest_negatives']:5.1f} % "
              f"({100 * s['gradient']['hardest_negatives']:5.1f} %)")
    for name in ("CE, alpha .75", "FL, gamma 2, alpha .25"):
        fp = ev["false_positives"][name]
        print(f"  {name:<24} {fp['true_positives']} true positives, {fp['false_positives']} false:\n    "
              + ", ".join(f"{k} {v}" for k, v in fp["kinds"].items()))

# %% [markdown]
# Figure 4 of the cluttered regime's $\gamma = 2$ model (seed 0), drawn from the curves the ablation kept:

# %% mystnb={"image":{"alt":"Figure 4 on the cluttered regime: cumulative loss of positives and negatives, gamma 0-2"}}
clutter_curves, clutter_caption = figure4_curves(tables["shapes-clutter"])
as_image(plot_loss_cdf(clutter_curves, clutter_caption))

# %% [markdown]
# ### The paper's orderings in each regime

# %%
for d, table in tables.items():
    print(d)
    for line in ordering_statement(table).splitlines():  # wrapped to the page width
        print(textwrap.fill(line, width=88, subsequent_indent="  "))
plain, clutter = "shapes", "shapes-clutter"
ce = [n for n, *_ in SETTINGS if n.startswith("CE")]
fl = [n for n, *_ in SETTINGS if n.startswith("FL")]
best = {(d, kind): max(names, key=lambda n: ap[d, n]) for d in regimes for kind, names in (("CE", ce), ("FL", fl))}
fl2, fl1, fl05 = "FL, gamma 2, alpha .25", "FL, gamma 1, alpha .25", "FL, gamma 0.5, alpha .50"
ce75, ce50, ce25 = "CE, alpha .75", "CE, alpha .50", "CE, alpha .25"
ratio = {(d, n): longer[d, n] / tables[d]["runs"][n][0]["AP"] for d, n in longer}  # the last doubling
before = {(d, n): tables[d]["runs"][n][0]["AP"] / tables[d]["shorter"][n]["AP"] for d, n in longer}  # the one before
shares = {d: tables[d]["evidence"]["shares"] for d in regimes}
easy = {(d, n, part): shares[d][n][part]["easy_negatives"] for d in regimes for n in shares[d]
        for part in ("loss", "gradient")}
kinds = {d: tables[d]["evidence"]["false_positives"] for d in regimes}
# the CEs each FL clears in the clutter by more than the two spreads added
clear_of = {f: [c for c in ce if ap[clutter, f] - spread[clutter, f] > ap[clutter, c] + spread[clutter, c]]
            for f in (fl05, fl1)}
fl5_seeds = [run["AP"] for run in tables[clutter]["runs"]["FL, gamma 5, alpha .25"]]

# %% tags=["hide-input"]
# plain: every FL but gamma 5 beats every CE by more than the two spreads added; gamma 1 is the best and beats
# gamma 2 so, gamma 2 and gamma 0.5 tie
assert best[plain, "FL"] == fl1 and best[plain, "CE"] == ce25
assert all(ap[plain, f] - spread[plain, f] > ap[plain, c] + spread[plain, c] for f in (fl05, fl1, fl2) for c in ce)
assert ap[plain, fl1] - spread[plain, fl1] > ap[plain, fl2] + spread[plain, fl2]
assert abs(ap[plain, fl2] - ap[plain, fl05]) < spread[plain, fl2] + spread[plain, fl05]
assert [round(100 * ap[plain, n], 1) for n in (fl2, ce25, fl1)] == [81.2, 79.9, 82.7]
# clutter: gamma 2 is the best setting and beats every CE by more than the two spreads added; gamma 1 and 0.5
# tie with it; gamma 1 clears CE alpha .25 only, gamma 0.5 no CE
assert best[clutter, "FL"] == fl2 and best[clutter, "CE"] == ce50
assert all(ap[clutter, fl2] - spread[clutter, fl2] > ap[clutter, c] + spread[clutter, c] for c in ce)
assert all(abs(ap[clutter, fl2] - ap[clutter, f]) < spread[clutter, fl2] + spread[clutter, f] for f in (fl05, fl1))
assert clear_of == {fl05: [], fl1: [ce25]}
assert [round(100 * ap[clutter, n], 1) for n in (fl2, ce50, fl1, fl05)] == [70.2, 67.1, 68.8, 67.9]
# Table 1a: in the clutter the three CEs tie (each pair within the two spreads added; the means within 1.8
# points), alpha .75 a hair above .25; on plain noise alpha .25 is the best CE, ahead of alpha .50 by more than
# the spreads, tied with alpha .75
assert all(abs(ap[clutter, a] - ap[clutter, b]) < spread[clutter, a] + spread[clutter, b]
           for a, b in ((ce25, ce50), (ce25, ce75), (ce50, ce75)))
assert max(ap[clutter, c] for c in ce) - min(ap[clutter, c] for c in ce) < 0.018
assert 0 < ap[clutter, ce75] - ap[clutter, ce25] < 0.001
assert ap[plain, ce25] - spread[plain, ce25] > ap[plain, ce50] + spread[plain, ce50]
assert 0 < ap[plain, ce25] - ap[plain, ce75] < spread[plain, ce25] + spread[plain, ce75]
assert all(min(fl, key=lambda n: ap[d, n]) == "FL, gamma 5, alpha .25" for d in regimes)
assert [round(100 * ap[clutter, n], 1) for n in (ce75, ce25)] == [65.4, 65.3]
assert all(ap[d, fl2] > ap[d, "FL, gamma 5, alpha .25"] for d in regimes)
assert max((n for n, *_ in SETTINGS), key=lambda n: spread[clutter, n]) == "FL, gamma 5, alpha .25"
assert [round(100 * min(fl5_seeds), 1), round(100 * max(fl5_seeds), 1)] == [47.3, 55.8]
# twice the steps: the plain shapes close to converged (1.04x-1.06x from 12000 steps; from 6000 CE alpha .75
# had moved 1.106x); the clutter from 24000 steps 1.06x-1.13x: gamma 0.5 and 2 inside the tenth, CE alpha .75
# not; on seed 0 gamma 2 leads the plain three at 12000 and 24000 steps
assert 1.04 < min(ratio[plain, n] for n in (ce75, fl05, fl2)) and max(ratio[plain, n] for n in (ce75, fl05, fl2)) < 1.06
assert round(before[plain, ce75], 3) == 1.106
assert [round(100 * longer[plain, n], 1) for n in (fl2, fl05, ce75)] == [85.5, 84.6, 83.2]
assert all(tables[plain]["runs"][fl2][0]["AP"] > tables[plain]["runs"][n][0]["AP"] for n in (fl05, ce75))
assert max(ratio[clutter, n] for n in (fl05, fl2)) < 1.1 < ratio[clutter, ce75]
assert [round(ratio[clutter, n], 2) for n in (fl05, fl2, ce75)] == [1.06, 1.07, 1.13]
# clutter, seed 0: gamma 2 starts lowest at 12000 steps and gains the most from there; from 24000 steps on it
# leads the three, and all three keep the order of 24000 at 48000
assert all(tables[clutter]["shorter"][fl2]["AP"] < tables[clutter]["shorter"][n]["AP"] for n in (ce75, fl05))
assert max((ce75, fl05, fl2), key=lambda n: before[clutter, n]) == fl2
assert [round(before[clutter, n], 2) for n in (ce75, fl05, fl2)] == [1.15, 1.18, 1.31]
assert [round(100 * tables[clutter]["shorter"][n]["AP"], 1) for n in (fl2, ce75, fl05)] == [54.9, 55.2, 59.4]
assert all(tables[clutter]["runs"][fl2][0]["AP"] > tables[clutter]["runs"][n][0]["AP"] and longer[clutter, fl2]
           > longer[clutter, n] for n in (ce75, fl05))
assert all(longer[d, fl05] > longer[d, ce75] for d in regimes)
assert [round(100 * longer[clutter, n], 1) for n in (fl2, fl05, ce75)] == [76.5, 74.2, 71.5]
# the easy negatives: more of the CE gradient in the cluttered regime; the focal loss with gamma 2 removes most of it
assert all(shares[d][c]["easy_fraction"] > 0.99 for d in regimes for c in ce)
assert all(easy[clutter, c, "gradient"] > easy[plain, c, "gradient"] for c in ce)
# CE alpha .25 on plain noise: the positives keep most of the loss and of the gradient, more than in the clutter
assert shares[plain][ce25]["loss"]["positives"] > 0.85 and shares[plain][ce25]["gradient"]["positives"] > 0.65
assert all(shares[plain][ce25][part]["positives"] > shares[clutter][ce25][part]["positives"] + 0.1
           for part in ("loss", "gradient"))
assert [round(100 * shares[d][ce25][part]["positives"]) for d in (plain, clutter) for part in ("loss", "gradient")] == [
    87, 68, 65, 40]
assert all(easy[d, fl2, "loss"] < 0.5 * min(easy[d, c, "loss"] for c in ce)
           and easy[d, fl2, "gradient"] < min(easy[d, c, "gradient"] for c in ce) for d in regimes)
# the false positives: wrong classes on plain noise, distractors in clutter (for every model there)
# (summed over the seven plain models; FL gamma 0.5's single false positive there is a localization error)
assert sum(k["kinds"]["wrong class"] for k in kinds[plain].values()) > sum(
    k["false_positives"] for k in kinds[plain].values()) / 2
assert all(k["kinds"]["distractor"] == 0 for k in kinds[plain].values())
assert all(k["kinds"]["distractor"] > k["false_positives"] / 2 for k in kinds[clutter].values())
# CE alpha .75 finds more shapes than gamma 2 in the clutter and makes three times its false positives
assert [(kinds[clutter][n]["true_positives"], kinds[clutter][n]["false_positives"]) for n in (ce75, fl2)] == [
    (82, 41), (76, 13)]
assert max(kinds[clutter], key=lambda n: kinds[clutter][n]["true_positives"]) == ce75
assert kinds[clutter][ce75]["kinds"]["distractor"] == 37
assert [t["cells"] for t in tables.values()] == [27, 27]
assert [round(t["cell_seconds"] / 60) for t in tables.values()] == [427, 1461]
assert round(sum(t["cell_seconds"] for t in tables.values()) / 60) == 1888  # about 16 hours with two at a time

# %% [markdown]
# ### Were the rates fair in the clutter?
#
# The rates were swept on the plain shapes at 1500 steps. A check in the cluttered regime at 12000 steps, half
# the clutter table's: seed 0 of CE $\alpha$ .75 and FL $\gamma$ 0.5 and 2, each at 0.03 and at 0.06 (one of the
# two is its table's rate, and that cell is the half-budget cell of the "Converged?" rows):

# %%
def sweep_aps(sweep):
    """AP of each (setting, rate) cell of a committed one-seed sweep: {(name, lr): AP}."""
    return {(n, lr): sweep["summary"][f"{n} @ lr {lr:g}"]["AP"][0] for n in sweep["settings"] for lr in sweep["lrs"]}


sweep = json.loads(find_committed("table1_lr_sweep_clutter.json").read_text())
sweep_ap = sweep_aps(sweep)
print(sweep["command"])
for name in sweep["settings"]:
    print(f"{name:<26}" + "".join(f"   lr {lr:g}: AP {100 * sweep_ap[name, lr]:.1f}" for lr in sweep["lrs"]))
other_rate = {n: next(lr for lr in sweep["lrs"] if lr != ABLATION_LRS[n]) for n in sweep["settings"]}  # not its table's

# %% tags=["hide-input"]
assert sweep["lrs"] == [0.03, 0.06] and sweep["settings"] == [ce75, fl05, fl2]
assert sweep["iterations"] == tables[clutter]["shorter"][ce75]["iterations"] == budget[clutter] // 2
assert all(sweep_ap[n, ABLATION_LRS[n]] == tables[clutter]["shorter"][n]["AP"] for n in sweep["settings"])
# at half the budget each of the three scores better at the rate its table does not use
assert all(sweep_ap[n, other_rate[n]] > sweep_ap[n, ABLATION_LRS[n]] for n in sweep["settings"])
assert [round(100 * (sweep_ap[n, other_rate[n]] - sweep_ap[n, ABLATION_LRS[n]]), 1) for n in (ce75, fl05, fl2)] == [
    5.5, 2.9, 3.7]
# each at its better rate, gamma 2 is still the lowest of the three at 12000 steps
assert min(sweep["settings"], key=lambda n: max(sweep_ap[n, lr] for lr in sweep["lrs"])) == fl2

# %% [markdown]
# At half the budget none of the three scores best at its table's rate: CE $\alpha$ .75 and $\gamma$ 0.5 gain
# 5.5 and 2.9 points at 0.03, $\gamma$ 2 gains 3.7 at 0.06. A sweep on the plain shapes at 1500 steps does not
# carry over to the clutter's long runs. Even at its better rate $\gamma$ 2 is the lowest of the three at 12000
# steps, where the table's Converged? rows also have it lowest.
#
# Does it change the table's verdict? The two losses of the paper's headline, CE $\alpha$ .75 and $\gamma$ 2, also
# trained seed 0 for the table's 24000 steps at the rate their table does not use
# (`figures/clutter_24000_steps_lr_check/`; its cells at the tables' rates are the table's seed 0):

# %%
check = json.loads(find_committed("clutter_24000_steps_lr_check/table1_lr_sweep_clutter.json").read_text())
check_ap = sweep_aps(check)
print(check["command"])
at_table_rate = {n: tables[clutter]["runs"][n][0]["AP"] for n in (*ce, fl2)}  # seed 0 of the table
for name in check["settings"]:
    print(f"{name:<26}" + "".join(f"   lr {lr:g}: AP {100 * check_ap[name, lr]:.1f}" for lr in check["lrs"])
          + f"   (table: lr {ABLATION_LRS[name]:g})")

# %% tags=["hide-input"]
assert check["iterations"] == budget[clutter] and check["seeds"] == 1
assert check["settings"] == [ce75, fl2] and check["lrs"] == sweep["lrs"]
assert all(check_ap[n, ABLATION_LRS[n]] == at_table_rate[n] for n in check["settings"])  # the table's cells
assert [round(100 * check_ap[n, other_rate[n]], 1) for n in (ce75, fl2)] == [68.4, 70.2]
# over the full budget CE alpha .75 keeps its better rate of half the budget (0.03); gamma 2 does better at its
# table's rate, 0.03, not at the 0.06 it preferred at half the budget
assert check_ap[ce75, 0.03] > check_ap[ce75, 0.06] and check_ap[fl2, 0.03] > check_ap[fl2, 0.06]
assert round(100 * (check_ap[ce75, 0.03] - at_table_rate[ce75]), 1) == 5.2
# at its better rate CE alpha .75 passes every CE of the table on seed 0, and stays 3.2 points below gamma 2
assert all(check_ap[ce75, 0.03] > at_table_rate[c] for c in ce)
assert [round(100 * (at_table_rate[fl2] - a), 1) for a in (at_table_rate[ce75], check_ap[ce75, 0.03])] == [8.4, 3.2]
assert round(100 * (check_ap[fl2, 0.03] - check_ap[fl2, 0.06]), 1) == 1.4

# %% [markdown]
# Over the full budget 0.03 is the better rate of both: it raises CE $\alpha$ .75 by 5.2 points on seed 0 (68.4
# against the table's 63.2), above every CE of the table on that seed, and $\gamma$ 2 scores 71.6 there against
# 70.2 at 0.06, the rate it preferred at half the budget. Each at its better rate, $\gamma$ 2 stays 3.2 points
# ahead of CE $\alpha$ .75 on this seed: the gap shrinks from 8.4 points and does not close. One seed is not a
# table, so CE $\alpha$ .75 also trained seeds 1 and 2 at 0.03 for the full budget
# (`figures/clutter_24000_steps_ce75_3seeds/`), to set beside $\gamma$ 2's row of the table:

# %%
best_ce = json.loads(find_committed("clutter_24000_steps_ce75_3seeds/table1_lr_sweep_clutter.json").read_text())
print(best_ce["command"])
seeds_003 = [run["AP"] for run in best_ce["runs"][f"{ce75} @ lr 0.03"]]
ap_003 = sum(seeds_003) / len(seeds_003)  # by hand, as for the tables
spread_003 = (max(seeds_003) - min(seeds_003)) / 2
for name, aps, mean, half in ((f"{ce75} at lr 0.03", seeds_003, ap_003, spread_003),
                              (f"{fl2} (table)", [run["AP"] for run in tables[clutter]["runs"][fl2]],
                               ap[clutter, fl2], spread[clutter, fl2])):
    print(f"{name:<36} seeds " + "  ".join(f"{100 * a:.1f}" for a in aps)
          + f"   AP {100 * mean:.1f} +- {100 * half:.1f}")

# %% tags=["hide-input"]
assert best_ce["iterations"] == budget[clutter] and best_ce["seeds"] == 3
assert best_ce["settings"] == [ce75] and best_ce["lrs"] == [0.03]
assert seeds_003[0] == check_ap[ce75, 0.03]  # seed 0 is the rate check's cell
assert np.allclose(best_ce["summary"][f"{ce75} @ lr 0.03"]["AP"], [ap_003, spread_003], rtol=1e-12)
assert [round(100 * a, 1) for a in seeds_003] == [68.4, 67.8, 68.1]
assert [round(100 * ap_003, 1), round(100 * spread_003, 1)] == [68.1, 0.3]
# gamma 2 clears CE alpha .75 at its better rate by more than the two spreads added, by half a point
assert round(100 * ((ap[clutter, fl2] - spread[clutter, fl2]) - (ap_003 + spread_003)), 1) == 0.5
# gamma 0.5 and 1 tie with it; at 0.03 its seeds agree far more closely than at its table rate (0.06)
assert all(abs(ap[clutter, f] - ap_003) < spread[clutter, f] + spread_003 for f in (fl05, fl1))
assert round(100 * spread[clutter, ce75], 1) == 2.6 and round(spread[clutter, ce75] / spread_003) == 9
assert [round(100 * a, 1) for a in (ap[clutter, fl2] - spread[clutter, fl2], ap_003 + spread_003)] == [68.9, 68.4]

# %% [markdown]
# At 0.03 CE $\alpha$ .75 scores 68.1 +- 0.3 over its three seeds (68.4, 67.8, 68.1), against its table row's
# 65.4 +- 2.6 at 0.06, whose seeds spread nine times wider. $\gamma$ 2's row, 70.2 +- 1.4, still
# clears it by more than the two spreads added, by half a point (68.9 against 68.4 at the facing ends): the
# paper's headline holds against CE $\alpha$ .75 at its better rate too, narrowly (the other CEs' rates were
# not checked at this budget). $\gamma$ 1 and $\gamma$ 0.5 tie with
# it.
#
# Does $\gamma$ 2's lead last? The Converged? rows trained seed 0 of $\gamma$ 2, $\gamma$ 0.5 and CE $\alpha$ .75 (at
# their tables' rates) for twice the budget; CE $\alpha$ .50, the table's best CE, and CE $\alpha$ .75 at 0.03
# trained as long (`figures/clutter_48000_steps_seed0/`):

# %%
twice = json.loads(find_committed("clutter_48000_steps_seed0/table1_lr_sweep_clutter.json").read_text())
print(twice["command"])
at_twice = sweep_aps(twice)  # {(setting, rate): AP}
at_twice.update({(n, ABLATION_LRS[n]): longer[clutter, n] for n in tables[clutter]["longer"]})  # Converged? rows
for (name, lr), a in sorted(at_twice.items(), key=lambda kv: -kv[1]):
    print(f"{name:<26} lr {lr:g}   AP {100 * a:.1f}")

# %% tags=["hide-input"]
assert twice["iterations"] == 2 * budget[clutter] == tables[clutter]["longer"][fl2]["iterations"]
assert twice["settings"] == [ce50, ce75] and twice["lrs"] == [0.03] and twice["seeds"] == 1
assert [round(100 * at_twice[n, 0.03], 1) for n in (ce50, ce75)] == [71.5, 71.8]
# at twice the budget both focal losses lead every CE on seed 0, at either rate; gamma 2 by 4.8 points or more
assert sorted(at_twice, key=at_twice.get, reverse=True)[:2] == [(fl2, 0.03), (fl05, 0.06)]
assert round(100 * (at_twice[fl2, 0.03] - max(a for (n, _), a in at_twice.items() if n in ce)), 1) == 4.8
# at 0.03 the two CEs gain 1.05x from 24000 steps, inside the tables' tenth (CE alpha .75 at 0.06: 1.13x)
assert [round(at_twice[ce50, 0.03] / tables[clutter]["runs"][ce50][0]["AP"], 2),
        round(at_twice[ce75, 0.03] / check_ap[ce75, 0.03], 2)] == [1.05, 1.05]

# %% [markdown]
# At twice the budget the two focal losses lead every CE on seed 0: $\gamma$ 2 76.5 and $\gamma$ 0.5 74.2,
# against 71.5-71.8 for the CEs ($\alpha$ .50 at 0.03, $\alpha$ .75 at either rate); $\gamma$ 2 by nearly 5
# points. At 0.03 the two CEs gain 1.05x from 24000 steps, inside the tables' tenth, where CE $\alpha$ .75 at
# 0.06 still gained 1.13x: at 0.03 the CEs are close to converged at the table's budget too. One seed: this is
# no table, but it does not show CE catching up with more steps.

# %% [markdown]
# What the committed tables say. Read them as what they are: a light model, 12000 steps a cell on the plain
# shapes and 24000 in the clutter. On the plain shapes twice the steps raise the APs that were tried 1.04x to
# 1.06x, inside the tables' rule of a tenth: close to converged. In the clutter they raise gamma 0.5's and
# gamma 2's 1.06x and 1.07x, inside the rule, and CE alpha .75's 1.13x, outside it (the "Converged?" rows
# above): by the rule the clutter's models are not quite converged, and CE alpha .75 is still climbing at its
# table rate (at 0.03 it gains 1.05x, above). The paper trains 90k iterations.
#
# - **The paper's headline holds in both regimes: gamma 2 beats every alpha-balanced CE** by more than the two
#   spreads added (on the plain shapes 81.2 against the best CE's 79.9, in the clutter 70.2 against 67.1).
#   In the clutter it holds against CE alpha .75 at its better rate too (0.03: 68.1 +- 0.3 over three seeds
#   against gamma 2's 70.2 +- 1.4), by half a point beyond the spreads.
# - **The best gamma depends on the regime.** On the plain shapes gamma 1 is the best setting (82.7) and beats
#   gamma 2 by more than the spreads. In the clutter, the regime with the paper's imbalance and hard
#   negatives, gamma 2 has the best mean, as in the paper, but gamma 1 (68.8) and gamma 0.5 (67.9) are within
#   the spreads of it: three seeds do not separate the three. Only gamma 2 clears every CE there; gamma 1
#   clears alpha .25 only, gamma 0.5 none.
# - **In the clutter gamma 2 starts slow and gains the most.** On seed 0 at 12000 steps it is below CE alpha
#   .75 and gamma 0.5 (54.9 against 55.2 and 59.4); the doubling to 24000 raises it 1.31x (theirs 1.15x and
#   1.18x), and from there it leads both, at 24000 steps and at 48000 (76.5 against 74.2 and 71.5; CE alpha
#   .50 and .75 at 0.03 reach 71.5 and 71.8 there). At half the
#   budget seed 0 ranks gamma 2 below CE alpha .75; exercise 1 trains the clutter at a quarter of it.
# - **Table 1a's alphas do not separate in the clutter, and go the other way on plain noise.** In the clutter
#   the three CEs lie within 1.8 points and every pair within the spreads (alpha .50 67.1, .75 65.4, .25
#   65.3): the paper's collapse of alpha .25 (10.8 against 31.1) does not appear. On plain noise alpha .25 is
#   the best CE, ahead of alpha .50 by more than the spreads and tied with alpha .75. Under CE alpha .25 the
#   positives still carry 87 % of the loss and 68 % of the gradient on plain noise, 65 % and 40 % in the
#   clutter: weighting the rare positives down costs little while the negatives' loss does not swamp theirs.
#   On COCO, with far more and harder negatives, it does, and CE with alpha .25 collapses.
# - **The rates came from the plain shapes, and in the clutter they are not each loss's best**: at 12000 steps
#   CE alpha .75, gamma 0.5 and gamma 2 each score better at the rate their table does not use (by 5.5, 2.9 and
#   3.7 points, seed 0), and gamma 2 is the lowest of the three at either rate. At the full budget 0.03 is the
#   better rate of both CE alpha .75 (+5.2 points) and gamma 2 (+1.4), seed 0; over three seeds CE alpha .75
#   scores 68.1 +- 0.3 there, against 65.4 +- 2.6 in its table row. The clutter's table compares the losses
#   at rates tuned elsewhere; a sweep per regime and budget would cost as much as a table.
# - What carries over everywhere: gamma 5 is the worst focal loss and gamma 2 beats it. In the clutter gamma
#   5's seeds spread the widest (47.3 to 55.8 AP).
#
# The evidence beside the tables says why the regimes differ. Under CE the easy negatives (p_t > 0.9, all but
# a fraction of a percent of the negatives) carry a larger share of the gradient in the cluttered regime than
# on plain noise, for every alpha: that is §3's argument, in miniature. The focal loss with gamma 2 cuts their
# share of the loss to half of any CE's or less, and their share of the gradient below every CE's, in both
# regimes, as Figure 4 of the clutter model shows. The false positives are of a different kind in each
# regime: on plain noise most are shapes given the wrong class (there is nothing else to mistake for an
# object); in the clutter most of every model's are distractors, the hard negatives the regime was built to
# have. There CE alpha .75 finds the most shapes of the seven models (82 on 64 images) and makes 41 false
# positives, 37 of them distractors; gamma 2 finds 76 and makes 13. The two tables' 54 runs took 1888
# minutes of training (427 on the plain shapes, 1461 in the clutter), about 16 hours on two cores.
#
# ## Summary
#
# - Figure 4: normalized, sorted FL of a trained model's positives and negatives. Raising gamma moves the
#   negatives' loss onto a small set of hard ones and leaves the positives' nearly unchanged.
# - A higher gamma removes the easy negatives' loss, so the alpha that balances positives and negatives
#   falls: Table 1b's "higher gamma wants lower alpha".
# - An ablation changes one setting (here the loss, each at its own swept learning rate) and compares AP on
#   held-out images; `numpy-retinanet ablate` makes the committed tables of both regimes. In both, at 12000
#   steps on the plain shapes and 24000 in the clutter, gamma 2 beats every CE: the paper's headline (in the
#   clutter also CE alpha .75 at its better rate, by half a point beyond the spreads of three seeds).
#   The best gamma is 1 on the plain shapes; in the clutter gamma 2 has the best mean, tied with gamma 1 and
#   0.5. CE's alphas do not order as in Table 1a: here the positives keep much of CE's loss.
#
# ## Exercises
#
# 1. Train the clutter a quarter as long, one seed: `numpy-retinanet ablate --dataset shapes-clutter --iterations
#    6000 --seeds 1 --jobs 2 --out runs/table1` (7 cells of 6000 steps, and 3000 and 12000 for the Converged?
#    rows: 87,000 steps, over an hour on two cores). Which of the paper's orderings that hold in the committed
#    table at 24000 steps do not hold yet at 6000, and which of the Converged? settings gains most per doubling?
# 2. Table 1a says CE with a small alpha fails; why does weighting the positives down hurt CE but not FL?
# 3. Redraw Figure 4 with gamma 5. What share of the negatives' loss do the hardest 1% hold?
# 4. `numpy-retinanet figures --only figure4_loss_cdf` draws this lesson's first figure for the repository; the
#    README lists every figure and the command that made it.
