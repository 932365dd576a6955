"""The twelve numbers of COCO's summary (evaluation/coco.py): crowd boxes, area ranges, AR@1/10/100.

pycocotools is the oracle: every random case is written as a COCO ground-truth dataset and a
results list, scored by ``COCOeval`` (``evaluate``, ``accumulate``, ``summarize``), and its
``stats`` compared number by number with ours. The hand cases say what each rule means.
"""

import contextlib
import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpy_retinanet.evaluation.coco import AREA_RANGES, SUMMARY, coco_iou, evaluate_detections, summary_lines

pycocotools = pytest.importorskip("pycocotools", reason="pycocotools is the oracle: pip install -e '.[test]'")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def gt(boxes, labels, iscrowd=None, areas=None):
    record = {"boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4), "labels": np.array(labels, dtype=np.int64)}
    if iscrowd is not None:
        record["iscrowd"] = np.array(iscrowd, dtype=bool)
    if areas is not None:
        record["areas"] = np.array(areas, dtype=np.float64)
    return record


def det(boxes, scores, labels):
    return {"boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4), "scores": np.array(scores, dtype=np.float64),
            "labels": np.array(labels, dtype=np.int64)}


def xywh(box):
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def cocoeval_stats(dets, gts, num_classes, area_scale=1.0, max_det=100):
    """pycocotools' ``stats`` (12 numbers, -1 for none) and printed summary for our records.

    Image i gets id i + 1, label k category id k + 1, annotations ids from 1 (pycocotools reads
    an id of 0 as "unmatched")."""
    images = [{"id": i + 1, "width": 1000, "height": 1000} for i in range(len(gts))]
    categories = [{"id": k + 1, "name": str(k)} for k in range(num_classes)]
    annotations = []
    for i, g in enumerate(gts):
        crowd = g.get("iscrowd", np.zeros(len(g["boxes"]), bool))
        for j, (box, label) in enumerate(zip(g["boxes"].tolist(), g["labels"].tolist())):
            area = float(g["areas"][j]) if "areas" in g else (box[2] - box[0]) * (box[3] - box[1])
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": label + 1,
                                "bbox": xywh(box), "area": area, "iscrowd": int(crowd[j])})
    results = [{"image_id": i + 1, "category_id": label + 1, "bbox": xywh(box), "score": score}
               for i, d in enumerate(dets)
               for box, score, label in zip(d["boxes"].tolist(), d["scores"].tolist(), d["labels"].tolist())]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes cannot read an empty list; an empty result set is a dataset without annotations
            coco_dt = COCO()
            coco_dt.dataset = {"images": images, "annotations": [], "categories": categories}
            coco_dt.createIndex()
        e = COCOeval(coco_gt, coco_dt, "bbox")
        e.params.areaRng = [[lo if name == "all" else lo * area_scale, hi if name == "all" else hi * area_scale]
                            for name, (lo, hi) in AREA_RANGES.items()]
        e.params.maxDets = [1, 10, max_det]
        e.evaluate()
        e.accumulate()
        out.seek(0)
        out.truncate()
        e.summarize()
    return e.stats, out.getvalue().splitlines()


def assert_matches_cocoeval(dets, gts, num_classes, area_scale=1.0):
    ours = evaluate_detections(dets, gts, num_classes, area_scale=area_scale)
    theirs, printed = cocoeval_stats(dets, gts, num_classes, area_scale=area_scale)
    for (key, *_), mine, their in zip(SUMMARY, ours["stats"], theirs):
        if their == -1:
            assert np.isnan(mine), key
        else:
            assert mine == pytest.approx(their, abs=1e-12), key
    assert [ours[key] for key, *_ in SUMMARY] == ours["stats"]
    return ours, printed


# ---------------------------------------------------------------- random cases against pycocotools


