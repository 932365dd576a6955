"""Train many cells (one run each: a name, a TrainConfig and a run folder) at once, one core each.

``run_cells`` is what ``numpy-retinanet ablate`` trains its tables with: hours of runs that must
survive being stopped. A cell that finished is read from its folder, not trained again; one stopped
part way continues from its last checkpoint and ends with the bits of a run never stopped (the
trainer's resume); Ctrl-C or SIGTERM stops every cell at its step, and a rerun goes on from there.
Before any cell starts one line says what is finished, what continues and about how long the rest
takes; each cell that ends says its AP, or the step it diverged at (a finding, not a fault).
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

# In a cell process: the parent's event that says every cell stops (Ctrl-C, SIGTERM, a cell stopped
# by a signal), set by ``_worker_start``.
_STOP = None


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
    try:
        with open(path) as f:
            m = json.load(f)
        if not isinstance(m, dict):
            raise ValueError(f"a JSON {type(m).__name__}, not the trainer's object")
    except ValueError as e:  # not the trainer's (it writes the file whole or not at all): another program, a disk fault
        raise ValueError(f"cannot read the cell's {path!r} ({e}); remove it, and the command trains the cell "
                         "again") from None
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
    ``config.checkpoint_every`` steps, and the step Ctrl-C stopped it at): an interrupted
    ablation goes on where it stopped, and a sweep's seed-0 runs are the table's.
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


def _worker_start(stop):
    """A cell process ignores Ctrl-C except while it trains (the trainer's own handling ends the
    step and saves), so the signal never lands in an import or between cells."""
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def plan(jobs_list, jobs=1):
    """The line ``run_cells`` says before any cell starts, and each cell's steps left (a list in order).

    How many cells are finished, how many continue from their last checkpoint (a cell in training
    now counts from its last checkpoint), how many start from step 0, the steps left in all and,
    when finished cells tell how long a step takes, about how long the rest takes at ``jobs`` at once.
    Reads the run folders and changes nothing.
    """
    left, finished_runs = _cell_states(jobs_list)
    total = sum(config.iterations for _, config, _ in jobs_list)
    finished = left.count(0)
    going_on = sum(0 < n < config.iterations for n, (_, config, _) in zip(left, jobs_list))
    line = (f"{len(jobs_list)} cells, {min(jobs, len(jobs_list))} at a time: {finished} finished (read from their run "
            f"folders), {going_on} continue from their last checkpoint, {len(jobs_list) - finished - going_on} start "
            f"from step 0; {sum(left):,} of {total:,} steps left to train"
            f"{_estimate(jobs_list, left, finished_runs, jobs)}")
    return line, left


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
    line, left = plan(jobs_list, jobs)
    log(line)
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
    from concurrent.futures.process import BrokenProcessPool

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
        except BaseException as e:  # Ctrl-C, SIGTERM, or a cell that failed (a full disk): every cell stops
            stop.set()  # cells not yet started return at once; the running ones end their step and save
            pool.shutdown(wait=True, cancel_futures=True)
            if isinstance(e, BrokenProcessPool):  # a cell's process was killed (SIGKILL, the out-of-memory killer)
                # The pool ends the other processes with SIGTERM, on which a cell saves its step.
                from numpy_retinanet.engine.trainer import TrainingStopped

                raise TrainingStopped("a cell's process ended abruptly (killed by a signal, or out of memory?); the "
                                      "other cells in training saved their step and the finished ones are kept: the "
                                      "same command continues every cell from its last checkpoint") from e
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
