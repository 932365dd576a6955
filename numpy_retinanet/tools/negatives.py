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
negatives with the highest loss (the lowest p_t: CE and FL fall as p_t rises). The loss and
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
from numpy_retinanet.detection.criterion import assign_targets, loss_config
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.nn.losses import CLASSIFICATION_LOSSES, sigmoid

EASY_PT = 0.9
HARDEST = 0.01

#: The recipe of ``measure_regimes``: the default preset trained briefly with the
#: alpha-balanced CE (``--loss ce``, alpha .25), with the figures' short-run schedule
#: (teaching/figures/figure_model.py: lr 0.02 after a 50-step warm-up, decayed late).
MEASURE_TRAINING = dict(preset="default", loss="ce", iterations=300, batch_size=8, lr=0.02, warmup_steps=50,
                        decay_at=(0.8, 0.93), clip_grad_norm=10.0, seed=0, data_seed=0, eval_images=0,
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
    (the loss's name and parameters).
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
    parts = {"pos_loss": [], "pos_grad": [], "neg_loss": [], "neg_grad": [], "neg_pt": []}
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
    s = {k: np.concatenate(v).astype(np.float64) for k, v in parts.items()}
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
    return out


def measure_regimes(out_path=None, iterations=MEASURE_TRAINING["iterations"], held_out=64, regimes=None,
                    log=print):
    """Train the CE recipe ``MEASURE_TRAINING`` on each regime and measure ``negative_shares``.

    Each regime's model is scored on ``held_out`` images of its held-out split, with the CE it
    was trained with and, on the same outputs, with the paper's focal loss (gamma 2, alpha
    .25): what FL would make of the same samples. ``out_path``: a JSON file for the results.

    Returns
    -------
    dict: regime -> {"image_size", "seconds" (training), "ce": shares, "focal": shares}, and
    "recipe" (the TrainConfig settings), "held_out".
    """
    from numpy_retinanet.engine.checkpoint import load_checkpoint
    from numpy_retinanet.engine.trainer import train

    check_int("iterations", iterations, 1)
    check_int("held_out", held_out, 1)
    result = {"recipe": dict(MEASURE_TRAINING, iterations=iterations), "held_out": held_out}
    for dataset in regimes or list(REGIMES):
        cfg = TrainConfig(**dict(MEASURE_TRAINING, iterations=iterations), dataset=dataset,
                          image_size=REGIMES[dataset])
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            metrics = train(cfg, tmp, log=lambda line, d=dataset: log(f"{d}: {line}"))
            if metrics["interrupted"]:
                raise RuntimeError(f"the {dataset} run was stopped at step {metrics['step']}; nothing measured")
            seconds = time.perf_counter() - t0
            model = load_checkpoint(os.path.join(tmp, "checkpoint.npz"))[0]
        images = build_dataset(cfg, "eval", num_images=held_out)
        result[dataset] = {"image_size": cfg.image_size, "seconds": round(seconds, 1),
                           "ce": negative_shares(model, images, cfg),
                           "focal": negative_shares(model, images, cfg, loss="focal", gamma=2.0, alpha=0.25)}
        log(f"{dataset}: {json.dumps(result[dataset])}")
    if out_path is not None:
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return result


__all__ = ["EASY_PT", "HARDEST", "MEASURE_TRAINING", "REGIMES", "negative_shares", "measure_regimes"]
