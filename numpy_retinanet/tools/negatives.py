"""Who carries the classification loss: the easy negatives, the hardest ones, the positives (§3, §5.1).

The paper's case for the focal loss (§3, "Focal Loss Definition") is that under the
cross-entropy the many easy negatives (p_t > .5, most far above) "comprise the majority of
the loss and dominate the gradient". ``negative_shares`` measures it for a model on a
dataset; ``measure_regimes`` trains a short CE run on each shapes regime with one recipe and
measures both, so that the plain regime and the cluttered one (``data/clutter.py``) can be
compared before any ablation.

Samples are counted as the loss counts them (``detection.criterion``): every class output
(anchor a, class k) of an anchor that is not ignored. A *negative* is one whose target is 0
(a background anchor's K outputs, and a positive anchor's other classes); p_t = 1 - p for it.
*Easy* negatives have p_t > ``EASY_PT`` (0.9); the *hardest* are the ``HARDEST`` (1 %) of the
negatives with the highest loss (the lowest p_t: CE and FL fall as p_t rises). On a dataset
that draws distractors (``data/clutter.py``), a negative is *on a distractor* when its anchor
overlaps a distractor's box by ``fg_iou`` or more: it would be positive were the distractor an
object. The loss and
|dL/dx| of each sample come from ``nn.losses``' pair named by the loss settings. Shares are of
sums over all images; the trainer's division by the batch's positives (§4.1) is one factor per
batch and is left out.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np

from numpy_retinanet._checks import check_int, check_probability
from numpy_retinanet.backend import array_module, to_host
from numpy_retinanet.data.batching import collate
from numpy_retinanet.data.build import build_dataset
from numpy_retinanet.data.clutter import REGIME_IMAGE_SIZE
from numpy_retinanet.detection.boxes import box_iou
from numpy_retinanet.detection.criterion import assign_targets, loss_config
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.nn.losses import CLASSIFICATION_LOSSES, sigmoid

EASY_PT = 0.9
HARDEST = 0.01

#: The recipe of ``measure_regimes``: the default preset trained briefly with the
#: alpha-balanced CE (``--loss ce``, alpha .25), with the figures' short-run schedule
#: (teaching/figures/figure_model.py: lr 0.02 after a 50-step warm-up, decayed late).
MEASURE_TRAINING = dict(preset="default", loss="ce", iterations=1000, batch_size=8, lr=0.02, warmup_steps=50,
                        schedule="step", decay_at=(0.8, 0.93), clip_grad_norm=10.0, seed=0, data_seed=0, eval_images=0,
                        log_every=50, checkpoint_every=10**9)
#: Each regime at its own image side: the plain shapes at the command line's default, the
#: cluttered ones at the side they are built for.
REGIMES = {"shapes": TrainConfig.image_size, "shapes-clutter": REGIME_IMAGE_SIZE}


def negative_shares(model, dataset, config=None, batch_size=8, easy_pt=EASY_PT, hardest=HARDEST, **settings):
    """The shares of the classification loss and of |dL/dlogit| held by the easy and hardest negatives.

    Parameters
    ----------
    model : a RetinaNet (its dtype and device).
    dataset : a dataset of ``build_dataset`` (images of one size).
    config : a LossConfig (a TrainConfig is one) naming the loss; None: the paper's focal loss.
    **settings : loss settings to change, e.g. ``loss="ce"``.
    easy_pt : a negative with p_t above this is easy.
    hardest : the fraction of the negatives, by loss, counted as the hardest.

    Returns
    -------
    dict with "loss" and "gradient": {"positives", "negatives", "easy_negatives",
    "hardest_negatives"}, each a share of the sum over all samples (the loss, or |dL/dx|);
    "loss_sum" and "gradient_sum", those sums; "num_positive" and "num_negative" (samples),
    "easy_fraction" (the share of the negatives that are easy), "num_hardest", and "settings"
    (the loss's name and parameters). With a dataset that has ``distractors(i)``, also
    "on_distractors": {"negatives", "hardest_negatives"}, the share of each group whose anchor
    is on a distractor, and "loss"/"gradient" "distractor_negatives", their share of the sums.
    """
    c = loss_config(config, **settings)
    easy_pt = check_probability("easy_pt", easy_pt)
    hardest = check_probability("hardest", hardest)
    check_int("batch_size", batch_size, 1)
    forward, backward, names = CLASSIFICATION_LOSSES[c.loss]
    params = [getattr(c, n) for n in names]
    size = dataset.image_size
    anchors = model.anchors(size, size)
    xp = array_module(anchors)
    parts = {"pos_loss": [], "pos_grad": [], "neg_loss": [], "neg_grad": [], "neg_pt": [], "neg_on": []}
    has_distractors = hasattr(dataset, "distractors")
    host_anchors = to_host(anchors).astype(np.float64)
    for start in range(0, len(dataset), batch_size):
        images, targets = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        logits, _ = model.forward(xp.asarray(images.astype(model.dtype)), keep_cache=False)
        cls_t, _, _, valid = assign_targets(anchors, targets, model.num_classes, c.fg_iou, c.bg_iou,
                                            c.allow_low_quality)
        loss, cache = forward(logits, cls_t, *params)
        grad = xp.abs(backward(xp.ones_like(logits), cache))
        counted = xp.broadcast_to(valid[..., None], logits.shape)  # ignored anchors carry no loss
        for kind, where in (("pos", counted & (cls_t == 1)), ("neg", counted & (cls_t == 0))):
            parts[kind + "_loss"].append(to_host(loss[where]))
            parts[kind + "_grad"].append(to_host(grad[where]))
        parts["neg_pt"].append(to_host(sigmoid(-logits[counted & (cls_t == 0)])))  # p_t = 1 - p for target 0
        if has_distractors:
            on = np.zeros(logits.shape[:2], dtype=bool)  # (N, M): anchors on a distractor
            for n, i in enumerate(range(start, start + len(targets))):
                d_boxes = dataset.distractors(i)["boxes"].astype(np.float64)
                if len(d_boxes):
                    on[n] = box_iou(host_anchors, d_boxes).max(axis=1) >= c.fg_iou
            where = to_host(counted & (cls_t == 0))
            parts["neg_on"].append(np.broadcast_to(on[..., None], where.shape)[where])
    s = {k: np.concatenate(v).astype(np.float64) for k, v in parts.items() if v}
    if s["neg_loss"].size == 0:
        raise ValueError("dataset holds no negative samples; use more images")
    easy = s["neg_pt"] > easy_pt
    num_hardest = max(1, int(np.ceil(hardest * s["neg_loss"].size)))
    top = np.argsort(s["neg_loss"], kind="stable")[-num_hardest:]
    out = {"num_positive": int(s["pos_loss"].size), "num_negative": int(s["neg_loss"].size),
           "num_hardest": num_hardest, "easy_fraction": float(easy.mean()),
           "settings": {"loss": c.loss, **dict(zip(names, params))}}
    for name, key in (("loss", "_loss"), ("gradient", "_grad")):
        neg, pos = s["neg" + key], s["pos" + key]
        total = neg.sum() + pos.sum()
        out[name + "_sum"] = float(total)
        out[name] = {"positives": float(pos.sum() / total), "negatives": float(neg.sum() / total),
                     "easy_negatives": float(neg[easy].sum() / total),
                     "hardest_negatives": float(neg[top].sum() / total)}
        if has_distractors:
            out[name]["distractor_negatives"] = float(neg[s["neg_on"].astype(bool)].sum() / total)
    if has_distractors:
        on = s["neg_on"].astype(bool)
        out["on_distractors"] = {"negatives": float(on.mean()), "hardest_negatives": float(on[top].mean())}
    return out


def measure_checkpoint(path, held_out=64):
    """``negative_shares`` of a run's model on the first ``held_out`` images of its held-out split.

    Scored with the loss the run was trained with and, on the same outputs, with the paper's focal
    loss (gamma 2, alpha .25): what FL would make of the same samples.

    Returns
    -------
    dict with "dataset", "image_size", "step", "trained" (the run's loss settings) and "focal":
    ``negative_shares`` results.
    """
    from numpy_retinanet.engine.checkpoint import load_checkpoint

    check_int("held_out", held_out, 1)
    model, info = load_checkpoint(path)
    cfg = TrainConfig.from_dict(info["train_config"], num_classes=model.num_classes)
    images = build_dataset(cfg, "eval", num_images=held_out)
    return {"dataset": cfg.dataset, "image_size": cfg.image_size, "step": info["step"],
            "trained": negative_shares(model, images, cfg),
            "focal": negative_shares(model, images, cfg, loss="focal", gamma=2.0, alpha=0.25)}


def measure_regimes(out_path=None, iterations=MEASURE_TRAINING["iterations"], held_out=64, regimes=None,
                    runs_dir=None, log=print):
    """Train the CE recipe ``MEASURE_TRAINING`` on each regime, then ``measure_checkpoint`` each run.

    ``out_path``: a JSON file for the results; ``runs_dir``: a folder to keep the runs in (one
    subfolder per regime, which ``measure_checkpoint`` can read again; None: a temporary one).

    Returns
    -------
    dict: regime -> ``measure_checkpoint``'s result and "seconds" (of training); "recipe" (the
    TrainConfig settings) and "held_out".
    """
    from numpy_retinanet.engine.trainer import train

    check_int("iterations", iterations, 1)
    result = {"recipe": dict(MEASURE_TRAINING, iterations=iterations), "held_out": held_out}
    for dataset in regimes or list(REGIMES):
        cfg = TrainConfig(**dict(MEASURE_TRAINING, iterations=iterations), dataset=dataset,
                          image_size=REGIMES[dataset])
        with tempfile.TemporaryDirectory() as tmp:
            run = os.path.join(runs_dir or tmp, dataset)
            t0 = time.perf_counter()
            metrics = train(cfg, run, log=lambda line, d=dataset: log(f"{d}: {line}"))
            if metrics["interrupted"]:
                raise RuntimeError(f"the {dataset} run was stopped at step {metrics['step']}; nothing measured")
            seconds = time.perf_counter() - t0
            result[dataset] = dict(measure_checkpoint(os.path.join(run, "checkpoint.npz"), held_out),
                                   seconds=round(seconds, 1))
        log(f"{dataset}: {json.dumps(result[dataset])}")
    if out_path is not None:
        write_json(result, out_path)
    return result


def write_json(result, path):
    """``result`` as indented JSON in ``path``."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


__all__ = ["EASY_PT", "HARDEST", "MEASURE_TRAINING", "REGIMES", "negative_shares", "measure_checkpoint",
           "measure_regimes", "write_json"]
