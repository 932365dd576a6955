"""The measurement of who carries the classification loss (tools/negatives.py): shares by hand, and the loss's own sums."""

import numpy as np
import pytest

from numpy_retinanet.data.clutter import ClutterDataset
from numpy_retinanet.detection.criterion import retinanet_loss
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.tools.negatives import negative_shares


class FixedLogits:
    """A stand-in for a RetinaNet: its anchors, and the same logits (N, M, K) for any batch of N images."""

    dtype = np.float64

    def __init__(self, anchors, logits):
        self._anchors, self.logits = anchors, logits
        self.num_classes = logits.shape[2]

    def anchors(self, height, width):
        return self._anchors

    def forward(self, images, keep_cache=True):
        return self.logits[: len(images)], np.zeros(self.logits.shape[:2] + (4,))


class OneImage:
    """A dataset of one blank 64 px image holding ``boxes`` of class 0."""

    image_size = 64

    def __init__(self, boxes):
        self.target = {"boxes": np.asarray(boxes, dtype=np.float32), "labels": np.zeros(len(boxes), dtype=np.int64)}

    def __len__(self):
        return 1

    def __getitem__(self, i):
        return np.zeros((3, 64, 64), dtype=np.float32), self.target


def _softplus(z):
    return np.log1p(np.exp(z))


def test_shares_of_a_hand_made_case_follow_the_cross_entropy_by_hand():
    # Anchor 0 is the box itself (positive); anchors 1-3 overlap nothing (negatives).
    anchors = np.array([[0, 0, 16, 16], [40, 40, 56, 56], [40, 0, 56, 16], [0, 40, 16, 56]], dtype=np.float64)
    x = np.array([0.0, -5.0, 0.0, 3.0])  # positive at p = .5; negatives easy (p_t .993), p_t .5, hardest (p_t .047)
    model = FixedLogits(anchors, x.reshape(1, 4, 1))
    out = negative_shares(model, OneImage([[0, 0, 16, 16]]), loss="ce", alpha=None)
    # CE = -log p_t = softplus(-x_t) with x_t = x for the positive and -x for the negatives; |dCE/dx| = |p - y|.
    loss = np.array([_softplus(-x[0]), *_softplus(x[1:])])
    grad = np.array([1 - 1 / (1 + np.exp(-x[0])), *(1 / (1 + np.exp(-x[1:])))])
    assert out["num_positive"] == 1 and out["num_negative"] == 3 and out["num_hardest"] == 1
    assert out["easy_fraction"] == pytest.approx(1 / 3)
    for name, values in (("loss", loss), ("gradient", grad)):
        shares = out[name]
        assert out[name + "_sum"] == pytest.approx(values.sum())
        assert shares["positives"] == pytest.approx(values[0] / values.sum())
        assert shares["negatives"] == pytest.approx(values[1:].sum() / values.sum())
        assert shares["easy_negatives"] == pytest.approx(values[1] / values.sum())
        assert shares["hardest_negatives"] == pytest.approx(values[3] / values.sum())


class WithDistractors(OneImage):
    """``OneImage`` that also drew (unlabelled) distractors in ``distractor_boxes``."""

    def __init__(self, boxes, distractor_boxes):
        super().__init__(boxes)
        self.distractor_boxes = np.asarray(distractor_boxes, dtype=np.float32)

    def distractors(self, i):
        return {"boxes": self.distractor_boxes}


def test_negatives_on_a_distractor_are_those_whose_anchor_would_match_it():
    anchors = np.array([[0, 0, 16, 16], [40, 40, 56, 56], [40, 0, 56, 16], [0, 40, 16, 56]], dtype=np.float64)
    x = np.array([0.0, 3.0, -5.0, -4.0])  # the anchor on the distractor is the hardest negative
    model = FixedLogits(anchors, x.reshape(1, 4, 1))
    # Distractor boxes: one exactly on anchor 1, one overlapping anchor 3 by IoU 1/3 only (not "on" it).
    dataset = WithDistractors([[0, 0, 16, 16]], [[40, 40, 56, 56], [0, 48, 16, 64]])
    out = negative_shares(model, dataset, loss="ce", alpha=None)
    loss = np.array([_softplus(-x[0]), *_softplus(x[1:])])
    assert out["on_distractors"] == {"negatives": pytest.approx(1 / 3), "hardest_negatives": 1.0}
    assert out["loss"]["distractor_negatives"] == pytest.approx(loss[1] / loss.sum())
    assert "on_distractors" not in negative_shares(model, OneImage([[0, 0, 16, 16]]), loss="ce")


def test_an_ignored_anchor_counts_nowhere():
    # Anchor 1 has IoU 0.45 with the box: between bg_iou .4 and fg_iou .5, so ignored by the loss.
    anchors = np.array([[0, 0, 20, 20], [0, 0, 20, 9], [40, 40, 60, 60]], dtype=np.float64)
    model = FixedLogits(anchors, np.array([0.0, 4.0, -1.0]).reshape(1, 3, 1))
    out = negative_shares(model, OneImage([[0, 0, 20, 20]]), loss="ce", alpha=None)
    assert out["num_positive"] == 1 and out["num_negative"] == 1
    assert out["loss_sum"] == pytest.approx(_softplus(0.0) + _softplus(-1.0))


