"""Boxes: area, IoU, the R-CNN box coder and non-maximum suppression (paper §4, §4.1).

Every box is ``(x1, y1, x2, y2)`` in pixels, in continuous coordinates: a box
covers ``[x1, x2] x [y1, y2]``, its width is ``x2 - x1`` (no ``+ 1``) and its
center is ``(x1 + x2) / 2``.

Area, IoU and the box coder run on whatever array module holds their inputs
(NumPy or CuPy, ``xp = array_module(...)``). NMS is a sequential, data-dependent
loop, so it runs on the host: its inputs are copied with ``to_host`` and it
returns a NumPy ``int64`` array of indices.
"""

from __future__ import annotations

import math

import numpy as np

from numpy_retinanet._checks import check_array, check_probability, check_real, check_same_shape
from numpy_retinanet.backend import array_module, to_host

# Detectron's cap on dw and dh when decoding: a box grows by at most 1000/16 = 62.5x
# its anchor, so that a wild prediction early in training cannot overflow exp().
DELTA_CLAMP = math.log(1000.0 / 16.0)


def check_boxes(name, boxes, *, allow_zero_size=False):
    """Check that ``boxes`` is an ``(N, 4)`` array of real ``(x1, y1, x2, y2)`` boxes.

    Parameters
    ----------
    name : str
        The argument's name, quoted in the error message.
    boxes : array, shape (N, 4)
        Finite coordinates of a real (NumPy or CuPy) dtype; N may be 0.
    allow_zero_size : bool
        When True, ``x2 == x1`` or ``y2 == y1`` is accepted (a box of area 0);
        otherwise a box needs ``x2 > x1`` and ``y2 > y1``. ``x2 < x1`` is always
        refused: it is a box given in the wrong order, not a small box.

    Returns
    -------
    The boxes as an array of the same module (lists become NumPy arrays).

    Raises
    ------
    ValueError naming ``name`` for a wrong shape or dtype, NaN or infinite
    coordinates, or a box whose corners are out of order.
    """
    xp = array_module(boxes)
    boxes = check_array(name, xp.asarray(boxes), ("N", 4), kind="fiu", finite=True)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    bad = (w < 0) | (h < 0) if allow_zero_size else (w <= 0) | (h <= 0)
    if bool(xp.any(bad)):
        i = int(xp.argmax(bad))
        need = "x2 >= x1 and y2 >= y1" if allow_zero_size else "x2 > x1 and y2 > y1"
        raise ValueError(
            f"{name} must be (x1, y1, x2, y2) with {need}, got {to_host(boxes[i]).tolist()} at row {i}"
        )
    return boxes


def _float_dtype(xp, *arrays):
    """The common float dtype of ``arrays``; integer coordinates are computed in float64."""
    dtype = xp.result_type(*arrays)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def box_area(boxes):
    """Area ``(x2 - x1) * (y2 - y1)`` of each box.

    Parameters
    ----------
    boxes : array, shape (N, 4)
        ``(x1, y1, x2, y2)`` with ``x2 >= x1`` and ``y2 >= y1`` (zero area is allowed).

    Returns
    -------
    array, shape (N,), in the dtype of ``boxes``.
    """
    boxes = check_boxes("boxes", boxes, allow_zero_size=True)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _iou(xp, a, b):
    """IoU matrix of checked float boxes ``a`` (N, 4) and ``b`` (M, 4), without checks."""
    if a.shape[0] > b.shape[0]:
        # NumPy runs an elementwise op's inner loop along the last axis, so the longer list
        # of boxes goes there: 3069 anchors against 3 boxes as (G, M) rather than (M, G)
        # made matching 2.5x faster (590 -> 240 us). The transpose is the same matrix bit for bit:
        # every step below is symmetric in a and b (min, max, + and * commute exactly).
        return _iou(xp, b, a).T
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = xp.minimum(a[:, None, 2], b[None, :, 2]) - xp.maximum(a[:, None, 0], b[None, :, 0])
    ih = xp.minimum(a[:, None, 3], b[None, :, 3]) - xp.maximum(a[:, None, 1], b[None, :, 1])
    inter = xp.maximum(iw, 0) * xp.maximum(ih, 0)
    union = area_a[:, None] + area_b[None, :] - inter
    # Two zero-area boxes have union 0; divide by 1 there instead, so no 0/0 warning,
    # and report IoU 0 (they share no area).
    positive = union > 0
    iou = xp.where(positive, inter / xp.where(positive, union, 1), 0)
    # a + b - inter can round an ulp below the larger area, which would put IoU above 1.
    return xp.minimum(iou, 1)


