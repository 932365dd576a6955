"""The parts of `numpy-retinanet bench` (all): the conv census, and the PyTorch mirror agrees with the model.

No timing is asserted here: speed targets live in the benchmark itself.
"""

import numpy as np
import pytest

from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.modules import Conv2d
from numpy_retinanet.tools.bench.ops import conv_shapes


def test_conv_shapes_cover_every_conv_call_of_a_forward_pass():
    model = RetinaNet(3, preset="tiny")
    images = np.zeros((2, 3, 64, 64), np.float32)
    shapes = conv_shapes(model, images)
    convs_once = sum(isinstance(m, Conv2d) for part in (model.backbone, model.fpn) for m in part.modules())
    convs_per_level = sum(isinstance(m, Conv2d) for h in (model.cls_head, model.box_head) for m in h.modules())
    assert sum(s[-1] for s in shapes) == convs_once + 5 * convs_per_level
    assert len(set(s[:5] for s in shapes)) == len(shapes)  # distinct entries
    assert model.num_pending() == 0  # the recording forward left no caches behind
    assert Conv2d.forward.__name__ == "forward"  # and the wrapper is gone


def _agreement(model, images, targets, size, tmodel=None):
    torch = pytest.importorskip("torch")  # the optional 'bench' extra: nothing to compare against without it
    from numpy_retinanet.tools.bench.ops import check_agreement
    from numpy_retinanet.tools.torch_mirror import mirror

    if tmodel is None:
        tmodel = mirror(model)
    return torch, check_agreement(model, tmodel, images, targets, model.anchors(size, size))


def _tiny_batch():
    from numpy_retinanet.data.batching import get_batch
    from numpy_retinanet.data.shapes import ShapesDataset

    return get_batch(ShapesDataset(2, 64, seed=0), 0, 2)


def test_torch_mirror_matches_outputs_loss_and_every_gradient():
    model = RetinaNet(3, preset="tiny", seed=3)
    images, targets = _tiny_batch()
    torch, result = _agreement(model, images, targets, 64)
    assert result["tensors"] == len(model.params) + 5
    assert result["ok"], result
    # The check can fail: a perturbed copy of one weight is caught.
    from numpy_retinanet.tools.torch_mirror import mirror

    bad = mirror(model)
    with torch.no_grad():
        bad.fpn.output3.weight.mul_(1.01)
    assert not _agreement(model, images, targets, 64, bad)[1]["ok"]


def test_worst_entry_applies_atol_of_the_largest_entry_and_rtol_of_each():
    from numpy_retinanet.tools.agreement import Tolerance, worst_entry

    ref = np.array([[100.0, 1.0], [0.0, -2.0]])
    tol = Tolerance(atol=1e-3, rtol=0.1)  # allowed per entry: 0.1 + 0.1 |ref| = [[10.1, 0.2], [0.1, 0.3]]
    ours = ref + np.array([[5.05, 0.0], [0.0, 0.15]])
    row = worst_entry("t", ours, ref, tol)
    assert row["index"] == (0, 0) and row["used"] == pytest.approx(0.5)
    row = worst_entry("t", ref + np.array([[0.0, 0.0], [0.2, 0.0]]), ref, tol)  # 0.2 > 0.1 on the zero entry
    assert row["index"] == (1, 0) and row["ours"] == 0.2 and row["reference"] == 0.0 and row["used"] == pytest.approx(2)
    assert worst_entry("z", np.zeros(3), np.zeros(3), tol)["used"] == 0  # an all-zero reference: exact match passes
    assert worst_entry("z", np.array([0.0, 1e-30, 0.0]), np.zeros(3), tol)["used"] == np.inf  # and nothing else
    with pytest.raises(ValueError, match=r"t must have the reference's shape \(2,\), got \(3,\)"):
        worst_entry("t", np.zeros(3), np.zeros(2), tol)


def test_the_comparison_fails_when_alpha_t_is_dropped_from_the_negatives_gradient(monkeypatch):
    """The planted bug of issue 20: the negatives' gradient without its 1 - alpha = 0.75.

    Their entries are ~1e-5 of a positive's, so the old per-tensor max|diff| / max|ref|
    moved from 1.6e-6 to 3.5e-6 and passed its 1e-4; each of them is now 4/3 of its reference.
    """
    from numpy_retinanet.nn import losses

    forward, backward, names = losses.CLASSIFICATION_LOSSES["focal"]

    def backward_without_negatives_alpha_t(dout, cache):
        sign, x_t, neg_log_pt, modulator, alpha_t, gamma = cache
        return backward(dout, (sign, x_t, neg_log_pt, modulator, np.where(sign < 0, 1, alpha_t), gamma))

    monkeypatch.setitem(losses.CLASSIFICATION_LOSSES, "focal", (forward, backward_without_negatives_alpha_t, names))
    model = RetinaNet(3, preset="tiny", seed=3)
    images, targets = _tiny_batch()
    _, result = _agreement(model, images, targets, 64)
    assert not result["ok"]
    worst = result["worst"]
    assert worst["tensor"] == "dloss/dlogits"
    assert worst["ours"] / worst["reference"] == pytest.approx(1 / (1 - losses.ALPHA), rel=1e-4)