def test_the_sums_are_the_training_losses_own_and_fl_gamma_0_is_ce():
    ds = ClutterDataset(3, image_size=64, seed=2)
    model = RetinaNet(3, preset="tiny", seed=1)
    images = np.stack([ds[i][0] for i in range(3)]).astype(model.dtype)
    targets = [ds[i][1] for i in range(3)]
    logits, deltas = model.forward(images, keep_cache=False)
    for settings in ({"loss": "ce", "alpha": 0.25}, {"loss": "focal", "gamma": 2.0, "alpha": 0.25}):
        out = negative_shares(model, ds, batch_size=3, **settings)
        losses, dlogits, _ = retinanet_loss(logits, deltas, model.anchors(64, 64), targets, **settings)
        # The trainer divides by the batch's positive anchors (§4.1): one target-1 sample each.
        norm = max(1, out["num_positive"])
        assert losses["num_positive"] == out["num_positive"]
        assert out["loss_sum"] / norm == pytest.approx(losses["classification"], rel=1e-5)
        assert out["gradient_sum"] / norm == pytest.approx(float(np.abs(dlogits).sum()), rel=1e-5)
        shares = out["loss"]
        assert shares["positives"] + shares["negatives"] == pytest.approx(1.0)
        assert 0 <= shares["hardest_negatives"] <= shares["negatives"]
        assert 0 <= shares["easy_negatives"] <= shares["negatives"]
    ce = negative_shares(model, ds, batch_size=2, loss="ce", alpha=0.25)
    fl0 = negative_shares(model, ds, batch_size=2, loss="focal", gamma=0.0, alpha=0.25)
    for name in ("loss", "gradient"):
        for part, share in ce[name].items():
            assert fl0[name][part] == pytest.approx(share, rel=1e-5)


def test_bad_arguments_are_named():
    model = FixedLogits(np.array([[0, 0, 16, 16]], dtype=np.float64), np.zeros((1, 1, 1)))
    with pytest.raises(ValueError, match="easy_pt must be"):
        negative_shares(model, OneImage([]), easy_pt=1.5)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        negative_shares(model, OneImage([]), batch_size=0)


def test_measure_checkpoint_scores_the_runs_own_held_out_regime(tmp_path):
    from numpy_retinanet.engine.config import TrainConfig
    from numpy_retinanet.engine.trainer import train
    from numpy_retinanet.tools.negatives import measure_checkpoint

    config = TrainConfig(dataset="shapes-clutter", preset="tiny", image_size=64, iterations=2, batch_size=2,
                         train_images=4, eval_images=0, loss="ce", alpha=0.5, log_every=1)
    train(config, tmp_path / "run", log=lambda line: None)
    out = measure_checkpoint(tmp_path / "run" / "checkpoint.npz", held_out=3)
    assert (out["dataset"], out["image_size"], out["step"]) == ("shapes-clutter", 64, 2)
    assert out["trained"]["settings"] == {"loss": "ce", "alpha": 0.5}
    assert out["focal"]["settings"] == {"loss": "focal", "alpha": 0.25, "gamma": 2.0}
    assert "on_distractors" in out["trained"]  # the held-out images are the run's cluttered ones
    for result in (out["trained"], out["focal"]):
        assert result["loss"]["positives"] + result["loss"]["negatives"] == pytest.approx(1.0)


def test_the_shares_in_the_regimes_docstring_are_the_committed_measurement():
    import json
    import re
    from pathlib import Path

    import numpy_retinanet.data.clutter as clutter

    measured = json.loads((Path(__file__).parents[1] / "figures" / "shapes_clutter_negatives.json").read_text())
    rows = re.findall(r"^(shapes[\w-]*) +(CE|FL) +(loss|gradient) +([\d.]+) % +([\d.]+) % +([\d.]+) % +(?:([\d.]+) %|-)$",
                      clutter.__doc__, re.M)
    assert len(rows) == 8
    for regime, loss, part, positives, easy, hardest, on_distractors in rows:
        shares = measured[regime]["trained" if loss == "CE" else "focal"][part]
        assert measured[regime]["trained"]["settings"] == {"loss": "ce", "alpha": 0.25}
        for key, shown in (("positives", positives), ("easy_negatives", easy), ("hardest_negatives", hardest),
                           ("distractor_negatives", on_distractors)):
            if shown:
                assert f"{100 * shares[key]:.1f}" == shown, (regime, loss, part, key)
            else:
                assert key not in shares
    # "all but N of the M negative outputs" have p_t > 0.9, plain regime first.
    counts = re.findall(r"all\s+but\s+([\d,]+)\s+of\s+the\s+([\d,]+)", clutter.__doc__)
    assert len(counts) == 2
    for (easy_not, total), regime in zip(counts, ("shapes", "shapes-clutter")):
        trained = measured[regime]["trained"]
        assert int(total.replace(",", "")) == trained["num_negative"]
        assert int(easy_not.replace(",", "")) == round((1 - trained["easy_fraction"]) * trained["num_negative"])
    # Negatives on a distractor: "0.3 % of the cluttered regime's negatives but 18 % of its hardest 1 %".
    on = measured["shapes-clutter"]["trained"]["on_distractors"]
    shown = re.search(r"on a distractor are ([\d.]+) % of the cluttered regime's negatives but ([\d.]+) % of its",
                      " ".join(clutter.__doc__.split()))
    assert (shown.group(1), shown.group(2)) == (f"{100 * on['negatives']:.1f}", f"{100 * on['hardest_negatives']:.0f}")
