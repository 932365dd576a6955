"""Tests for detection/boxes.py: area, IoU, the R-CNN box coder, NMS (paper §4, §4.1)."""

import math
from fractions import Fraction

import numpy as np
import pytest
from _exact_iou import exact_iou, pair_at_iou
from hypothesis import given
from hypothesis import strategies as st

from numpy_retinanet.detection.boxes import (
    _NMS_BLOCK,
    DELTA_CLAMP,
    batched_nms,
    box_area,
    box_iou,
    decode_boxes,
    encode_boxes,
    nms,
)

# ----------------------------------------------------------------------------- references


def ref_iou(a, b):
    """IoU of two boxes, written out with Python floats (continuous coordinates)."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def ref_nms(boxes, scores, threshold):
    """Greedy NMS, plainly: by (-score, index), keep a box unless a kept box overlaps it > threshold."""
    kept = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(ref_iou(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


# ----------------------------------------------------------------------------- strategies

# Integer corners on a small grid make equal IoUs, touching boxes and zero-area boxes common.
grid_box = st.tuples(
    st.integers(0, 12), st.integers(0, 12), st.integers(0, 8), st.integers(0, 8)
).map(lambda t: (float(t[0]), float(t[1]), float(t[0] + t[2]), float(t[1] + t[3])))


@st.composite
def real_boxes(draw, n):
    """n boxes with x2 > x1, y2 > y1 and sides in [1, 50]."""
    coord = st.floats(-100, 100, allow_nan=False)
    side = st.floats(1, 50, allow_nan=False)
    rows = []
    for _ in range(n):
        x1, y1, w, h = draw(coord), draw(coord), draw(side), draw(side)
        rows.append((x1, y1, x1 + w, y1 + h))
    return np.asarray(rows, dtype=np.float64)


# ----------------------------------------------------------------------------- area and IoU


def test_box_area_by_hand():
    boxes = np.array([[0, 0, 2, 3], [1, 1, 1, 5], [-2.5, 0, 2.5, 0.5]])
    np.testing.assert_array_equal(box_area(boxes), [6.0, 0.0, 2.5])


def test_box_iou_by_hand():
    a = np.array([[0, 0, 2, 2], [0, 0, 4, 2], [0, 0, 10, 10]], dtype=np.float64)
    b = np.array([[1, 1, 3, 3], [2, 0, 6, 2], [0, 0, 5, 10]], dtype=np.float64)
    # overlap 1 of union 4 + 4 - 1; overlap 4 of union 8 + 8 - 4; b inside a, half its area
    np.testing.assert_allclose(np.diag(box_iou(a, b)), [1 / 7, 1 / 3, 1 / 2], rtol=1e-12)
    assert box_iou(a, b)[0, 2] == pytest.approx(4 / 50)  # [0,0,2,2] inside [0,0,5,10]: 4 of 50


def test_box_iou_disjoint_and_touching_are_zero():
    a = np.array([[0.0, 0.0, 1.0, 1.0]])
    b = np.array([[1.0, 0.0, 2.0, 1.0], [0.0, 1.0, 1.0, 2.0], [5.0, 5.0, 6.0, 9.0]])
    np.testing.assert_array_equal(box_iou(a, b), [[0.0, 0.0, 0.0]])


def test_box_iou_zero_area_boxes_are_zero_without_warnings():
    # pytest turns the RuntimeWarning of a 0/0 into an error
    a = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 4.0, 0.0]])
    np.testing.assert_array_equal(box_iou(a, a), np.zeros((2, 2)))


@given(st.lists(grid_box, min_size=1, max_size=8), st.lists(grid_box, min_size=1, max_size=8))
def test_box_iou_matches_reference_symmetric_and_bounded(a, b):
    got = box_iou(np.asarray(a), np.asarray(b))
    assert got.shape == (len(a), len(b))
    expected = np.array([[ref_iou(p, q) for q in b] for p in a])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(got, box_iou(np.asarray(b), np.asarray(a)).T)
    assert np.all((got >= 0) & (got <= 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_box_iou_of_many_boxes_against_few_is_the_direct_matrix_bit_for_bit(dtype):
    # box_iou computes a long list against a short one transposed (the long axis inner);
    # the matcher relies on getting the very numbers of the direct (N, M) computation.
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 100, (300, 2))
    many = np.concatenate([xy, xy + rng.uniform(0.5, 60, (300, 2))], axis=1).astype(dtype)
    few = many[[3, 70, 71]] + dtype(0.25)
    a, b = many, few
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    direct = np.minimum(inter / (area_a[:, None] + area_b[None, :] - inter), 1)
    assert np.count_nonzero(direct) > 3
    np.testing.assert_array_equal(box_iou(many, few), direct)
    np.testing.assert_array_equal(box_iou(few, many), direct.T)


@given(real_boxes(6))
def test_box_iou_of_a_box_with_itself_is_one(boxes):
    np.testing.assert_allclose(np.diag(box_iou(boxes, boxes)), 1.0, rtol=1e-12)


def test_box_iou_dtype():
    a32 = np.array([[0, 0, 2, 2]], dtype=np.float32)
    assert box_iou(a32, a32).dtype == np.float32
    assert box_iou(a32, a32.astype(np.float64)).dtype == np.float64
    assert box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 1, 3, 3]])).dtype == np.float64
    assert box_iou(np.zeros((0, 4)), a32).shape == (0, 1)


# ----------------------------------------------------------------------------- box coder


def test_encode_by_hand():
    anchor = np.array([[0.0, 0.0, 10.0, 20.0]])  # center (5, 10), size 10 x 20
    box = np.array([[2.0, 4.0, 22.0, 24.0]])  # center (12, 14), size 20 x 20
    np.testing.assert_allclose(encode_boxes(anchor, box), [[0.7, 0.2, math.log(2), 0.0]], atol=1e-15)
    np.testing.assert_allclose(
        encode_boxes(anchor, box, weights=(10, 10, 5, 5)), [[7.0, 2.0, 5 * math.log(2), 0.0]], atol=1e-14
    )


def test_decode_by_hand():
    anchor = np.array([[0.0, 0.0, 10.0, 10.0]])
    deltas = np.array([[0.1, 0.2, math.log(2), 0.0]])
    # center (5 + 1, 5 + 2), size 20 x 10
    np.testing.assert_allclose(decode_boxes(anchor, deltas), [[-4.0, 2.0, 16.0, 12.0]], atol=1e-12)


@given(real_boxes(5), real_boxes(5), st.sampled_from([(1, 1, 1, 1), (10, 10, 5, 5), (0.5, 2, 3, 0.25)]))
def test_encode_decode_round_trip(anchors, boxes, weights):
    # sides in [1, 50]: w / wa <= 50 < 1000 / 16, so the decode clamp never bites
    back = decode_boxes(anchors, encode_boxes(anchors, boxes, weights), weights)
    np.testing.assert_allclose(back, boxes, rtol=1e-5, atol=1e-9)


def test_decode_clamps_dw_dh_at_log_1000_over_16():
    assert DELTA_CLAMP == pytest.approx(math.log(62.5))
    anchor = np.array([[0.0, 0.0, 10.0, 10.0]] * 3)
    deltas = np.array([[0, 0, 10.0, 4.0], [0, 0, math.log(1000 / 16), -2.0], [0, 0, 20.0, 0.0]])
    boxes = decode_boxes(anchor, deltas, weights=(1, 1, 1, 1))
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    np.testing.assert_allclose(w[:2], [625.0, 625.0], rtol=1e-12)  # 10 * 1000 / 16
    np.testing.assert_allclose(h[:2], [10 * math.exp(4.0), 10 * math.exp(-2.0)], rtol=1e-12)
    np.testing.assert_allclose(boxes[0, [0, 2]], [5 - 312.5, 5 + 312.5], rtol=1e-12)
    # only from above: a hugely negative dw underflows exp() to a width of exactly 0, without a warning
    tiny = decode_boxes(anchor[:1], np.array([[0, 0, -1000.0, 0]]))
    assert tiny[0, 2] - tiny[0, 0] == 0.0
    # the clamp applies to dw / ww: 20 / 2 = 10 is clamped as well
    w_weighted = decode_boxes(anchor, deltas, weights=(1, 1, 2, 1))
    assert w_weighted[2, 2] - w_weighted[2, 0] == pytest.approx(625.0)


def test_coder_preserves_float32():
    anchors = np.array([[0, 0, 10, 10]], dtype=np.float32)
    boxes = np.array([[1, 2, 8, 9]], dtype=np.float32)
    deltas = encode_boxes(anchors, boxes)
    assert deltas.dtype == np.float32
    assert decode_boxes(anchors, deltas).dtype == np.float32


# ----------------------------------------------------------------------------- NMS


@given(
    st.lists(st.tuples(grid_box, st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])), max_size=12),
    st.sampled_from([0.0, 1 / 3, 0.5, 0.7, 1.0]),
)
def test_nms_matches_bruteforce_reference(items, threshold):
    boxes = [b for b, _ in items]
    scores = [s for _, s in items]
    got = nms(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores), threshold)
    assert got.dtype == np.int64
    assert got.tolist() == ref_nms(boxes, scores, threshold)


def test_nms_across_blocks_matches_the_reference():
    # More boxes than one block of IoUs (_NMS_BLOCK): a box of a later block must still be
    # suppressed by a kept box of an earlier one. Integer corners make ties and equal IoUs common.
    rng = np.random.default_rng(7)
    n = 2 * _NMS_BLOCK + 37
    corner = rng.integers(0, 40, size=(n, 2))
    boxes = np.concatenate([corner, corner + rng.integers(0, 12, size=(n, 2))], axis=1).astype(np.float64)
    scores = rng.integers(0, 50, size=n) / 50.0
    for threshold in (0.0, 0.3, 0.5):
        got = nms(boxes, scores, threshold)
        assert got.tolist() == ref_nms(boxes.tolist(), scores.tolist(), threshold)
        assert len(got) > _NMS_BLOCK // 4  # the later blocks kept boxes too: the test saw them


@st.composite
def nms_boundary_scenes(draw):
    """Boxes with IoUs exactly on the NMS threshold and exact score ties (issue 20).

    The threshold p / q is 1/2, 2/5 or 1/3. Groups sit 1000 apart on x (IoU 0 across groups):
    always a pair at IoU exactly p / q (both kept: not greater) and an identical pair with equal
    scores (the first in input order is kept); then, drawn, more of those, touching pairs (IoU 0)
    and a zero-area box inside another. Scores come from {0.25, 0.5, 0.75}, labels from {0, 1}; the
    boxes are shuffled. One scene in six is empty. Returns (boxes, scores, labels, threshold, pairs),
    pairs being (box, box, p, q) with IoU exactly p / q.
    """
    p, q = draw(st.sampled_from([(1, 2), (2, 5), (1, 3)]))
    if draw(st.integers(0, 5)) == 0:
        return [], [], [], p / q, []
    score = st.sampled_from([0.25, 0.5, 0.75])
    kinds = ["threshold", "identical"] + draw(st.lists(st.sampled_from(["threshold", "identical", "touching",
                                                                         "zero area"]), max_size=3))
    items, pairs = [], []
    for i, kind in enumerate(kinds):
        x0 = 1000.0 * i
        if kind == "threshold":
            pair, iou = draw(pair_at_iou(p, q, x0=x0)), (p, q)
        elif kind == "identical":
            pair, iou = draw(pair_at_iou(0, 1, x0=x0))[:1] * 2, (1, 1)
        elif kind == "touching":
            pair, iou = draw(pair_at_iou(0, 1, x0=x0)), (0, 1)
        else:  # a zero-area box (a vertical segment) inside a square
            u = 2.0 ** draw(st.integers(-2, 2))
            pair, iou = [(x0, 0.0, x0 + 4 * u, 4 * u), (x0 + u, u, x0 + u, 3 * u)], (0, 1)
        pairs.append((*pair, *iou))
        s = draw(score)
        same_label = draw(st.integers(0, 1))
        for box in pair:  # an identical pair shares score and label: only input order tells them apart
            items.append((box, s if kind == "identical" else draw(score),
                          same_label if kind == "identical" else draw(st.integers(0, 1))))
    items = draw(st.permutations(items))
    return [b for b, _, _ in items], [s for _, s, _ in items], [c for _, _, c in items], p / q, pairs


@given(nms_boundary_scenes(), st.sampled_from([np.float32, np.float64]))
def test_nms_matches_reference_on_the_threshold_and_ties(scene, dtype):
    boxes, scores, labels, threshold, pairs = scene
    for a, b, p, q in pairs:  # the construction is exact: IoU is p / q, and the float IoU its nearest float
        assert exact_iou(a, b) == Fraction(p, q) and ref_iou(a, b) == p / q
    arr = np.asarray(boxes, dtype).reshape(-1, 4)
    assert nms(arr, np.asarray(scores), threshold).tolist() == ref_nms(boxes, scores, threshold)
    kept = []
    for c in set(labels):
        members = [i for i in range(len(boxes)) if labels[i] == c]
        kept += [members[k] for k in ref_nms([boxes[i] for i in members], [scores[i] for i in members], threshold)]
    got = batched_nms(arr, np.asarray(scores), np.asarray(labels, dtype=np.int64), threshold)
    assert got.tolist() == sorted(kept, key=lambda i: (-scores[i], i))


def test_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.9, 0.8], dtype=np.float32)
    # 1 and 2 tie at 0.9 and stay in input order; 1 suppresses 0 (IoU 9/11) and 3 (same box as 0)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    # IoU of 0 and 3 is exactly 1: not greater than a threshold of 1
    assert nms(boxes, scores, 1.0).tolist() == [1, 2, 0, 3]


def test_nms_empty():
    got = nms(np.zeros((0, 4)), np.zeros(0), 0.5)
    assert got.shape == (0,) and got.dtype == np.int64


@given(
    st.lists(st.tuples(grid_box, st.sampled_from([0.1, 0.5, 0.9]), st.integers(0, 2)), max_size=12),
    st.sampled_from([0.0, 0.5, 1.0]),
)
def test_batched_nms_is_per_class_nms(items, threshold):
    boxes = [b for b, _, _ in items]
    scores = [s for _, s, _ in items]
    labels = [c for _, _, c in items]
    kept = []
    for c in set(labels):
        members = [i for i in range(len(items)) if labels[i] == c]
        kept += [members[k] for k in ref_nms([boxes[i] for i in members], [scores[i] for i in members], threshold)]
    expected = sorted(kept, key=lambda i: (-scores[i], i))
    got = batched_nms(
        np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores), np.asarray(labels, dtype=np.int64),
        threshold,
    )
    assert got.dtype == np.int64
    assert got.tolist() == expected


def test_batched_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=np.float64)
    scores = np.array([0.5, 0.7, 0.6])
    labels = np.array([0, 1, 0])
    # same box: 2 suppresses 0 within class 0; 1 is another class
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [1, 2]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: box_iou(np.zeros(4), np.zeros((1, 4))), r"^a must be an array of shape \(N, 4\), got shape \(4,\)$"),
        (lambda: box_iou(np.zeros((1, 4)), np.zeros((1, 5))), r"^b must be an array of shape \(N, 4\), got shape \(1, 5\)$"),
        (lambda: box_iou(np.array([[0, 0, np.nan, 1]]), np.zeros((1, 4))), r"^a must be finite, got NaN values$"),
        (lambda: box_iou(np.array([[2.0, 0, 1, 1]]), np.zeros((1, 4))), r"^a must be .*x2 >= x1"),
        (lambda: box_area(np.array([[0.0, 3, 1, 1]])), r"^boxes must be"),
        (lambda: encode_boxes(np.array([[0.0, 0, 1, 1]]), np.array([[0.0, 0, 0, 1]])), r"^boxes must be .*x2 > x1"),
        (lambda: encode_boxes(np.array([[0.0, 0, 1, 1]]), np.zeros((2, 4)) + [0, 0, 1, 1]), r"^boxes must be an array of the shape of anchors \(1, 4\), got shape \(2, 4\)$"),
        (lambda: decode_boxes(np.array([[0.0, 0, 1, 0]]), np.zeros((1, 4))), r"^anchors must be"),
        (lambda: decode_boxes(np.array([[0.0, 0, 1, 1]]), np.array([[0, np.nan, 0, 0]])), r"^deltas must be finite"),
        (lambda: decode_boxes(np.array([[0.0, 0, 1, 1]]), np.zeros((1, 4)), (1, 1, 0, 1)), r"^weights\[2\] must be a finite real number > 0, got 0\.0$"),
        (lambda: nms(np.zeros((2, 4)), np.zeros(3), 0.5), r"^scores must be an array of shape \(2,\), got shape \(3,\)$"),
        (lambda: nms(np.zeros((1, 4)), np.array([np.nan]), 0.5), r"^scores must be finite"),
        (lambda: nms(np.zeros((1, 4)), np.zeros(1), 1.5), r"^iou_threshold must be a finite real number in \[0, 1\], got 1\.5$"),
        (lambda: batched_nms(np.zeros((1, 4)), np.zeros(1), np.zeros(1), 0.5), r"^labels must be an array of integers \(an int dtype\), got dtype float64$"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.gpu
def test_box_ops_on_gpu_match_numpy(cupy):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (20, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 30, (20, 2))], axis=1)
    anchors = boxes[::-1].copy()
    on_gpu = cupy.asarray(boxes), cupy.asarray(anchors)
    np.testing.assert_allclose(cupy.asnumpy(box_iou(*on_gpu)), box_iou(boxes, anchors), rtol=1e-12)
    deltas = encode_boxes(anchors, boxes)
    np.testing.assert_allclose(cupy.asnumpy(encode_boxes(on_gpu[1], on_gpu[0])), deltas, rtol=1e-12)
    np.testing.assert_allclose(
        cupy.asnumpy(decode_boxes(on_gpu[1], cupy.asarray(deltas))), decode_boxes(anchors, deltas), rtol=1e-12
    )
    scores = rng.uniform(size=20)
    assert nms(on_gpu[0], cupy.asarray(scores), 0.5).tolist() == nms(boxes, scores, 0.5).tolist()
