"""``numpy-retinanet ablate``: the paper's Table 1a/1b in miniature, on synthetic shapes.

Seven classification losses are trained at an equal budget (same model, data, schedule
and number of steps; only the loss and its learning rate change), each with several seeds,
and evaluated on the same held-out images:

- alpha-balanced cross-entropy (Table 1a) with alpha in {.25, .5, .75};
- the focal loss (Table 1b) with (gamma, alpha) in {(.5, .5), (1, .25), (2, .25), (5, .25)}.

In either regime (``--dataset``): shapes on plain noise, or the cluttered regime built for
the paper's problem (data/clutter.py: smaller objects, distractors that make hard negatives;
1 : 1028 positive to negative anchors at the ablation's 144 px). The results (AP, AP50, AP75: mean and spread
over seeds) are written to ``table1_shapes.md`` (``table1_shapes_clutter.md``) beside the
paper's numbers, with a plot (``.png``) and the JSON they are drawn from. Beside them, from the seed-0 model
of each loss: half and twice the steps for CE alpha .75 and FL gamma 0.5 and 2 (converged?), who carries the
loss, what the false positives are, and Figure 4 (``table1_shapes_figure4.png``, ...).

The learning rate of each loss is chosen by a sweep (``--lr``, one seed, the same budget for
every loss), ``table1_lr_sweep.md`` (a sweep of the clutter: ``table1_lr_sweep_clutter.md``).
Every cell is a run folder under ``--work``; a finished one is read instead of trained again and
one stopped part way continues from its last checkpoint, so an interrupted ablation continues, and
``--jobs N`` trains N cells at once, one core each.

This module is the command. The settings it trains (the losses, the recipe, the paper's numbers) are
tools/table1.py; the cells are trained by tools/cells.py; what it writes from the results (the
Markdown, the figures, the orderings' sentences) is tools/ablate_report.py.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import numpy as np

from numpy_retinanet.engine.run_folder import hold_folder, write_run_file
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.tools.ablate_report import format_sweep, format_table, plot_figure4, plot_table
from numpy_retinanet.tools.cells import plan, run_cells
from numpy_retinanet.tools.table1 import (
    ABLATION_DEFAULTS,
    ABLATION_ITERATIONS,
    ABLATION_MAX_OBJECTS,
    ABLATION_MODEL,
    EVIDENCE_IMAGES,
    FIGURE4_SETTING,
    LONGER_SETTINGS,
    SETTINGS,
    ablation_config,
    cell_folder,
    sweep_stem,
    table_stem,
)

# Figure 4's grid as kept in the JSON: 201 even steps and 31 within the last 0.1 %.
FIGURE4_FRACTIONS = np.union1d(np.linspace(0.0, 1.0, 201), 1.0 - np.logspace(-6, -3, 31))


def _mean_spread(values):
    """(mean, half the range) of a list: the spread printed as +-."""
    return statistics.fmean(values), (max(values) - min(values)) / 2


def run_ablation(out_dir="figures", iterations=None, seeds=ABLATION_DEFAULTS["seeds"],
                 eval_images=ABLATION_DEFAULTS["eval_images"], dataset="shapes", image_size=None, settings=None,
                 lrs=None, jobs=1, work="runs/ablate", log=print, plan_only=False):
    """Train every setting with ``seeds`` seeds; write the table's .md/.png/.json in ``out_dir``.

    ``iterations``: steps per cell, None for the regime's ``ABLATION_ITERATIONS``. ``lrs``: None
    trains each loss at its ``ABLATION_LRS``; a list trains every cell at each of those rates and
    writes the sweep (``sweep_stem(dataset)``.*) instead of the table. The runs stay in ``work``
    (one folder per cell, reused when run again). ``plan_only``: log what a run would train and about
    how long it would take (``cells.plan``, read from ``work``, also while a run trains there), then
    return None, training and writing nothing.

    Returns the results dict (also saved as JSON); logs ``wrote PATH`` for each file written.
    """
    if dataset not in ABLATION_ITERATIONS:
        raise ValueError(f"unknown regime {dataset!r}; known: {list(ABLATION_ITERATIONS)}")
    iterations = ABLATION_ITERATIONS[dataset] if iterations is None else iterations
    if seeds < 1 or jobs < 1 or iterations < 2:
        raise ValueError(f"seeds and jobs must be >= 1 and iterations >= 2 (the Converged? rows train half as many "
                         f"steps), got {seeds}, {jobs} and {iterations}")
    names = [s[0] for s in SETTINGS] if settings is None else list(settings)
    unknown = sorted(set(names) - {s[0] for s in SETTINGS})
    if unknown:
        raise ValueError(f"unknown settings {unknown}; known: {[s[0] for s in SETTINGS]}")
    for flag, folder in (("--out", out_dir), ("--work", work)):
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise ValueError(f"{flag} {os.fspath(folder)!r} is a file, not a folder")
    t0 = time.perf_counter()
    jobs_list = []
    for name in names:
        for lr in ([None] if lrs is None else lrs):
            for seed in range(seeds):
                config = ablation_config(name, seed, iterations, eval_images, dataset, image_size, lr)
                jobs_list.append((name, config, cell_folder(work, config, name)))
    longer = [] if lrs is not None else [n for n in LONGER_SETTINGS if n in names]
    budgets = {"longer": 2 * iterations, "shorter": iterations // 2}
    for steps in budgets.values():
        for name in longer:
            config = ablation_config(name, 0, steps, eval_images, dataset, image_size)
            jobs_list.append((name, config, cell_folder(work, config, name)))
    if plan_only:  # what a run would train, read from the run folders; nothing trained or written
        log(plan(jobs_list, jobs)[0])
        return None
    # One command at a time on a work folder: a second one would train the first one's next cells,
    # and the first would stop when it reached one of them. Refused at once instead.
    with hold_folder(work, "--work", f"--work {os.fspath(work)!r} is in use by another ablate (process {{holder}}): "
                                     "wait for it to end (--plan says how far it has come) or give another --work"):
        os.makedirs(out_dir, exist_ok=True)  # before the hours of training, not after
        all_cells = run_cells(jobs_list, jobs, log)
    diverged = [(c, job[1]) for c, job in zip(all_cells, jobs_list) if "diverged_at" in c]
    if diverged and lrs is None:
        from numpy_retinanet.engine.trainer import TrainingDiverged

        raise TrainingDiverged(
            f"{len(diverged)} of {len(all_cells)} cells diverged, so the table cannot be made: "
            + "; ".join(f"{c['name']}, lr {c['lr']:g}, seed {c['seed']}, {config.iterations} steps: at step "
                        f"{c['diverged_at']} ({c['reason']})" for c, config in diverged)
            + f". The other cells are kept in {os.fspath(work)}. A loss that diverges at its rate needs a lower one: "
            "run the sweep (--lr) and change ABLATION_LRS")
    cells = all_cells[:len(all_cells) - len(budgets) * len(longer)]
    trained = [c for c in all_cells if "diverged_at" not in c]
    config = jobs_list[0][1]
    args = f"--dataset {dataset} --iterations {iterations} --seeds {seeds}"
    if eval_images != ABLATION_DEFAULTS["eval_images"]:
        args += f" --eval-images {eval_images}"
    if image_size is not None:
        args += f" --image-size {image_size}"
    if lrs is not None:
        args += " --lr " + " ".join(f"{lr:g}" for lr in lrs)
    if settings is not None:
        args += " --only " + " ".join(f"'{n}'" for n in names)
    model = RetinaNet(3, **ABLATION_MODEL)
    anchors = sum(model.level_sizes(config.image_size, config.image_size))
    # A sweep keeps its diverged cells (a finding): they have no AP, time or positives.
    pos = round(statistics.fmean(c["positives_per_image"] for c in trained), 2) if trained else None
    result = {
        "command": f"numpy-retinanet ablate {args} --jobs {jobs}", "dataset": dataset, "settings": names,
        "seeds": seeds, "iterations": iterations, "eval_images": eval_images, "image_size": config.image_size,
        "max_objects": ABLATION_MAX_OBJECTS, "model": {"preset": "default", **ABLATION_MODEL},
        "parameters": model.num_parameters(), "jobs": jobs,
        "seconds": round(time.perf_counter() - t0, 1),
        "cell_seconds": round(sum(c["seconds"] for c in trained), 1),
        "reused_cells": sum(c["reused"] for c in all_cells), "cells": len(all_cells),
        "anchors_per_image": anchors, "positive_anchors_per_image": pos,
        "runs": {}, "summary": {},
    }
    if lrs is not None:
        result["lrs"] = list(lrs)
    for name in names:
        for lr in ([None] if lrs is None else lrs):
            key = name if lrs is None else f"{name} @ lr {lr:g}"
            rs = [c for c in cells if c["name"] == name and (lr is None or c["lr"] == lr)]
            if any("diverged_at" in c for c in rs):  # a rate that diverges with any seed is no choice
                result["runs"][key] = [{k: c[k] for k in ("seed", "lr", "diverged_at", "reason") if k in c}
                                       for c in rs]
                result["summary"][key] = {"diverged": True}
                continue
            result["runs"][key] = [{k: c[k] for k in ("seed", "lr", "AP", "AP50", "AP75", "final_loss")} for c in rs]
            result["summary"][key] = {k: _mean_spread([c[k] for c in rs]) for k in ("AP", "AP50", "AP75")}
    if lrs is None:
        extra = iter(all_cells[len(cells):])  # in the order they were added: longer, then shorter
        for key, steps in budgets.items():
            result[key] = {c["name"]: {"iterations": steps, "seed": 0, "AP": c["AP"], "AP50": c["AP50"],
                                       "AP75": c["AP75"]} for c in (next(extra) for _ in longer)}
        result["evidence"] = regime_evidence([j for j in jobs_list[:len(cells)] if j[1].seed == 0],
                                             min(EVIDENCE_IMAGES, eval_images), log)
        result["seconds"] = round(time.perf_counter() - t0, 1)
    stem = os.path.join(out_dir, sweep_stem(dataset) if lrs is not None else table_stem(dataset))
    # Whole or not at all: a committed table cut off by a stopped command would break lesson 10.
    write_run_file(stem + ".json", json.dumps(result, indent=1))
    write_run_file(stem + ".md", format_sweep(result) if lrs is not None else format_table(result))
    written = [stem + ".md", stem + ".json"]
    if lrs is None:
        plot_table(result, stem + ".png")
        written.append(stem + ".png")
        if "figure4" in result.get("evidence", {}):  # only when the gamma 2 setting was trained
            plot_figure4(result, stem + "_figure4.png")
            written.append(stem + "_figure4.png")
    for path in written:
        log(f"wrote {path}")
    return result


def regime_evidence(seed0_jobs, images=EVIDENCE_IMAGES, log=print):
    """What the seed-0 model of each setting does on its first ``images`` held-out images.

    Returns {"images", "shares": {setting: negative_shares with its own loss},
    "false_positives": {setting: false_positive_kinds}, "figure4": loss_cdf_curves of the
    ``FIGURE4_SETTING`` model (when it is among them), lists for JSON}.
    """
    from numpy_retinanet.data.build import build_dataset
    from numpy_retinanet.engine.checkpoint import load_checkpoint
    from numpy_retinanet.evaluation.loss_cdf import FIGURE4_GAMMAS, loss_cdf_curves
    from numpy_retinanet.tools.false_positives import false_positive_kinds
    from numpy_retinanet.tools.negatives import negative_shares

    out = {"images": images, "shares": {}, "false_positives": {}}
    if images < 1:
        return out
    for name, config, folder in seed0_jobs:
        model, _ = load_checkpoint(os.path.join(folder, "checkpoint.npz"))
        held_out = build_dataset(config, "eval", num_images=images)
        out["shares"][name] = negative_shares(model, held_out, config)
        out["false_positives"][name] = false_positive_kinds(model, held_out)
        if name == FIGURE4_SETTING:
            curves = loss_cdf_curves(model, held_out, FIGURE4_GAMMAS, fractions=FIGURE4_FRACTIONS)
            out["figure4"] = {"fraction": curves["fraction"].tolist(), "gammas": list(curves["gammas"]),
                              "num_positive": curves["num_positive"], "num_negative": curves["num_negative"],
                              **{kind: {f"{g:g}": np.round(curves[kind][g], 6).tolist() for g in curves["gammas"]}
                                 for kind in ("positive", "negative")}}
        log(f"evidence: {name}")
    return out
