"""Assign each anchor a ground-truth box, background, or "ignored" (paper §4, "Matching").

Rules (§4): an anchor whose best IoU with any box is >= 0.5 is foreground and
takes that box; best IoU in [0, 0.4) is background; [0.4, 0.5) is ignored (no
classification loss, no regression). Each anchor takes at most one box: the
one it overlaps most, ties going to the lowest box index.

Low-quality matches (torchvision's and detectron2's ``allow_low_quality_matches``):
a box that no anchor overlaps by 0.5 would get no positive anchor at all, so, for
each box, every anchor that reaches that box's highest IoU (all of them on a tie)
is made foreground. As in torchvision, such an anchor takes *its own* best box
(the argmax over boxes), which is not always the box that promoted it: when
anchor a is box g's best anchor but overlaps box h more, a regresses to h. This
keeps the invariant "a foreground anchor regresses to the box it overlaps most",
at the price that g may then end with no positive anchor. A box whose highest IoU
is 0 promotes nothing (torchvision would make every anchor positive there).

Crowd boxes (COCO's ``iscrowd``: one box around a group of objects, as a crowd of people) are
neither objects nor background: they take part in no match above, and an anchor that the rules
above leave background but that overlaps a crowd box with IoU >= ``bg_iou`` is ignored instead,
so the network is not taught that people in a crowd are background (Detectron ignores anchors
on crowd regions the same way). An anchor matched to a real box stays foreground.
"""

from __future__ import annotations

from numpy_retinanet._checks import check_array, check_probability
from numpy_retinanet.backend import array_module
from numpy_retinanet.detection.boxes import _iou, check_boxes

# §4's thresholds, written once: match_anchors' defaults and detection.criterion.LossConfig's.
FG_IOU = 0.5
BG_IOU = 0.4

BACKGROUND = -1
IGNORED = -2


def match_anchors(anchors, boxes, fg_iou=FG_IOU, bg_iou=BG_IOU, allow_low_quality=True, crowd=None):
    """Match anchors to ground-truth boxes by IoU (§4).

    Parameters
    ----------
    anchors : array, shape (M, 4)
        Real boxes (``x2 > x1``, ``y2 > y1``).
    boxes : array, shape (G, 4)
        Real ground-truth boxes on the same device; G may be 0 (every anchor is background).
    fg_iou : float
        Best IoU >= ``fg_iou`` makes an anchor foreground.
    bg_iou : float, <= fg_iou
        Best IoU < ``bg_iou`` makes it background; IoU in [bg_iou, fg_iou) is ignored.
    allow_low_quality : bool
        Also make foreground, for each box, the anchors with that box's highest
        (non-zero) IoU; each takes its own best box (see the module docstring).
    crowd : bool array, shape (G,), optional
        True for a crowd box: never matched; a background anchor overlapping one by
        ``bg_iou`` or more is ignored (module docstring). None: no crowd box.

    Returns
    -------
    int64 array of the anchors' module, shape (M,): the index of the matched box
    for foreground (never a crowd box), ``BACKGROUND`` (-1) or ``IGNORED`` (-2).
    """
    xp = array_module(anchors, boxes)
    anchors = check_boxes("anchors", anchors)
    boxes = check_boxes("boxes", boxes)
    fg_iou = check_probability("fg_iou", fg_iou)
    bg_iou = check_probability("bg_iou", bg_iou)
    if bg_iou > fg_iou:
        raise ValueError(f"bg_iou must be <= fg_iou ({fg_iou}), got {bg_iou}")
    if crowd is not None:
        crowd = check_array("crowd", crowd, (boxes.shape[0],), kind="b")
    if crowd is None or not bool(crowd.any()):
        return _match_real(xp, anchors, boxes, fg_iou, bg_iou, allow_low_quality)
    real = xp.nonzero(~crowd)[0]
    matches = _match_real(xp, anchors, boxes[real], fg_iou, bg_iou, allow_low_quality)
    if real.size:  # the index among the real boxes -> the index among all boxes
        matches = xp.where(matches >= 0, real[xp.maximum(matches, 0)], matches)
    on_crowd = _iou(xp, anchors.astype(xp.float64), boxes[crowd].astype(xp.float64)).max(axis=1) >= bg_iou
    return xp.where((matches == BACKGROUND) & on_crowd, IGNORED, matches).astype(xp.int64)


def _match_real(xp, anchors, boxes, fg_iou, bg_iou, allow_low_quality):
    """``match_anchors`` on checked arguments and boxes that are all real objects."""
    m = anchors.shape[0]
    if boxes.shape[0] == 0 or m == 0:
        return xp.full((m,), BACKGROUND, dtype=xp.int64)
    # IoU in float64 whatever the inputs' dtype: float32 rounding (~1e-7 relative)
    # could carry an IoU just below 0.5 across the threshold. box_iou's checks were made
    # by match_anchors: the unchecked _iou computes the same numbers.
    iou = _iou(xp, anchors.astype(xp.float64), boxes.astype(xp.float64))  # (M, G)
    best_box = xp.argmax(iou, axis=1)  # first maximum: ties go to the lowest box index
    best_iou = xp.max(iou, axis=1)
    matches = xp.where(
        best_iou >= fg_iou, best_box, xp.where(best_iou < bg_iou, BACKGROUND, IGNORED)
    ).astype(xp.int64)
    if allow_low_quality:
        highest = xp.max(iou, axis=0)  # (G,) each box's best IoU
        reaches = (iou == highest[None, :]) & (highest[None, :] > 0)
        matches = xp.where(xp.any(reaches, axis=1), best_box, matches).astype(xp.int64)
    return matches
