"""COCO-style AP (evaluation/coco.py): hand-computed cases, a literal pycocotools oracle, invariants.

Reading guide for the hand-computed cases: with D detections of a class sorted by
score, TP/FP cumulate; recall rc = TP / num_gt, precision pr = TP / (TP + FP) made
monotone from the right; at each of the 101 recall thresholds r = 0, 0.01, ..., 1
the precision is pr[first i with rc[i] >= r], or 0 if there is none. AP at one IoU
threshold is the mean of those 101 numbers.
"""

from fractions import Fraction

import numpy as np
import pytest
from _exact_iou import exact_iou, float_iou, pair_at_iou
from hypothesis import given
from hypothesis import strategies as st

from numpy_retinanet.detection.boxes import box_iou
from numpy_retinanet.evaluation.coco import (
    COCO_IOU_THRESHOLDS,
    RECALL_THRESHOLDS,
    evaluate_detections,
)


def gt(boxes, labels):
    return {"boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4), "labels": np.array(labels, dtype=np.int64)}


def det(boxes, scores, labels):
    return {
        "boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4),
        "scores": np.array(scores, dtype=np.float64),
        "labels": np.array(labels, dtype=np.int64),
    }


NO_DETS = det([], [], [])
NO_GT = gt([], [])
A = [0, 0, 10, 10]
B = [20, 20, 40, 30]
FAR = [100, 100, 110, 110]


# ---------------------------------------------------------------- constants and IoU


def test_thresholds_are_cocos():
    np.testing.assert_allclose(COCO_IOU_THRESHOLDS, np.arange(10) * 0.05 + 0.5, atol=1e-12)
    assert 0.5 in COCO_IOU_THRESHOLDS and 0.75 in COCO_IOU_THRESHOLDS  # exact members
    assert len(RECALL_THRESHOLDS) == 101 and RECALL_THRESHOLDS[50] == 0.5


def test_iou_hand_values_are_pycocotools_bbiou():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [5, 5, 15, 15], [3, 3, 3, 8]], dtype=np.float64)
    b = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=np.float64)
    iou = box_iou(a, b)
    assert iou.shape == (4, 2)
    # identical; half inside (50 / 100); corner overlap 25 / (100 + 100 - 25); zero-width box;
    # column 2: no overlap with anything.
    np.testing.assert_array_equal(iou[:, 0], [1.0, 0.5, 25 / 175, 0.0])
    np.testing.assert_array_equal(iou[:, 1], [0.0, 0.0, 0.0, 0.0])
    # Two identical empty boxes: empty union, IoU 0 and no 0/0 warning.
    empty = np.array([[4.0, 4.0, 4.0, 4.0]])
    assert box_iou(empty, empty)[0, 0] == 0.0


# ---------------------------------------------------------------- hand-computed cases


def test_perfect_detections_give_one():
    dets = [det([A, B], [0.9, 0.8], [0, 1]), det([B], [0.7], [1])]
    gts = [gt([A, B], [0, 1]), gt([B], [1])]
    r = evaluate_detections(dets, gts, num_classes=2)
    assert r["AP"] == r["AP50"] == r["AP75"] == r["AR"] == 1.0
    assert r["per_class_AP"] == [1.0, 1.0]
    assert r["num_images"] == 2 and r["num_ground_truths"] == [1, 2]


def test_wrong_class_gives_zero_and_the_detected_class_without_gt_is_excluded():
    r = evaluate_detections([det([A], [0.9], [1])], [gt([A], [0])], num_classes=2)
    # class 0: one GT, no detections -> AP 0; class 1: no GT -> left out (nan).
    assert r["AP"] == 0.0 and r["AR"] == 0.0
    assert r["per_class_AP"][0] == 0.0 and np.isnan(r["per_class_AP"][1])


def test_no_overlap_gives_zero():
    r = evaluate_detections([det([FAR], [0.9], [0])], [gt([A], [0])], num_classes=1)
    assert r["AP"] == r["AP50"] == 0.0


def test_no_detections_at_all_gives_zero():
    r = evaluate_detections([NO_DETS, NO_DETS], [gt([A], [0]), gt([B], [1])], num_classes=2)
    assert r["AP"] == 0.0 and r["per_class_AP"] == [0.0, 0.0] and r["AR"] == 0.0


