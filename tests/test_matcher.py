"""Tests for detection/matcher.py: anchor-to-box assignment (paper §4, "Matching")."""

from fractions import Fraction

import numpy as np
import pytest
from _exact_iou import exact_iou, pair_at_iou
from hypothesis import given
from hypothesis import strategies as st

from numpy_retinanet.detection.matcher import BACKGROUND, BG_IOU, FG_IOU, IGNORED, match_anchors


def ref_iou(a, b):
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def ref_match(anchors, boxes, fg, bg, low_quality):
    """The rules of §4 plus torchvision's low-quality matches, one anchor at a time."""
    iou = [[ref_iou(a, b) for b in boxes] for a in anchors]
    own_best = [row.index(max(row)) for row in iou]  # list.index: first maximum
    out = []
    for row, best in zip(iou, own_best):
        top = row[best]
        out.append(best if top >= fg else (BACKGROUND if top < bg else IGNORED))
    if low_quality:
        for g in range(len(boxes)):
            highest = max(iou[a][g] for a in range(len(anchors)))
            for a in range(len(anchors)):
                if highest > 0 and iou[a][g] == highest:
                    out[a] = own_best[a]
    return out


def strip(*xs):
    """Boxes [x1, 0, x2, 10]: all 10 high, so IoU is the 1-D overlap of [x1, x2] and easy to compute by hand."""
    return np.array([[x1, 0.0, x2, 10.0] for x1, x2 in xs])


def test_thresholds_and_ignore_band():
    box = strip((0, 10))  # length 10
    # IoUs 10/20 = 0.5, 10/20.001 just under 0.5, 10/25 = 0.4, 10/25.001 just under 0.4, 10/40
    anchors = strip((0, 20), (0, 20.001), (0, 25), (0, 25.001), (0, 40))
    got = match_anchors(anchors, box, allow_low_quality=False)
    assert got.dtype == np.int64
    assert got.tolist() == [0, IGNORED, IGNORED, BACKGROUND, BACKGROUND]
    assert BACKGROUND == -1 and IGNORED == -2


def test_custom_thresholds():
    box = strip((0, 10))
    anchors = strip((0, 20), (0, 25), (0, 40))  # IoU 0.5, 0.4, 0.25
    assert match_anchors(anchors, box, 0.4, 0.25, allow_low_quality=False).tolist() == [0, 0, IGNORED]
    # fg_iou == bg_iou: no ignore band
    assert match_anchors(anchors, box, 0.45, 0.45, allow_low_quality=False).tolist() == [0, -1, -1]


def test_each_anchor_takes_its_best_box_ties_to_lowest_index():
    boxes = strip((0, 10), (2, 12), (0, 10), (30, 40))
    anchors = strip((1, 11), (0, 10), (31, 41))
    # anchor 0: IoU 9/11 with boxes 0, 1, 2 -> tie, lowest index 0; anchor 1: IoU 1 with boxes 0 and 2
    assert match_anchors(anchors, boxes).tolist() == [0, 0, 3]


def test_low_quality_match_gives_a_box_with_best_iou_03_its_best_anchor():
    box = strip((0, 3))  # length 3: IoU 3/10 with a length-10 anchor containing it
    anchors = strip((0, 10), (-7, 3), (0, 20), (50, 60))  # IoU 0.3, 0.3 (a tie), 0.15, 0
    assert match_anchors(anchors, box, allow_low_quality=False).tolist() == [-1, -1, -1, -1]
    assert match_anchors(anchors, box, allow_low_quality=True).tolist() == [0, 0, -1, -1]


def test_low_quality_anchor_takes_its_own_best_box_as_torchvision():
    # Box 0 = [0, 3]: its best anchor is anchor 0 = [0, 10] (IoU 0.3; anchor 1 misses it).
    # Anchor 0 overlaps box 1 = [4, 14] more: 6 / 14 = 0.43, in the ignore band.
    # Promoted by box 0, anchor 0 regresses to its own best box, box 1; box 0 gets no anchor.
    boxes = strip((0, 3), (4, 14))
    anchors = strip((0, 10), (4, 14))
    assert match_anchors(anchors, boxes, allow_low_quality=False).tolist() == [IGNORED, 1]
    assert match_anchors(anchors, boxes, allow_low_quality=True).tolist() == [1, 1]


def test_box_with_zero_best_iou_makes_no_anchor_positive():
    anchors = strip((0, 10), (10, 20), (20, 30))
    far = strip((100, 110))
    assert match_anchors(anchors, far).tolist() == [-1, -1, -1]
    # beside a box that does match, it changes nothing
    boxes = np.concatenate([far, strip((10, 20))])
    assert match_anchors(anchors, boxes).tolist() == [-1, 1, -1]


