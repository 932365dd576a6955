"""Training on synthetic shapes (§4.1 "Optimization", scaled to a CPU), with resume and a run folder.

One step: a batch from ``data.shapes`` -> ``RetinaNet.forward`` -> ``retinanet_loss``
-> ``RetinaNet.backward`` -> (optional gradient-norm clipping) -> ``SGD.step`` with the
warm-up + step-decay learning rate of ``nn.optim.WarmupStepSchedule`` (``engine.step``).
With ``config.workers > 1`` worker processes draw the batch and run forward, loss and
backward, one part of the batch each (``engine.parallel``); this process combines their
gradients, clips and steps.

The run folder holds:
    checkpoint.npz        parameters, momentum, config, step, loss history (no pickle)
    metrics.json          config, loss history, final AP / AP50 / AP75, time, peak memory
    training_curve.png    the loss parts against the step
    detections.png        detections of the trained model on held-out images

Resuming (``train(..., resume=True)``) continues from the checkpoint's step. The
batch of step k is a function of k alone (``data.shapes.batch_indices``), and the
checkpoint holds the parameters and the momentum, so an interrupted and resumed
run ends with the same parameters as an uninterrupted one.

Ctrl-C finishes the step in flight, saves a checkpoint and returns. A loss that is
NaN or infinite stops training with a message naming the step and the loss part;
the last checkpoint written before it is kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time

import numpy as np

from numpy_retinanet.backend import get_module, peak_memory_mib
from numpy_retinanet.data.batching import get_batch
from numpy_retinanet.data.build import build_dataset
from numpy_retinanet.engine.checkpoint import read_checkpoint, save_checkpoint
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.engine.inference import detect, predict_dataset
from numpy_retinanet.engine.parallel import GradientWorkers
from numpy_retinanet.engine.step import NonFiniteStep, apply_gradients, compute_gradients
from numpy_retinanet.evaluation.coco import evaluate_detections
from numpy_retinanet.evaluation.visualize import draw_detections, grid, plot_training_curve
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.optim import SGD, WarmupStepSchedule


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def _format_eta(seconds):
    seconds = int(max(0, seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


class _StopFlag:
    """SIGINT sets a flag that the loop checks between steps, so a step is never cut in half."""

    def __init__(self):
        self.stop = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not in the main thread: no handler, Ctrl-C behaves as usual
            self._old = None
        return self

    def _handle(self, signum, frame):
        if self.stop:  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.stop = True
        print("\ninterrupt: finishing this step, then saving a checkpoint (Ctrl-C again to abort)", flush=True)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def train(config: TrainConfig, out_dir, resume=False, log=print, stop_after=None, device=None, workers=None):
    """Train a RetinaNet on synthetic shapes and write the run folder.

    Parameters
    ----------
    config : TrainConfig (ignored when resuming: the checkpoint's config is used).
    out_dir : the run folder.
    resume : continue from ``out_dir/checkpoint.npz``.
    log : function receiving each progress line.
    stop_after : stop (as if interrupted) after this many steps in this call; for tests.
    device : "cpu" or "gpu" to override the config's device (also a resumed run's: a checkpoint
        holds host arrays, so a run may continue on another device). "gpu" also sets workers to 1.
    workers : override the config's number of gradient processes (also a resumed run's: it
        changes only the float rounding, see ``engine.parallel``).

    Returns
    -------
    dict: the contents of metrics.json ("interrupted" True when stopped early).
    """
    out_dir = os.fspath(out_dir)
    ckpt_path = os.path.join(out_dir, "checkpoint.npz")
    if resume:
        meta, params, optim = read_checkpoint(ckpt_path)
        config = TrainConfig.from_dict(meta["train_config"])
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
    os.makedirs(out_dir, exist_ok=True)  # after every setting was checked: a refused run leaves no folder
    opt_state = None
    if resume:
        model.load_state_dict(params)
        opt_state = optim
    model.to(xp)
    optimizer = SGD(model.params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if opt_state:
        optimizer.load_state_dict(opt_state)
    schedule = WarmupStepSchedule(config.lr, config.warmup_steps, config.warmup_factor, config.milestones())
    dataset = build_dataset(config, "train")
    anchors = model.anchors(config.image_size, config.image_size, xp=xp)
    for key in ("step", "total", "classification", "box_regression", "num_positive", "lr", "grad_norm"):
        history.setdefault(key, [])

    def save(step):
        save_checkpoint(ckpt_path, model, optimizer, step=step, train_config=config.to_dict(),
                        class_names=dataset.class_names,
                        extra={"history": history, "train_seconds": elapsed_before + (time.perf_counter() - t0)})

    if start_step == 0:
        log(f"training RetinaNet ({config.preset}, {model.num_parameters():,} parameters) on shapes: "
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
    with _StopFlag() as flag, pool:
        while step < config.iterations:
            lr = schedule(step)
            try:
                if config.workers == 1:
                    images, targets = get_batch(dataset, step, config.batch_size, seed=config.data_seed)
                    losses, grad_norm = _train_step(model, optimizer, xp.asarray(images), targets, anchors, lr,
                                                    config)
                else:
                    losses, grads = pool.gradients(step, model.params)
                    grad_norm = apply_gradients(optimizer, grads, lr, config)
            except NonFiniteStep as e:
                raise TrainingDiverged(
                    f"{e} at step {step}; training stopped. The last good checkpoint ({ckpt_path}, if one was "
                    "written) was kept. Try a lower --lr or --clip-grad-norm.") from e
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
            if step % config.checkpoint_every == 0 and step < config.iterations:
                save(step)
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
        evaluating = (f"evaluating on {config.eval_images} held-out images (seed {config.eval_seed})"
                      if config.eval_images else "no evaluation (eval_images=0)")
        log(f"training done in {_format_eta(train_seconds)} (min:s); {evaluating}")
        metrics.update(evaluate_run(model, config, out_dir, xp, log))
    plot_training_curve(history, os.path.join(out_dir, "training_curve.png"),
                        title=f"RetinaNet ({config.preset}) on shapes")
    # Each process's peak, summed: an upper bound on the memory in use at any one moment.
    metrics["peak_memory_mib"] = round(peak_memory_mib() + sum(worker_peaks), 1)
    metrics["processes"] = 1 + len(worker_peaks)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    if "AP" in metrics:
        log(f"AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}  AP75 {metrics['AP75']:.3f}  "
            f"peak memory {metrics['peak_memory_mib']:.0f} MiB  ->  {out_dir}")
    return metrics


def _train_step(model, optimizer, images, targets, anchors, lr, config):
    """forward -> loss -> backward -> clip -> SGD in this process; returns (losses, gradient norm)."""
    losses, grads = compute_gradients(model, images, targets, anchors, config)
    return losses, apply_gradients(optimizer, grads, lr, config)


def evaluate_run(model, config, out_dir, xp, log):
    """AP on the held-out split and a picture of detections; returns the metrics to record."""
    held_out = build_dataset(config, "eval", num_images=max(config.eval_images, 1))  # pictures even without AP
    out = {}
    if config.eval_images > 0:
        dets, gts = predict_dataset(model, held_out, xp=xp)
        result = evaluate_detections(dets, gts, config.num_classes)
        out = {"AP": result["AP"], "AP50": result["AP50"], "AP75": result["AP75"],
               "per_class_AP": result["per_class_AP"], "eval_images": config.eval_images,
               "eval_seed": config.eval_seed}
    n = min(8, len(held_out))
    images = np.stack([held_out[i][0] for i in range(n)])
    dets = detect(model, xp.asarray(images.astype(model.dtype)))
    pictures = [draw_detections(held_out.raw(i)[0], dets[i], held_out.class_names, scale=2) for i in range(n)]
    grid(pictures, columns=4).save(os.path.join(out_dir, "detections.png"))
    return out