def test_lower_scored_duplicate_keeps_ap_one():
    # TP (0.9), duplicate (0.8) is FP: rc = [1, 1], pr = [1, 1/2]. Every r <= 1 first
    # reached at index 0 -> precision 1 -> AP 1.
    r = evaluate_detections([det([A, A], [0.9, 0.8], [0, 0])], [gt([A], [0])], num_classes=1)
    assert r["AP"] == 1.0


def test_higher_scored_false_positive_halves_ap():
    # FP (0.9) then TP (0.8): rc = [0, 1], pr = [0, 1/2] -> monotone [1/2, 1/2].
    # r = 0 -> index 0 -> 1/2; r in (0, 1] -> index 1 -> 1/2. AP = 1/2.
    r = evaluate_detections([det([FAR, A], [0.9, 0.8], [0, 0])], [gt([A], [0])], num_classes=1)
    assert r["AP"] == 0.5
    # The monotone curve is stored: 0.5 at every recall threshold.
    np.testing.assert_array_equal(r["precision"][:, :, 0], 0.5)


def test_false_positive_between_two_true_positives():
    # Two GTs. TP (0.9), FP (0.8), TP (0.7): rc = [1/2, 1/2, 1], pr = [1, 1/2, 2/3]
    # -> monotone [1, 2/3, 2/3]. r = 0.00..0.50 (51 values) -> index 0 -> 1;
    # r = 0.51..1.00 (50 values) -> index 2 -> 2/3. AP = (51 + 50 * 2/3) / 101.
    r = evaluate_detections(
        [det([A, FAR, B], [0.9, 0.8, 0.7], [0, 0, 0])], [gt([A, B], [0, 0])], num_classes=1
    )
    assert r["AP"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)


def test_equal_scores_keep_input_order_within_an_image():
    # Same score for an FP and a TP: the stable sort keeps input order.
    # [FP, TP] -> pr = [0, 1/2] -> AP 1/2; [TP, FP] -> pr = [1, 1/2] -> AP 1.
    fp_first = evaluate_detections([det([FAR, A], [0.8, 0.8], [0, 0])], [gt([A], [0])], num_classes=1)
    tp_first = evaluate_detections([det([A, FAR], [0.8, 0.8], [0, 0])], [gt([A], [0])], num_classes=1)
    assert fp_first["AP"] == 0.5 and tp_first["AP"] == 1.0


def test_equal_scores_across_images_keep_image_order():
    # Image 0 holds an FP, image 1 a TP, same score: concatenated in image order -> [FP, TP] -> 1/2.
    # Swapping the images gives [TP, FP] -> 1.
    fp_img = (det([FAR], [0.8], [0]), NO_GT)
    tp_img = (det([A], [0.8], [0]), gt([A], [0]))
    r1 = evaluate_detections([fp_img[0], tp_img[0]], [fp_img[1], tp_img[1]], num_classes=1)
    r2 = evaluate_detections([tp_img[0], fp_img[0]], [tp_img[1], fp_img[1]], num_classes=1)
    assert r1["AP"] == 0.5 and r2["AP"] == 1.0


def test_ties_resolve_in_image_then_input_order_for_many_detections():
    # Small sorts look stable with any algorithm; with dozens of tied scores only a
    # stable sort keeps the order. Breaking every tie explicitly in image order, then
    # input order (subtracting a tiny amount per position) must change nothing.
    rng = np.random.default_rng(0)
    dets, gts, position = [], [], 0
    for _ in range(3):
        # GT boxes 10 px wide in a row; detections copy a GT (TP or duplicate) or miss.
        g_boxes = [[20 * j, 0, 20 * j + 10, 10] for j in range(4)]
        d_boxes = [g_boxes[j] if j < 4 else FAR for j in rng.integers(0, 6, size=30)]
        scores = rng.choice([0.5, 0.6, 0.7], size=30)
        dets.append(det(d_boxes, scores, [0] * 30))
        gts.append(gt(g_boxes, [0] * 4))
    tied = evaluate_detections(dets, gts, num_classes=1)
    broken = []
    for d in dets:
        n = len(d["scores"])
        broken.append(dict(d, scores=d["scores"] - 1e-6 * np.arange(position, position + n)))
        position += n
    explicit = evaluate_detections(broken, gts, num_classes=1)
    np.testing.assert_array_equal(tied["precision"], explicit["precision"])