def test_no_boxes_means_all_background():
    anchors = strip((0, 10), (5, 15))
    got = match_anchors(anchors, np.zeros((0, 4)))
    assert got.dtype == np.int64
    assert got.tolist() == [BACKGROUND, BACKGROUND]


def test_float32_inputs():
    box = strip((0, 10))
    anchors = strip((0, 20), (0, 25), (0, 26))
    assert match_anchors(anchors.astype(np.float32), box.astype(np.float32), allow_low_quality=False).tolist() == [
        0, IGNORED, BACKGROUND,
    ]


grid_box = st.tuples(
    st.integers(0, 12), st.integers(0, 12), st.integers(1, 8), st.integers(1, 8)
).map(lambda t: (float(t[0]), float(t[1]), float(t[0] + t[2]), float(t[1] + t[3])))


@given(
    st.lists(grid_box, min_size=1, max_size=15),
    st.lists(grid_box, max_size=5),
    st.sampled_from([(0.5, 0.4), (0.5, 0.5), (0.7, 0.3)]),
    st.booleans(),
)
def test_matches_reference(anchors, boxes, thresholds, low_quality):
    fg, bg = thresholds
    got = match_anchors(np.asarray(anchors), np.asarray(boxes).reshape(-1, 4), fg, bg, low_quality)
    expected = ref_match(anchors, boxes, fg, bg, low_quality) if boxes else [BACKGROUND] * len(anchors)
    assert got.tolist() == expected


@st.composite
def boundary_scenes(draw):
    """Anchors and boxes with IoUs of exactly 1/2 (FG_IOU), 2/5 (BG_IOU) and 0 (touching), and a tie.

    Each group sits 1000 apart on x (IoU 0 with every other group): a box, an anchor at the
    group's IoU with it, and (always for the 1/2 and 2/5 groups drawn first, else drawn) an anchor
    equal to the box, so that the low-quality rule promotes that copy (IoU 1), not the anchor on the
    threshold. The tie group: an anchor [0, 3u] between boxes [-u, 2u] and [u, 4u], IoU 1/2 with
    both, which goes to the lower box index. Or, drawn, no boxes at all.
    Returns (anchors, boxes, pairs): pairs are (anchor, box, p, q) with IoU exactly p / q.
    """
    groups = [(1, 2), (2, 5)] + draw(st.lists(st.sampled_from([(1, 2), (2, 5), (0, 1)]), max_size=2))
    anchors, boxes, pairs = [], [], []
    for i, (p, q) in enumerate(groups):
        anchor, box = draw(pair_at_iou(p, q, x0=1000.0 * i))
        anchors.append(anchor)
        boxes.append(box)
        pairs.append((anchor, box, p, q))
        if i < 2 or draw(st.booleans()):
            anchors.append(box)
    u = 2.0 ** draw(st.integers(-2, 2))
    x0 = 1000.0 * len(groups)
    tie = [(x0 - u, 0.0, x0 + 2 * u, 4.0), (x0 + u, 0.0, x0 + 4 * u, 4.0)]
    boxes += draw(st.permutations(tie))  # the tie's two boxes, in either order
    anchors.append((x0, 0.0, x0 + 3 * u, 4.0))
    pairs += [(anchors[-1], b, 1, 2) for b in tie]
    if draw(st.booleans()):
        boxes.insert(draw(st.integers(0, len(boxes))), (-1000.0, 0.0, -990.0, 10.0))  # a box no anchor touches
    anchors = draw(st.permutations(anchors))
    return anchors, ([] if draw(st.integers(0, 5)) == 0 else boxes), pairs


