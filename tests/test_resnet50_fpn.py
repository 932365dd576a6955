"""Tests for torchvision's RetinaNet built in NumPy, without torch: model/resnet50.py,
model/resnet50_fpn.py, detection/anchors_torchvision.py, data/torchvision_transform.py.

The numbers held here come from torchvision's source and documentation, or are worked out by hand
in the comments; tests/test_torchvision_retinanet.py compares with torchvision itself where it is
installed.
"""

import math
import sys

import numpy as np
import pytest

from numpy_retinanet.cli import main
from numpy_retinanet.data.torchvision_transform import (
    boxes_to_original,
    resize_bilinear,
    resized_size,
    torchvision_transform,
)
from numpy_retinanet.detection.anchors_torchvision import TORCHVISION_SIZES, TorchvisionAnchorGenerator
from numpy_retinanet.detection.postprocess import postprocess
from numpy_retinanet.engine.checkpoint import _check_meta
from numpy_retinanet.engine.inference import detect, detect_torchvision
from numpy_retinanet.gradcheck import check_gradients
from numpy_retinanet.model.resnet50 import ResNet50
from numpy_retinanet.model.resnet50_fpn import COCO_CATEGORY_NAMES, ResNet50FPNRetinaNet
from numpy_retinanet.model.retinanet import build_model
from numpy_retinanet.tools.torchvision_weights import to_torchvision_name


@pytest.fixture(scope="module")
def model():
    return ResNet50FPNRetinaNet(num_classes=91)


# ---------------------------------------------------------------- architecture


def test_parameter_count_is_torchvisions(model):
    # torchvision 0.29's retinanet_resnet50_fpn(num_classes=91): 34,068,119 parameters plus 53,120 batch-norm
    # statistics (running_mean and running_var of its 53 batch norms), both stored here as parameters.
    assert model.num_parameters() == 34_068_119 + 53_120


def test_outputs_have_one_row_per_anchor_of_every_level(model):
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 96)).astype(np.float32)
    logits, deltas = model.forward(x, keep_cache=False)
    # P3..P7 of 64x96: 8x12, 4x6, 2x3, 1x2, 1x1 positions (ceil of the side over 2^l), 9 anchors each
    m = 9 * (8 * 12 + 4 * 6 + 2 * 3 + 1 * 2 + 1 * 1)
    assert logits.shape == (1, m, 91) and deltas.shape == (1, m, 4)
    assert model.anchors(64, 96).shape == (m, 4)
    assert model.num_pending() == 0
    # dropping each part's caches as it finishes changes no output
    kept_logits, kept_deltas = model.forward(x)
    model.clear_cache()
    np.testing.assert_array_equal(kept_logits, logits)
    np.testing.assert_array_equal(kept_deltas, deltas)