def test_empty_images_change_nothing_and_false_positive_images_lower_ap():
    base_d, base_g = [det([A], [0.9], [0])], [gt([A], [0])]
    base = evaluate_detections(base_d, base_g, num_classes=1)
    padded = evaluate_detections([NO_DETS] + base_d + [NO_DETS], [NO_GT] + base_g + [NO_GT], num_classes=1)
    assert base["AP"] == padded["AP"] == 1.0 and padded["num_images"] == 3
    # An image without GT but with an FP at 0.95 ranks above the TP: [FP, TP] -> AP 1/2.
    high = evaluate_detections(base_d + [det([A], [0.95], [0])], base_g + [NO_GT], num_classes=1)
    assert high["AP"] == 0.5
    # The same FP at 0.5 ranks below the TP: [TP, FP] -> AP 1.
    low = evaluate_detections(base_d + [det([A], [0.5], [0])], base_g + [NO_GT], num_classes=1)
    assert low["AP"] == 1.0


def test_class_without_ground_truth_is_excluded_from_the_mean():
    # class 0 perfect (AP 1); class 2 has only detections (no GT) -> excluded, not 0.
    dets = [det([A, B], [0.9, 0.99], [0, 2])]
    r = evaluate_detections(dets, [gt([A], [0])], num_classes=3)
    assert r["AP"] == 1.0
    assert r["per_class_AP"][0] == 1.0 and np.isnan(r["per_class_AP"][1]) and np.isnan(r["per_class_AP"][2])
    assert np.isnan(r["precision"][:, :, 1:]).all()


def test_no_ground_truth_anywhere_gives_nan():
    r = evaluate_detections([det([A], [0.9], [0])], [NO_GT], num_classes=2)
    assert all(np.isnan(r[k]) for k in ("AP", "AP50", "AP75", "AR"))


def test_iou_exactly_half_matches_at_050_but_not_at_055():
    # GT 10 x 10; detection its top half: intersection 50, union 100, IoU = 0.5 exactly.
    d, g = [det([[0, 0, 10, 5]], [0.9], [0])], [gt([A], [0])]
    r = evaluate_detections(d, g, num_classes=1, iou_thresholds=[0.5, 0.55])
    np.testing.assert_array_equal(r["precision"][0, :, 0], 1.0)
    np.testing.assert_array_equal(r["precision"][1, :, 0], 0.0)
    assert r["AP"] == 0.5
    # AP50 and AP75 exist only when their threshold is evaluated.
    only_055 = evaluate_detections(d, g, num_classes=1, iou_thresholds=[0.55])
    assert only_055["AP"] == 0.0 and np.isnan(only_055["AP50"]) and np.isnan(only_055["AP75"])
    # With COCO's 10 thresholds only 0.50 passes: AP = 1/10.
    coco = evaluate_detections(d, g, num_classes=1)
    assert coco["AP50"] == 1.0 and coco["AP75"] == 0.0
    assert coco["AP"] == pytest.approx(0.1, abs=1e-12)


def test_ap_is_the_fraction_of_iou_thresholds_reached():
    # GT 100 x 100; detection 100 x 72: IoU = 7200 / 10000 = 0.72. Thresholds 0.50, 0.55,
    # 0.60, 0.65, 0.70 pass (AP 1 each), 0.75 .. 0.95 fail (AP 0): AP = 5/10.
    r = evaluate_detections([det([[0, 0, 100, 72]], [0.9], [0])], [gt([[0, 0, 100, 100]], [0])], num_classes=1)
    assert r["AP50"] == 1.0 and r["AP75"] == 0.0
    assert r["AP"] == pytest.approx(0.5, abs=1e-12)
    assert r["AR"] == pytest.approx(0.5, abs=1e-12)  # recall 1 at 5 thresholds, 0 at 5


def test_max_detections_is_per_image_and_per_class():
    # class 0: FP 0.9, FP 0.8, TP 0.7. class 1: TP 0.99 and two duplicates (0.98, 0.97).
    dets = [det([FAR, FAR, A, B, B, B], [0.9, 0.8, 0.7, 0.99, 0.98, 0.97], [0, 0, 0, 1, 1, 1])]
    gts = [gt([A, B], [0, 1])]
    # Keep 2 per class: class 0 keeps only its two FPs -> AP 0; class 1 [TP, FP] -> AP 1.
    r2 = evaluate_detections(dets, gts, num_classes=2, max_detections=2)
    assert r2["per_class_AP"] == [0.0, 1.0]
    # Keep 3: class 0 keeps all three although the image has 6 detections:
    # rc = [0, 0, 1], pr = [0, 0, 1/3] -> monotone [1/3]*3 -> AP 1/3.
    r3 = evaluate_detections(dets, gts, num_classes=2, max_detections=3)
    assert r3["per_class_AP"][0] == pytest.approx(1 / 3, abs=1e-12)
    assert r3["per_class_AP"][1] == 1.0


