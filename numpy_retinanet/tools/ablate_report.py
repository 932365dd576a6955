"""What ``numpy-retinanet ablate`` writes from its results: the tables' Markdown, their figures and
the sentences that say which of the paper's orderings hold.

Every function here reads the results dict (the JSON beside each table) and trains nothing, so the
committed ``figures/table1_*`` can be drawn again from their JSON alone (``tests/test_ablate.py``
checks that they are).
"""

from __future__ import annotations

import numpy as np

from numpy_retinanet.tools.table1 import FIGURE4_SETTING, LR_SWEEP, PAPER_TABLE1, sweep_stem, table_stem


def figure4_curves(result):
    """The Figure 4 curves kept in the results' JSON, as ``loss_cdf_curves`` returns them (arrays,
    float gammas), and the caption that names their model."""
    f = result["evidence"]["figure4"]
    curves = {"fraction": np.asarray(f["fraction"]), "gammas": tuple(f["gammas"]),
              "num_positive": f["num_positive"], "num_negative": f["num_negative"],
              **{kind: {g: np.asarray(f[kind][f"{g:g}"]) for g in f["gammas"]} for kind in ("positive", "negative")}}
    caption = (f"{FIGURE4_SETTING}, seed 0, {result['iterations']} steps on {result['dataset']} "
               f"({result['image_size']} px), {result['evidence']['images']} held-out images")
    return curves, caption


def plot_figure4(result, path):
    """Figure 4 (§5.1) of the regime's gamma-2 model (seed 0, the table's budget), drawn from the results' JSON."""
    from numpy_retinanet.evaluation.loss_cdf import plot_loss_cdf
    from numpy_retinanet.evaluation.visualize import save_figure

    return save_figure(plot_loss_cdf(*figure4_curves(result)), path)


def ordering_statement(result):
    """Sentences saying whether the paper's orderings hold in ``result`` (means over seeds)."""
    ap = {n: result["summary"][n]["AP"][0] for n in result["summary"]}
    spread = {n: result["summary"][n]["AP"][1] for n in result["summary"]}
    checks = []

    def claim(text, holds, a=None, b=None):
        """``a`` beats ``b`` claims: said to be a tie when their means differ by less than the spreads added."""
        tie = a is not None and abs(ap[a] - ap[b]) < spread[a] + spread[b]
        checks.append(f"- {text}: {'holds' if holds else 'does NOT hold'}"
                      + (", within the two spreads added (a tie)." if tie else "."))

    ce = [n for n in ap if n.startswith("CE")]
    fl = [n for n in ap if n.startswith("FL")]
    if ce and fl:
        best_ce, best_fl = max(ce, key=ap.get), max(fl, key=ap.get)
        claim(f"the best FL ({best_fl}, AP {ap[best_fl]:.3f}) beats the best CE ({best_ce}, AP {ap[best_ce]:.3f})",
              ap[best_fl] > ap[best_ce], best_fl, best_ce)
    if {"CE, alpha .25", "CE, alpha .75"} <= set(ap):
        claim("among CE, alpha .75 beats alpha .25 (the paper: 31.1 vs 10.8)",
              ap["CE, alpha .75"] > ap["CE, alpha .25"], "CE, alpha .75", "CE, alpha .25")
    if {"FL, gamma 2, alpha .25", "FL, gamma 5, alpha .25"} <= set(ap):
        claim("gamma 2 beats gamma 5 (the paper: 34.0 vs 32.2)",
              ap["FL, gamma 2, alpha .25"] > ap["FL, gamma 5, alpha .25"], "FL, gamma 2, alpha .25",
              "FL, gamma 5, alpha .25")
    if fl:
        claim(f"gamma 2 is the best FL setting (here: {max(fl, key=ap.get)})",
              max(fl, key=ap.get) == "FL, gamma 2, alpha .25")
    if ce and "FL, gamma 2, alpha .25" in ap:
        best_ce = max(ce, key=ap.get)
        claim(f"gamma 2 beats the best CE (here: {best_ce}; the paper's headline, 34.0 vs 31.1)",
              ap["FL, gamma 2, alpha .25"] > ap[best_ce], "FL, gamma 2, alpha .25", best_ce)
    return "\n".join(checks)


