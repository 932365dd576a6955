# %% [markdown]
# # Lesson 11: the real thing
#
# Lessons 4 to 9 built a RetinaNet small enough to train on a CPU. The detector of the paper's §4 is bigger:
# a ResNet-50 (or ResNet-101) backbone, an FPN of 256 channels on P3 to P7, and subnets of four 3x3 convs of
# 256 channels with 9 anchors per location. The one engineers run today is torchvision's
# `retinanet_resnet50_fpn`, trained on COCO. This lesson builds it from the pieces you have read
# (`numpy_retinanet/model/resnet50_fpn.py`: the convs, the FPN and the heads of lessons 4 and 7, plus a
# ResNet-50 in `model/resnet50.py`), counts what it costs next to the shapes model, runs it the way
# torchvision runs it, and shows how to put the published COCO weights through it.
#
# No weights are downloaded here: the model has random weights, so it detects nothing meaningful. Fast mode
# (`NUMPY_RETINANET_FAST=1`) runs it on a small picture; the full lesson runs it at torchvision's 800 px.

# %%
import inspect
import os
import time

import numpy as np

from numpy_retinanet.data.torchvision_transform import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_SIZE,
    MIN_SIZE,
    SIZE_DIVISIBLE,
    resized_size,
    torchvision_transform,
)
from numpy_retinanet.detection.anchors import AnchorGenerator
from numpy_retinanet.detection.anchors_torchvision import TorchvisionAnchorGenerator
from numpy_retinanet.detection.postprocess import postprocess
from numpy_retinanet.engine.inference import detect_torchvision
from numpy_retinanet.model.heads import prior_bias
from numpy_retinanet.model.resnet50 import DEPTHS, EXPANSION, WIDTHS, Bottleneck
from numpy_retinanet.model.resnet50_fpn import COCO_CATEGORY_NAMES, TORCHVISION_POSTPROCESS, ResNet50FPNRetinaNet
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.functional import frozen_batch_norm_coefficients
from numpy_retinanet.nn.losses import sigmoid
from numpy_retinanet.nn.modules import Conv2d, FrozenBatchNorm2d
from numpy_retinanet.tools.torchvision_agreement import match_detections, random_picture

FAST = os.environ.get("NUMPY_RETINANET_FAST") == "1"

big = ResNet50FPNRetinaNet(num_classes=len(COCO_CATEGORY_NAMES), seed=0)  # torchvision's architecture
shapes_model = RetinaNet(num_classes=3, preset="default", seed=0)  # the model of lessons 4 to 10
print(f"torchvision's RetinaNet: {big.num_parameters():,} parameters; the shapes model: "
      f"{shapes_model.num_parameters():,}")

# %% [markdown]
# ## The structure: ResNet-50, the FPN, the heads
#
# ResNet-50 (He et al. 2016) starts with a 7x7 conv of stride 2 and a 3x3 max-pool of stride 2, then four
# stages of *bottleneck* blocks (3, 4, 6 and 3 of them). A bottleneck squeezes the channels with a 1x1 conv,
# does its spatial work with a 3x3 conv at that small width, and widens again 4x with a 1x1 conv; the first
# block of stages 2 to 4 halves the resolution (torchvision puts that stride on the 3x3 conv). Stages 2, 3
# and 4 give C3, C4 and C5. After every conv comes a *frozen* batch norm: a per-channel scale and shift
# whose statistics were fixed when the backbone was trained on ImageNet.
#
# One forward pass of the backbone and FPN on a 256 x 320 image shows the shapes.

# %%
image = np.random.default_rng(0).standard_normal((1, 3, 256, 320)).astype(np.float32)
c3, c4, c5 = big.backbone.forward(image, keep_cache=False)
features = big.fpn.forward(c3, c4, c5)
big.clear_cache()
print(f"{'':<4} {'channels':>8} {'stride':>6}  map")
for name, f in zip(["C3", "C4", "C5", "P3", "P4", "P5", "P6", "P7"], [c3, c4, c5, *features]):
    print(f"{name:<4} {f.shape[1]:>8} {image.shape[2] // f.shape[2]:>6}  {f.shape[2]} x {f.shape[3]}")
