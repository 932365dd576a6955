"""retinanet_loss: targets, normalization by positives, gradients, images without boxes (§4.1)."""

import numpy as np
import pytest
from _exact_iou import float_iou, pair_at_iou
from hypothesis import given
from hypothesis import strategies as st

from numpy_retinanet.detection.boxes import encode_boxes
from numpy_retinanet.detection.criterion import assign_targets, retinanet_loss
from numpy_retinanet.gradcheck import all_passed, check_gradients
from numpy_retinanet.nn.losses import sigmoid_focal_loss_forward, smooth_l1_forward


def _anchors():
    # A 4x4 grid of 16 px anchors (stride 16) plus a few larger ones.
    g = np.arange(4) * 16.0
    xs, ys = np.meshgrid(g, g)
    small = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 16, ys.ravel() + 16], 1)
    # The last anchor has IoU 0.478 with the second box: in the ignore band [0.4, 0.5).
    big = np.array([[0, 0, 32, 32], [32, 32, 64, 64], [0, 32, 32, 64], [30, 30, 46, 63]], float)
    return np.concatenate([small, big])


TARGETS = [
    {"boxes": np.array([[1.0, 1.0, 17.0, 15.0], [30.0, 30.0, 63.0, 62.0]]), "labels": np.array([1, 0])},
    {"boxes": np.zeros((0, 4)), "labels": np.zeros((0,), np.int64)},
]


def test_loss_equals_hand_assembled_sum():
    rng = np.random.default_rng(0)
    anchors = _anchors()
    M, K = len(anchors), 2
    logits = rng.standard_normal((2, M, K))
    deltas = rng.standard_normal((2, M, 4)) * 0.1
    losses, _, _ = retinanet_loss(logits, deltas, anchors, TARGETS)
    cls_t, box_t, pos, valid = assign_targets(anchors, TARGETS, K)
    # Hand assembly with the elementwise losses.
    P = pos.sum()
    assert losses["num_positive"] == P > 0
    fl = sigmoid_focal_loss_forward(logits, cls_t, alpha=0.25, gamma=2.0)[0]
    expect_cls = (fl.sum(-1) * valid).sum() / P
    sl1 = smooth_l1_forward(deltas, box_t, beta=0.11)[0]
    expect_box = (sl1.sum(-1) * pos).sum() / P
    assert losses["classification"] == pytest.approx(expect_cls, rel=1e-12)
    assert losses["box_regression"] == pytest.approx(expect_box, rel=1e-12)
    assert losses["total"] == pytest.approx(expect_cls + expect_box, rel=1e-12)
    # Targets: one-hot labels of the matched box, encoded boxes, nothing for the empty image.
    i = np.nonzero(pos[0])[0]
    assert np.all(cls_t[0, i].sum(-1) == 1)
    assert not cls_t[1].any() and not pos[1].any() and valid[1].all()
    big_box = np.nonzero(pos[0] & (cls_t[0, :, 0] == 1))[0]
    np.testing.assert_allclose(box_t[0, big_box], encode_boxes(anchors[big_box],
                               np.repeat(TARGETS[0]["boxes"][1:2], len(big_box), 0)))


def test_gradients_agree_with_numerical():
    rng = np.random.default_rng(1)
    anchors = _anchors()
    M = len(anchors)
    logits = rng.standard_normal((2, M, 2)) * 2
    deltas = rng.standard_normal((2, M, 4))
    _, dlogits, ddeltas = retinanet_loss(logits, deltas, anchors, TARGETS)

    def f():
        return retinanet_loss(logits, deltas, anchors, TARGETS)[0]["total"]

    rows = check_gradients(f, {"logits": logits, "deltas": deltas}, {"logits": dlogits, "deltas": ddeltas},
                           verbose=False)
    assert all_passed(rows), [r.format() for r in rows]


def test_ignored_anchors_get_no_gradient():
    anchors = _anchors()
    M = len(anchors)
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((2, M, 2))
    _, dlogits, ddeltas = retinanet_loss(logits, np.zeros((2, M, 4)), anchors, TARGETS)
    _, _, pos, valid = assign_targets(anchors, TARGETS, 2)
    assert (~valid).any(), "the fixture should have ignored anchors"
    assert not dlogits[~valid].any()
    assert not ddeltas[~pos].any()