def convergence_statement(result):
    """What twice the steps did to AP (seed 0), what the doubling before did, and the order of the
    settings at each of the three budgets."""
    n, longer, shorter = result["iterations"], result["longer"], result["shorter"]
    ap = {name: result["runs"][name][0]["AP"] for name in longer}
    ratio = {name: r["AP"] / max(ap[name], 1e-12) for name, r in longer.items()}
    before = [ap[name] / max(r["AP"], 1e-12) for name, r in shorter.items()]

    def order(aps):
        return " > ".join(f"{name} ({100 * v:.1f})" for name, v in sorted(aps.items(), key=lambda kv: -kv[1]))

    lo, hi = min(ratio.values()), max(ratio.values())
    # Converged: twice the steps move no AP by more than a tenth of itself.
    moved = [f"{name} ({r:.3f}x)" for name, r in ratio.items() if abs(r - 1) > 0.1]
    verdict = (f"Twice the steps change these APs {lo:.2f}x to {hi:.2f}x. The rule for close to converged is that "
               "twice the steps move no AP by more than a tenth; " + "; ".join(moved) + " moved more, so the "
               f"{n}-step models are not converged, and the table compares the losses at an equal budget short of it."
               if moved else
               f"Twice the steps change these APs by {lo:.2f}x to {hi:.2f}x, none by more than a tenth: the "
               f"{n}-step models are close to converged.")
    m = next(iter(shorter.values()))["iterations"]
    return (verdict + f" The doubling before, from {m} to {n} steps, changed them {min(before):.2f}x to "
            f"{max(before):.2f}x. Seed 0 at {m} steps: " + order({k: r["AP"] for k, r in shorter.items()})
            + f"; at {n} steps: " + order(ap) + f"; at {2 * n} steps: "
            + order({k: r["AP"] for k, r in longer.items()}) + ".")


