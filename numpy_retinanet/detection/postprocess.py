"""From the heads' outputs to detections (paper §4.1, "Inference").

Per image, as Detectron does it: on each pyramid level keep the (anchor, class)
pairs with score > 0.05, at most the 1000 best of them; decode their boxes from
the anchors, clip them to the image, merge the levels, run NMS at IoU 0.5 for
each class separately, and keep the 100 best detections.

Boxes that clipping leaves with zero width or height (the decoded box lay wholly
outside the image along an axis, or decoding gave it zero size) are removed
before NMS, as torchvision's Faster R-CNN removes small boxes: they cover no pixel
and would take a place among the kept detections. Detectron and torchvision's
RetinaNet keep them (``drop_empty=False``).

Post-processing runs on the host: the inputs are copied once with ``to_host``
and every output is a NumPy array.
"""

from __future__ import annotations

import numpy as np

from numpy_retinanet._checks import check_array, check_int, check_probability, check_real, is_int
from numpy_retinanet.backend import to_host
from numpy_retinanet.detection.boxes import batched_nms, check_boxes, decode_boxes
from numpy_retinanet.nn.losses import sigmoid


def _check_image_size(image_size):
    """``(height, width)`` as two positive floats."""
    try:
        height, width = image_size
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be a pair (height, width), got {image_size!r}") from None
    height = check_real("image_size[0]", height, 0, low_open=True)
    return height, check_real("image_size[1]", width, 0, low_open=True)


def _level_bounds(level_sizes, num_anchors):
    """[(start, stop), ...] of each level's anchors; one level spanning all anchors when None."""
    if level_sizes is None:
        return [(0, num_anchors)]
    sizes = list(level_sizes)
    if not sizes or not all(is_int(s) and s > 0 for s in sizes) or sum(sizes) != num_anchors:
        raise ValueError(
            f"level_sizes must be positive integers, the anchors of each level, summing to the "
            f"number of anchors {num_anchors}, got {level_sizes!r}"
        )
    stops = np.cumsum(sizes).tolist()
    return list(zip([0] + stops[:-1], stops))


def _empty():
    return {
        "boxes": np.zeros((0, 4), dtype=np.float32),
        "scores": np.zeros((0,), dtype=np.float32),
        "labels": np.zeros((0,), dtype=np.int64),
    }


def _detect_image(logits, deltas, anchors, bounds, height, width, score_threshold, topk, nms_threshold, max_det,
                  drop_empty):
    """Detections of one image: logits (M, K), deltas (M, 4), anchors (M, 4), all on the host."""
    num_classes = logits.shape[1]
    scores = sigmoid(logits)
    chosen = []
    for start, stop in bounds:
        level = scores[start:stop].reshape(-1)  # flat index = anchor * K + class
        flat = np.flatnonzero(level > score_threshold)
        flat = flat[np.argsort(-level[flat], kind="stable")[:topk]]
        chosen.append(start * num_classes + flat)
    # Levels follow one another in anchor order and each is sorted stably, so equal
    # scores stay in (anchor, class) order, which batched_nms's stable sort keeps.
    flat = np.concatenate(chosen)
    if flat.size == 0:
        return _empty()
    anchor_index, labels = np.divmod(flat, num_classes)
    cand_scores = scores.reshape(-1)[flat]
    boxes = decode_boxes(anchors[anchor_index], deltas[anchor_index])
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0.0, width)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0.0, height)
    if drop_empty:
        nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, cand_scores, labels = boxes[nonempty], cand_scores[nonempty], labels[nonempty]
    keep = batched_nms(boxes, cand_scores, labels, nms_threshold)[:max_det]
    return {
        "boxes": boxes[keep].astype(np.float32),
        "scores": cand_scores[keep].astype(np.float32),
        "labels": labels[keep].astype(np.int64),
    }


def postprocess(
    logits,
    deltas,
    anchors,
    image_size,
    score_threshold=0.05,
    topk_per_level=1000,
    nms_threshold=0.5,
    max_detections=100,
    level_sizes=None,
    drop_empty=True,
):
    """Detections for a batch from the classification and box heads (§4.1 inference).

    Parameters
    ----------
    logits : float array, shape (N, M, K)
        Raw classification outputs; the score is sigmoid(logit), computed stably here.
    deltas : float array, shape (N, M, 4)
        Box regression outputs ``(dx, dy, dw, dh)`` (``decode_boxes``, weights (1, 1, 1, 1)).
    anchors : float array, shape (M, 4)
        Ordered level, row, column, anchor, as from ``AnchorGenerator``.
    image_size : (height, width)
        Boxes are clipped to ``[0, width] x [0, height]``; one size for the whole batch.
    score_threshold : float in [0, 1]
        Keep (anchor, class) pairs with score strictly greater than this.
    topk_per_level : int
        At most this many candidates per level (the best by score; equal scores in
        anchor-then-class order), before NMS.
    nms_threshold : float in [0, 1]
        Per-class NMS suppresses boxes with IoU greater than this.
    max_detections : int
        Detections kept per image after NMS.
    level_sizes : list of int, optional
        Anchors in each level (``AnchorGenerator.level_sizes``), summing to M; None
        treats all anchors as one level, so ``topk_per_level`` applies to the image.
    drop_empty : bool
        Remove the boxes that clipping leaves with zero width or height (module docstring).

    Returns
    -------
    list of N dicts (host NumPy arrays), detections sorted by decreasing score:
    ``"boxes"`` (n, 4) float32, ``"scores"`` (n,) float32, ``"labels"`` (n,) int64 in [0, K).
    Zero-area boxes after clipping are dropped unless ``drop_empty`` is False (module docstring).
    """
    logits = check_array("logits", np.asarray(to_host(logits)), ("N", "M", "K"), kind="f", finite=True)
    n, m, k = logits.shape
    if k == 0:
        raise ValueError(f"logits must be an array with at least one class (K >= 1), got shape {logits.shape}")
    deltas = check_array("deltas", np.asarray(to_host(deltas)), (n, m, 4), kind="f", finite=True)
    anchors = check_array("anchors", check_boxes("anchors", to_host(anchors)), (m, 4))
    height, width = _check_image_size(image_size)
    score_threshold = check_probability("score_threshold", score_threshold)
    topk_per_level = check_int("topk_per_level", topk_per_level, 1)
    nms_threshold = check_probability("nms_threshold", nms_threshold)
    max_detections = check_int("max_detections", max_detections, 1)
    bounds = _level_bounds(level_sizes, m)
    return [
        _detect_image(
            logits[i], deltas[i], anchors, bounds, height, width,
            score_threshold, topk_per_level, nms_threshold, max_detections, bool(drop_empty),
        )
        for i in range(n)
    ]