@given(boundary_scenes(), st.booleans(), st.sampled_from([np.float32, np.float64]))
def test_matches_reference_on_the_thresholds(scene, low_quality, dtype):
    anchors, boxes, pairs = scene
    for anchor, box, p, q in pairs:  # the construction is exact: IoU is p / q, and the float IoU its nearest float
        assert exact_iou(anchor, box) == Fraction(p, q) and ref_iou(anchor, box) == p / q
    assert {p / q for _, _, p, q in pairs} >= {FG_IOU, BG_IOU}
    got = match_anchors(np.asarray(anchors, dtype), np.asarray(boxes, dtype).reshape(-1, 4),
                        allow_low_quality=low_quality)
    expected = ref_match(anchors, boxes, FG_IOU, BG_IOU, low_quality) if boxes else [BACKGROUND] * len(anchors)
    assert got.tolist() == expected


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: match_anchors(strip((0, 10)), strip((0, 10)), 0.4, 0.5), r"^bg_iou must be <= fg_iou \(0\.4\), got 0\.5$"),
        (lambda: match_anchors(strip((0, 10)), strip((0, 10)), 1.5), r"^fg_iou must be a finite real number in \[0, 1\], got 1\.5$"),
        (lambda: match_anchors(strip((0, 10)), strip((0, 10)), 0.5, -0.1), r"^bg_iou must be a finite real number in \[0, 1\], got -0\.1$"),
        (lambda: match_anchors(strip((10, 10)), strip((0, 10))), r"^anchors must be .*x2 > x1"),
        (lambda: match_anchors(strip((0, 10)), strip((0, np.nan))), r"^boxes must be finite, got NaN values$"),
        (lambda: match_anchors(strip((0, 10)), np.zeros(4)), r"^boxes must be an array of shape \(N, 4\), got shape \(4,\)$"),
        (lambda: match_anchors(strip((0, 10)), strip((5, 4))), r"^boxes must be"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.gpu
def test_match_on_gpu_matches_numpy(cupy):
    anchors = strip((0, 10), (0, 20), (0, 25), (40, 50), (1, 11))
    boxes = strip((0, 10), (0, 3), (41, 49))
    got = match_anchors(cupy.asarray(anchors), cupy.asarray(boxes))
    assert isinstance(got, cupy.ndarray)
    assert cupy.asnumpy(got).tolist() == match_anchors(anchors, boxes).tolist()


# ---------------------------------------------------------------- crowd boxes (COCO's iscrowd)


def test_a_crowd_box_makes_no_positive_and_the_anchors_on_it_are_ignored():
    anchors = np.array([[0, 0, 10, 10], [0, 0, 10, 6], [50, 50, 60, 60], [100, 100, 110, 110]], dtype=float)
    # Box 0: a crowd exactly on anchor 0; box 1: a real object exactly on anchor 2.
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], dtype=float)
    out = match_anchors(anchors, boxes, crowd=np.array([True, False]), allow_low_quality=True).tolist()
    # Anchor 0 (IoU 1 with the crowd) and anchor 1 (IoU 0.6 >= 0.4) ignored, never positive; anchor 2
    # takes the real box under its index among all boxes (1); anchor 3 touches nothing: background.
    assert out == [IGNORED, IGNORED, 1, BACKGROUND]
    # Without the flag box 0 is an object like any other.
    assert match_anchors(anchors, boxes).tolist() == [0, 0, 1, BACKGROUND]


def test_an_anchor_matched_to_a_real_box_stays_positive_inside_a_crowd():
    anchors = np.array([[0, 0, 10, 10], [30, 30, 40, 40]], dtype=float)
    boxes = np.array([[0, 0, 40, 40], [0, 0, 10, 10]], dtype=float)  # a crowd around a real object
    assert match_anchors(anchors, boxes, crowd=np.array([True, False])).tolist() == [1, BACKGROUND]
    # The crowd's IoU with anchor 1 is 100 / 1600 < 0.4: background. A larger anchor on it is ignored.
    big = np.array([[0, 0, 30, 30]], dtype=float)  # IoU 900 / 1600 with the crowd, 100 / 900 with the object
    assert match_anchors(big, boxes, crowd=np.array([True, False]), allow_low_quality=False).tolist() == [IGNORED]


def test_only_crowd_boxes_give_no_positive():
    anchors = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], dtype=float)
    boxes = np.array([[0, 0, 10, 10]], dtype=float)
    assert match_anchors(anchors, boxes, crowd=np.array([True])).tolist() == [IGNORED, BACKGROUND]


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(1, 20), st.integers(1, 20)),
                min_size=1, max_size=5))
def test_no_crowd_flag_set_changes_nothing(raw):
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in raw], dtype=float)
    anchors = np.array([[x, y, x + s, y + s] for x in range(0, 40, 8) for y in range(0, 40, 8) for s in (8, 16)],
                       dtype=float)
    np.testing.assert_array_equal(match_anchors(anchors, boxes, crowd=np.zeros(len(boxes), bool)),
                                  match_anchors(anchors, boxes))


def test_crowd_flags_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"^crowd must be an array of shape \(1,\)"):
        match_anchors(np.array([[0, 0, 8, 8.0]]), np.array([[0, 0, 8, 8.0]]), crowd=np.array([False, False]))