def test_matching_is_greedy_in_score_order():
    # Rows 0..10 throughout, so IoU is the 1-D IoU of the x intervals.
    # GTs g1 = [0, 10], g2 = [4, 14]. Detection a = [3, 13] (score 0.9): IoU 7/13 = 0.538
    # with g1 and 9/11 = 0.818 with g2; detection b = g2 (score 0.8): IoU 1 with g2,
    # 6/14 = 0.43 with g1.
    # t = 0.50 .. 0.80 (7 thresholds): a takes g2 (higher IoU); b cannot take g2 and g1 is
    #   below t -> [TP, FP], rc = [1/2, 1/2] -> precision 1 for r <= 0.5 (51 values): 51/101.
    # t = 0.85 .. 0.95 (3 thresholds): a matches nothing; b takes g2 -> [FP, TP],
    #   pr = [0, 1/2] -> monotone [1/2, 1/2]; r <= 0.5 (51 values) -> 1/2: 25.5/101.
    # A best assignment (a -> g1, b -> g2) would give AP50 = 1; greedy gives 51/101.
    dets = [det([[3, 0, 13, 10], [4, 0, 14, 10]], [0.9, 0.8], [0, 0])]
    gts = [gt([[0, 0, 10, 10], [4, 0, 14, 10]], [0, 0])]
    r = evaluate_detections(dets, gts, num_classes=1)
    assert r["AP50"] == pytest.approx(51 / 101, abs=1e-12)
    assert r["AP"] == pytest.approx((7 * 51 + 3 * 25.5) / (10 * 101), abs=1e-12)


def test_equal_iou_goes_to_the_later_ground_truth():
    # GTs g1 = [0, 10] and g2 = [10, 20] (rows 0..10); detection a = [0, 20] (0.9) has IoU
    # exactly 0.5 with both: pycocotools gives it the later one, g2. Then b = g2 (0.8)
    # finds g2 taken and IoU 0 with g1 -> FP. At t = 0.5: [TP, FP] -> 51/101 (had a taken
    # g1, b would be a TP and AP50 would be 1).
    dets = [det([[0, 0, 20, 10], [10, 0, 20, 10]], [0.9, 0.8], [0, 0])]
    gts = [gt([[0, 0, 10, 10], [10, 0, 20, 10]], [0, 0])]
    r = evaluate_detections(dets, gts, num_classes=1)
    assert r["AP50"] == pytest.approx(51 / 101, abs=1e-12)