def test_image_without_boxes_trains():
    anchors = _anchors()
    M = len(anchors)
    logits = np.random.default_rng(3).standard_normal((1, M, 3)).astype(np.float32)
    empty = [{"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros((0,), np.int64)}]
    losses, dlogits, ddeltas = retinanet_loss(logits, np.zeros((1, M, 4), np.float32), anchors, empty)
    assert losses["num_positive"] == 0
    assert losses["box_regression"] == 0.0
    assert np.isfinite(losses["total"]) and losses["total"] > 0
    assert dlogits.dtype == np.float32
    assert np.all(dlogits > 0)  # every score is pushed down
    assert not ddeltas.any()


def test_bad_targets_are_refused():
    anchors = _anchors()
    M = len(anchors)
    lo, de = np.zeros((1, M, 2)), np.zeros((1, M, 4))

    def t(boxes, labels):
        return [{"boxes": np.asarray(boxes, float), "labels": np.asarray(labels)}]

    with pytest.raises(ValueError, match="x2 > x1"):
        retinanet_loss(lo, de, anchors, t([[10, 10, 5, 20]], [0]))
    with pytest.raises(ValueError, match="x2 > x1"):
        retinanet_loss(lo, de, anchors, t([[10, 10, 20, 10]], [0]))
    with pytest.raises(ValueError, match="NaN"):
        retinanet_loss(lo, de, anchors, t([[np.nan, 10, 20, 20]], [0]))
    with pytest.raises(ValueError, match=r"labels.*\[0, 2\)"):
        retinanet_loss(lo, de, anchors, t([[0, 0, 10, 10]], [2]))
    with pytest.raises(ValueError, match=r"labels.*\[0, 2\)"):
        retinanet_loss(lo, de, anchors, t([[0, 0, 10, 10]], [-1]))
    with pytest.raises(ValueError, match="one dict per image"):
        retinanet_loss(lo, de, anchors, [])
    with pytest.raises(ValueError, match="deltas"):
        retinanet_loss(lo, np.zeros((1, M, 3)), anchors, t([[0, 0, 10, 10]], [0]))
    with pytest.raises(ValueError, match="anchors"):
        retinanet_loss(lo, de, anchors[:-1], t([[0, 0, 10, 10]], [0]))



@st.composite
def threshold_batch(draw):
    """Anchors at IoU exactly 1/2, 2/5 and 0 (touching) with a box each, and an image without boxes.

    Group g sits at x = 1000 g: a box of label g % 2, an anchor equal to it (IoU 1: the box's best,
    so the low-quality rule promotes nothing else) and an anchor at the group's IoU. Returns
    (anchors, targets, expected): expected[a] is "positive", "ignored" or "background" by §4's
    rules read off the constructed IoU (>= 1/2, in [2/5, 1/2), < 2/5), None for the copies.
    """
    groups = [((1, 2), "positive"), ((2, 5), "ignored"), ((0, 1), "background")]
    anchors, boxes, expected = [], [], []
    for g, ((p, q), kind) in enumerate(groups):
        anchor, box = draw(pair_at_iou(p, q, x0=1000.0 * g))
        assert float_iou(anchor, box) == p / q
        anchors += [anchor, box]
        boxes.append(box)
        expected += [(kind, g), ("positive", g)]
    order = draw(st.permutations(range(len(anchors))))
    targets = [{"boxes": np.array(boxes), "labels": np.arange(len(boxes)) % 2},
               {"boxes": np.zeros((0, 4)), "labels": np.zeros((0,), np.int64)}]
    return np.array([anchors[a] for a in order]), targets, [expected[a] for a in order]


@given(threshold_batch())
def test_anchors_on_the_thresholds_are_positive_ignored_or_background_in_the_loss(batch):
    anchors, targets, expected = batch
    m = len(anchors)
    logits = np.zeros((2, m, 2))
    losses, dlogits, ddeltas = retinanet_loss(logits, np.zeros((2, m, 4)), anchors, targets)
    cls_t, _, positive, valid = assign_targets(anchors, targets, 2)
    assert losses["num_positive"] == sum(kind == "positive" for kind, _ in expected)
    for a, (kind, g) in enumerate(expected):
        assert valid[0, a] == (kind != "ignored"), (kind, anchors[a])
        assert positive[0, a] == (kind == "positive"), (kind, anchors[a])
        assert cls_t[0, a].tolist() == (np.eye(2)[g % 2].tolist() if kind == "positive" else [0, 0])
        assert dlogits[0, a].any() == (kind != "ignored")  # an ignored anchor gets no gradient
        # Zero deltas are the regression target of the box's own copy only: smooth L1 pushes the 1/2 anchor.
        assert ddeltas[0, a].any() == (kind == "positive" and anchors[a].tolist() != list(targets[0]["boxes"][g]))
    # The image without boxes: every anchor is a valid negative.
    assert not positive[1].any() and valid[1].all() and dlogits[1].all()


def test_a_crowd_box_trains_nothing_on_the_anchors_it_covers():
    # The second box of TARGETS[0] flagged as a crowd: no anchor regresses to it or learns its class,
    # and the anchors that overlap it by >= 0.4 get no classification gradient at all; the first box
    # trains as before.
    anchors = _anchors()
    M = len(anchors)
    crowd = [dict(TARGETS[0], iscrowd=np.array([False, True]))]
    logits = np.random.default_rng(4).standard_normal((1, M, 2))
    losses, dlogits, ddeltas = retinanet_loss(logits, np.zeros((1, M, 4)), anchors, crowd)
    _, _, pos_all, _ = assign_targets(anchors, TARGETS[:1], 2)
    cls_t, _, pos, valid = assign_targets(anchors, crowd, 2)
    on_crowd = np.array([float_iou(a, TARGETS[0]["boxes"][1]) >= 0.4 for a in anchors])
    assert on_crowd.any() and not valid[0, on_crowd].any() and not dlogits[0, on_crowd].any()
    assert not cls_t[0, :, 0].any()  # label 0 was the crowd's: nothing is taught to be it
    assert pos.sum() == losses["num_positive"] and 0 < pos.sum() < pos_all.sum()
    assert not ddeltas[0, ~pos[0]].any()


def test_crowd_flags_of_the_wrong_length_are_refused():
    bad = [dict(TARGETS[0], iscrowd=np.array([True])), TARGETS[1]]
    with pytest.raises(ValueError, match=r"^targets\[0\]\['iscrowd'\] must be an array of shape \(2,\)"):
        retinanet_loss(np.zeros((2, 20, 2)), np.zeros((2, 20, 4)), _anchors(), bad)