def test_stages_have_resnet50s_channels_and_strides(model):
    backbone = model.backbone
    c3, c4, c5 = backbone.forward(np.zeros((1, 3, 65, 33), dtype=np.float32))
    backbone.clear_cache()
    assert c3.shape == (1, 512, 9, 5) and c4.shape == (1, 1024, 5, 3) and c5.shape == (1, 2048, 3, 2)
    # 3 + 4 + 6 + 3 bottlenecks of 3 convs, 4 projection shortcuts, the stem: 53 convs and 53 batch norms
    names = backbone.params
    assert sum(k.endswith("running_var") for k in names) == 53
    assert sum(v.ndim == 4 for v in names.values()) == 53
    assert "layer2.0.conv2.weight" in names and names["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)


def test_the_stride_is_on_the_bottlenecks_3x3_conv(model):
    first = model.backbone.layer2.layers[0]
    assert (first.conv1.stride, first.conv2.stride, first.conv3.stride) == (1, 2, 1)
    assert first.downsample.layers[0].stride == 2


def test_small_resnet_backward_matches_numerical_gradients():
    # ResNet-50's layout (stem, max-pool, bottlenecks with projection shortcuts, frozen batch norms)
    # at one block per stage and widths 2-4, in float64; only the image's gradient (the norms are frozen)
    rng = np.random.default_rng(1)
    net = ResNet50(bn_eps=1e-5, rng=rng, dtype=np.float64, depths=(1, 1, 1, 1), widths=(2, 2, 3, 4))
    for name, p in net.params.items():
        if "bn" in name or "downsample.1" in name:
            p[...] = rng.uniform(0.5, 1.5, p.shape) if name.endswith(("weight", "running_var")) else \
                0.1 * rng.standard_normal(p.shape)
    x = rng.standard_normal((1, 3, 13, 11))
    douts = [rng.standard_normal(c.shape) for c in net.forward(x)]
    dx = net.backward(*douts)

    def f():
        outs = net.forward(x)
        net.clear_cache()
        return float(sum(np.sum(o * d) for o, d in zip(outs, douts)))

    rows = check_gradients(f, {"x": x}, {"x": dx}, max_entries=30, verbose=False)
    assert all(r.passed for r in rows), rows[0].format()
    assert all(not g.any() for k, g in net.grads.items() if "bn" in k or "downsample.1" in k)


def test_checkpoint_model_config_builds_the_same_architecture(model):
    rebuilt = build_model(model.config())
    assert isinstance(rebuilt, ResNet50FPNRetinaNet)
    assert {k: v.shape for k, v in rebuilt.params.items()} == {k: v.shape for k, v in model.params.items()}


@pytest.mark.parametrize("field,value", [("bn_eps", -1.0), ("bn_eps", None), ("overrides", {"fpn_channels": 8}),
                                         ("widths", [1, 2])])
def test_a_checkpoints_bad_model_config_is_refused(model, field, value):
    meta = {"format": "numpy-retinanet-checkpoint", "version": 1, "model": dict(model.config(), **{field: value}),
            "step": 0, "train_config": {}, "has_optimizer": False}
    with pytest.raises(ValueError, match="'x.npz': model: "):
        _check_meta("x.npz", meta)


def test_coco_names_are_torchvisions_91_with_80_classes():
    assert len(COCO_CATEGORY_NAMES) == 91 and COCO_CATEGORY_NAMES[0] == "__background__"
    real = [n for n in COCO_CATEGORY_NAMES[1:] if n != "N/A"]
    assert len(real) == len(set(real)) == 80
    # a few of COCO's own category ids (instances_val2017.json)
    assert (COCO_CATEGORY_NAMES[1], COCO_CATEGORY_NAMES[18], COCO_CATEGORY_NAMES[90]) == ("person", "dog", "toothbrush")


# ---------------------------------------------------------------- anchors


def test_anchor_sizes_are_torchvisions():
    # int(32 * 2^(1/3)) = int(40.3) = 40, int(32 * 2^(2/3)) = int(50.8) = 50, ...
    assert TORCHVISION_SIZES == ((32, 40, 50), (64, 80, 101), (128, 161, 203), (256, 322, 406), (512, 645, 812))


def test_cell_anchors_are_rounded_to_whole_pixels():
    cell = TorchvisionAnchorGenerator().cell_anchors(0)
    # ratio 0.5 (h / w), size 32: w = 32 / sqrt(0.5) = 45.25, h = 22.63 -> half sides 22.63, 11.31 -> 23, 11
    np.testing.assert_array_equal(cell[0], [-23, -11, 23, 11])
    # ratio 1: half sides 16, 20, 25
    np.testing.assert_array_equal(cell[3:6], [[-16, -16, 16, 16], [-20, -20, 20, 20], [-25, -25, 25, 25]])
    # ratio 2, size 50: w = 35.36, h = 70.71 -> 17.68, 35.36 -> 18, 35
    np.testing.assert_array_equal(cell[8], [-18, -35, 18, 35])


def test_anchors_are_centred_at_j_times_the_integer_stride():
    gen = TorchvisionAnchorGenerator()
    anchors = gen.anchors(800, 1088)
    sizes = gen.level_sizes(800, 1088)
    assert sizes == [9 * 100 * 136, 9 * 50 * 68, 9 * 25 * 34, 9 * 13 * 17, 9 * 7 * 9]
    start = sum(sizes[:3])
    p6 = anchors[start:start + sizes[3]].reshape(13, 17, 9, 4)
    # P6 of an 800 x 1088 image is 13 x 17: strides 800 // 13 = 61 and 1088 // 17 = 64, not 64 and 64
    centres = (p6[..., :2] + p6[..., 2:]) / 2
    np.testing.assert_array_equal(centres[2, 3, 4], [3 * 64, 2 * 61])
    # P3: row 0, column 1, anchor 4 (ratio 1, size 40) centred at (8, 0)
    np.testing.assert_array_equal(anchors[9 + 4], [8 - 20, -20, 8 + 20, 20])


# ---------------------------------------------------------------- transform


@pytest.mark.parametrize("size,expected", [((480, 640), (800, 1066)), ((600, 500), (960, 800)),
                                           ((333, 777), (571, 1333)), ((800, 800), (800, 800))])
def test_resized_size_puts_the_short_side_at_800_and_the_long_side_at_most_1333(size, expected):
    # 480x640: scale 800/480 = 5/3, 640 * 5/3 = 1066.7 -> 1066. 333x777: 800/333 would make 1866 > 1333,
    # so scale = 1333/777 and 333 * 1333/777 = 571.3 -> 571.
    assert resized_size(*size) == expected


def test_bilinear_resize_samples_at_pixel_centres():
    x = np.array([[[0.0, 4.0]]], dtype=np.float32)  # one row, two columns
    # doubling: output centres at 0.25, 0.75, 1.25, 1.75 input pixels -> src clamped at 0, then 0.25, 0.75,
    # and the last one past the last column reads only it: 0, 1, 3, 4
    np.testing.assert_array_equal(resize_bilinear(x, 1, 4), [[[0.0, 1.0, 3.0, 4.0]]])
    # halving: the one output centre sits between the inputs
    np.testing.assert_array_equal(resize_bilinear(np.array([[[0.0, 4.0]]], dtype=np.float32), 1, 1), [[[2.0]]])


def test_transform_normalizes_with_imagenet_statistics_and_pads_to_a_multiple_of_32():
    pictures = [np.full((40, 50, 3), 255, dtype=np.uint8), np.zeros((60, 30, 3), dtype=np.uint8)]
    batch, sizes = torchvision_transform(pictures, min_size=64, max_size=100)
    assert sizes == [(64, 80), (100, 50)]  # 40x50 * 1.6; 60x30: 64/30 would make 128 > 100, so 100/60
    assert batch.shape == (2, 3, 128, 96) and batch.dtype == np.float32
    white = (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(batch[0, :, 10, 10], white, rtol=1e-6)
    assert not batch[0, :, 64:].any() and not batch[0, :, :, 80:].any()
    np.testing.assert_allclose(batch[1, :, 99, 49], -np.array([0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225],
                               rtol=1e-6)


def test_boxes_go_back_to_the_original_pixels():
    boxes = np.array([[0.0, 0.0, 1066.0, 800.0], [10.0, 20.0, 30.0, 40.0]], dtype=np.float32)
    back = boxes_to_original(boxes, (800, 1066), (480, 640))
    np.testing.assert_allclose(back, [[0, 0, 640, 480], [6.004, 12, 18.011, 24]], rtol=1e-4)


# ---------------------------------------------------------------- post-processing


def test_postprocess_keeps_empty_boxes_when_asked_as_torchvisions_retinanet():
    anchors = np.array([[0, 0, 10, 10], [-30, 0, -20, 10]], dtype=np.float32)  # the second lies left of the image
    logits = np.full((1, 2, 1), 3.0, dtype=np.float32)
    deltas = np.zeros((1, 2, 4), dtype=np.float32)
    kept = postprocess(logits, deltas, anchors, (20, 20), drop_empty=False)[0]
    dropped = postprocess(logits, deltas, anchors, (20, 20))[0]
    assert len(kept["scores"]) == 2 and len(dropped["scores"]) == 1
    np.testing.assert_array_equal(kept["boxes"][1], [0, 0, 0, 10])  # clipped to x = 0: zero width
    assert math.isclose(float(kept["scores"][0]), 1 / (1 + math.exp(-3)), rel_tol=1e-6)


# ---------------------------------------------------------------- inference


def test_detect_torchvision_gives_boxes_in_the_pictures_pixels(model):
    picture = np.random.default_rng(2).integers(0, 256, (30, 45, 3), dtype=np.uint8)
    det = detect_torchvision(model, [picture], min_size=64, max_size=96)[0]
    # the random weights put some scores above 0.05; at most 300 are kept, by decreasing score
    assert 0 < len(det["scores"]) <= 300 and np.all(np.diff(det["scores"]) <= 0)
    assert det["boxes"].min() >= 0 and det["boxes"][:, 0::2].max() <= 45 and det["boxes"][:, 1::2].max() <= 30
    # the boxes reach the picture's border (clipped to the resized 64 x 96, then scaled by 30/64, 45/96)
    assert det["boxes"][:, 2].max() == pytest.approx(45, rel=1e-6)


def test_detect_on_normalized_images_refuses_torchvisions_architecture(model):
    with pytest.raises(ValueError, match="^model must be one of this package's presets"):
        detect(model, np.zeros((1, 3, 64, 64), dtype=np.float32))


# ---------------------------------------------------------------- convert (the parts that need no torch)


@pytest.mark.parametrize("ours,theirs", [
    ("backbone.conv1.weight", "backbone.body.conv1.weight"),
    ("backbone.layer4.0.downsample.1.running_var", "backbone.body.layer4.0.downsample.1.running_var"),
    ("fpn.lateral3.weight", "backbone.fpn.inner_blocks.0.0.weight"),
    ("fpn.output5.bias", "backbone.fpn.layer_blocks.2.0.bias"),
    ("fpn.p6.weight", "backbone.fpn.extra_blocks.p6.weight"),
    ("cls_head.subnet.0.weight", "head.classification_head.conv.0.0.weight"),
    ("cls_head.subnet.6.bias", "head.classification_head.conv.3.0.bias"),
    ("cls_head.subnet.8.bias", "head.classification_head.cls_logits.bias"),
    ("box_head.subnet.8.weight", "head.regression_head.bbox_reg.weight"),
])
def test_parameter_names_map_to_torchvisions(ours, theirs):
    # torchvision's names: its retinanet_resnet50_fpn().state_dict() (torchvision >= 0.13)
    assert to_torchvision_name(ours) == theirs


def test_every_parameter_has_its_own_torchvision_name(model):
    names = [to_torchvision_name(k) for k in model.params]
    # 53 backbone convs without bias, 53 batch norms of 4 arrays, 8 FPN convs and 2 x 5 head convs with biases:
    # 301, torchvision's 354 state-dict entries less the 53 num_batches_tracked counters of its BatchNorm2d
    assert len(set(names)) == len(names) == 53 + 53 * 4 + 8 * 2 + 2 * 5 * 2 == 354 - 53


def test_convert_without_torch_says_what_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    assert main(["convert", str(tmp_path / "x.pth"), str(tmp_path / "x.npz")]) == 2
    assert "convert needs PyTorch: pip install 'numpy-retinanet[torch]'" in capsys.readouterr().err