def test_accepts_lists_and_empty_lists():
    r = evaluate_detections(
        [{"boxes": [A], "scores": [0.9], "labels": [0]}, {"boxes": [], "scores": [], "labels": []}],
        [{"boxes": [A], "labels": [0]}, {"boxes": [], "labels": []}],
        num_classes=1,
    )
    assert r["AP"] == 1.0


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "dets, gts, match",
    [
        ([NO_DETS], [NO_GT, NO_GT], "one entry per image, got 1 and 2"),
        ([NO_DETS, det([A], [0.9], [3])], [NO_GT, NO_GT], r"^detections\[1\]\['labels'\] must be in \[0, 2\) \(num_classes=2\), got values from 3 to 3$"),
        ([NO_DETS], [gt([A], [-1])], r"^ground_truths\[0\]\['labels'\] must be in \[0, 2\) \(num_classes=2\), got values from -1 to -1$"),
        ([{"boxes": np.zeros((1, 5)), "scores": [0.9], "labels": [0]}], [NO_GT],
         r"^detections\[0\]\['boxes'\] must be an array of shape \(n, 4\), got shape \(1, 5\)$"),
        ([det([A], [0.9, 0.8], [0])], [NO_GT], r"^detections\[0\]\['scores'\] must be an array of shape \(1,\), got shape \(2,\)$"),
        ([det([A], [0.9], [0, 1])], [NO_GT], r"^detections\[0\]\['labels'\] must be an array of shape \(1,\), got shape \(2,\)$"),
        ([NO_DETS], [gt([[0, 0, np.nan, 1]], [0])], r"^ground_truths\[0\]\['boxes'\] must be finite, got NaN values$"),
        ([det([A], [np.nan], [0])], [NO_GT], r"^detections\[0\]\['scores'\] must be finite, got NaN values$"),
        ([det([[10, 0, 0, 10]], [0.9], [0])], [NO_GT], r"detections\[0\]\['boxes'\] must be \(x1, y1, x2, y2\)"),
        ([{"boxes": [A], "labels": [0]}], [NO_GT], r"^detections\[0\] must be a dict with 'scores', got keys \['boxes', 'labels'\]$"),
        ([{"boxes": [A], "scores": [0.9], "labels": [0.5]}], [NO_GT], r"detections\[0\]\['labels'\] must be integers"),
    ],
)
def test_bad_input_names_image_and_field(dets, gts, match):
    with pytest.raises(ValueError, match=match):
        evaluate_detections(dets, gts, num_classes=2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, r"^num_classes must be an int >= 1, got 0$"),
        ({"num_classes": 1, "max_detections": 0}, r"^max_detections must be an int >= 1, got 0$"),
        ({"num_classes": 1, "iou_thresholds": [0.5, 1.5]}, r"^iou_thresholds must be finite values in \[0, 1\], got \[0\.5, 1\.5\]$"),
        ({"num_classes": 1, "iou_thresholds": []}, "iou_thresholds must be a non-empty"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluate_detections([NO_DETS], [NO_GT], **kwargs)


# ---------------------------------------------------------------- pycocotools oracle


def pycocotools_reference(dets, gts, num_classes, max_det=100):
    """COCOeval.evaluateImg + accumulate + summarize (bbox, area "all", no crowd), transcribed
    loop for loop from pycocotools with Python lists; returns (AP, AP50, AP75)."""
    iou_thrs = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
    rec_thrs = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)

    def bb_iou(d, g):  # maskApi.c bbIou on (x, y, w, h)
        w = min(d[2] + d[0], g[2] + g[0]) - max(d[0], g[0])
        if w <= 0:
            return 0.0
        h = min(d[3] + d[1], g[3] + g[1]) - max(d[1], g[1])
        if h <= 0:
            return 0.0
        i = w * h
        return i / (d[2] * d[3] + g[2] * g[3] - i)

    def xywh(b):
        return [b[0], b[1], b[2] - b[0], b[3] - b[1]]

    precision = -np.ones((len(iou_thrs), len(rec_thrs), num_classes))
    for k in range(num_classes):
        evals = []
        for dd, gg in zip(dets, gts):
            g = [xywh(b) for b, lab in zip(gg["boxes"].tolist(), gg["labels"].tolist()) if lab == k]
            dt = [(s, xywh(b)) for b, s, lab in zip(dd["boxes"].tolist(), dd["scores"].tolist(),
                                                   dd["labels"].tolist()) if lab == k]
            if not g and not dt:
                continue
            inds = np.argsort([-s for s, _ in dt], kind="mergesort")
            dt = [dt[i] for i in inds[:max_det]]
            dtm = np.zeros((len(iou_thrs), len(dt)))
            gtm = np.zeros((len(iou_thrs), len(g)))
            for tind, t in enumerate(iou_thrs):
                for dind, (_, db) in enumerate(dt):
                    iou = min([t, 1 - 1e-10])
                    m = -1
                    for gind, gb in enumerate(g):
                        if gtm[tind, gind] > 0:
                            continue
                        o = bb_iou(db, gb)
                        if o < iou:
                            continue
                        iou = o
                        m = gind
                    if m == -1:
                        continue
                    dtm[tind, dind] = 1
                    gtm[tind, m] = 1
            evals.append(([s for s, _ in dt], dtm, len(g)))
        if not evals:
            continue
        dt_scores = np.concatenate([np.array(e[0], dtype=np.float64) for e in evals])
        inds = np.argsort(-dt_scores, kind="mergesort")
        dtm = np.concatenate([e[1] for e in evals], axis=1)[:, inds]
        npig = sum(e[2] for e in evals)
        if npig == 0:
            continue
        tp_sum = np.cumsum(dtm > 0, axis=1).astype(np.float64)
        fp_sum = np.cumsum(dtm == 0, axis=1).astype(np.float64)
        for t, (tp, fp) in enumerate(zip(tp_sum, fp_sum)):
            nd = len(tp)
            rc = tp / npig
            pr = (tp / (fp + tp + np.spacing(1))).tolist()
            q = [0.0] * len(rec_thrs)
            for i in range(nd - 1, 0, -1):
                if pr[i] > pr[i - 1]:
                    pr[i - 1] = pr[i]
            inds_r = np.searchsorted(rc, rec_thrs, side="left")
            try:
                for ri, pi in enumerate(inds_r):
                    q[ri] = pr[pi]
            except IndexError:
                pass
            precision[t, :, k] = q

    def summarize(s):
        s = s[s > -1]
        return -1.0 if len(s) == 0 else float(np.mean(s))

    return summarize(precision), summarize(precision[0]), summarize(precision[5])


