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
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import statistics
import time

import numpy as np

from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.model.retinanet import RetinaNet

# (name, loss, gamma, alpha) in the order of the paper's Table 1a then 1b.
SETTINGS = [
    ("CE, alpha .25", "ce", 0.0, 0.25),
    ("CE, alpha .50", "ce", 0.0, 0.50),
    ("CE, alpha .75", "ce", 0.0, 0.75),
    ("FL, gamma 0.5, alpha .50", "focal", 0.5, 0.50),
    ("FL, gamma 1, alpha .25", "focal", 1.0, 0.25),
    ("FL, gamma 2, alpha .25", "focal", 2.0, 0.25),
    ("FL, gamma 5, alpha .25", "focal", 5.0, 0.25),
]

# Table 1 of the paper (ResNet-50-FPN, 600 px, COCO minival): AP, AP50, AP75; None where
# the paper gives AP only (Lin et al. 2017, Table 1a and 1b).
PAPER_TABLE1 = {
    "CE, alpha .25": (10.8, 16.0, 11.7),
    "CE, alpha .50": (30.2, 46.7, 32.8),
    "CE, alpha .75": (31.1, 49.4, 33.0),
    "FL, gamma 0.5, alpha .50": (32.9, None, None),
    "FL, gamma 1, alpha .25": (33.7, None, None),
    "FL, gamma 2, alpha .25": (34.0, 52.5, 36.5),
    "FL, gamma 5, alpha .25": (32.2, None, None),
}

# The ablation's model: a lighter one than the "default" preset (one 32-channel conv per
# head, a 32-channel pyramid; 425,807 parameters) so that 7 losses x 3 seeds train on a 2-core
# CPU with --jobs 2: the plain table (12000 steps a cell, with the 6000- and 24000-step runs)
# took 427 minutes of one core, about 3.6 hours with two cells at a time; the clutter's (6000
# steps) 328, about 2.7 hours.
ABLATION_MODEL = dict(fpn_channels=32, head_channels=32, head_depth=1)
ABLATION_DEFAULTS = dict(seeds=3, eval_images=200)
# Steps per cell, per regime (seed 0's AP, the tables' "Converged?" rows). From 3000 steps,
# twice the steps raised the plain shapes' AP 1.12-1.16x and the clutter's 1.63-1.78x; from
# 6000, 1.05-1.11x and 1.26-1.62x; from 12000 the plain shapes' 1.04-1.06x. The plain shapes
# train 12000 steps, where they meet the tables' rule for close to converged (no AP moving by
# more than a tenth when the steps double). The clutter is far from it at 6000 and stays there
# until its 12000-step table is trained: about 5.6 hours wall on the 2-core machine (21 cells of
# 1352-1417 s and the Converged? rows' 24000-step cells of 2921-2954 s, measured). A per-regime
# budget, so that either can move without the other.
ABLATION_ITERATIONS = {"shapes": 12000, "shapes-clutter": 6000}
# At most 2 shapes per image instead of 4: half the positive anchors for the same anchors
# per image, a step toward the paper's imbalance at no extra cost.
ABLATION_MAX_OBJECTS = 2
# The two regimes and their image sizes. The clutter regime's objects are smaller; at 144 px
# and at most 2 of them its runs measured 1 : 1028 positive to negative anchors (the paper:
# ~1 : 1000), with a third of the pixels per step of the 256 px the regime was built at.
ABLATION_IMAGE_SIZE = {"shapes": 128, "shapes-clutter": 144}
# The learning rate of each loss: the best AP on seed 0 of the plain regime at 1500 steps
# (``LR_SWEEP``) among the rates the sweep tried (``ablate --iterations 1500 --seeds 1 --lr 0.01
# 0.03 0.06``, ``figures/table1_lr_sweep.json``; tests/test_ablate.py checks that this follows
# from it). The tables of both regimes, each at its budget, use the same rates (a sweep per
# regime and budget would cost as much as a table).
LR_SWEEP = dict(dataset="shapes", iterations=1500)
ABLATION_LRS = {
    "CE, alpha .25": 0.03,
    "CE, alpha .50": 0.03,
    "CE, alpha .75": 0.06,
    "FL, gamma 0.5, alpha .50": 0.06,
    "FL, gamma 1, alpha .25": 0.06,
    "FL, gamma 2, alpha .25": 0.03,
    "FL, gamma 5, alpha .25": 0.03,
}
# The evidence beside each table, from the seed-0 model of every loss on the first this many
# of its held-out images (fewer when --eval-images is smaller): who carries the loss
# (tools/negatives.py), what the false positives are (tools/false_positives.py) and Figure 4
# (evaluation/loss_cdf.py, of the gamma 2 model).
EVIDENCE_IMAGES = 64
FIGURE4_SETTING = "FL, gamma 2, alpha .25"
# A cell saves its step this often, so that a cell stopped by anything (Ctrl-C, a machine that goes
# away) continues from its last checkpoint when the command runs again, and ends with the same bits
# as a run never stopped (the trainer's resume). A 24000-step clutter cell takes ~50 minutes of a core;
# a checkpoint of the ablation's model takes milliseconds.
CELL_CHECKPOINT_EVERY = 1000
# Converged? These settings (the best CE of the paper, its mildest and its chosen focal loss)
# also train seed 0 for half and for twice the steps; the table shows AP at the three budgets
# (the half-budget cells are the cells of a table at that budget, so they are often reused).
LONGER_SETTINGS = ("CE, alpha .75", "FL, gamma 0.5, alpha .50", "FL, gamma 2, alpha .25")
# Figure 4's grid as kept in the JSON: 201 even steps and 31 within the last 0.1 %.
FIGURE4_FRACTIONS = np.union1d(np.linspace(0.0, 1.0, 201), 1.0 - np.logspace(-6, -3, 31))


