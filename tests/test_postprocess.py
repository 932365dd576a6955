"""Tests for detection/postprocess.py: scores and deltas -> detections (paper §4.1, inference)."""

import math
from fractions import Fraction

import numpy as np
import pytest
from _exact_iou import exact_iou, pair_at_iou
from hypothesis import given
from hypothesis import strategies as st

from numpy_retinanet.detection.postprocess import postprocess
from numpy_retinanet.nn import losses

LOW = -10.0  # sigmoid(-10) = 4.5e-5, far below the 0.05 threshold


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def row_of_anchors(n):
    """n disjoint 10 x 10 anchors along the top of the image, 20 px apart."""
    return np.array([[20.0 * i, 0.0, 20.0 * i + 10, 10.0] for i in range(n)], dtype=np.float32)


def heads(anchors, num_classes, n_images=1):
    """Logits that score nothing and zero deltas, for tests to raise a few entries."""
    m = len(anchors)
    return np.full((n_images, m, num_classes), LOW, np.float32), np.zeros((n_images, m, 4), np.float32)


def test_one_confident_anchor_gives_its_box_and_sigmoid_score():
    anchors = row_of_anchors(5)
    logits, deltas = heads(anchors, 3)
    logits[0, 2, 1] = 2.0
    (det,) = postprocess(logits, deltas, anchors, (100, 100))
    np.testing.assert_array_equal(det["boxes"], anchors[2:3])
    np.testing.assert_allclose(det["scores"], [sigmoid(2.0)], rtol=1e-6)
    assert det["labels"].tolist() == [1]
    assert (det["boxes"].dtype, det["scores"].dtype, det["labels"].dtype) == (np.float32, np.float32, np.int64)
    assert all(isinstance(v, np.ndarray) for v in det.values())


def test_deltas_are_decoded_and_boxes_clipped_to_height_and_width():
    anchors = np.array([[0, 0, 10, 10], [90, 40, 100, 50], [150, 40, 210, 60]], dtype=np.float32)
    logits, deltas = heads(anchors, 1)
    logits[0, :, 0] = [3.0, 2.0, 1.0]
    deltas[0, 0] = [0.1, 0.2, math.log(2.0), 0.0]  # center (6, 7), size 20 x 10: [-4, 2, 16, 12]
    deltas[0, 1] = [0.5, 0.0, 0.0, 0.0]  # shifted 5 px right: [95, 40, 105, 50]
    (det,) = postprocess(logits, deltas, anchors, (50, 200))  # height 50, width 200
    expected = [[0, 2, 16, 12], [95, 40, 105, 50], [150, 40, 200, 50]]
    np.testing.assert_allclose(det["boxes"], expected, rtol=1e-6, atol=1e-5)


def test_boxes_left_empty_by_clipping_are_removed():
    anchors = np.array([[120, 0, 130, 10], [0, 60, 10, 70], [0, 0, 10, 10]], dtype=np.float32)
    logits, deltas = heads(anchors, 1)
    logits[0, :2, 0] = 5.0  # both lie outside a 50 x 100 image
    (det,) = postprocess(logits, deltas, anchors, (50, 100))
    assert det["boxes"].shape == (0, 4) and det["scores"].shape == (0,) and det["labels"].shape == (0,)
    assert (det["boxes"].dtype, det["scores"].dtype, det["labels"].dtype) == (np.float32, np.float32, np.int64)


def test_nothing_above_threshold_gives_empty_arrays_for_every_image():
    anchors = row_of_anchors(4)
    logits, deltas = heads(anchors, 2, n_images=3)
    out = postprocess(logits, deltas, anchors, (64, 64))
    assert len(out) == 3
    for det in out:
        assert det["boxes"].shape == (0, 4) and det["boxes"].dtype == np.float32
        assert det["scores"].shape == (0,) and det["scores"].dtype == np.float32
        assert det["labels"].shape == (0,) and det["labels"].dtype == np.int64


def test_score_threshold_is_strict():
    anchors = row_of_anchors(1)
    logits, deltas = heads(anchors, 1)
    logits[0, 0, 0] = 0.0  # score exactly 0.5
    assert len(postprocess(logits, deltas, anchors, (100, 100), score_threshold=0.5)[0]["scores"]) == 0
    assert len(postprocess(logits, deltas, anchors, (100, 100), score_threshold=0.4999)[0]["scores"]) == 1
    # default 0.05: sigmoid(-3) = 0.047 is dropped, sigmoid(-2.9) = 0.052 kept
    logits[0, 0, 0] = -3.0
    assert len(postprocess(logits, deltas, anchors, (100, 100))[0]["scores"]) == 0
    logits[0, 0, 0] = -2.9
    assert len(postprocess(logits, deltas, anchors, (100, 100))[0]["scores"]) == 1


