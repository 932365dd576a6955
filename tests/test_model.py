"""The whole detector: shapes, anchor order, gradients of every parameter, initialization (§3.3, §4)."""

import numpy as np
import pytest

from numpy_retinanet.detection.criterion import retinanet_loss
from numpy_retinanet.gradcheck import all_passed, check_gradients, directional_check, format_report
from numpy_retinanet.model.heads import RetinaHead, prior_bias
from numpy_retinanet.model.retinanet import RetinaNet


@pytest.fixture(scope="module")
def tiny64():
    return RetinaNet(num_classes=2, preset="tiny", dtype=np.float64, seed=0)


def test_output_shapes_match_anchors_for_odd_sizes(tiny64):
    for h, w in [(32, 32), (40, 56), (33, 47)]:
        x = np.random.default_rng(0).standard_normal((2, 3, h, w))
        logits, deltas = tiny64.forward(x, keep_cache=False)
        anchors = tiny64.anchors(h, w)
        shapes = tiny64.level_shapes(h, w)
        A = tiny64.anchor_generator.num_anchors_per_location
        assert [s for s in shapes] == [(-(-h // s), -(-w // s)) for s in (8, 16, 32, 64, 128)]
        M = A * sum(a * b for a, b in shapes)
        assert logits.shape == (2, M, 2) and deltas.shape == (2, M, 4)
        assert anchors.shape == (M, 4)
        assert tiny64.num_pending() == 0


def test_output_order_is_level_row_column_anchor():
    # Give one location of P4 a distinctive input by zeroing the head's weights and
    # checking which flattened index the bias of a single output channel lands on.
    m = RetinaNet(num_classes=3, preset="tiny", dtype=np.float64)
    last = m.cls_head.subnet.layers[-1]
    last.params["weight"][...] = 0
    bias = last.params["bias"]
    A, K = m.anchor_generator.num_anchors_per_location, 3
    bias[...] = np.arange(A * K)  # channel c = a*K + k
    logits, _ = m.forward(np.zeros((1, 3, 40, 24)), keep_cache=False)
    shapes = m.level_shapes(40, 24)
    idx = 0
    for h, w in shapes:
        for _ in range(h * w):  # rows, then columns: one location after another
            for a in range(A):
                np.testing.assert_array_equal(logits[0, idx], np.arange(K) + a * K)
                idx += 1
    assert idx == logits.shape[1]


def test_backward_without_the_image_gradient_adds_the_same_parameter_gradients(tiny64):
    rng = np.random.default_rng(4)
    m = tiny64
    x = rng.standard_normal((2, 3, 32, 40)).astype(m.dtype)
    logits, deltas = m.forward(x)
    rl, rd = rng.standard_normal(logits.shape).astype(m.dtype), rng.standard_normal(deltas.shape).astype(m.dtype)
    m.zero_grad()
    dimages = m.backward(rl, rd)
    with_images = {k: g.copy() for k, g in m.grads.items()}
    m.forward(x)
    m.zero_grad()
    assert m.backward(rl, rd, image_grad=False) is None
    assert dimages.shape == x.shape and m.num_pending() == 0
    for k, g in m.grads.items():
        assert g.tobytes() == with_images[k].tobytes(), k


def test_every_parameter_gradient_of_the_tiny_model(tiny64, capsys):
    rng = np.random.default_rng(1)
    m = tiny64
    x = rng.standard_normal((2, 3, 32, 40))
    logits, deltas = m.forward(x)
    rl, rd = rng.standard_normal(logits.shape), rng.standard_normal(deltas.shape)
    m.zero_grad()
    m.backward(rl, rd)
    assert m.num_pending() == 0

    # Subtracting the unperturbed outputs before summing keeps the rounding error of
    # f (~1e-16 * |f|, divided by 2h) from swamping small gradient entries.
    def f():
        lo, de = m.forward(x, keep_cache=False)
        return float(np.sum((lo - logits) * rl) + np.sum((de - deltas) * rd))

    rows = check_gradients(f, m.params, m.grads, max_entries=3, seed=2, verbose=False)
    row = directional_check(f, m.params, m.grads, seed=3, verbose=False)
    print(format_report(rows + [row]))
    assert len(rows) == len(m.params) > 30
    assert all_passed(rows + [row]), format_report([r for r in rows + [row] if not r.passed])
    assert max(r.max_rel_error for r in rows) <= 1e-6


def test_head_shared_over_five_levels_accumulates_the_sum():
    rng = np.random.default_rng(4)
    head = RetinaHead(4, num_anchors=2, out_per_anchor=3, depth=2, channels=4, rng=rng, dtype=np.float64)
    feats = [rng.standard_normal((2, 4, s, s + 1)) for s in (6, 3, 2, 1, 1)]
    out = head.forward(feats)
    dout = rng.standard_normal(out.shape)
    head.zero_grad()
    dfeats = head.backward(dout)
    together = {k: v.copy() for k, v in head.grads.items()}
    total = {k: np.zeros_like(v) for k, v in together.items()}
    start = 0
    for lvl, f in enumerate(feats):
        head.zero_grad()
        o = head.forward([f])
        d = dout[:, start:start + o.shape[1]]
        start += o.shape[1]
        df = head.backward(d)[0]
        np.testing.assert_allclose(df, dfeats[lvl], rtol=1e-12, atol=1e-15)
        for k in total:
            total[k] += head.grads[k]
    for k in total:
        np.testing.assert_allclose(together[k], total[k], rtol=1e-12, atol=1e-15)


def test_prior_initialization_gives_probability_pi_and_small_initial_loss():
    assert prior_bias(0.01) == pytest.approx(-4.59512, abs=1e-5)
    rng = np.random.default_rng(5)
    images = rng.standard_normal((2, 3, 128, 128)).astype(np.float32)
    targets = [{"boxes": np.array([[10, 12, 50, 60], [70, 70, 100, 120]], np.float32),
                "labels": np.array([0, 2])},
               {"boxes": np.array([[30, 30, 60, 50]], np.float32), "labels": np.array([1])}]
    with_prior = RetinaNet(3, preset="default", seed=0)
    logits, deltas = with_prior.forward(images, keep_cache=False)
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    assert abs(p.mean() - 0.01) < 0.002
    anchors = with_prior.anchors(128, 128)
    l_prior, _, _ = retinanet_loss(logits, deltas, anchors, targets)

    no_prior = RetinaNet(3, preset="default", seed=0, prior=0.5)  # bias 0
    assert no_prior.cls_head.subnet.layers[-1].params["bias"].max() == 0
    logits0, deltas0 = no_prior.forward(images, keep_cache=False)
    l_zero, _, _ = retinanet_loss(logits0, deltas0, anchors, targets)
    ratio = l_zero["classification"] / l_prior["classification"]
    print(f"initial classification loss: prior {l_prior['classification']:.4f}, "
          f"bias 0 {l_zero['classification']:.2f}, ratio {ratio:.0f}")
    # §3.3: with bias 0 every negative (anchor, class) pair has p = 0.5 and costs
    # alpha_t (1 - p_t)^2 log 2 = 0.75 * 0.25 * 0.693 = 0.13; thousands of them, divided
    # by a dozen positives, swamp the loss. With the prior they cost ~1e-6 each.
    from numpy_retinanet.detection.criterion import assign_targets
    _, _, pos, valid = assign_targets(anchors, targets, 3)
    neg_entries = int((valid & ~pos).sum()) * 3
    expect_neg = neg_entries * 0.75 * 0.25 * np.log(2) / l_zero["num_positive"]
    # Logits spread around 0 (std ~0.25), and the negative's loss is convex there, so the
    # measured loss sits a few percent above this p = 0.5 estimate.
    assert l_zero["classification"] == pytest.approx(expect_neg, rel=0.1)
    assert ratio > 50


def test_bad_input_is_refused(tiny64):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        tiny64.forward(np.zeros((1, 1, 32, 32)))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        tiny64.forward(np.zeros((3, 32, 32)))
    with pytest.raises(ValueError, match="dtype"):
        tiny64.forward(np.zeros((1, 3, 32, 32), dtype=np.int64))
    with pytest.raises(ValueError, match="NaN"):
        tiny64.forward(np.full((1, 3, 32, 32), np.nan))
    sd = tiny64.state_dict()
    key = next(iter(sd))
    sd[key] = np.zeros((1,) + sd[key].shape)
    with pytest.raises(ValueError, match="shape"):
        tiny64.load_state_dict(sd)
    with pytest.raises(ValueError, match="preset"):
        RetinaNet(2, preset="huge")
    with pytest.raises(ValueError, match="unknown model settings"):
        RetinaNet(2, preset="tiny", fpn_channel=3)
    with pytest.raises(ValueError, match="num_classes"):
        RetinaNet(0, preset="tiny")