stem, pool = big.backbone.conv1, big.backbone.maxpool
print(f"stem: conv {stem.params['weight'].shape} stride {stem.stride}, max-pool {pool.kernel_size}x{pool.kernel_size} "
      f"stride {pool.stride}")
print("bottlenecks per stage:", [len(stage.layers) for stage in big.backbone.stages])
print("each subnet:", " -> ".join(type(layer).__name__ for layer in big.cls_head.subnet.layers))

# %% tags=["hide-input"]
assert [c.shape[1] for c in (c3, c4, c5)] == [w * EXPANSION for w in WIDTHS[1:]] == [512, 1024, 2048]
assert [f.shape[1] for f in features] == [256] * 5
assert [f.shape[2:] for f in (c3, c4, c5, *features)] == [(-(-256 // 2**l), -(-320 // 2**l))
                                                          for l in (3, 4, 5, 3, 4, 5, 6, 7)]
assert [len(stage.layers) for stage in big.backbone.stages] == list(DEPTHS) == [3, 4, 6, 3]
assert stem.params["weight"].shape == (64, 3, 7, 7) and stem.stride == pool.stride == 2 and pool.kernel_size == 3
assert [b.conv2.stride for stage in big.backbone.stages for b in stage.layers[:1]] == [1, 2, 2, 2]  # on the 3x3
assert all(b.conv1.stride == 1 for stage in big.backbone.stages for b in stage.layers)
assert sum(isinstance(m, Conv2d) for m in big.cls_head.subnet.layers) == 4 + 1  # four hidden convs, one output

# %% [markdown]
# The FPN and the heads are the modules of lessons 4 and 7 with the paper's sizes: 256 channels, four
# hidden convs without normalization, $9 \times 91$ logits per location (torchvision's labels are COCO's
# category ids, 0 to 90; 0 is the background and 10 ids are unused) and $9 \times 4$ box deltas. One
# difference from the shapes model: torchvision computes P6 from P5 (the `p6_from="p5"` of lesson 4's
# exercise), not from C5 as the paper does.
#
# ## Parameters, counted by hand
#
# A conv with $C_{in}$ inputs, $C_{out}$ outputs and a $k \times k$ kernel has $C_{out} C_{in} k^2$ weights,
# plus $C_{out}$ biases if it has them (the backbone's convs do not: the batch norm after each has a shift).
# A frozen batch norm over $C$ channels stores four arrays of $C$: weight, bias, running mean and running
# variance. The first bottleneck of stage 2 (128 wide, from 256 to 512 channels, with a 1x1 shortcut conv):

# %%
block = big.backbone.layer2.layers[0]
cin, width = 256, 128
block_by_hand = (width * cin + width * width * 9 + EXPANSION * width * width + EXPANSION * width * cin  # 4 convs
                 + 4 * (width + width + EXPANSION * width + EXPANSION * width))  # 4 batch norms x 4 arrays
print(f"layer2.0 by hand: {block_by_hand:,}; block.num_parameters(): {block.num_parameters():,}")


def bottleneck_count(cin, width, shortcut):
    """Parameters of one bottleneck (convs and frozen batch norms), as above."""
    convs = width * cin + width * width * 9 + EXPANSION * width * width + shortcut * EXPANSION * width * cin
    norms = 4 * (2 * width + EXPANSION * width + shortcut * EXPANSION * width)
    return convs + norms


def resnet50_count():
    """The stem (7x7 conv and its batch norm) and the four stages."""
    total, cin = 64 * 3 * 49 + 4 * 64, 64
    for depth, width in zip(DEPTHS, WIDTHS):
        for j in range(depth):
            total += bottleneck_count(cin, width, shortcut=(j == 0))  # the first block changes the shape
            cin = EXPANSION * width
    return total


fpn_count = (sum(256 * c + 256 for c in (512, 1024, 2048))  # lateral 1x1 convs
             + 3 * (256 * 256 * 9 + 256) + 2 * (256 * 256 * 9 + 256))  # output 3x3 convs, P6, P7
hidden = 4 * (256 * 256 * 9 + 256)
heads_count = (hidden + 9 * 91 * 256 * 9 + 9 * 91) + (hidden + 9 * 4 * 256 * 9 + 9 * 4)
parts = {"backbone": resnet50_count(), "fpn": fpn_count, "heads": heads_count}
for name, n in parts.items():
    print(f"{name:<9} {n:>11,}")
print(f"{'total':<9} {sum(parts.values()):>11,}  (num_parameters: {big.num_parameters():,})")
norm_arrays = sum(p.size for name, p in big.params.items() if name.endswith(("running_mean", "running_var")))
norm_affine = sum(m.params["weight"].size + m.params["bias"].size for m in big.modules()
                  if isinstance(m, FrozenBatchNorm2d))
conv_count = big.num_parameters() - norm_arrays - norm_affine
print(f"of which conv weights and biases: {conv_count:,}; batch-norm numbers: {norm_arrays + norm_affine:,}")

# %% tags=["hide-input"]
assert block_by_hand == block.num_parameters() == bottleneck_count(256, 128, True)
assert isinstance(block, Bottleneck) and block.downsample is not None
assert parts["backbone"] == big.backbone.num_parameters()
assert parts["fpn"] == big.fpn.num_parameters() and parts["heads"] == big.cls_head.num_parameters() + \
    big.box_head.num_parameters()
assert sum(parts.values()) == big.num_parameters()
assert norm_arrays == norm_affine  # the four arrays of every frozen batch norm have the same length
assert conv_count == sum(m.num_parameters() for m in big.modules() if isinstance(m, Conv2d))
assert parts["heads"] > parts["fpn"] and parts["backbone"] > parts["heads"]

# %% [markdown]
# The backbone holds most of the parameters, then the two heads, then the FPN. torchvision lists the model's
# size as its conv weights and biases only: in its frozen batch norms the four arrays are buffers, fixed
# numbers rather than parameters. Here they sit in `params` so that a checkpoint holds them, and
# `FrozenBatchNorm2d.backward` gives them no gradient.
#
# ## The frozen batch norm is a per-channel affine map
#
# In training, batch norm normalizes with the batch's mean and variance. A pretrained network uses the
# running statistics it stored instead, fixed numbers, so the whole layer is
# $y = (x - \mu_c) / \sqrt{\sigma^2_c + \epsilon} \cdot \gamma_c + \beta_c = x \cdot s_c + t_c$ with
# $s_c = \gamma_c / \sqrt{\sigma^2_c + \epsilon}$ and $t_c = \beta_c - \mu_c s_c$. Give one layer random
# statistics and compare it with batch norm computed from the definition:

# %%
rng = np.random.default_rng(1)
bn = FrozenBatchNorm2d(64, eps=1e-5, dtype=np.float64)
for name, value in (("weight", rng.uniform(0.5, 1.5, 64)), ("bias", rng.normal(0, 0.1, 64)),
                    ("running_mean", rng.normal(0, 1, 64)), ("running_var", rng.uniform(0.5, 2, 64))):
    bn.params[name][...] = value
p = bn.params
x = rng.standard_normal((2, 64, 5, 7))
batch_norm = ((x - p["running_mean"][:, None, None]) / np.sqrt(p["running_var"][:, None, None] + 1e-5)
              * p["weight"][:, None, None] + p["bias"][:, None, None])
scale, shift = frozen_batch_norm_coefficients(p["weight"], p["bias"], p["running_mean"], p["running_var"], 1e-5)
y = bn.forward(x)
print(f"largest difference from the definition: {np.abs(y - batch_norm).max():.1e}; "
      f"from x * scale + shift: {np.abs(y - (x * scale[:, None, None] + shift[:, None, None])).max():.1e}")

# %% tags=["hide-input"]
np.testing.assert_allclose(y, batch_norm, rtol=1e-13, atol=1e-13)
np.testing.assert_allclose(y, x * scale[:, None, None] + shift[:, None, None], rtol=1e-15, atol=1e-15)
assert np.array_equal(bn.backward(np.ones_like(y)), np.broadcast_to(scale[:, None, None], y.shape))
assert all(np.all(g == 0) for g in bn.grads.values())  # frozen: no gradient reaches its arrays

# %% [markdown]
# Its backward is as simple: $\partial y / \partial x = s_c$, and nothing flows into the four arrays.
#
# ## Multiply-adds: what one forward pass costs
#
# Nearly all the arithmetic of a detector is in its convs. A conv producing an $H' \times W'$ map does
# $H' W' \cdot C_{out} C_{in} k^2$ multiply-adds. To count them for a whole model, record every conv call of
# one forward pass (a head's convs run once per level) with the stride of its output map; on an image of any
# size the output of a stride-$s$ map has $\lceil H / s \rceil \times \lceil W / s \rceil$ positions (lesson 4:
# every stride-2 layer maps $n$ to $\lceil n/2 \rceil$). So one pass on a small *probe* image, 128 x 128 (a
# multiple of every stride, up to P7's 128), gives every conv's stride, and the count at 800 px follows without
# running the big model there (which takes seconds).

# %%
def conv_calls(model, height, width):
    """(C_out, C_in, k, k, H', W') of every conv call of one forward pass on a height x width image."""
    calls, convs = [], [m for m in model.modules() if isinstance(m, Conv2d)]
    for conv in convs:
        def recording_forward(x, conv=conv):
            y = Conv2d.forward(conv, x)
            calls.append((*conv.params["weight"].shape, *y.shape[2:]))
            return y
        conv.forward = recording_forward  # an instance attribute hides the class's method ...
    try:
        x = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(model.dtype)
        model.forward(x, keep_cache=False)
    finally:
        for conv in convs:
            del conv.forward  # ... until it is deleted
        model.clear_cache()
    return calls


def scaled_multiply_adds(calls, height, width, probe=128):
    """Multiply-adds of conv calls recorded on a probe x probe image, on a height x width image instead
    (probe a multiple of every stride, so each output's stride is probe / its side)."""
    total = 0
    for cout, cin, k, _, side, _ in calls:
        stride = probe // side
        total += -(-height // stride) * -(-width // stride) * cout * cin * k * k
    return total


def multiply_adds(model, height, width, probe=128):
    """Multiply-adds of the convs of one forward pass of ``model`` on a height x width image."""
    return scaled_multiply_adds(conv_calls(model, probe, probe), height, width, probe)


def direct_count(model, height, width):
    """The multiply-adds of the conv calls recorded on an image of this size (the check below)."""
    return sum(co * ci * kh * kw * h * w for co, ci, kh, kw, h, w in conv_calls(model, height, width))


probe_calls = conv_calls(big, 128, 128)
print(f"{len(probe_calls)} conv calls; the first (C_out, C_in, k, k, H', W') on a 128 px image: {probe_calls[0]}")
print(f"the stem conv on 800 x 1088: {scaled_multiply_adds(probe_calls[:1], 800, 1088):,} multiply-adds")

# %% tags=["hide-input"]
assert probe_calls[0] == (64, 3, 7, 7, 64, 64)  # the stem: stride 2
assert scaled_multiply_adds(probe_calls[:1], 800, 1088) == (800 // 2) * (1088 // 2) * 64 * 3 * 7 * 7
assert len(probe_calls) == 1 + sum(3 * d + 1 for d in DEPTHS) + 3 + 3 + 2 + 2 * 5 * 5
# the count from the probe equals the count recorded on images whose sides are not multiples of 64 or 128
assert multiply_adds(big, 96, 160) == direct_count(big, 96, 160)
assert multiply_adds(shapes_model, 100, 60) == direct_count(shapes_model, 100, 60)

# %% [markdown]
# The number of recorded calls checks the walk: 1 stem conv, three convs per bottleneck plus one shortcut
# conv per stage, 3 lateral and 3 output convs, P6 and P7, and two subnets of five convs on each of five
# levels. The count from the 128 px probe is checked against a direct recording on images whose sides are
# not multiples of 128.
#
# Each model at the size it runs at: the shapes model at 128 x 128, torchvision's at the 800 x 1088 its
# transform makes of a 480 x 640 photo (next section).

# %%
big_size = tuple(SIZE_DIVISIBLE * -(-s // SIZE_DIVISIBLE) for s in resized_size(480, 640))
rows = [("shapes model (default)", shapes_model, (128, 128)), ("torchvision's RetinaNet", big, big_size)]
print(f"{'model':<24} {'parameters':>12} {'image':>10} {'multiply-adds':>15}")
cost = {}
for name, model, (h, w) in rows:
    cost[name] = (model.num_parameters(), multiply_adds(model, h, w))
    print(f"{name:<24} {cost[name][0]:>12,} {f'{h}x{w}':>10} {cost[name][1] / 1e9:>13.2f} G")
(p_small, m_small), (p_big, m_big) = cost.values()
print(f"ratio: {p_big / p_small:.0f}x the parameters, {m_big / m_small:,.0f}x the multiply-adds per image")
head_share = scaled_multiply_adds(probe_calls[-2 * 5 * 5:], *big_size) / m_big
print(f"the heads' share of the big model's multiply-adds: {head_share:.0%}")

# %% tags=["hide-input"]
assert big_size == (800, 1088)
assert all(isinstance(m, Conv2d) for m in big.cls_head.subnet.layers[::2])  # the last 50 calls: the heads
assert round(p_big / p_small, -1) == 50 and m_big / m_small > 2000
assert (800 / 128, 1088 / 128, round(800 * 1088 / 128**2)) == (6.25, 8.5, 53)
assert head_share > 0.5

# %% [markdown]
# The big model has about fifty times the parameters of the shapes model, and one 800 px image costs it
# over two thousand times the arithmetic of one 128 px shapes image: 6.25 and 8.5 times the sides alone are
# a factor of about 53 in positions, and every conv is wider. More than half of that goes to the
# heads, whose four 256-channel convs run at every position of P3, the largest level.
#
# ## Running it as torchvision does
#
# The COCO weights were trained on pictures prepared by torchvision's transform
# (`data/torchvision_transform.py`): pixels divided by 255 and normalized with ImageNet's mean and standard
# deviation per channel; the picture resized so its short side is 800 px unless that makes its long side
# over 1333 px; the batch padded with zeros to sides that are multiples of 32. A 480 x 640 photo:

# %%
picture = random_picture(480, 640, seed=0)  # smooth colour blobs, uint8: a stand-in for a photo
batch, sizes = torchvision_transform([picture])
scale = min(MIN_SIZE / 480, MAX_SIZE / 640)
print(f"picture {picture.shape[:2]} -> resized {sizes[0]} (scale {scale:.4f}) -> padded batch {batch.shape}")
print("per-channel mean / std:", IMAGENET_MEAN, IMAGENET_STD)
# with the short side already at min_size the resize keeps every pixel: what is left is the normalization
same, _ = torchvision_transform([picture], min_size=480, max_size=640)
normalized = (picture / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
print(f"at scale 1, largest difference from (pixel / 255 - mean) / std: "
      f"{np.abs(same[0].transpose(1, 2, 0) - normalized).max():.1e}")

# %% tags=["hide-input"]
assert sizes[0] == (int(480 * scale), int(640 * scale)) == (800, 1066) and batch.shape == (1, 3) + big_size
assert np.all(batch[0, :, :, 1066:] == 0)  # the padding
assert same.shape == (1, 3, 480, 640)
np.testing.assert_allclose(same[0].transpose(1, 2, 0), normalized, rtol=1e-5, atol=1e-5)

# %% [markdown]
# ## Anchors: torchvision's convention next to the paper's
#
# The weights also fix the anchors: a box regression trained against one set of anchors means nothing
# against another. torchvision's `AnchorGenerator` (`detection/anchors_torchvision.py`) differs from the
# paper's, which this package builds exactly (`detection/anchors.py`, lesson 5), in three ways. The 9 anchors
# of one P3 location, centred on (0, 0):

# %%
tv_anchors, paper_anchors = TorchvisionAnchorGenerator(), AnchorGenerator()
print("torchvision's sizes per level:", tv_anchors.sizes)
print(f"{'ratio':>5} {'size':>6}   {'torchvision (x1, y1, x2, y2)':<30} paper's")
for a, (tv, exact) in enumerate(zip(tv_anchors.cell_anchors(0), paper_anchors.cell_anchors(0))):
    ratio, size = tv_anchors.aspect_ratios[a // 3], tv_anchors.sizes[0][a % 3]
    print(f"{ratio:>5} {size:>6}   {str(tv.astype(int).tolist()):<30} {np.round(exact, 2).tolist()}")
h, w = big_size
tv_grid, paper_grid = tv_anchors.anchors(h, w), paper_anchors.anchors(h, w)
centre = lambda boxes: ((boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2)  # noqa: E731
print("centre of the first P3 location: torchvision", [float(c[0]) for c in centre(tv_grid[:9])],
      "- paper", [float(c[0]) for c in centre(paper_grid[:9])])
tv_strides = [(h // lh, w // lw) for lh, lw in tv_anchors.level_shapes(h, w)]
print(f"torchvision's strides on {h} x {w} (image side // map side):", tv_strides)

# %% tags=["hide-input"]
assert tv_anchors.sizes[0] == (32, int(32 * 2 ** (1 / 3)), int(32 * 2 ** (2 / 3))) == (32, 40, 50)
assert np.allclose(paper_anchors.cell_anchors(0)[[4, 5], 2] * 2, [32 * 2 ** (1 / 3), 32 * 2 ** (2 / 3)])
assert np.allclose(np.round(paper_anchors.cell_anchors(0)[[4, 5], 2] * 2, 1), [40.3, 50.8])
assert np.all(tv_anchors.cell_anchors(0) == np.round(tv_anchors.cell_anchors(0)))  # whole pixels
assert np.all(np.abs(tv_anchors.cell_anchors(0) - paper_anchors.cell_anchors(0)) < 1)
assert np.all(np.array(centre(tv_grid[:9])) == 0) and np.all(np.array(centre(paper_grid[:9])) == 4)
assert tv_grid.shape == paper_grid.shape
assert tv_strides[:3] == [(8, 8), (16, 16), (32, 32)] and tv_strides[3] == (800 // 13, 1088 // 17) == (61, 64)

# %% [markdown]
# 1. **Sizes** are whole pixels: $\lfloor 32 \cdot 2^{1/3} \rfloor = 40$ and
#    $\lfloor 32 \cdot 2^{2/3} \rfloor = 50$ instead of 40.3 and 50.8.
# 2. **Corners** are rounded to whole pixels; with the sizes, every corner above lands less than a pixel
#    from the paper's.
# 3. **Centres** are at $(j \cdot s, i \cdot s)$, the top-left corner of each cell, not its centre
#    $((j + \frac{1}{2}) s, (i + \frac{1}{2}) s)$; and the stride $s$ is the image side divided by the map
#    side, rounded down, so on P6 of an 800 px side it is 61, not 64.
#
# None of this matters for a model trained with either convention; all of it matters for running weights
# trained with one of them. The post-processing differs from Detectron's (the defaults of
# `detection.postprocess`, lesson 9) too:

# %%
defaults = {k: v.default for k, v in inspect.signature(postprocess).parameters.items() if k in TORCHVISION_POSTPROCESS}
for k, v in TORCHVISION_POSTPROCESS.items():
    print(f"{k:<16} torchvision {str(v):<6} Detectron {defaults[k]}")

# %% tags=["hide-input"]
assert {k for k in TORCHVISION_POSTPROCESS if TORCHVISION_POSTPROCESS[k] != defaults[k]} == {"max_detections",
                                                                                            "drop_empty"}
assert TORCHVISION_POSTPROCESS["max_detections"] == 300 and defaults["max_detections"] == 100

# %% [markdown]
# The same score threshold, top-k per level and NMS threshold; torchvision keeps up to 300 detections per
# image, not 100, and keeps boxes that clipping to the image leaves empty. Its boxes are finally mapped
# from the resized picture back to the photo's pixels.
#
# ## One forward pass, with random weights
#
# `detect_torchvision` does all of it: transform, network, post-processing, boxes back in the picture's
# pixels. In fast mode it runs on the picture made small (`min_size=160, max_size=240`); the full lesson
# runs it at 800 px.

# %%
transform = dict(min_size=160, max_size=240) if FAST else {}
start = time.perf_counter()
found = detect_torchvision(big, [picture], **transform)[0]
seconds = time.perf_counter() - start
small_batch, small_sizes = torchvision_transform([picture], **transform)
print(f"input {small_batch.shape[2]} x {small_batch.shape[3]}: {seconds:.1f} s, {len(found['scores'])} detections, "
      f"scores from {found['scores'].min():.3f} to {found['scores'].max():.3f}")
print("the first five:", [COCO_CATEGORY_NAMES[label] for label in found["labels"][:5]])
logits, _ = big.forward(small_batch, keep_cache=False)
print("standard deviation of the first section's image and of its C3, C4, C5:",
      [f"{a.std():.3g}" for a in (image, c3, c4, c5)])
output_bias = big.cls_head.subnet.layers[-1].params["bias"]
print(f"largest |logit|: {np.abs(logits).max():.3g}; the output layer's bias: {output_bias[0]:.2f}, "
      f"a score of {sigmoid(output_bias[:1].astype(np.float64))[0]:.2f}")

# %% tags=["hide-input"]
assert len(found["scores"]) == TORCHVISION_POSTPROCESS["max_detections"]
assert found["scores"].min() > TORCHVISION_POSTPROCESS["score_threshold"] and found["scores"].max() > 0.99
# in the photo's pixels, up to the float32 rounding of the ratio of the sizes (640 / 1066 at 800 px)
assert found["boxes"][:, [0, 2]].max() <= 640 + 1e-3 and found["boxes"][:, [1, 3]].max() <= 480 + 1e-3
assert found["boxes"][:, [0, 2]].max() > 0.9 * 640  # ... and not in the resized picture's smaller ones (fast)
assert np.abs(logits).max() > 10 and image.std() < c3.std() < c4.std() < c5.std()
assert np.all(output_bias == np.float32(prior_bias(0.01))) and np.isclose(sigmoid(np.float64(prior_bias(0.01))), 0.01)
assert COCO_CATEGORY_NAMES.count("N/A") == len(COCO_CATEGORY_NAMES) - 1 - 80 == 10
assert len(set(COCO_CATEGORY_NAMES) - {"N/A", "__background__"}) == 80

# %% [markdown]
# Random weights detect nothing meaningful. Here they do worse than nothing: the classification layer starts
# at the prior of lesson 7 (scores of 0.01), but the He-initialized backbone with identity batch norms lets
# the activations grow through its 16 bottlenecks (the standard deviations above), the head's logits grow
# with them, and the 300 slots fill with confident boxes of arbitrary classes, even of the unused ids
# ("N/A"). A trained backbone's batch norms hold the statistics that keep every layer's output in range;
# that is what the COCO weights bring.
#
# ## Your own photo, with the COCO weights
#
# torchvision publishes the weights of this model trained on COCO (box AP 36.4 on val2017). On a machine with
# internet access:
#
# ```
# pip install -e '.[torch]'           # torch is needed only to read the .pth file
# curl -LO https://download.pytorch.org/models/retinanet_resnet50_fpn_coco-eeacb38b.pth
# numpy-retinanet convert retinanet_resnet50_fpn_coco-eeacb38b.pth retinanet_coco.npz
# numpy-retinanet detect --checkpoint retinanet_coco.npz --out detections photo.jpg
# ```
#
# `convert` reads the state dict with `torch.load(..., weights_only=True)` (tensors only, nothing else is
# unpickled) and writes an ordinary checkpoint with COCO's class names; after that, `detect` needs no torch:
# the picture goes through the transform above, the network you have read and the post-processing, in NumPy.
# The same checkpoint loads in Python with `load_checkpoint`, and `detect_torchvision(model, [picture])` returns
# the boxes. `numpy-retinanet convert --to torch checkpoint.npz out.pth` goes the other way, to a state dict
# torchvision's `retinanet_resnet50_fpn(weights=None, weights_backbone=None)` loads.
#
# How do we know the NumPy model computes what torchvision computes? `tests/test_torchvision_retinanet.py`
# builds torchvision's model with random weights (batch-norm statistics from a pass over a picture, then
# perturbed, so the scores spread instead of saturating as above), converts it, and runs both on three
# pictures of different shapes. It compares the transformed input, the anchors, every level's head outputs
# (relative to each output's largest entry) and the final detections: each of torchvision's must have one
# of ours with the same label, a score within 1e-4 and every box coordinate within 1e-2 px
# (`match_detections` in `tools/torchvision_agreement.py`). It runs where torchvision is installed and skips
# elsewhere; `python -m numpy_retinanet.tools.torchvision_agreement` prints the comparison as a table, with
# the time of one NumPy forward pass at 800 px.

# %% tags=["hide-input"]
assert {k: v.default for k, v in inspect.signature(match_detections).parameters.items()
        if k.endswith("tol")} == {"box_tol": 1e-2, "score_tol": 1e-4}

# %% [markdown]
# ## Summary
#
# - torchvision's `retinanet_resnet50_fpn`, the paper's ResNet-50-FPN detector, is built here from the same
#   convs, FPN and heads as the shapes model, plus ResNet-50's bottlenecks, a max-pool and frozen batch
#   norms, which are a per-channel $x \cdot s_c + t_c$ with no gradient into their statistics.
# - Its parameter count follows from the conv shapes; the backbone holds most of it. It has about fifty
#   times the parameters of the shapes model and costs over two thousand times its multiply-adds per image
#   (800 x 1088 against 128 x 128), more than half of them in the heads at P3.
# - Its COCO weights only mean something with its conventions: torchvision's transform (resize to 800 / 1333,
#   ImageNet normalization, padding to 32), its anchors (whole-pixel sizes 32 / 40 / 50, rounded corners,
#   centres at $j \cdot s$ with $s$ = image side // map side) and its post-processing (300 detections).
# - `numpy-retinanet convert` turns the published weights into a checkpoint, `detect --checkpoint` runs
#   them in NumPy, and `tests/test_torchvision_retinanet.py` checks every stage against torchvision.
#
# ## Exercises
#
# 1. Use `conv_calls` and `scaled_multiply_adds` to split the big model's multiply-adds at 800 x 1088 into
#    backbone, FPN and heads, then per pyramid level for the heads. Which level costs the most, and by what
#    factor over the next? Predict the factor from the level sizes first.
# 2. torchvision's `retinanet_resnet50_fpn_v2` computes P6 from C5, as the paper does. Which conv changes
#    shape? Work out by hand how many parameters and multiply-adds (at 800 x 1088) that adds, then check with
#    `big.fpn.p6.params["weight"].shape` and your counting function on a copy whose P6 conv you replace by
#    `Conv2d(2048, 256, 3, stride=2)`.
# 3. With `TorchvisionAnchorGenerator` and `AnchorGenerator`, compute the IoU (`detection.boxes.box_iou`)
#    of each of the 9 P3 anchors of torchvision's convention with the paper's anchor of the same index at the
#    same location (row 10, column 10 of P3). Which anchor moves the most, and is it the centre or the size
#    that moves it?