@st.composite
def scenes(draw, distinct_scores=False):
    """A few small images with integer boxes: GTs, jittered copies of them, and strays.

    Scores come from a short list so that ties happen, unless ``distinct_scores``."""
    num_classes = draw(st.integers(1, 3))
    num_images = draw(st.integers(1, 4))
    coord = st.integers(0, 20)
    side = st.integers(1, 10)
    dets, gts = [], []
    for _ in range(num_images):
        g_boxes, g_labels, d_boxes, d_labels = [], [], [], []
        for _ in range(draw(st.integers(0, 3))):
            x, y, w, h = draw(coord), draw(coord), draw(side), draw(side)
            g_boxes.append([x, y, x + w, y + h])
            g_labels.append(draw(st.integers(0, num_classes - 1)))
        for b, lab in zip(g_boxes, g_labels):
            for _ in range(draw(st.integers(0, 2))):
                dx1, dy1, dx2, dy2 = (draw(st.integers(-2, 2)) for _ in range(4))
                box = [b[0] + dx1, b[1] + dy1, max(b[0] + dx1, b[2] + dx2), max(b[1] + dy1, b[3] + dy2)]
                d_boxes.append(box)
                d_labels.append(draw(st.sampled_from([lab, lab, (lab + 1) % num_classes])))
        for _ in range(draw(st.integers(0, 2))):
            x, y, w, h = draw(coord), draw(coord), draw(side), draw(side)
            d_boxes.append([x, y, x + w, y + h])
            d_labels.append(draw(st.integers(0, num_classes - 1)))
        gts.append(gt(g_boxes, g_labels))
        dets.append(det(d_boxes, [0.0] * len(d_boxes), d_labels))
    total = sum(len(d["scores"]) for d in dets)
    if distinct_scores:
        scores = draw(st.permutations(list(range(1, total + 1))))
        scores = [s / (total + 1) for s in scores]
    else:
        scores = [draw(st.sampled_from([0.2, 0.5, 0.7, 0.9])) for _ in range(total)]
    start = 0
    for d in dets:
        n = len(d["scores"])
        d["scores"] = np.array(scores[start:start + n], dtype=np.float64)
        start += n
    return dets, gts, num_classes


# IoUs p / q equal to COCO thresholds (0.5, 0.6, 0.75, 0.8, 0.95), and 0.9 = 9/10, a rounding above linspace's 0.9.
ON_THRESHOLDS = [(1, 2), (3, 5), (3, 4), (4, 5), (9, 10), (19, 20)]