def format_table(result):
    """Markdown: the table, the setup, the imbalance and whether the paper's ordering holds."""
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    model = ", ".join(f"{k}={v}" for k, v in result["model"].items() if k != "preset")
    pos, anchors = result["positive_anchors_per_image"], result["anchors_per_image"]
    regime = {"shapes": "shapes on plain noise (`--dataset shapes`)",
              "shapes-clutter": "shapes among distractors (`--dataset shapes-clutter`, data/clutter.py)"}
    one_seed = result["seeds"] == 1
    seeds = "seed 0" if one_seed else f"seeds 0..{result['seeds'] - 1}"
    spread = "One seed: no mean, no spread." if one_seed else "Mean over seeds, +- half the range."
    lines = [
        f"# Table 1 in miniature: CE vs focal loss, {result['dataset']}",
        "",
        f"Made by `{result['command']}`. Training its {result['cells']} cells took {result['cell_seconds'] / 60:.0f} "
        f"minutes in all (one core each, {result['jobs']} at a time: from scratch, "
        f"{result['cell_seconds'] / result['jobs'] / 3600:.1f} hours wall or more); this run of the command took "
        f"{result['seconds'] / 60:.1f} minutes wall and read {result['reused_cells']} finished cells from earlier runs "
        "instead of training them again. "
        f"Regime: {regime.get(result['dataset'], result['dataset'])}. Every cell: the same model (default preset "
        f"with {model}; {result['parameters']:,} parameters), {result['iterations']} SGD steps of 8 images of "
        f"{result['image_size']} px with at most {result['max_objects']} shapes each, the cosine schedule after "
        f"a {min(100, result['iterations'] // 5)}-step warm-up, gradient norm clipped at 10, each loss at the "
        f"learning rate the sweep chose for it on the plain shapes at {LR_SWEEP['iterations']} steps "
        "(table1_lr_sweep.md; the lr column), "
        f"{seeds} (initialization and training images), evaluated on the same {result['eval_images']} held-out "
        f"images (seed 1000). {spread}",
        "",
        f"Imbalance: {pos:.1f} positive anchors per image out of {anchors:,} (1 : {anchors / max(pos, 1e-9):.0f}); "
        "the paper's ~100k anchors per image give about 1 : 1000.",
        "",
        "| loss | lr | AP | AP50 | AP75 | paper AP | paper AP50 | paper AP75 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in result["settings"]:
        s = result["summary"][name]
        p = PAPER_TABLE1[name]
        lr = result["runs"][name][0]["lr"]
        cells = [f"{100 * s[k][0]:.1f}" if one_seed else f"{100 * s[k][0]:.1f} +- {100 * s[k][1]:.1f}"
                 for k in ("AP", "AP50", "AP75")]
        lines.append(f"| {name} | {lr:g} | " + " | ".join(cells) + f" | {fmt(p[0])} | {fmt(p[1])} | {fmt(p[2])} |")
    lines += ["", f"AP in percent, as in the paper. The paper's orderings, on these {'APs' if one_seed else 'means'}:",
              "", ordering_statement(result), "",
              "Why an ordering holds here or not: lesson 10 (`lessons/10_paper_analyses_in_miniature.py`) reads the "
              "committed tables of both regimes with the evidence below them.", ""]
    if result.get("longer"):
        n, m = result["iterations"], next(iter(result["shorter"].values()))["iterations"]
        lines += ["## Converged?", "",
                  f"Seed 0 of these settings also trained for {m} and for {2 * n} steps (the same recipe, half and "
                  "twice as long; the cosine schedule ends at each run's last step):", "",
                  f"| loss | AP at {m} steps | AP at {n} steps | AP at {2 * n} steps |", "|---|---|---|---|"]
        lines += [f"| {name} | {100 * result['shorter'][name]['AP']:.1f} | {100 * result['runs'][name][0]['AP']:.1f} "
                  f"| {100 * r['AP']:.1f} |" for name, r in result["longer"].items()]
        lines += ["", convergence_statement(result), ""]
    if result.get("evidence", {}).get("shares"):
        lines += _format_evidence(result["evidence"], result["dataset"])
    return "\n".join(lines)


def _format_evidence(ev, dataset):
    """The evidence tables of ``regime_evidence``'s results, as Markdown lines."""
    distractors = any("distractor_negatives" in r["loss"] for r in ev["shares"].values())
    groups = ("positives", "easy_negatives", "hardest_negatives") + (("distractor_negatives",) if distractors else ())
    heads = {"positives": "positives", "easy_negatives": "easy negatives", "hardest_negatives": "hardest 1 %",
             "distractor_negatives": "on distractors"}
    lines = ["## Who carries the classification loss", "",
             f"The seed-0 model of each loss on {ev['images']} held-out images, scored with its own loss "
             "(tools/negatives.py): the share of the summed loss and of the summed |dL/dx| held by the "
             "positives, the easy negatives (p_t > 0.9), the hardest 1 % of the negatives"
             + (" and the negatives whose anchor lies on a distractor" if distractors else "") + ".", "",
             "| loss | easy share of negatives | " + " | ".join(f"loss: {heads[g]}" for g in groups) + " | "
             + " | ".join(f"gradient: {heads[g]}" for g in groups) + " |",
             "|---|---|" + "---|" * (2 * len(groups))]
    for name, r in ev["shares"].items():
        lines.append(f"| {name} | {100 * r['easy_fraction']:.3f} % | "
                     + " | ".join(f"{100 * r[part][g]:.1f} %" for part in ("loss", "gradient") for g in groups) + " |")
    fp = next(iter(ev["false_positives"].values()))
    lines += ["", "## What the false positives are", "",
              f"Detections scoring {fp['score_threshold']} or more on the same {fp['images']} images, matched as "
              "the AP matches them; each false positive in the first kind that fits (tools/false_positives.py).", "",
              "| loss | true positives | false positives | " + " | ".join(fp["kinds"]) + " |",
              "|---|---|---|" + "---|" * len(fp["kinds"])]
    for name, r in ev["false_positives"].items():
        lines.append(f"| {name} | {r['true_positives']} | {r['false_positives']} | "
                     + " | ".join(str(v) for v in r["kinds"].values()) + " |")
    lines.append("")
    if "figure4" in ev:
        lines += [f"Figure 4 (§5.1) of the {FIGURE4_SETTING} model: `{table_stem(dataset)}_figure4.png`.", ""]
    return lines


def chosen_lrs(sweep):
    """{setting: the learning rate of the sweep with the best mean AP} (ties: the lower rate; rates that
    diverged are left out, and a setting that diverged at every rate has None)."""
    best = {}
    for name in sweep["settings"]:
        ok = [lr for lr in sweep["lrs"] if "AP" in sweep["summary"][f"{name} @ lr {lr:g}"]]
        best[name] = max(ok, key=lambda lr: (sweep["summary"][f"{name} @ lr {lr:g}"]["AP"][0], -lr), default=None)
    return best


def format_sweep(sweep):
    """Markdown: AP of every setting at every learning rate of the sweep, the chosen one in bold; with more than
    one seed, the mean +- half the range, as in the tables."""
    best = chosen_lrs(sweep)
    lines = [
        f"# The learning rate of each loss, for the Table 1 ablation ({sweep['dataset']})",
        "",
        f"Made by `{sweep['command']}` ({sweep['cell_seconds'] / 60:.0f} minutes of training in all). Every "
        f"setting trained at each rate with seed {', '.join(str(s) for s in range(sweep['seeds']))}, "
        f"{sweep['iterations']} steps, evaluated on {sweep['eval_images']} held-out images. "
        + ("The ablation trains each loss at its best rate (bold); `ABLATION_LRS` in "
           "`numpy_retinanet/tools/table1.py` holds the choice."
           if all(sweep[k] == v for k, v in LR_SWEEP.items()) else
           f"The best rate of each loss is in bold. The tables train each loss at the rate chosen on the "
           f"{LR_SWEEP['dataset']} at {LR_SWEEP['iterations']} steps (`{sweep_stem(LR_SWEEP['dataset'])}.md`, "
           "`ABLATION_LRS`); this sweep shows what another rate would have given."),
        "",
        "| loss | " + " | ".join(f"AP at lr {lr:g}" for lr in sweep["lrs"]) + " |",
        "|---|" + "---|" * len(sweep["lrs"]),
    ]
    for name in sweep["settings"]:
        cells = []
        for lr in sweep["lrs"]:
            key = f"{name} @ lr {lr:g}"
            if "AP" not in sweep["summary"][key]:
                steps = ", ".join(f"seed {r['seed']} at step {r['diverged_at']}" for r in sweep["runs"][key]
                                  if "diverged_at" in r)
                cells.append(f"diverged ({steps})")
                continue
            mean, spread = sweep["summary"][key]["AP"]
            text = f"{100 * mean:.1f}" + (f" +- {100 * spread:.1f}" if sweep["seeds"] > 1 else "")
            cells.append(f"**{text}**" if lr == best[name] else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""])