def table_stem(dataset):
    """The file name, without extension, of a regime's table: ``table1_shapes``, ``table1_shapes_clutter``."""
    return "table1_" + dataset.replace("-", "_")


def sweep_stem(dataset):
    """The file name, without extension, of a regime's learning-rate sweep: ``table1_lr_sweep`` (the
    plain shapes, whose sweep chose ``ABLATION_LRS``), ``table1_lr_sweep_clutter``."""
    return "table1_lr_sweep" + table_stem(dataset)[len(table_stem("shapes")):]


def ablation_config(name, seed, iterations, eval_images=ABLATION_DEFAULTS["eval_images"], dataset="shapes",
                    image_size=None, lr=None):
    """The TrainConfig of one cell of the table: the ablation recipe with this loss, seed and lr.

    Cells of one table differ only in ``loss``, ``gamma``, ``alpha`` and the learning rate
    chosen for that loss (``ABLATION_LRS``, or ``lr``); everything else (model, data,
    schedule, steps) is shared, which is what "equal budget" means here. The schedule is
    cosine after a 100-step warm-up (docs/recipe.md), the gradient norm clipped at 10.
    """
    known = {s[0]: s[1:] for s in SETTINGS}
    if name not in known:
        raise ValueError(f"unknown setting {name!r}; known: {list(known)}")
    if dataset not in ABLATION_IMAGE_SIZE:
        raise ValueError(f"unknown regime {dataset!r}; known: {list(ABLATION_IMAGE_SIZE)}")
    loss, gamma, alpha = known[name]
    return dataclasses.replace(
        TrainConfig(), loss=loss, gamma=gamma, alpha=alpha, lr=ABLATION_LRS[name] if lr is None else lr,
        clip_grad_norm=10.0, seed=seed, data_seed=seed, iterations=iterations, dataset=dataset,
        image_size=ABLATION_IMAGE_SIZE[dataset] if image_size is None else image_size, eval_images=eval_images,
        max_objects=ABLATION_MAX_OBJECTS, schedule="cosine", warmup_steps=min(100, iterations // 5),
        log_every=max(1, iterations // 10), checkpoint_every=CELL_CHECKPOINT_EVERY, workers=1,
        model_overrides=dict(ABLATION_MODEL))


def cell_folder(work, config, name):
    """The run folder of one cell under ``work``: named by everything that tells cells apart."""
    slug = name.replace(", ", "_").replace(" ", "").replace(".", "")
    return os.path.join(work, f"{config.dataset}_{config.image_size}px_{config.iterations}steps_"
                              f"{config.eval_images}eval", f"{slug}_lr{config.lr:g}_seed{config.seed}")


def _same_cell(saved, config):
    """Whether the config dict ``saved`` (metrics.json, a checkpoint) is the cell ``config``.

    Read as a resumed run reads it: a setting added since the cell ran takes its default. How
    often the run printed and saved changes none of its numbers, so it may differ.
    """
    saved = TrainConfig.from_dict(saved or {})
    return dataclasses.replace(saved, log_every=config.log_every, checkpoint_every=config.checkpoint_every) == config


def _started_step(folder, config):
    """The step of the cell's checkpoint in ``folder`` when it can be resumed, else None.

    None when there is no checkpoint, when it is not this cell's, when it holds the last step
    (a run stopped between its last checkpoint and its metrics: nothing left to resume) or
    when it cannot be read (then the cell is trained again from step 0).
    """
    from numpy_retinanet.engine.checkpoint import read_checkpoint

    path = os.path.join(folder, "checkpoint.npz")
    if not os.path.isfile(path):
        return None
    try:
        meta, _, _ = read_checkpoint(path)
    except ValueError:
        return None
    step = int(meta["step"])
    if meta["has_optimizer"] and _same_cell(meta["train_config"], config) and step < config.iterations:
        return step
    return None


def _finished_metrics(folder, config):
    """The metrics of a finished run of the cell ``config`` in ``folder``, else None."""
    path = os.path.join(folder, "metrics.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        m = json.load(f)
    finished = (_same_cell(m.get("config"), config) and not m.get("interrupted")
                and m.get("step") == config.iterations and "AP" in m)
    return m if finished else None


def _cell_states(jobs_list):
    """Each cell's steps left to train (0 when finished, fewer than all when it continues) and its
    finished run's metrics (else None): two lists in the order of ``jobs_list``, each folder read once."""
    finished = [_finished_metrics(folder, config) for _, config, folder in jobs_list]
    left = [0 if m is not None else config.iterations - (_started_step(folder, config) or 0)
            for m, (_, config, folder) in zip(finished, jobs_list)]
    return left, finished


def _estimate(jobs_list, left, finished, jobs):
    """", about H hours (...)" when finished cells of each image size left tell how long a step takes, else "".

    The median over those cells of their seconds per step: a cell that was paused (its clock ran on)
    or trained beside another load moves a mean, not the median. ``jobs`` cells at once divide the
    time, but no ablation ends before its longest cell.
    """
    rates = {}
    for (_, config, _), m in zip(jobs_list, finished):
        if m is not None:
            rates.setdefault(config.image_size, []).append(m["train_seconds"] / config.iterations)
    if not any(left) or not all(config.image_size in rates for (_, config, _), n in zip(jobs_list, left) if n):
        return ""
    per_step = {size: statistics.median(r) for size, r in rates.items()}
    cell_seconds = [n * per_step[config.image_size] for (_, config, _), n in zip(jobs_list, left) if n]
    wall = max(sum(cell_seconds) / jobs, max(cell_seconds))
    when = (f"about {wall / 3600:.1f} hours" if wall >= 3600 else f"about {wall / 60:.0f} minutes" if wall >= 90
            else "under two minutes")
    return (f", {when} (the finished cells took a median "
            f"{', '.join(f'{r:.3f}' for r in per_step.values())} s a step)")


def _train_cell(job):
    """Train one cell (in a worker process) and return what the table keeps of it.

    A cell whose run folder already holds a finished run of the same config is read, not
    trained again, and one stopped part way continues from its last checkpoint (every
    ``CELL_CHECKPOINT_EVERY`` steps, and the step Ctrl-C stopped it at): an interrupted
    ablation goes on where it stopped, and the sweep's seed-0 runs are the ablation's.
    """
    from numpy_retinanet.engine.trainer import TrainingDiverged, train

    name, config, folder = job
    if _STOP is not None and _STOP.is_set():  # Ctrl-C came before this cell started: it does not start
        return {"name": name, "interrupted": True}
    m = _finished_metrics(folder, config)
    reused, started = m is not None, None
    # A cell process stops when the parent says so, also when no signal reached the process
    # (``kill`` of the parent alone: its handler sets the event).
    stop_when = None if _STOP is None else _STOP.is_set
    if not reused:
        started = _started_step(folder, config)
        try:
            if started is not None:
                m = train(config, folder, resume=True, log=lambda s: None, stop_when=stop_when,
                          changes={"log_every": config.log_every, "checkpoint_every": config.checkpoint_every})
            else:
                m = train(config, folder, log=lambda s: None, force=True, stop_when=stop_when)
        except TrainingDiverged as e:  # a finding (a rate too high for this loss), not a fault of the command
            return {"name": name, "seed": config.seed, "lr": config.lr, "diverged_at": e.step,
                    "reason": str(e.__cause__ or e), "reused": False, "continued_from": started}
        if m["interrupted"]:  # Ctrl-C or a stop: the trainer saved the step; a rerun goes on from it
            # No cell may start after this one stopped. The parent sets the event too, but only once it
            # has this result, and by then the pool may have handed this process its next cell; when
            # SIGINT never reached the parent (a background job, which ignores it) this is the only stop.
            if _STOP is not None:
                _STOP.set()
            return {"name": name, "interrupted": True, "signal": m["signal"]}
    h = m["history"]
    return {"name": name, "seed": config.seed, "lr": config.lr, "AP": m["AP"], "AP50": m["AP50"], "AP75": m["AP75"],
            "final_loss": float(np.mean(h["total"][-20:])),
            "positives_per_image": float(np.mean(h["num_positive"])) / config.batch_size,
            "seconds": m["train_seconds"], "reused": reused, "continued_from": started}


def _mean_spread(values):
    """(mean, half the range) of a list: the spread printed as +-."""
    return statistics.fmean(values), (max(values) - min(values)) / 2


# In a cell process: the parent's event that says the ablation stops (Ctrl-C, SIGTERM, a cell stopped
# by a signal), set by ``_worker_start``.
_STOP = None


def _worker_start(stop):
    """A cell process ignores Ctrl-C except while it trains (the trainer's own handling ends the
    step and saves), so the signal never lands in an import or between cells."""
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_cells(jobs_list, jobs=1, log=print):
    """Train ``[(name, config, folder)]`` in ``jobs`` processes; the results in the same order.

    With more than one job each process computes with one BLAS thread (set before numpy is
    imported in the spawned process), so ``jobs`` processes use ``jobs`` cores: cells are
    independent, so this is the cheapest parallelism there is. The costliest cells (steps left x
    pixels) start first, so that no process is left with a long cell while the others idle.
    Before any cell starts, one line says how many are finished, how many continue from a
    checkpoint and how many steps are left in all; each cell's line says how many are done.

    Ctrl-C reaches every process of the terminal's group: each cell in training ends its step
    and stops (the trainer's handling), no new cell starts, and KeyboardInterrupt is raised (its
    ``signum`` the signal). SIGTERM does the same, also when only this process got it: the cells
    hear of it through the shared event. The finished cells stay in their run folders, and a rerun
    of the command reads them (and continues the stopped ones).
    """
    t0 = time.perf_counter()
    results = [None] * len(jobs_list)
    left, finished_runs = _cell_states(jobs_list)
    total = sum(config.iterations for _, config, _ in jobs_list)
    finished = left.count(0)
    going_on = sum(0 < n < config.iterations for n, (_, config, _) in zip(left, jobs_list))
    log(f"{len(jobs_list)} cells, {min(jobs, len(jobs_list))} at a time: {finished} finished (read from their run "
        f"folders), {going_on} continue from their last checkpoint, {len(jobs_list) - finished - going_on} start "
        f"from step 0; {sum(left):,} of {total:,} steps left to train{_estimate(jobs_list, left, finished_runs, jobs)}")
    done = []

    def report(i):
        r = results[i]
        if r.get("interrupted"):  # a cell stopped by a signal (with one job: to this process) or by a stop
            raise _interrupt(signal.Signals[r.get("signal") or "SIGINT"])
        done.append(r)
        cell = (f"[{time.perf_counter() - t0:6.0f} s] {len(done)}/{len(jobs_list)} {r['name']}, lr {r['lr']:g}, "
                f"seed {r['seed']}, {jobs_list[i][1].iterations} steps")
        if "diverged_at" in r:
            log(f"{cell}: diverged at step {r['diverged_at']} ({r['reason']})")
            return
        how = "reused" if r["reused"] else f"{r['seconds']:.0f} s"
        if r.get("continued_from") is not None:
            how += f", continued from step {r['continued_from']}"
        log(f"{cell} ({how}): AP {r['AP']:.3f}  AP50 {r['AP50']:.3f}  AP75 {r['AP75']:.3f}")

    order = sorted(range(len(jobs_list)), key=lambda i: -left[i] * jobs_list[i][1].image_size ** 2)
    if jobs <= 1:
        for i in order:
            results[i] = _train_cell(jobs_list[i])
            report(i)
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from numpy_retinanet.engine.parallel import ONE_BLAS_THREAD, environment

    # The spawned processes read the environment when they import numpy.
    context = multiprocessing.get_context("spawn")
    stop = context.Event()  # shared memory: every cell asks it after each step (under a microsecond)
    with environment(ONE_BLAS_THREAD), _sigterm_interrupts(), ProcessPoolExecutor(jobs, context, _worker_start,
                                                                                   (stop,)) as pool:
        futures = {pool.submit(_train_cell, jobs_list[i]): i for i in order}
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                report(futures[future])
        except BaseException:  # Ctrl-C, SIGTERM, or a cell that failed (a full disk): every cell stops
            stop.set()  # cells not yet started return at once; the running ones end their step and save
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results


def _interrupt(signum):
    """KeyboardInterrupt with the signal's number as ``signum``: the command exits with 128 + signum."""
    e = KeyboardInterrupt(signal.Signals(signum).name)
    e.signum = signum
    return e


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM to the parent of the cell processes (``kill PID``, ``timeout``) stops the ablation as
    Ctrl-C does: the cells save their step and end. Without it the parent died at once and its cells
    trained on, orphaned, holding their run folders. (SIGINT needs nothing: Python raises
    KeyboardInterrupt.)"""
    def interrupt(signum, frame):
        raise _interrupt(signum)

    try:
        old = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals behave as usual
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_ablation(out_dir="figures", iterations=None, seeds=ABLATION_DEFAULTS["seeds"],
                 eval_images=ABLATION_DEFAULTS["eval_images"], dataset="shapes", image_size=None, settings=None,
                 lrs=None, jobs=1, work="runs/ablate", log=print):
    """Train every setting with ``seeds`` seeds; write the table's .md/.png/.json in ``out_dir``.

    ``iterations``: steps per cell, None for the regime's ``ABLATION_ITERATIONS``. ``lrs``: None
    trains each loss at its ``ABLATION_LRS``; a list trains every cell at each of those rates and
    writes the sweep (``sweep_stem(dataset)``.*) instead of the table. The runs stay in ``work``
    (one folder per cell, reused when run again).

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
    os.makedirs(out_dir, exist_ok=True)
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
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(format_sweep(result) if lrs is not None else format_table(result))
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
              "", ordering_statement(result), ""]
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
    """Markdown: AP of every setting at every learning rate of the sweep, the chosen one in bold."""
    best = chosen_lrs(sweep)
    lines = [
        f"# The learning rate of each loss, for the Table 1 ablation ({sweep['dataset']})",
        "",
        f"Made by `{sweep['command']}` ({sweep['cell_seconds'] / 60:.0f} minutes of training in all). Every "
        f"setting trained at each rate with seed {', '.join(str(s) for s in range(sweep['seeds']))}, "
        f"{sweep['iterations']} steps, evaluated on {sweep['eval_images']} held-out images. "
        + ("The ablation trains each loss at its best rate (bold); `ABLATION_LRS` in "
           "`numpy_retinanet/tools/ablate.py` holds the choice."
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
            text = f"{100 * sweep['summary'][key]['AP'][0]:.1f}"
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

        python -c "import json; from numpy_retinanet.tools.ablate import plot_table; \
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