@st.composite
def crowd_scenes(draw):
    """A few images, 1-3 classes: boxes of sides 1-16 on a 0-30 grid (areas 1 to 256, on both
    sides of the scaled range bounds 16 and 144 and on them), some crowd boxes, some given areas,
    detections copying, jittering or inside ground truths, and strays; scores from a short list
    (ties)."""
    num_classes = draw(st.integers(1, 3))
    dets, gts = [], []
    for _ in range(draw(st.integers(1, 4))):
        boxes, labels, crowd, areas = [], [], [], []
        for _ in range(draw(st.integers(0, 4))):
            x, y, w, h = draw(st.integers(0, 30)), draw(st.integers(0, 30)), draw(st.integers(1, 16)), draw(st.integers(1, 16))
            boxes.append([x, y, x + w, y + h])
            labels.append(draw(st.integers(0, num_classes - 1)))
            crowd.append(draw(st.integers(0, 4)) == 0)
            areas.append(float(draw(st.sampled_from([w * h, w * h, max(1, w * h // 2)]))))
        d_boxes, d_labels = [], []
        for b, lab in zip(boxes, labels):
            for _ in range(draw(st.integers(0, 3))):
                kind = draw(st.sampled_from(["copy", "jitter", "inside"]))
                if kind == "copy":
                    box = list(b)
                elif kind == "jitter":
                    dx1, dy1, dx2, dy2 = (draw(st.integers(-2, 2)) for _ in range(4))
                    box = [b[0] + dx1, b[1] + dy1, max(b[0] + dx1, b[2] + dx2), max(b[1] + dy1, b[3] + dy2)]
                else:  # a small box inside (a detection of one member of a crowd)
                    x1, y1 = draw(st.integers(b[0], b[2])), draw(st.integers(b[1], b[3]))
                    box = [x1, y1, draw(st.integers(x1, b[2])), draw(st.integers(y1, b[3]))]
                d_boxes.append(box)
                d_labels.append(draw(st.sampled_from([lab, lab, (lab + 1) % num_classes])))
        for _ in range(draw(st.integers(0, 2))):
            x, y, w, h = draw(st.integers(0, 30)), draw(st.integers(0, 30)), draw(st.integers(1, 16)), draw(st.integers(1, 16))
            d_boxes.append([x, y, x + w, y + h])
            d_labels.append(draw(st.integers(0, num_classes - 1)))
        scores = [draw(st.sampled_from([0.2, 0.5, 0.7, 0.9])) for _ in d_boxes]
        with_areas = draw(st.booleans())
        gts.append(gt(boxes, labels, iscrowd=crowd, areas=areas if with_areas else None))
        dets.append(det(d_boxes, scores, d_labels))
    return dets, gts, num_classes


@given(crowd_scenes())
def test_the_twelve_numbers_match_cocoeval_with_crowds_and_scaled_ranges(scene):
    dets, gts, num_classes = scene
    # 1/64: small up to area 16, medium 16 to 144, large from 144, in the scenes' range of areas.
    assert_matches_cocoeval(dets, gts, num_classes, area_scale=1 / 64)


@given(crowd_scenes())
def test_the_twelve_numbers_match_cocoeval_with_cocos_ranges(scene):
    dets, gts, num_classes = scene
    # Areas up to 256: everything is small in COCO's sense; medium and large have no ground truth.
    ours, _ = assert_matches_cocoeval(dets, gts, num_classes)
    assert np.isnan(ours["AP_medium"]) and np.isnan(ours["AP_large"])


def random_images(rng, num_images, num_classes, image_size):
    """Seeded scenes at COCO's scale: boxes from 4 to 300 pixels a side (small, medium and large),
    one in six a crowd, detections jittered by up to a quarter of the box, duplicates and strays;
    coordinates are multiples of 1/8, so x + w is exact in pycocotools' (x, y, w, h) too."""
    dets, gts = [], []
    for _ in range(num_images):
        n = rng.integers(0, 8)
        wh = np.round(np.exp(rng.uniform(np.log(4), np.log(300), size=(n, 2))) * 8) / 8
        xy = np.round(rng.uniform(0, image_size - wh) * 8) / 8
        boxes = np.concatenate([xy, xy + wh], axis=1)
        labels = rng.integers(0, num_classes, size=n)
        crowd = rng.random(n) < 1 / 6
        d_boxes, d_labels = [], []
        for b, lab in zip(boxes, labels):
            for _ in range(rng.integers(0, 4)):
                jitter = np.round(rng.normal(0, 0.1, size=4) * np.tile(b[2:] - b[:2], 2) * 8) / 8
                box = b + jitter
                box[2:] = np.maximum(box[2:], box[:2])
                d_boxes.append(box)
                d_labels.append(lab if rng.random() < 0.8 else rng.integers(0, num_classes))
        for _ in range(rng.integers(0, 4)):
            wh = np.round(rng.uniform(4, 200, size=2) * 8) / 8
            xy = np.round(rng.uniform(0, image_size - wh) * 8) / 8
            d_boxes.append(np.concatenate([xy, xy + wh]))
            d_labels.append(rng.integers(0, num_classes))
        scores = np.round(rng.random(len(d_boxes)) * 20) / 20  # ties
        gts.append(gt(boxes, labels, iscrowd=crowd))
        dets.append(det(np.array(d_boxes).reshape(-1, 4), scores, d_labels))
    return dets, gts


@pytest.mark.parametrize("seed", range(6))
def test_seeded_scenes_at_cocos_scale_match_cocoeval(seed):
    rng = np.random.default_rng(seed)
    dets, gts = random_images(rng, num_images=int(rng.integers(1, 8)), num_classes=int(rng.integers(1, 5)),
                              image_size=640)
    ours, printed = assert_matches_cocoeval(dets, gts, max(1, int(max([0] + [g["labels"].max() + 1 for g in gts
                                                                            if len(g["labels"])]))))
    assert summary_lines(ours) == printed


def test_many_detections_per_image_match_cocoeval_at_ar1_ar10_ar100():
    # 150 detections on 40 objects in one image: the limits 1, 10 and 100 all bite.
    rng = np.random.default_rng(7)
    dets, gts = random_images(rng, num_images=1, num_classes=1, image_size=640)
    boxes = np.round(rng.uniform(0, 300, size=(40, 2)) * 8) / 8
    g = gt(np.concatenate([boxes, boxes + 40], axis=1), [0] * 40)
    d_boxes = np.repeat(g["boxes"], 4, axis=0)[:150] + np.round(rng.normal(0, 3, size=(150, 4)) * 8) / 8
    d_boxes[:, 2:] = np.maximum(d_boxes[:, 2:], d_boxes[:, :2])
    ours, printed = assert_matches_cocoeval([det(d_boxes, rng.random(150), [0] * 150)], [g], 1)
    assert ours["AR1"] < ours["AR10"] < ours["AR100"]
    assert summary_lines(ours) == printed


# ---------------------------------------------------------------- hand cases: what each rule means


A = [0, 0, 10, 10]  # area 100
BIG = [0, 0, 200, 100]  # area 20000: large in COCO's sense
FAR = [500, 500, 510, 510]


def test_a_detection_on_a_crowd_box_is_neither_true_nor_false_positive():
    # One real object A (TP at 0.5) and a crowd box; three detections inside the crowd rank above
    # the TP. Counted as false positives they would halve AP; ignored, AP stays 1.
    crowd = [100, 100, 300, 300]
    inside = [[110, 110, 120, 120], [200, 200, 230, 230], [150, 100, 300, 300]]
    r = evaluate_detections([det(inside + [A], [0.9, 0.9, 0.9, 0.5], [0, 0, 0, 0])],
                            [gt([A, crowd], [0, 0], iscrowd=[False, True])], num_classes=1)
    assert r["AP"] == 1.0 and r["AR"] == 1.0
    assert r["num_ground_truths"] == [1]  # the crowd box is not an object to find
    # The crowd's "IoU" is the intersection over the detection's area: 1 for every box inside it.
    np.testing.assert_array_equal(coco_iou(np.array(inside, float), np.array([crowd], float), np.array([True])), 1.0)


def test_a_crowd_box_alone_leaves_the_class_out():
    r = evaluate_detections([det([A], [0.9], [0])], [gt([A], [0], iscrowd=[True])], num_classes=1)
    assert np.isnan(r["AP"]) and r["num_ground_truths"] == [0]


def test_a_real_object_is_preferred_to_a_crowd_box_even_at_lower_iou():
    # The detection overlaps the crowd box with "IoU" 1 and the object A' with IoU 0.6: it takes A'
    # (a TP) because boxes that count are tried first.
    a2 = [0, 0, 10, 6]  # IoU with A = 60 / 100
    r = evaluate_detections([det([A], [0.9], [0])], [gt([a2, [0, 0, 50, 50]], [0, 0], iscrowd=[False, True])],
                            num_classes=1, iou_thresholds=[0.5])
    assert r["AP"] == 1.0


def test_area_ranges_score_each_size_apart():
    # A small object found, a large one missed, and a false positive of large size ranked first.
    dets = [det([FAR[:2] + [FAR[0] + 150, FAR[1] + 150], A], [0.9, 0.8], [0, 0])]
    gts = [gt([A, BIG], [0, 0])]
    r = evaluate_detections(dets, gts, num_classes=1)
    # small: the large false positive is outside the range and unmatched, so ignored: AP_small 1.
    assert r["AP_small"] == 1.0 and r["AR_small"] == 1.0
    # large: its object missed (AP 0); the small TP matched a ground truth outside the range: ignored.
    assert r["AP_large"] == 0.0 and r["AR_large"] == 0.0
    assert np.isnan(r["AP_medium"])  # no medium object
    # all: [FP, TP] of two objects: recall reaches 1/2 at precision 1/2 -> 51 thresholds of 1/2.
    assert r["AP"] == pytest.approx(51 * 0.5 / 101, abs=1e-12)


def test_range_bounds_are_inclusive_and_given_areas_win():
    box32 = [0, 0, 32, 32]  # area 32^2 exactly: both small and medium
    r = evaluate_detections([det([box32], [0.9], [0])], [gt([box32], [0])], num_classes=1)
    assert r["AP_small"] == r["AP_medium"] == 1.0 and np.isnan(r["AP_large"])
    # The same box with a given (mask) area of 5000: medium only.
    r = evaluate_detections([det([box32], [0.9], [0])], [gt([box32], [0], areas=[5000.0])], num_classes=1)
    assert np.isnan(r["AP_small"]) and r["AP_medium"] == 1.0


def test_area_scale_multiplies_the_bounds():
    box = [0, 0, 16, 16]  # area 256: small in COCO's sense; with scale 1/16 the bounds are 64 and 576: medium
    r1 = evaluate_detections([det([box], [0.9], [0])], [gt([box], [0])], num_classes=1)
    r16 = evaluate_detections([det([box], [0.9], [0])], [gt([box], [0])], num_classes=1, area_scale=1 / 16)
    assert r1["AP_small"] == 1.0 and np.isnan(r1["AP_medium"])
    assert np.isnan(r16["AP_small"]) and r16["AP_medium"] == 1.0
    assert r16["area_ranges"]["medium"] == (64.0, 576.0) and r16["area_ranges"]["all"] == AREA_RANGES["all"]


def test_ar_at_one_keeps_the_best_detection_per_image_and_class():
    # Two objects of one class in one image, both found: AR@1 finds one of two, AR@10 both.
    b = [20, 0, 30, 10]
    r = evaluate_detections([det([A, b], [0.9, 0.8], [0, 0])], [gt([A, b], [0, 0])], num_classes=1)
    assert r["AR1"] == 0.5 and r["AR10"] == r["AR100"] == r["AR"] == 1.0


@pytest.mark.parametrize("record, match", [
    ({"boxes": [A], "labels": [0], "iscrowd": [2]}, r"^ground_truths\[0\]\['iscrowd'\] must be 0/1 or False/True, got \[2\]$"),
    ({"boxes": [A], "labels": [0], "iscrowd": [True, False]}, r"^ground_truths\[0\]\['iscrowd'\] must be an array of shape \(1,\)"),
    (gt([A], [0], areas=[-1.0]), r"^ground_truths\[0\]\['areas'\] must be >= 0, got \[-1\.0\]$"),
])
def test_bad_crowd_flags_and_areas_are_named(record, match):
    with pytest.raises(ValueError, match=match):
        evaluate_detections([det([], [], [])], [record], num_classes=1)


def test_bad_area_scale():
    with pytest.raises(ValueError, match=r"^area_scale must be a finite real number > 0, got 0\.0$"):
        evaluate_detections([det([], [], [])], [gt([], [])], num_classes=1, area_scale=0.0)