def plot_table(result, path):
    """AP, AP50 and AP75 of each setting beside the paper's, as a PNG at ``path``.

    One panel per metric, the settings on the shared y axis (Table 1a then 1b, top to bottom):
    a blue bar is the mean over seeds on shapes, the black dots are the seeds, the orange bar
    below it is the paper's number (Table 1, COCO minival); "not in paper" where the paper gives
    AP only. Each bar is labelled with its value.

    The committed ``figures/table1_shapes.png`` is drawn from the committed results, without
    retraining (``tests/test_ablate.py`` checks that the bytes match)::

        python -c "import json; from numpy_retinanet.tools.ablate_report import plot_table; \
        plot_table(json.load(open('figures/table1_shapes.json')), 'figures/table1_shapes.png')"
    """
    import matplotlib.style
    from matplotlib.figure import Figure

    from numpy_retinanet.evaluation.visualize import save_figure

    names = result["settings"]
    y = np.arange(len(names))
    metrics = ("AP", "AP50", "AP75")
    ours_colour, paper_colour = "tab:blue", "tab:orange"
    ours = f"{result['dataset']} (this project): " + ("mean over seeds" if result["seeds"] > 1 else "seed 0")
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(12, 0.62 * len(names) + 2.0))
        axes = fig.subplots(1, 3, sharey=True)
        top = max([100 * r[k] for n in names for r in result["runs"][n] for k in metrics]
                  + [v for n in names for v in PAPER_TABLE1[n] if v is not None])
        for col, (ax, metric) in enumerate(zip(axes, metrics)):
            means = [100 * result["summary"][n][metric][0] for n in names]
            ax.barh(y - 0.2, means, height=0.4, color=ours_colour,
                    label=ours if col == 0 else None)
            for i, n in enumerate(names):
                seeds = [100 * r[metric] for r in result["runs"][n]]
                ax.scatter(seeds, [i - 0.2] * len(seeds), color="k", s=9, zorder=3,
                           label=f"{result['dataset']}: one seed" if col == 0 and i == 0 else None)
                ax.text(max(seeds + [means[i]]) + 1.6, i - 0.2, f"{means[i]:.1f}", va="center", fontsize=8)
                paper = PAPER_TABLE1[n][col]
                if paper is None:
                    ax.text(0.8, i + 0.2, "not in paper", va="center", fontsize=8, color="0.45", style="italic")
                else:
                    ax.barh(i + 0.2, paper, height=0.4, color=paper_colour,
                            label="paper, COCO minival (Table 1)" if col == 0 and i == 0 else None)
                    ax.text(paper + 1.6, i + 0.2, f"{paper:.1f}", va="center", fontsize=8)
            n_ce = sum(n.startswith("CE") for n in names)
            if 0 < n_ce < len(names):  # Table 1a (CE) above, Table 1b (FL) below
                ax.axhline(n_ce - 0.5, color="0.6", linewidth=0.8, linestyle="--")
            ax.set_title(metric, fontsize=11, fontweight="bold")
            ax.set_xlim(0, 1.15 * top)
            ax.set_xlabel(f"{metric} (%)")
            ax.grid(axis="x", color="0.88", linewidth=0.8)
            ax.set_axisbelow(True)
        axes[0].set_yticks(y)
        axes[0].set_yticklabels(names, fontsize=9)
        axes[0].invert_yaxis()
        fig.suptitle(f"Table 1 in miniature: {result['iterations']} steps, {result['seeds']} "
                     f"seed{'s' if result['seeds'] > 1 else ''} per loss "
                     f"({result['dataset']}, {result['image_size']} px) beside the paper", fontsize=12)
        handles, labels = axes[0].get_legend_handles_labels()
        order = [labels.index(t) for t in (ours, f"{result['dataset']}: one seed", "paper, COCO minival (Table 1)")]
        fig.legend([handles[k] for k in order], [labels[k] for k in order], loc="lower center", ncol=3,
                   fontsize=9, frameon=False)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        return save_figure(fig, path)
