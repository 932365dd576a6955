"""The parts of `numpy-retinanet bench` (all): the conv census, and the PyTorch mirror agrees with the model.

No timing is asserted here: speed targets live in the benchmark itself.
"""

import importlib.util

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


def test_torch_mirror_matches_outputs_loss_and_every_gradient():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed (optional 'bench' extra): nothing to compare against")
    import torch

    from numpy_retinanet.data.batching import get_batch
    from numpy_retinanet.data.shapes import ShapesDataset
    from numpy_retinanet.tools.bench.ops import check_agreement
    from numpy_retinanet.tools.torch_mirror import mirror

    model = RetinaNet(3, preset="tiny", seed=3)
    images, targets = get_batch(ShapesDataset(2, 64, seed=0), 0, 2)
    result = check_agreement(model, mirror(model), images, targets, model.anchors(64, 64), torch)
    assert result["tensors"] == len(model.params) + 5
    assert result["ok"], result
    # The check can fail: a perturbed copy of one weight is caught.
    bad = mirror(model)
    with torch.no_grad():
        bad.fpn.output3.weight.mul_(1.01)
    assert not check_agreement(model, bad, images, targets, model.anchors(64, 64), torch)["ok"]