def box_iou(a, b):
    """Intersection over union of every box in ``a`` with every box in ``b`` (§4, anchor matching).

    ``IoU = |A ∩ B| / |A ∪ B|`` with areas in continuous coordinates. A pair whose
    union has zero area (two zero-area boxes) has IoU 0, as does any pair that
    involves a zero-area box.

    Parameters
    ----------
    a : array, shape (N, 4)
    b : array, shape (M, 4)
        Boxes ``(x1, y1, x2, y2)`` with ``x2 >= x1``, ``y2 >= y1``, on the same device.

    Returns
    -------
    array, shape (N, M), values in [0, 1], in the common float dtype of ``a`` and
    ``b`` (float64 for integer boxes).
    """
    xp = array_module(a, b)
    a = check_boxes("a", a, allow_zero_size=True)
    b = check_boxes("b", b, allow_zero_size=True)
    dtype = _float_dtype(xp, a, b)
    return _iou(xp, a.astype(dtype, copy=False), b.astype(dtype, copy=False))


def _check_weights(weights):
    """The box coder's ``(wx, wy, ww, wh)``: four positive finite numbers, as floats."""
    if not isinstance(weights, (tuple, list)) or len(weights) != 4:
        raise ValueError(f"weights must be a tuple of four numbers (wx, wy, ww, wh), got {weights!r}")
    return tuple(check_real(f"weights[{i}]", w, 0, low_open=True) for i, w in enumerate(weights))


def _centers_sizes(boxes):
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, w, h


def encode_boxes(anchors, boxes, weights=(1, 1, 1, 1)):
    """Regression targets of ``boxes`` relative to ``anchors`` (§4 box regression; R-CNN deltas).

    With centers ``cx = (x1 + x2) / 2`` and sizes ``w = x2 - x1`` (likewise y, h),
    and the anchor's ``cxa, cya, wa, ha``::

        dx = wx (cx - cxa) / wa      dw = ww log(w / wa)
        dy = wy (cy - cya) / ha      dh = wh log(h / ha)

    The paper uses weights (1, 1, 1, 1) [Detectron]. ``decode_boxes`` inverts this.

    Parameters
    ----------
    anchors : array, shape (N, 4)
    boxes : array, shape (N, 4)
        Real boxes (``x2 > x1``, ``y2 > y1``); row i of ``boxes`` is encoded against row i of ``anchors``.
    weights : four positive numbers (wx, wy, ww, wh)

    Returns
    -------
    deltas : array, shape (N, 4), ``(dx, dy, dw, dh)`` in the common float dtype of the inputs.
    """
    xp = array_module(anchors, boxes)
    anchors = check_boxes("anchors", anchors)
    boxes = check_boxes("boxes", boxes)
    check_same_shape("boxes", boxes, "anchors", anchors)
    wx, wy, ww, wh = _check_weights(weights)
    dtype = _float_dtype(xp, anchors, boxes)
    cxa, cya, wa, ha = _centers_sizes(anchors.astype(dtype, copy=False))
    cx, cy, w, h = _centers_sizes(boxes.astype(dtype, copy=False))
    return xp.stack(
        [wx * (cx - cxa) / wa, wy * (cy - cya) / ha, ww * xp.log(w / wa), wh * xp.log(h / ha)], axis=1
    )


def decode_boxes(anchors, deltas, weights=(1, 1, 1, 1)):
    """Boxes predicted by ``deltas`` relative to ``anchors``: the inverse of ``encode_boxes`` (§4).

    ``cx = dx / wx * wa + cxa``, ``w = wa exp(min(dw / ww, log(1000/16)))`` (likewise y, h),
    then ``(cx - w/2, cy - h/2, cx + w/2, cy + h/2)``. The clamp on dw, dh is Detectron's;
    it only bites from above, so a very negative dw gives a box of width 0.

    Parameters
    ----------
    anchors : array, shape (N, 4)
        Real boxes (``x2 > x1``, ``y2 > y1``).
    deltas : array, shape (N, 4)
        Finite ``(dx, dy, dw, dh)``, row i applied to anchor i.
    weights : four positive numbers (wx, wy, ww, wh)

    Returns
    -------
    boxes : array, shape (N, 4), in the common float dtype of the inputs.
    """
    xp = array_module(anchors, deltas)
    anchors = check_boxes("anchors", anchors)
    deltas = check_same_shape("deltas", xp.asarray(deltas), "anchors", anchors)
    check_array("deltas", deltas, kind="fiu", finite=True)
    wx, wy, ww, wh = _check_weights(weights)
    dtype = _float_dtype(xp, anchors, deltas)
    cxa, cya, wa, ha = _centers_sizes(anchors.astype(dtype, copy=False))
    deltas = deltas.astype(dtype, copy=False)
    cx = deltas[:, 0] / wx * wa + cxa
    cy = deltas[:, 1] / wy * ha + cya
    w = wa * xp.exp(xp.minimum(deltas[:, 2] / ww, DELTA_CLAMP))
    h = ha * xp.exp(xp.minimum(deltas[:, 3] / wh, DELTA_CLAMP))
    return xp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=1)