def test_topk_per_level():
    anchors = row_of_anchors(5)
    logits, deltas = heads(anchors, 2)
    logits[0, :, 0] = [1.0, 3.0, 2.0, 4.0, 0.0]  # all above threshold

    def first(det):
        return [int(b[0]) // 20 for b in det["boxes"]]  # anchor index from x1

    def run(**kw):
        return postprocess(logits, deltas, anchors, (100, 100), **kw)[0]

    assert first(run(topk_per_level=1, level_sizes=[2, 3])) == [3, 1]
    assert first(run(topk_per_level=2, level_sizes=[2, 3])) == [3, 1, 2, 0]
    assert first(run(topk_per_level=1)) == [3]  # no level_sizes: one level
    # top-k counts (anchor, class) pairs: a second class on anchor 3 takes the only place
    logits[0, 3, 1] = 5.0
    det = run(topk_per_level=1)
    assert first(det) == [3] and det["labels"].tolist() == [1]


def test_max_detections_keeps_the_best_sorted():
    anchors = row_of_anchors(5)
    logits, deltas = heads(anchors, 1)
    logits[0, :, 0] = [0.5, 2.0, 1.0, 3.0, 1.5]
    det = postprocess(logits, deltas, anchors, (100, 100), max_detections=3)[0]
    np.testing.assert_allclose(det["scores"], [sigmoid(3.0), sigmoid(2.0), sigmoid(1.5)], rtol=1e-6)
    np.testing.assert_array_equal(det["boxes"], anchors[[3, 1, 4]])


def test_equal_scores_keep_anchor_order():
    anchors = row_of_anchors(4)
    logits, deltas = heads(anchors, 2)
    logits[0, 3, 0] = logits[0, 1, 1] = logits[0, 2, 0] = 1.0
    det = postprocess(logits, deltas, anchors, (100, 100))[0]
    np.testing.assert_array_equal(det["boxes"], anchors[[1, 2, 3]])
    assert det["labels"].tolist() == [1, 0, 0]


def test_nms_is_per_class():
    anchors = np.array([[0, 0, 10, 10], [1, 0, 11, 10]], dtype=np.float32)  # IoU 9/11
    logits, deltas = heads(anchors, 2)
    logits[0, 0, 0], logits[0, 1, 0] = 1.0, 2.0
    det = postprocess(logits, deltas, anchors, (100, 100))[0]
    np.testing.assert_array_equal(det["boxes"], anchors[[1]])
    assert len(postprocess(logits, deltas, anchors, (100, 100), nms_threshold=0.9)[0]["scores"]) == 2
    logits[0, 0, 0], logits[0, 0, 1] = LOW, 1.0  # anchor 0 now scores class 1: no suppression
    det = postprocess(logits, deltas, anchors, (100, 100))[0]
    assert det["labels"].tolist() == [0, 1]


def test_images_are_processed_independently():
    anchors = row_of_anchors(3)
    logits, deltas = heads(anchors, 1, n_images=2)
    logits[0, 0, 0] = 1.0
    logits[1, 2, 0] = 2.0
    a, b = postprocess(logits, deltas, anchors, (100, 100))
    np.testing.assert_array_equal(a["boxes"], anchors[[0]])
    np.testing.assert_array_equal(b["boxes"], anchors[[2]])


# ----------------------------------------------------------------------------- reference pipeline


def ref_iou(a, b):
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def ref_postprocess(logits, deltas, anchors, height, width, level_sizes, thr, topk, nms_thr, max_det):
    """Detectron's inference for one image, written out candidate by candidate."""
    candidates = []
    start = 0
    for size in level_sizes:
        level = [
            (sigmoid(logits[a][k]), a, k) for a in range(start, start + size) for k in range(len(logits[a]))
        ]
        level = sorted([c for c in level if c[0] > thr], key=lambda c: (-c[0], c[1], c[2]))[:topk]
        candidates += level
        start += size
    dets = []
    for score, a, k in candidates:
        x1, y1, x2, y2 = anchors[a]
        wa, ha = x2 - x1, y2 - y1
        cx, cy = x1 + wa / 2 + deltas[a][0] * wa, y1 + ha / 2 + deltas[a][1] * ha
        w, h = wa * math.exp(deltas[a][2]), ha * math.exp(deltas[a][3])
        box = (
            min(max(cx - w / 2, 0.0), width), min(max(cy - h / 2, 0.0), height),
            min(max(cx + w / 2, 0.0), width), min(max(cy + h / 2, 0.0), height),
        )
        if box[2] > box[0] and box[3] > box[1]:
            dets.append((score, a, k, box))
    kept = []
    for d in sorted(dets, key=lambda d: (-d[0], d[1], d[2])):
        if all(ref_iou(d[3], e[3]) <= nms_thr for e in kept if e[2] == d[2]):
            kept.append(d)
    return kept[:max_det]


@st.composite
def detector_outputs(draw):
    m = draw(st.integers(1, 8))
    k = draw(st.integers(1, 3))
    corner = st.integers(-10, 50)
    side = st.integers(4, 30)
    anchors = []
    for _ in range(m):
        x, y, w, h = draw(corner), draw(corner), draw(side), draw(side)
        anchors.append((float(x), float(y), float(x + w), float(y + h)))
    logit = st.sampled_from([-10.0, -3.0, -1.0, 0.0, 0.5, 2.0])
    logits = [[draw(logit) for _ in range(k)] for _ in range(m)]
    delta = st.sampled_from([0.0, 0.1, -0.25, 0.5])
    deltas = [[draw(delta) for _ in range(4)] for _ in range(m)]
    cut = draw(st.integers(0, m - 1))
    level_sizes = [m] if cut == 0 else [cut, m - cut]
    return anchors, logits, deltas, level_sizes


@given(
    detector_outputs(),
    st.integers(1, 6),
    st.sampled_from([0.3, 0.5]),
    st.integers(1, 6),
)
def test_matches_reference_pipeline(outputs, topk, nms_thr, max_det):
    anchors, logits, deltas, level_sizes = outputs
    height, width = 40.0, 45.0
    (det,) = postprocess(
        np.asarray([logits]), np.asarray([deltas]), np.asarray(anchors), (height, width),
        topk_per_level=topk, nms_threshold=nms_thr, max_detections=max_det, level_sizes=level_sizes,
    )
    expected = ref_postprocess(logits, deltas, anchors, height, width, level_sizes, 0.05, topk, nms_thr, max_det)
    assert det["labels"].tolist() == [d[2] for d in expected]
    np.testing.assert_allclose(det["scores"], [d[0] for d in expected], rtol=1e-6)
    np.testing.assert_allclose(det["boxes"], np.asarray([d[3] for d in expected]).reshape(-1, 4), rtol=1e-6, atol=1e-4)


@st.composite
def boundary_outputs(draw):
    """Detector outputs whose boxes overlap exactly at the NMS threshold and whose scores tie exactly.

    Deltas are 0, so each detection's box is its anchor (every coordinate a small integer times
    a power of two: decoding is exact). The NMS threshold p / q is 1/2, 2/5 or 1/3. Groups of two
    anchors sit 1000 apart on x: always a pair at IoU exactly p / q and a pair at IoU 2/3 (above
    every threshold), each pair with equal logits in one class, so only (anchor, class) order
    decides which survives; drawn, more of those, touching pairs (IoU 0), and a pair outside the
    image (empty once clipped). Logits come from {-10, 0, 1, 2} (-10: below the score threshold,
    and an image can be all -10: no detections). Returns (anchors, logits (N, M, K), level sizes,
    (height, width), threshold, pairs), pairs being (anchor, anchor, p, q) with IoU exactly p / q.
    """
    p, q = draw(st.sampled_from([(1, 2), (2, 5), (1, 3)]))
    k = draw(st.integers(1, 2))
    kinds = ["threshold", "above"] + draw(st.lists(st.sampled_from(["threshold", "above", "touching", "outside"]),
                                                   max_size=2))
    logit = st.sampled_from([LOW, 0.0, 1.0, 2.0])
    height, width = 400.0, 1000.0 * len(kinds)
    anchors, pairs = [], []
    for i, kind in enumerate(kinds):
        iou = {"threshold": (p, q), "above": (2, 3)}.get(kind, (0, 1))
        pair = draw(pair_at_iou(*iou, x0=1000.0 * i))
        if kind == "outside":  # right of the image: clipping leaves zero width
            pair = [(x1 + width + 1, y1, x2 + width + 1, y2) for x1, y1, x2, y2 in pair]
        anchors += pair
        pairs.append((*pair, *iou))
    images = []
    for _ in range(draw(st.integers(1, 2))):
        if draw(st.integers(0, 3)) == 0:  # an image with no detections
            images.append([[LOW] * k for _ in anchors])
            continue
        rows = []
        for _ in kinds:  # the pair's two anchors tie in one class; the others are drawn
            tied_class, tied_logit = draw(st.integers(0, k - 1)), draw(logit)
            row = [draw(logit) for _ in range(k)]
            row[tied_class] = tied_logit
            rows += [row, [tied_logit if c == tied_class else draw(logit) for c in range(k)]]
        images.append(rows)
    order = draw(st.permutations(range(len(anchors))))
    anchors = [anchors[a] for a in order]
    logits = [[image[a] for a in order] for image in images]
    cut = draw(st.integers(0, len(anchors) - 1))
    level_sizes = [len(anchors)] if cut == 0 else [cut, len(anchors) - cut]
    return anchors, logits, level_sizes, (height, width), p / q, pairs


@given(boundary_outputs(), st.integers(1, 4), st.integers(1, 8), st.sampled_from([np.float32, np.float64]))
def test_matches_reference_pipeline_on_the_nms_threshold_and_ties(outputs, topk, max_det, dtype):
    anchors, logits, level_sizes, (height, width), nms_thr, pairs = outputs
    for a, b, p, q in pairs:  # the construction is exact: IoU is p / q, and the float IoU its nearest float
        assert exact_iou(a, b) == Fraction(p, q) and ref_iou(a, b) == p / q
    zeros = [[0.0] * 4 for _ in anchors]
    got = postprocess(np.asarray(logits, dtype), np.zeros((len(logits), len(anchors), 4), dtype),
                      np.asarray(anchors, dtype), (height, width), topk_per_level=topk, nms_threshold=nms_thr,
                      max_detections=max_det, level_sizes=level_sizes)
    for det, image in zip(got, logits):
        expected = ref_postprocess(image, zeros, anchors, height, width, level_sizes, 0.05, topk, nms_thr, max_det)
        assert det["labels"].tolist() == [d[2] for d in expected]
        # Boxes are anchors, exactly: equality tells which of two tied anchors was kept.
        assert det["boxes"].tolist() == [list(d[3]) for d in expected]
        np.testing.assert_allclose(det["scores"], [d[0] for d in expected], rtol=1e-6)


# ----------------------------------------------------------------------------- bad input

A3 = row_of_anchors(3)
L3, D3 = heads(A3, 2)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: postprocess(L3[0], D3, A3, (10, 10)), r"^logits must be an array of shape \(N, M, K\), got shape \(\d+, \d+\)$"),
        (lambda: postprocess(L3, D3[:, :2], A3, (10, 10)), r"^deltas must be an array of shape \(1, 3, 4\), got shape \(1, 2, 4\)$"),
        (lambda: postprocess(L3, D3, A3[:2], (10, 10)), r"^anchors must be an array of shape \(3, 4\), got shape \(2, 4\)$"),
        (lambda: postprocess(L3, D3, A3[:, ::-1], (10, 10)), r"^anchors must be"),
        (lambda: postprocess(np.where(L3 > 0, 0, np.nan), D3, A3, (10, 10)), r"^logits must be finite, got NaN values$"),
        (lambda: postprocess(L3.astype(np.int64), D3, A3, (10, 10)), r"^logits must be an array of floating dtype .*, got dtype int64$"),
        (lambda: postprocess(L3, D3, A3, (10,)), r"^image_size must be a pair"),
        (lambda: postprocess(L3, D3, A3, (10, -1)), r"^image_size\[1\] must be a finite real number > 0, got -1\.0$"),
        (lambda: postprocess(L3, D3, A3, (10, 10), score_threshold=-0.1), r"^score_threshold must be a finite real number in \[0, 1\], got -0\.1$"),
        (lambda: postprocess(L3, D3, A3, (10, 10), topk_per_level=0), r"^topk_per_level must be an int >= 1, got 0$"),
        (lambda: postprocess(L3, D3, A3, (10, 10), nms_threshold=2), r"^nms_threshold must be a finite real number in \[0, 1\], got 2\.0$"),
        (lambda: postprocess(L3, D3, A3, (10, 10), max_detections=1.5), r"^max_detections must be an int >= 1, got 1\.5$"),
        (lambda: postprocess(L3, D3, A3, (10, 10), level_sizes=[1, 1]), r"^level_sizes .* summing to .* 3"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.gpu
def test_gpu_inputs_give_host_outputs(cupy):
    anchors = row_of_anchors(5)
    logits, deltas = heads(anchors, 3)
    logits[0, 2, 1] = 2.0
    logits[0, 4, 0] = 1.0
    (expected,) = postprocess(logits, deltas, anchors, (100, 100))
    (got,) = postprocess(cupy.asarray(logits), cupy.asarray(deltas), cupy.asarray(anchors), (100, 100))
    for key in ("boxes", "scores", "labels"):
        assert isinstance(got[key], np.ndarray)
        np.testing.assert_array_equal(got[key], expected[key])


def test_scores_are_the_one_sigmoid_of_the_logits():
    # postprocess keeps no sigmoid of its own: its scores are nn.losses.sigmoid, bit for bit.
    rng = np.random.default_rng(3)
    anchors = row_of_anchors(4)
    logits = rng.uniform(-3, 3, (1, 4, 2)).astype(np.float32)
    det = postprocess(logits, np.zeros((1, 4, 4), np.float32), anchors, (100, 100), score_threshold=0.0,
                      nms_threshold=1.0)[0]
    expected = losses.sigmoid(logits[0]).reshape(-1)
    order = np.argsort(-expected, kind="stable")
    np.testing.assert_array_equal(det["scores"], expected[order].astype(np.float32))