@st.composite
def boundary_scenes(draw):
    """Images whose detections overlap a ground truth at an IoU exactly on a COCO threshold (issue 20).

    Groups sit 1000 apart on x. Per group: a ground truth and a detection at IoU exactly p / q
    (``ON_THRESHOLDS``), a detection touching it (IoU 0), or one detection between two ground
    truths at IoU exactly 1/2 with each (the tie, which pycocotools gives to the later one), and
    a copy of the later one.
    Labels from {0, 1}, scores from {0.2, 0.5, 0.9} (ties across images too); images can be empty
    (nothing at all) or hold only detections. Returns (dets, gts, num_classes, pairs), pairs being
    (box, box, p, q) with IoU exactly p / q.
    """
    dets, gts, pairs = [], [], []
    score = st.sampled_from([0.2, 0.5, 0.9])
    for _ in range(draw(st.integers(1, 3))):
        d_boxes, d_scores, d_labels, g_boxes, g_labels = [], [], [], [], []
        kinds = draw(st.lists(st.sampled_from(["threshold", "touching", "tie", "detection only"]), max_size=3))
        for i, kind in enumerate(kinds):
            x0, label = 1000.0 * i, draw(st.integers(0, 1))
            if kind == "tie":
                u = 2.0 ** draw(st.integers(-2, 2))
                g = draw(st.permutations([(x0 - u, 0.0, x0 + 2 * u, 4.0), (x0 + u, 0.0, x0 + 4 * u, 4.0)]))
                # The detection between them, then a copy of the later ground truth scored no higher:
                # the copy is a true positive at 0.5 only if the first took the later one.
                d = [(x0, 0.0, x0 + 3 * u, 4.0), g[1]]
                pairs += [(d[0], b, 1, 2) for b in g]
                first = draw(score)
                d_scores += [first, draw(st.sampled_from([v for v in (0.2, 0.5, 0.9) if v <= first]))]
                d_labels += [label, label]
            else:
                p, q = draw(st.sampled_from(ON_THRESHOLDS)) if kind == "threshold" else (0, 1)
                g_box, d_box = draw(pair_at_iou(p, q, x0=x0))
                g, d = [g_box], [d_box]
                pairs.append((d_box, g_box, p, q))
                if kind == "detection only":
                    g = []
            g_boxes += g
            g_labels += [label] * len(g)
            d_boxes += d
            if kind != "tie":
                d_scores.append(draw(score))
                d_labels.append(label if draw(st.integers(0, 3)) else 1 - label)  # sometimes the wrong class
        dets.append(det(d_boxes, d_scores, d_labels))
        gts.append(gt(g_boxes, g_labels))
    return dets, gts, 2, pairs


@given(boundary_scenes(), st.sampled_from([1, 100]))
def test_matches_pycocotools_on_the_iou_thresholds(scene, max_det):
    dets, gts, num_classes, pairs = scene
    for a, b, p, q in pairs:  # the construction is exact: IoU is p / q, and the float IoU its nearest float
        assert exact_iou(a, b) == Fraction(p, q) and float_iou(a, b) == p / q
    assert_matches_the_transcription(dets, gts, num_classes, max_det)


def assert_matches_the_transcription(dets, gts, num_classes, max_det):
    """AP, AP50 and AP75 equal the pycocotools transcription's (nan where it says -1: no ground truth)."""
    ap, ap50, ap75 = pycocotools_reference(dets, gts, num_classes, max_det)
    r = evaluate_detections(dets, gts, num_classes, max_detections=max_det)
    for ours, theirs in ((r["AP"], ap), (r["AP50"], ap50), (r["AP75"], ap75)):
        if theirs == -1.0:
            assert np.isnan(ours)
        else:
            assert ours == pytest.approx(theirs, abs=1e-12)


@given(scenes(), st.sampled_from([1, 2, 100]))
def test_matches_a_literal_pycocotools_transcription(scene, max_det):
    dets, gts, num_classes = scene
    assert_matches_the_transcription(dets, gts, num_classes, max_det)


@given(scenes(distinct_scores=True), st.randoms(use_true_random=False))
def test_permuting_images_changes_nothing_when_scores_are_distinct(scene, rnd):
    dets, gts, num_classes = scene
    order = list(range(len(dets)))
    rnd.shuffle(order)
    r1 = evaluate_detections(dets, gts, num_classes)
    r2 = evaluate_detections([dets[i] for i in order], [gts[i] for i in order], num_classes)
    np.testing.assert_array_equal(r1["precision"], r2["precision"])
    assert r1["per_class_AP"] == pytest.approx(r2["per_class_AP"], nan_ok=True)


@given(scenes())
def test_perfect_detections_above_everything_give_one(scene):
    dets, gts, num_classes = scene
    boosted = [
        det(np.concatenate([g["boxes"], d["boxes"]]), np.concatenate([np.full(len(g["boxes"]), 2.0), d["scores"]]),
            np.concatenate([g["labels"], d["labels"]]))
        for d, g in zip(dets, gts)
    ]
    r = evaluate_detections(boosted, gts, num_classes)
    has_gt = np.array(r["num_ground_truths"]) > 0
    if has_gt.any():
        assert r["AP"] == r["AP50"] == r["AP75"] == 1.0
        assert all(ap == 1.0 for ap, h in zip(r["per_class_AP"], has_gt) if h)
    else:
        assert np.isnan(r["AP"])