def _host_scores(scores, n):
    """One finite real score per box, as host float64.

    float64 holds every float32 and small integer exactly, and negating it for a
    descending sort cannot wrap around as an unsigned integer would.
    """
    scores = check_array("scores", np.asarray(to_host(scores)), (n,), kind="fiu", finite=True)
    return scores.astype(np.float64, copy=False)


_NMS_BLOCK = 256  # boxes whose IoUs with every later box are computed at once (nms)


def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression (§4.1 inference: NMS at 0.5).

    Visit boxes by decreasing score (equal scores in input order: a stable sort);
    keep a box, then drop every remaining box whose IoU with it is greater than
    ``iou_threshold``. Runs on the host.

    The IoUs are computed a block of ``_NMS_BLOCK`` boxes at a time (each block's
    boxes against themselves and every later box, in one array expression); the
    greedy walk then only reads rows of that block. One ``_iou`` call per block
    instead of one per kept box: most of the time went to those calls' overhead
    when an image has hundreds of candidates. The block bounds the memory at
    ``_NMS_BLOCK`` x N entries.

    Parameters
    ----------
    boxes : array, shape (N, 4)
        ``x2 >= x1``, ``y2 >= y1``; a zero-area box overlaps nothing and is never suppressed.
    scores : array, shape (N,)
    iou_threshold : float in [0, 1]

    Returns
    -------
    numpy int64 array, shape (n_kept,): indices into ``boxes``, by decreasing score.
    """
    boxes = check_boxes("boxes", to_host(boxes), allow_zero_size=True)
    scores = _host_scores(scores, boxes.shape[0])
    iou_threshold = check_probability("iou_threshold", iou_threshold)
    boxes = boxes.astype(_float_dtype(np, boxes), copy=False)
    order = np.argsort(-scores, kind="stable")
    ranked = boxes[order]  # box i here is the i-th visited
    n = len(order)
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for start in range(0, n, _NMS_BLOCK):
        stop = min(start + _NMS_BLOCK, n)
        # over[i - start, j - start]: box j overlaps box i by more than the threshold (j >= start).
        over = _iou(np, ranked[start:stop], ranked[start:]) > iou_threshold
        for i in range(start, stop):
            if not suppressed[i]:
                keep.append(i)
                suppressed[start:] |= over[i - start]  # marks i itself too: it is already kept
    return order[np.asarray(keep, dtype=np.int64)]


def batched_nms(boxes, scores, labels, iou_threshold):
    """Non-maximum suppression run independently for each class label (§4.1: per-class NMS).

    A box can only suppress boxes of its own label.

    Parameters
    ----------
    boxes : array, shape (N, 4)
    scores : array, shape (N,)
    labels : integer array, shape (N,)
    iou_threshold : float in [0, 1]

    Returns
    -------
    numpy int64 array, shape (n_kept,): indices into ``boxes``, by decreasing score,
    equal scores in increasing index order.
    """
    boxes = check_boxes("boxes", to_host(boxes), allow_zero_size=True)
    scores = _host_scores(scores, boxes.shape[0])
    labels = check_array("labels", np.asarray(to_host(labels)), scores.shape, kind="iu")
    iou_threshold = check_probability("iou_threshold", iou_threshold)
    kept = [np.zeros(0, dtype=np.int64)]
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        kept.append(members[nms(boxes[members], scores[members], iou_threshold)])
    kept = np.sort(np.concatenate(kept))
    return kept[np.argsort(-scores[kept], kind="stable")].astype(np.int64)
