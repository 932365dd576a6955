"""Training on synthetic shapes (§4.1 "Optimization", scaled to a CPU), with resume and a run folder.

One step: a batch from ``data.shapes`` -> ``RetinaNet.forward`` -> ``retinanet_loss``
-> ``RetinaNet.backward`` -> (optional gradient-norm clipping) -> ``SGD.step`` with the
learning rate of ``config.lr_schedule()``: warm-up, then the paper's step decay
(``nn.optim.WarmupStepSchedule``) or a cosine (``WarmupCosineSchedule``) (``engine.step``).
With ``config.workers > 1`` worker processes draw the batch and run forward, loss and
backward, one part of the batch each (``engine.parallel``); this process combines their
gradients, clips and steps.

The run folder holds:
    checkpoint.npz        parameters, momentum, config, step, loss history (no pickle)
    metrics.json          config, loss history, final AP / AP50 / AP75 and per class (null for a class
                          absent from the images scored), time, peak memory
    training_curve.png    the loss parts against the step
    detections.png        detections of the trained model on held-out images

Resuming (``train(..., resume=True)``) continues from the checkpoint's step. The
batch of step k is a function of k alone (``data.batching.batch_indices``), and the
checkpoint holds the parameters and the momentum, so an interrupted and resumed
run ends with the same parameters as an uninterrupted one.

Ctrl-C or SIGTERM finishes the step in flight, saves a checkpoint and returns (the signal
is recorded; the command line exits 128 + its number); a second one aborts. A loss that
is NaN, infinite or 10x its first value stops training with a message naming the step
and the loss part; a checkpoint is written only after its parameters gave a sane loss,
so the last one on disk is good. The run folder is claimed first (``engine.run_folder``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time

import numpy as np

from numpy_retinanet.backend import get_module, peak_memory_mib
from numpy_retinanet.data.batching import get_batch
from numpy_retinanet.data.build import build_dataset
from numpy_retinanet.data.images import ImageFileError
from numpy_retinanet.engine.checkpoint import read_checkpoint, save_checkpoint
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.engine.inference import detect, evaluate_model
from numpy_retinanet.engine.parallel import GradientWorkers, WorkerFailed
from numpy_retinanet.engine.run_folder import claim_run_folder, json_text, write_run_file
from numpy_retinanet.engine.step import NonFiniteStep, apply_gradients, compute_gradients
from numpy_retinanet.evaluation.visualize import draw_detections, grid, plot_training_curve
from numpy_retinanet.model.presets import resolve_config
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.optim import SGD


class TrainingStopped(RuntimeError):
    """Training ended before its last step for a reason other than a signal (a worker failed, the
    disk is full); the message says why and which checkpoint was kept, ``step`` the step it stopped at."""

    def __init__(self, message, step=None):
        super().__init__(message)
        self.step = step


class TrainingDiverged(TrainingStopped):
    """The loss became NaN, infinite, or far larger than at the run's first step."""


