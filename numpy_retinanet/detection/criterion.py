"""The RetinaNet training loss (§4.1, "Training"): targets from the matcher, focal loss, smooth L1.

For each image the matcher (§4, IoU >= 0.5 foreground, < 0.4 background, the
rest ignored) assigns every anchor a box. Then

    L = (1 / max(1, P)) * [ sum over non-ignored anchors a and classes k of FL(x_ak, y_ak)
                          + sum over positive anchors a of smoothL1(delta_a - t_a) ]

where P is the number of positive anchors in the whole batch, y_ak is the
one-hot label (all zeros for background), and t_a = encode(anchor_a, box_a).
Dividing by the positives, not by all anchors, is the paper's choice: the loss
of the ~100k easy negatives is already down-weighted by the focal term (§3.3).
An image with no boxes still trains: all of its anchors are negatives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from numpy_retinanet._checks import check_array
from numpy_retinanet._settings import check_settings, setting
from numpy_retinanet.backend import array_module
from numpy_retinanet.detection.boxes import check_boxes, encode_boxes
from numpy_retinanet.detection.matcher import BG_IOU, FG_IOU, IGNORED, match_anchors
from numpy_retinanet.nn.losses import (
    ALPHA,
    CLASSIFICATION_LOSSES,
    FL_STAR_BETA,
    GAMMA,
    SMOOTH_L1_BETA,
    smooth_l1_backward,
    smooth_l1_forward,
)


@dataclass
class LossConfig:
    """Every setting of the training loss, with the paper's values as defaults (§3-4, Table 1).

    ``engine.config.TrainConfig`` inherits these fields, so a run's config is a LossConfig and
    ``retinanet_loss(..., config)`` reads them from it.
    """

    loss: str = setting("focal", "classification loss: focal (eq. 5), ce (alpha-balanced cross-entropy, "
                                 "Table 1a) or fl_star (FL*, Appendix A)", choices=tuple(CLASSIFICATION_LOSSES))
    # None (in Python only): no weighting, the plain CE of eq. 2 and the FL of eq. 4.
    alpha: float = setting(ALPHA, "alpha of eq. 3 and 5: the weight of the positives (focal, ce)", low=0.0,
                           high=1.0, optional=True)
    gamma: float = setting(GAMMA, "gamma: the focusing parameter of eq. 4-5 (focal) and the steepness of FL* "
                                "(fl_star, > 0)", low=0.0)
    beta: float = setting(FL_STAR_BETA, "beta of FL* (Appendix A): the shift of the logit (fl_star)")
    smooth_l1_beta: float = setting(SMOOTH_L1_BETA, "width of smooth L1's quadratic zone [Detectron]; 0 is L1", low=0.0)
    fg_iou: float = setting(FG_IOU, "IoU from which an anchor is foreground (§4)", low=0.0, high=1.0)
    bg_iou: float = setting(BG_IOU, "IoU below which an anchor is background; between bg_iou and fg_iou it is "
                                 "ignored (§4)", low=0.0, high=1.0)
    allow_low_quality: bool = setting(True, "also make each box's best anchors foreground (torchvision, "
                                            "detectron2)")

    def validate(self):
        """Raise ValueError naming each setting that is out of range."""
        check_settings(self, "loss settings")
        if self.bg_iou > self.fg_iou:
            raise ValueError(f"invalid loss settings: bg_iou must be <= fg_iou ({self.fg_iou}), got {self.bg_iou}")
        if self.loss == "fl_star" and self.gamma <= 0:
            raise ValueError(f"invalid loss settings: gamma must be > 0 for fl_star (FL* divides by it), "
                             f"got {self.gamma}")


def loss_config(config=None, **settings) -> LossConfig:
    """A validated LossConfig: the loss fields of ``config`` (None: the defaults; a TrainConfig
    is a LossConfig) with ``settings`` changed, e.g. ``loss_config(gamma=0.0)``."""
    names = [f.name for f in dataclasses.fields(LossConfig)]
    unknown = sorted(set(settings) - set(names))
    if unknown:
        raise ValueError(f"settings must be among the loss settings {names}, got {unknown}")
    base = config if config is not None else LossConfig()
    if not isinstance(base, LossConfig):
        raise ValueError(f"config must be a LossConfig (or a TrainConfig), got {type(base).__name__}")
    out = LossConfig(**{**{n: getattr(base, n) for n in names}, **settings})
    out.validate()
    return out


def check_targets(targets, num_images, num_classes):
    """Validate a list of {"boxes": (n, 4), "labels": (n,)} per image, with an optional "iscrowd" (n,)
    bool; raise ValueError naming the image."""
    if not isinstance(targets, (list, tuple)) or len(targets) != num_images:
        got = len(targets) if isinstance(targets, (list, tuple)) else type(targets).__name__
        raise ValueError(f"targets must be a list with one dict per image ({num_images}), got {got}")
    for i, t in enumerate(targets):
        if not isinstance(t, dict) or "boxes" not in t or "labels" not in t:
            raise ValueError(f"targets[{i}] must be a dict with 'boxes' and 'labels'")
        boxes = np.asarray(t["boxes"]) if isinstance(t["boxes"], (list, tuple)) else t["boxes"]
        labels = np.asarray(t["labels"]) if isinstance(t["labels"], (list, tuple)) else t["labels"]
        boxes = check_boxes(f"targets[{i}]['boxes']", boxes)  # (n, 4), finite, x2 > x1 and y2 > y1
        labels = check_array(f"targets[{i}]['labels']", labels, (boxes.shape[0],), kind="iu")
        if "iscrowd" in t:
            crowd = np.asarray(t["iscrowd"]) if isinstance(t["iscrowd"], (list, tuple)) else t["iscrowd"]
            check_array(f"targets[{i}]['iscrowd']", crowd, (boxes.shape[0],), kind="b")
        if boxes.shape[0] == 0:
            continue
        if bool((labels < 0).any() or (labels >= num_classes).any()):
            raise ValueError(f"targets[{i}]['labels'] must be in [0, {num_classes}), got "
                             f"min {int(labels.min())} max {int(labels.max())}")


def assign_targets(anchors, targets, num_classes, fg_iou=FG_IOU, bg_iou=BG_IOU, allow_low_quality=True):
    """Per-anchor training targets for a batch.

    Parameters
    ----------
    anchors : (M, 4).
    targets : list of N dicts {"boxes": (n, 4), "labels": (n,)}, optionally "iscrowd" (n,) bool:
        crowd boxes make no positive, and the background anchors on them are ignored
        (``match_anchors``).

    Returns
    -------
    cls_targets : (N, M, K) one-hot labels, zeros for background and ignored anchors.
    box_targets : (N, M, 4) encoded boxes for positive anchors, zeros elsewhere.
    positive : (N, M) bool, anchors matched to a box.
    valid : (N, M) bool, anchors that are not ignored.
    """
    xp = array_module(anchors)
    n, m = len(targets), anchors.shape[0]
    dtype = anchors.dtype
    cls_targets = xp.zeros((n, m, num_classes), dtype=dtype)
    box_targets = xp.zeros((n, m, 4), dtype=dtype)
    positive = xp.zeros((n, m), dtype=bool)
    valid = xp.ones((n, m), dtype=bool)
    for i, t in enumerate(targets):
        boxes = xp.asarray(t["boxes"], dtype=dtype).reshape(-1, 4)
        labels = xp.asarray(t["labels"]).reshape(-1).astype(np.int64)
        crowd = xp.asarray(t["iscrowd"], dtype=bool).reshape(-1) if "iscrowd" in t else None
        matched = match_anchors(anchors, boxes, fg_iou=fg_iou, bg_iou=bg_iou,
                                allow_low_quality=allow_low_quality, crowd=crowd)
        pos = matched >= 0
        valid[i] = matched != IGNORED
        positive[i] = pos
        idx = xp.nonzero(pos)[0]
        if idx.size:
            box_idx = matched[idx]
            cls_targets[i, idx, labels[box_idx]] = 1
            box_targets[i, idx] = encode_boxes(anchors[idx], boxes[box_idx])
    return cls_targets, box_targets, positive, valid


def retinanet_loss(logits, deltas, anchors, targets, config=None, **settings):
    """Focal loss + smooth L1 for a batch, with their gradients w.r.t. the network outputs.

    Parameters
    ----------
    logits : (N, M, K) classification logits.
    deltas : (N, M, 4) box regression outputs.
    anchors : (M, 4) in the order of the outputs.
    targets : list of N dicts {"boxes": (n, 4) float, "labels": (n,) int in [0, K)}.
    config : a LossConfig (a TrainConfig is one); None: the paper's settings (``LossConfig()``).
    **settings : loss settings to change, e.g. ``gamma=0.0`` or ``loss="ce", alpha=0.75``
        (see ``LossConfig``: loss, alpha, gamma, beta, smooth_l1_beta, fg_iou, bg_iou,
        allow_low_quality).

    Returns
    -------
    losses : dict with "classification", "box_regression", "total" (floats) and "num_positive" (int).
    dlogits : (N, M, K) d total / d logits.
    ddeltas : (N, M, 4) d total / d deltas.
    """
    xp = array_module(logits, deltas, anchors)
    n, m, k = check_array("logits", logits, ("N", "M", "K"), kind="f").shape
    check_array("deltas", deltas, (n, m, 4), kind="f")
    check_array("anchors", anchors, (m, 4), kind="f")
    c = loss_config(config, **settings)
    check_targets(targets, n, k)
    # copy=False: the model's anchors already have the outputs' dtype; no copy per step then.
    cls_t, box_t, positive, valid = assign_targets(anchors.astype(logits.dtype, copy=False), targets, k,
                                                   c.fg_iou, c.bg_iou, c.allow_low_quality)
    num_pos = int(positive.sum())
    norm = float(max(1, num_pos))

    forward, backward, names = CLASSIFICATION_LOSSES[c.loss]
    cls, cls_cache = forward(logits, cls_t, *(getattr(c, name) for name in names))
    cls_weight = (valid[..., None] / norm).astype(logits.dtype)  # (N, M, 1): ignored anchors count 0
    loss_cls = float((cls * cls_weight).sum())
    dlogits = backward(xp.broadcast_to(cls_weight, logits.shape), cls_cache)

    sl1, sl1_cache = smooth_l1_forward(deltas, box_t, c.smooth_l1_beta)
    box_weight = (positive[..., None] / norm).astype(deltas.dtype)  # (N, M, 1): positives only
    loss_box = float((sl1 * box_weight).sum())
    ddeltas = smooth_l1_backward(xp.broadcast_to(box_weight, deltas.shape), sl1_cache)

    losses = {"classification": loss_cls, "box_regression": loss_box, "total": loss_cls + loss_box,
              "num_positive": num_pos}
    return losses, dlogits, ddeltas