class Aborted(KeyboardInterrupt):
    """A second SIGINT or SIGTERM: training gives up at once; ``signum`` is the signal."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: A loss part above this many times its value at the run's first step (or above this many
#: times 1.0, when that value was smaller) means the run diverged. A healthy run never goes
#: above its first value: the loss falls from step 0 (runs of 400 and 5000 steps: at most 1.00x).
DIVERGENCE_FACTOR = 10.0

#: The settings a resumed run may change: how long it runs, where the math runs, how often it
#: prints and saves. Any other setting given when resuming must equal the run's own.
RESUMABLE = ("iterations", "device", "workers", "log_every", "checkpoint_every")


def _format_eta(seconds):
    seconds = int(max(0, seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


class _StopFlag:
    """SIGINT (Ctrl-C) and SIGTERM (``kill``, ``timeout``, schedulers, containers) set a flag that
    the loop checks between steps, so a step is never cut in half; a second signal aborts at once.
    ``requested``, when given, is asked too: True stops as a signal does (``train``'s ``stop_when``)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, requested=None):
        self.signum = None
        self._requested = requested
        self._old = {}

    @property
    def stop(self):
        return self.signum is not None or (self._requested is not None and bool(self._requested()))

    def __enter__(self):
        for signum in self.SIGNALS:
            try:
                self._old[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not in the main thread: no handler, signals behave as usual
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise Aborted(signum)
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: finishing this step, then saving a checkpoint "
              "(send it again to abort)", flush=True)

    def __exit__(self, *exc):
        for signum, old in self._old.items():
            signal.signal(signum, old)
        return False


def resumed_config(meta, changes=None):
    """The config of the run in checkpoint ``meta``, with the settings a resumed run may change.

    Parameters
    ----------
    meta : a run checkpoint's meta (``read_checkpoint``).
    changes : TrainConfig settings asked for. Those in ``RESUMABLE`` are applied; any other must
        equal the run's own value ("model_overrides": a dict of model settings, each equal to the
        run's). A larger ``iterations`` extends a run of the step schedule: the learning rate keeps
        dropping at the steps the run was planned with (its ``decay_at`` is rescaled), so the steps
        already taken keep their schedule and the new ones run at the last rate reached. A cosine
        run's length is part of its schedule and cannot change.

    Raises ValueError naming every setting that contradicts the run, and for a finished run
    that is not given more iterations.
    """
    run = TrainConfig.from_dict(meta["train_config"])
    step = int(meta["step"])
    changes = dict(changes or {})
    model = resolve_config(run.preset, run.model_overrides)
    contradicting = [f"model setting {name} {value!r} (the run's: {model.get(name)!r})"
                     for name, value in changes.pop("model_overrides", {}).items() if model.get(name) != value]
    contradicting += [f"{name} {value!r} (the run's: {getattr(run, name)!r})" for name, value in changes.items()
                      if name not in RESUMABLE and value != getattr(run, name)]
    if contradicting:
        raise ValueError("a resumed run keeps its own settings; these contradict it: " + "; ".join(contradicting)
                         + f". Only {', '.join(RESUMABLE)} may change")
    iterations = changes.get("iterations", run.iterations)
    if iterations <= step:
        asked = f"iterations {iterations} is" if "iterations" in changes else f"the run has {iterations} steps,"
        raise ValueError(f"{asked} not more than the run's step {step}: give more --iterations to train it further")
    if iterations != run.iterations and run.schedule == "cosine":
        raise ValueError(f"the run's cosine schedule is planned over its {run.iterations} steps and reaches 0 at the "
                         "last: --iterations cannot change it (a run with --schedule step can be extended)")
    resumed = {k: v for k, v in changes.items() if k in RESUMABLE}
    if iterations != run.iterations:
        # The same drops at the same steps: each new decay_at * iterations is an old milestone.
        resumed["decay_at"] = tuple(min(1.0, m / iterations) for m in run.milestones())
    return dataclasses.replace(run, **resumed)


def train(config: TrainConfig, out_dir, resume=False, log=print, stop_after=None, device=None, workers=None,
          changes=None, force=False, init=None, stop_when=None):
    """Train a RetinaNet on the dataset ``config`` names and write the run folder.

    Parameters
    ----------
    config : TrainConfig (ignored when resuming: the checkpoint's config is used).
    out_dir : the run folder. A folder that holds a run is refused unless ``resume`` or ``force``.
    resume : continue from ``out_dir/checkpoint.npz``.
    log : function receiving each progress line.
    stop_after : stop (as if interrupted) after this many steps in this call; for tests.
    device : "cpu" or "gpu" to override the config's device (also a resumed run's: a checkpoint
        holds host arrays, so a run may continue on another device). "gpu" also sets workers to 1.
    workers : override the config's number of gradient processes (also a resumed run's: it
        changes only the float rounding, see ``engine.parallel``).
    changes : when resuming, settings asked for (``resumed_config``): e.g. {"iterations": 6000}
        extends the run; a setting that contradicts the run is refused.
    force : replace the run that ``out_dir`` holds.
    init : a checkpoint to start from (``init_from``): fine-tuning, e.g. from the shipped model.
    stop_when : a function of no arguments, asked after every step; True stops the run as a signal
        would (``ablate``'s cells: the parent's stop reaches the cells it did not reach as a signal).

    Returns
    -------
    dict: the contents of metrics.json ("interrupted" True when stopped early; "signal" the
    name of the signal that stopped it, or None).

    Raises TrainingDiverged (the last good checkpoint kept) or TrainingStopped (the parameters
    saved); ``Aborted`` on a second signal.
    """
    out_dir = os.fspath(out_dir)
    ckpt_path = os.path.join(out_dir, "checkpoint.npz")
    if resume:
        if os.path.isdir(ckpt_path):
            raise ValueError(f"{ckpt_path!r} is a directory, not a checkpoint")
        meta, params, optim = read_checkpoint(ckpt_path)
        if not meta["has_optimizer"] or not meta["train_config"]:
            raise ValueError(f"{ckpt_path!r} holds parameters only (exported weights: no momentum or training "
                             "settings), so it cannot be resumed; train a new run instead")
        config = resumed_config(meta, dict(changes or {}, **({"device": device} if device else {})))
        start_step = int(meta["step"])
        history = meta["extra"].get("history", {})
        elapsed_before = float(meta["extra"].get("train_seconds", 0.0))
    else:
        start_step, history, elapsed_before = 0, {}, 0.0
    if device is not None:
        config = dataclasses.replace(config, device=device, workers=1 if device == "gpu" else config.workers)
    if workers is not None:
        config = dataclasses.replace(config, workers=workers)
    config.validate()
    xp = get_module(config.device)
    model = RetinaNet(config.num_classes, preset=config.preset, seed=config.seed, **config.model_overrides)
    if resume:
        if init is not None:
            raise ValueError("init starts a new run from a checkpoint and resume continues one: give one of them")
        model.load_state_dict(params)
    elif init is not None:
        init_from(model, init, log)
    model.to(xp)
    optimizer = SGD(model.params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if resume:
        optimizer.load_state_dict(optim)
    # Both splits read now (a COCO-format folder is checked file by file): a bad file stops the run here.
    datasets = (build_dataset(config, "train"), build_dataset(config, "eval", num_images=max(config.eval_images, 1)))
    # After every setting was checked, the data read and the model built: a refused run leaves no folder.
    with claim_run_folder(out_dir, resume=resume, force=force), _StopFlag(stop_when) as flag:
        return _run(config, out_dir, ckpt_path, model, optimizer, xp, start_step, history, elapsed_before, log,
                    stop_after, flag, resumed=resume, datasets=datasets)


def init_from(model, path, log=print):
    """Load every parameter of checkpoint ``path`` whose name and shape match ``model``'s (fine-tuning).

    A model for another number of classes differs in the classification subnet's last conv only:
    that layer keeps the fresh initialization it was built with (weights ~ N(0, 0.01), bias the
    prior's, §3.3), so the new classes start as rare as the paper's do. Logs what was loaded and
    what was not. Returns (loaded names, names not loaded).
    """
    meta, params, _ = read_checkpoint(path)
    own = model.params
    loaded = [n for n in own if n in params and params[n].shape == own[n].shape]
    if not loaded:  # another architecture (torchvision's ResNet-50-FPN into a preset, say): nothing to start from
        raise ValueError(f"--init {os.fspath(path)!r}: none of its {len(params)} parameters fits this model "
                         f"(its preset: {meta['model'].get('preset', '?')!r}); give a checkpoint of the same "
                         "architecture")
    model.load_state_dict({n: params[n].astype(own[n].dtype) if n in loaded else own[n] for n in own})
    kept = [n for n in own if n not in loaded]
    log(f"init from {os.fspath(path)}: loaded {len(loaded)} of {len(own)} parameters"
        + (f"; not loaded (absent or of another shape), kept as initialized: {', '.join(kept)}" if kept else ""))
    return loaded, kept


def _run(config, out_dir, ckpt_path, model, optimizer, xp, start_step, history, elapsed_before, log, stop_after,
         flag, resumed, datasets):
    """The training loop of ``train`` in a claimed run folder; returns the metrics written."""
    schedule = config.lr_schedule()
    dataset, held_out = datasets
    anchors = model.anchors(config.image_size, config.image_size, xp=xp)
    for key in ("step", "total", "classification", "box_regression", "num_positive", "lr", "grad_norm"):
        history.setdefault(key, [])
    saved = {"step": start_step if resumed else None}  # the step of the checkpoint on disk

    def save(step):
        try:
            save_checkpoint(ckpt_path, model, optimizer, step=step, train_config=config.to_dict(),
                            class_names=dataset.class_names, category_ids=getattr(dataset, "category_ids", None),
                            extra={"history": history,
                                   "train_seconds": elapsed_before + (time.perf_counter() - t0)})
        except OSError as e:  # a full or read-only disk: the previous checkpoint is intact (atomic save)
            reason = str(e) if ckpt_path in str(e) else f"cannot write the checkpoint {ckpt_path}: {e.strerror or e}"
            then = (f"continue with: numpy-retinanet train --resume {out_dir}" if saved["step"] is not None
                    else "train again")
            raise TrainingStopped(f"{reason}; training stopped at step {step}. {_kept(saved, ckpt_path)} "
                                  f"Make room, then {then}") from e
        saved["step"] = step

    if start_step == 0:
        log(f"training RetinaNet ({config.preset}, {model.num_parameters():,} parameters) on {config.dataset} "
            f"({len(dataset)} images): "
            f"{config.iterations} steps x {config.batch_size} images of {config.image_size}px, "
            f"{config.num_classes} classes, lr {config.lr}, {config.device}"
            f"{f' ({config.workers} worker processes)' if config.workers > 1 else ''}; run folder {out_dir}")
    else:
        log(f"resuming {out_dir} at step {start_step} of {config.iterations}")
    t0 = time.perf_counter()
    window_t, window_images = time.perf_counter(), 0
    step = start_step
    interrupted = False
    pool = GradientWorkers(config, model.params) if config.workers > 1 else contextlib.nullcontext()
    with pool:
        while step < config.iterations:
            lr = schedule(step)
            try:
                if config.workers == 1:
                    images, targets = get_batch(dataset, step, config.batch_size, seed=config.data_seed)
                    losses, grads = compute_gradients(model, xp.asarray(images), targets, anchors, config)
                else:
                    losses, grads = pool.gradients(step, model.params)
                _check_sane(losses, history)
                # A checkpoint due at this step is written now, after the loss at these parameters
                # was found sane and before they change: it never holds a blown-up model.
                if step % config.checkpoint_every == 0 and step > start_step:
                    save(step)
                grad_norm = apply_gradients(optimizer, grads, lr, config)
            except NonFiniteStep as e:
                raise TrainingDiverged(f"{e} at step {step}: training diverged and stopped. "
                                       f"{_kept(saved, ckpt_path)} Try a lower --lr or --clip-grad-norm.",
                                       step=step) from e
            except (WorkerFailed, ImageFileError) as e:  # the parameters of this step are intact: keep them
                save(step)
                fix = "" if isinstance(e, WorkerFailed) else "put a readable copy of the file back and "
                raise TrainingStopped(f"{e}. The parameters of step {step} were saved to {ckpt_path}; {fix}continue "
                                      f"with: numpy-retinanet train --resume {out_dir}") from e
            step += 1
            for key, value in (("step", step), ("total", losses["total"]),
                               ("classification", losses["classification"]),
                               ("box_regression", losses["box_regression"]),
                               ("num_positive", losses["num_positive"]), ("lr", lr),
                               ("grad_norm", grad_norm)):
                history[key].append(value)
            window_images += config.batch_size
            if step % config.log_every == 0 or step == config.iterations:
                now = time.perf_counter()
                ips = window_images / max(now - window_t, 1e-9)
                n = min(config.log_every, len(history["total"]))
                mean = {k: float(np.mean(history[k][-n:])) for k in ("total", "classification", "box_regression")}
                eta = (config.iterations - step) * config.batch_size / max(ips, 1e-9)
                log(f"step {step:>6d}/{config.iterations}  loss {mean['total']:.4f} "
                    f"(cls {mean['classification']:.4f}, box {mean['box_regression']:.4f})  "
                    f"lr {lr:.5f}  {ips:5.1f} img/s  ETA {_format_eta(eta)}")
                window_t, window_images = now, 0
            if flag.stop or (stop_after is not None and step - start_step >= stop_after):
                interrupted = True
                break
        worker_peaks = pool.peak_memory_mib() if config.workers > 1 else []
    save(step)
    train_seconds = elapsed_before + (time.perf_counter() - t0)
    metrics = {"config": config.to_dict(), "model": model.config(), "step": step, "interrupted": interrupted,
               "train_seconds": round(train_seconds, 2), "history": history}
    if interrupted:
        log(f"stopped at step {step}; checkpoint saved to {ckpt_path}. "
            f"Continue with: numpy-retinanet train --resume {out_dir}")
    else:
        seed = "" if config.dataset == "coco" else f" (seed {config.eval_seed})"
        evaluating = (f"evaluating on {len(held_out)} held-out images{seed}" if config.eval_images
                      else "no evaluation (eval_images=0)")
        log(f"training done in {_format_eta(train_seconds)} (min:s); {evaluating}")
        metrics.update(evaluate_run(model, config, held_out, out_dir, xp))
    plot_training_curve(history, os.path.join(out_dir, "training_curve.png"),
                        title=f"RetinaNet ({config.preset}) on {config.dataset}")
    # Each process's peak, summed: an upper bound on the memory in use at any one moment.
    metrics["peak_memory_mib"] = round(peak_memory_mib() + sum(worker_peaks), 1)
    metrics["processes"] = 1 + len(worker_peaks)
    # The signal that stopped the run, also one during evaluation; None when stop_when stopped it.
    metrics["signal"] = signal.Signals(flag.signum).name if flag.signum is not None else None
    write_run_file(os.path.join(out_dir, "metrics.json"), json_text(metrics))
    if "AP" in metrics:
        log(f"AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}  AP75 {metrics['AP75']:.3f}  "
            f"peak memory {metrics['peak_memory_mib']:.0f} MiB  ->  {out_dir}")
    return metrics


def _check_sane(losses, history):
    """Raise NonFiniteStep when a loss part is over DIVERGENCE_FACTOR times its value at the run's
    first step (at least 1.0): the parameters are finite but the run has blown up."""
    for part in ("classification", "box_regression"):
        first = history[part][0] if history[part] else losses[part]
        bound = DIVERGENCE_FACTOR * max(first, 1.0)
        if losses[part] > bound:
            raise NonFiniteStep(f"the {part} loss is {losses[part]:.4g}, above {bound:.4g} "
                                f"({DIVERGENCE_FACTOR:g} x the larger of 1 and its first value, {first:.4g})")


def _kept(saved, ckpt_path):
    """What the run folder still holds, for a message."""
    if saved["step"] is None:
        return "No checkpoint had been written yet."
    return f"The last good checkpoint ({ckpt_path}, step {saved['step']}) was kept."


def evaluate_run(model, config, held_out, out_dir, xp):
    """AP on the held-out split (at least one image: the pictures are drawn even without AP) and a
    picture of detections; returns the metrics to record."""
    out = {}
    if config.eval_images > 0:
        result = evaluate_model(model, held_out, xp=xp)
        out = {"AP": result["AP"], "AP50": result["AP50"], "AP75": result["AP75"],
               "per_class_AP": result["per_class_AP"], "eval_images": config.eval_images,
               "eval_seed": config.eval_seed}
    n = min(8, len(held_out))
    images = np.stack([held_out[i][0] for i in range(n)])
    dets = detect(model, xp.asarray(images.astype(model.dtype)))
    pictures = [draw_detections(held_out.raw(i)[0], dets[i], held_out.class_names, scale=2) for i in range(n)]
    grid(pictures, columns=4).save(os.path.join(out_dir, "detections.png"))
    return out
