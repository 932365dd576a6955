# %% [markdown]
# # Lesson 4: from backbone to feature pyramid
#
# RetinaNet is "a single, unified network composed of a backbone network and two task-specific
# subnetworks" (§4). The backbone turns an image into feature maps C3, C4, C5 at strides 8, 16 and 32;
# a Feature Pyramid Network (FPN) turns those into P3 to P7, one map per scale, each with the same
# number of channels, on which the heads (lesson 7) run. This lesson follows the shapes through
# both and checks the wiring the paper specifies (§4, "Feature Pyramid Network Backbone"). On the way it
# opens the residual block's backward, and measures what each level sees of the image (its receptive field)
# against the objects it has to find.

# %%
import numpy as np

from numpy_retinanet.data.shapes import MAX_SIZE_FRACTION, ShapesDataset
from numpy_retinanet.detection.boxes import box_iou
from numpy_retinanet.gradcheck import check_gradients
from numpy_retinanet.model.backbone import BasicBlock
from numpy_retinanet.model.presets import PRESETS, STRIDES
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.functional import upsample_nearest_forward
from numpy_retinanet.nn.modules import Conv2d
from numpy_retinanet.teaching.figures import (
    COCO_SIZES,
    as_image,
    plot_receptive_field,
    receptive_field,
    receptive_field_data,
)

model = RetinaNet(num_classes=3, preset="default", seed=0)
image, _ = ShapesDataset(1, image_size=128, num_classes=3, seed=0)[0]
images = image[None]  # (N, 3, H, W), float32, normalized pixels
print(images.shape, images.dtype)

# %% [markdown]
# ## The backbone: C3, C4, C5
#
# The paper uses an ImageNet-pretrained ResNet-50 or -101. Here a small ResNet of BasicBlocks is
# trained from scratch on synthetic shapes, with GroupNorm after each convolution (`model/backbone.py`
# says why). A stride-2 stem and four stages halve the resolution five times; the last three stages
# give C3, C4 and C5. A 3x3 stride-2 conv maps a side n to ceil(n / 2), so $C_l$ has side $\lceil H / 2^l \rceil$.

# %%
c3, c4, c5 = model.backbone.forward(images)
model.clear_cache()  # no backward follows: drop the saved activations
for name, c, stride in (("C3", c3, 8), ("C4", c4, 16), ("C5", c5, 32)):
    print(f"{name}: {c.shape}  (stride {stride}: 128 / {stride} = {128 // stride})")


# %% tags=["hide-input"]
# stages 2-4 of the preset's widths; sides ceil(128 / stride)
assert [c.shape for c in (c3, c4, c5)] == [(1, width, -(-128 // stride), -(-128 // stride))
                                           for stride, width in zip((8, 16, 32), PRESETS["default"]["widths"][1:])]

# %% [markdown]
# ## The residual block, and why its backward adds the skip's gradient
#
# Each stage is made of `BasicBlock`s (He et al. 2016), $\mathrm{out} = \mathrm{ReLU}(F(x) + s(x))$: the
# *branch* $F$ is conv, GroupNorm, ReLU, conv, GroupNorm; the *shortcut* $s$ is the identity, or a 1x1 conv
# and GroupNorm where the block changes the width or the stride: the first block of each stage, which in
# the `default` preset (one block per stage) is every block; the `paper` preset's second blocks keep the
# identity.
#
# The backward follows from one fact: **x is used twice**, once by the branch and once by the shortcut.
# When a variable feeds two computations, a small change of it moves the loss through both, so its
# gradient is the *sum* of the gradients through each use. With $d$ = the gradient at the sum (dout through
# the final ReLU), the sum passes $d$ unchanged to both of its terms, and
#
# $$\frac{\partial L}{\partial x} = \underbrace{F\text{'s backward of } d}_{\text{through the branch}}
# + \underbrace{d}_{\text{through the identity}}$$
#
# The identity passes the gradient on untouched. The package's `BasicBlock.backward` computes exactly this
# sum: run its pieces' backward passes one at a time and add.

# %%
block_rng = np.random.default_rng(0)
block = BasicBlock(16, 16, stride=1, rng=block_rng, dtype=np.float64, gn_groups=8)  # identity shortcut
xb = block_rng.standard_normal((2, 16, 8, 8))
dout_b = block_rng.standard_normal((2, 16, 8, 8))

block.forward(xb)
dx_block = block.backward(dout_b)  # the package's backward of the whole block

block.forward(xb)
d = block.out_relu.backward(dout_b)  # the gradient at the sum F(x) + x
dx_branch = block.branch.backward(d)  # through the branch
print(f"|dx through the branch| = {np.linalg.norm(dx_branch):.2f}, |dx through the identity| = {np.linalg.norm(d):.2f}")

# %% tags=["hide-input"]
np.testing.assert_allclose(dx_block, dx_branch + d, rtol=1e-12, atol=1e-14)
assert block.shortcut is None and block.num_pending() == 0

# %% [markdown]
# A gradient check of the whole block, for x and the branch's weights, on this block and on a first
# block of a stage (stride 2, 16 -> 32 channels, 1x1 conv shortcut), confirms the backward:

# %%
def block_loss(blk, d_out):
    """f() = sum(blk(xb) * d_out): its gradient is what blk's backward of d_out returns."""
    def f():
        y_b = blk.forward(xb)
        blk.clear_cache()  # no backward follows this forward
        return float(np.sum(y_b * d_out))
    return f


down = BasicBlock(16, 32, stride=2, rng=block_rng, dtype=np.float64, gn_groups=8)
block_rows = []
for blk in (block, down):
    blk.zero_grad()
    out_b = blk.forward(xb)
    d_out = block_rng.standard_normal(out_b.shape)
    dx_b = blk.backward(d_out)
    names = ["branch.0.0.weight", "branch.1.weight", "branch.2.weight"]
    names += ["shortcut.0.weight"] if blk.shortcut is not None else []
    print(f"block {blk.params['branch.0.0.weight'].shape[1]} -> {out_b.shape[1]} channels, stride "
          f"{xb.shape[2] // out_b.shape[2]}:")
    block_rows += check_gradients(block_loss(blk, d_out), {"x": xb, **{k: blk.params[k] for k in names}},
                                  {"x": dx_b, **{k: blk.grads[k] for k in names}}, max_entries=20)

# %% tags=["hide-input"]
assert len(block_rows) == 4 + 5 and all(r.passed for r in block_rows)

# %% [markdown]
# Writing this backward yourself is **exercise 7**: `lessons/exercises/ex7_residual_block_backward.py`
# (`numpy-retinanet check lessons/exercises/ex7_residual_block_backward.py`).
#
# Why it matters: stack blocks, and the gradient reaching the input is the identity's copy plus every
# branch's contribution, instead of a product of every layer's. Compare a stack of D blocks with the same
# stack without its skips (each block reduced to ReLU(F(x)), the package's `branch` and `out_relu` modules),
# and measure how much larger the gradient at the input is than the gradient at the output:

# %%
def gradient_gain(depth, skip):
    """|dL/dx| / |dL/dout| through a stack of ``depth`` 16-channel blocks, with or without their skips."""
    rng_d = np.random.default_rng(1)
    blocks = [BasicBlock(16, 16, stride=1, rng=rng_d, dtype=np.float64, gn_groups=8) for _ in range(depth)]
    y_d = rng_d.standard_normal((2, 16, 8, 8))
    for blk in blocks:
        y_d = blk.forward(y_d) if skip else blk.out_relu.forward(blk.branch.forward(y_d))
    dout_d = rng_d.standard_normal(y_d.shape)
    d_d = dout_d
    for blk in reversed(blocks):
        d_d = blk.backward(d_d) if skip else blk.branch.backward(blk.out_relu.backward(d_d))
    return np.linalg.norm(d_d) / np.linalg.norm(dout_d)


depths = (1, 4, 16, 32)
gain = {skip: [gradient_gain(dd, skip) for dd in depths] for skip in (True, False)}
for dd, with_skip, without in zip(depths, gain[True], gain[False]):
    print(f"{dd:>2} blocks: gradient gain with skips {with_skip:6.2f}, without {without:9.2f}")
per_block = {skip: [(gain[skip][2] / gain[skip][1]) ** (1 / 12), (gain[skip][3] / gain[skip][2]) ** (1 / 16)]
             for skip in (True, False)}  # the factor per block from 4 to 16 blocks, and from 16 to 32
for skip in (False, True):
    print(f"{'with' if skip else 'without'} skips: x{per_block[skip][0]:.2f} per block from 4 to 16 blocks, "
          f"x{per_block[skip][1]:.2f} from 16 to 32")

# %% tags=["hide-input"]
# Alike blocks multiply by about the same factor: the gain without skips grows geometrically.
assert abs(np.log(per_block[False][1]) / np.log(per_block[False][0]) - 1) < 0.1
# A skip adds its branch to an unchanged copy instead of multiplying: a factor per block nearer 1.
assert all(f_skip < f_no for f_skip, f_no in zip(per_block[True], per_block[False]))

# %% [markdown]
# The numbers depend on the blocks' random weights; the pattern does not. Without the skips each block
# multiplies the gradient by a factor of its own, and alike blocks by about the same factor: the gain grows
# geometrically, by about the same factor per block from 4 to 16 blocks as from 16 to 32, so that after 32
# blocks the gradient at the input dwarfs the gradient at the output, and no one learning rate suits the
# first and the last layers. With the skips each block *adds* its branch's part to a copy passed on
# unchanged, and the factor per block is nearer 1 in both ranges: the gain grows far more slowly. (In
# other networks the compounding shrinks the gradient instead, the vanishing gradient; the skip helps the
# same way.) This is one reason deep ResNets train.
#
# ## The feature pyramid: P3 to P7 (§4)
#
# - M5 = lateral5(C5), and going down, M4 = lateral4(C4) + up2(M5), M3 = lateral3(C3) + up2(M4):
#   1x1 "lateral" convs bring every C_l to the pyramid's width, and nearest-neighbour x2 upsampling
#   carries the coarse, semantically strong maps down to the finer ones (the *top-down pathway*).
# - P3, P4, P5 = a 3x3 conv on M3, M4, M5.
# - P6 = a 3x3 stride-2 conv on **C5** (the paper; some later implementations use P5).
# - P7 = a 3x3 stride-2 conv on ReLU(P6).
#
# Every level has the same width (256 in the paper, 64 in the `default` preset), so one head can run
# on all of them.

# %%
features = model.fpn.forward(c3, c4, c5)
model.clear_cache()
for l, (p, stride) in enumerate(zip(features, STRIDES)):
    print(f"P{l + 3}: {p.shape}  stride {stride}")


# %% tags=["hide-input"]
assert [p.shape for p in features] == [(1, PRESETS["default"]["fpn_channels"], -(-128 // s), -(-128 // s))
                                       for s in STRIDES]  # ceil(128 / S)
assert [-(-128 // s) for s in STRIDES] == [16, 8, 4, 2, 1] and PRESETS["default"]["fpn_channels"] == 64

# %% [markdown]
# P3 (16 x 16 locations, stride 8) is fine enough for the smallest shapes; P7 has a single location
# for the whole image. Lesson 5 places anchors of growing size on these levels.
#
# P6 is the stride-2 conv of C5, not of P5: its filters read C5's 128 channels, not P5's 64. The conv's
# sum (lesson 3), written out with P6's weights over the zero-padded C5, gives the pyramid's P6:

# %%
weight, bias = model.fpn.p6.params["weight"], model.fpn.p6.params["bias"]  # (64, 128, 3, 3), (64,)
c5_pad = np.pad(c5[0], ((0, 0), (1, 1), (1, 1)))
p6_by_hand = np.zeros((weight.shape[0], 2, 2))
for i in range(2):
    for j in range(2):
        patch = c5_pad[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3]  # stride 2
        p6_by_hand[:, i, j] = bias + np.sum(weight * patch, axis=(1, 2, 3))
print("P6 by hand from C5 equals the pyramid's P6:", np.allclose(p6_by_hand, features[3][0], rtol=1e-4, atol=1e-5))

# %% tags=["hide-input"]
assert weight.shape[1] == c5.shape[1] != features[2].shape[1]  # C5's channels, not P5's
np.testing.assert_allclose(p6_by_hand, features[3][0], rtol=1e-4, atol=1e-5)  # float32 sums of 1,152 terms

# %% [markdown]
# ## The top-down path carries C5 down to P3
#
# Change C5 only, and P3 changes: its features now mix the coarse maps' information in. Without the
# top-down path (a plain multi-scale stack), P3 would see C3 alone.

# %%
c5_changed = c5 + np.float32(0.5)
features_changed = model.fpn.forward(c3, c4, c5_changed)
model.clear_cache()
change = [float(np.abs(a - b).max()) for a, b in zip(features, features_changed)]
print("largest change of P3..P7 when C5 changes:", [f"{c:.3g}" for c in change])

# %% tags=["hide-input"]
assert all(c > 0 for c in change)

# %% [markdown]
# ## Receptive fields, and which level sees which object (§4; FPN §3)
#
# A location of a feature map is computed from a window of the image, its *theoretical receptive
# field*. A conv with kernel k reads k neighbouring locations of its input; if those are j pixels apart in
# the image, the window grows by (k - 1) j, and the output's locations are j s apart (stride s):
#
# $$r_{\mathrm{out}} = r_{\mathrm{in}} + (k - 1)\, j_{\mathrm{in}}, \qquad j_{\mathrm{out}} = j_{\mathrm{in}}\, s,
# \qquad r = j = 1 \text{ for the image}$$
#
# Walk the convolutions from the image to P3 through C3 (the stem, each block's branch, the lateral and
# the output conv; the 1x1 shortcuts read no wider window):

# %%
def path_convs(stem, *stages):
    """The convs of the longest path from the image through the stem and the stages: the stem's conv, then
    every block's branch convs, in order."""
    convs = [m for m in stem.modules() if isinstance(m, Conv2d)]
    for stage in stages:
        for blk in stage.layers:
            convs += [m for m in blk.branch.modules() if isinstance(m, Conv2d)]
    return convs


bb = model.backbone
r, j = 1, 1
for conv in path_convs(bb.stem, bb.stage1, bb.stage2) + [model.fpn.lateral3, model.fpn.output3]:
    k = conv.params["weight"].shape[-1]
    r, j = r + (k - 1) * j, j * conv.stride
    print(f"{k}x{k} stride {conv.stride}: window {r:>3} px, locations {j} px apart")

# %% tags=["hide-input"]
assert receptive_field(model, 3, top_down=False) == (j, r) == (8, 55)

# %% [markdown]
# A P3 location reads a 55 px window of the image through C3, and P3's locations are 8 px apart (its
# stride). `receptive_field(model, level)` in `numpy_retinanet.teaching.figures` computes the same by
# walking every layer backwards, the top-down path included: through it a P3 location also reads C4 and
# C5, whose windows are much wider. (GroupNorm's mean and variance span the whole map, so strictly every
# pixel moves every location a little; the receptive field counts the convolutions' windows, as is usual.)
# For every level, beside the anchors of lesson 5 and the 200 first training images' shapes, each placed
# on the level of its best-overlapping anchor (lesson 6's low-quality rule gives each box its best anchor,
# even below IoU 0.5):

# %%
shapes_rf = receptive_field_data("default", image_size=128, num_images=200)
print("level  stride  anchor sides  window: via C_l  with top-down  shapes on the level (px)")
for lv in shapes_rf["levels"]:
    objs = lv["objects"]
    sizes = f"{len(objs):>3}, {objs.min():4.1f}-{objs.max():4.1f}" if len(objs) else "  0"
    print(f"{lv['name']:<5}  {lv['stride']:>6}  {lv['anchor_sides'][0]:5.1f}-{lv['anchor_sides'][1]:5.1f}  "
          f"{lv['rf_bottom_up']:>15}  {lv['rf']:>13}  {sizes}")

# %% [markdown]
# The windows of the table follow from the same recurrence, carried on through stages 3 and 4 to C4 and C5.
# Through $C_l$ alone, a 1x1 lateral adds nothing and a 3x3 conv adds two steps of its input's spacing (P6
# reads C5, P7 reads P6). With the top-down path, P3's 3x3 output conv reads three neighbouring locations
# of M3, and the two x2 upsamplings map them onto at most two neighbouring C5 locations, 32 px apart: C5's
# window plus 32 px (P4 likewise; P5's 3x3 conv reads three C5 locations, plus 64 px).

# %%
def window(convs):
    """The recurrence r += (k - 1) j, j *= s over ``convs`` from the image: (r, j)."""
    r_w, j_w = 1, 1
    for conv in convs:
        r_w, j_w = r_w + (conv.params["weight"].shape[-1] - 1) * j_w, j_w * conv.stride
    return r_w, j_w


stages = (bb.stage1, bb.stage2, bb.stage3, bb.stage4)
(r_c3, _), (r_c4, _), (r_c5, _) = (window(path_convs(bb.stem, *stages[:n])) for n in (2, 3, 4))
bottom_up = [r_c3 + 2 * 8, r_c4 + 2 * 16, r_c5 + 2 * 32, r_c5 + 2 * 32, r_c5 + 2 * 32 + 2 * 64]
top_down = [r_c5 + 32, r_c5 + 32, r_c5 + 64]  # P3, P4, P5
print(f"C3, C4, C5 see {r_c3}, {r_c4}, {r_c5} px; P3..P7 through C_l: {bottom_up}; P3..P5 with top-down: {top_down}")

# %% tags=["hide-input"]
assert [lv["rf_bottom_up"] for lv in shapes_rf["levels"]] == bottom_up
assert [lv["rf"] for lv in shapes_rf["levels"][:3]] == top_down and top_down[0] > 3 * 55
assert [lv["stride"] for lv in shapes_rf["levels"]] == [2**lvl for lvl in range(3, 8)]  # P_l: stride 2^l
assert shapes_rf["levels"][0]["objects"].max() < shapes_rf["levels"][2]["objects"].min()
assert all(len(lv["objects"]) == 0 for lv in shapes_rf["levels"][3:])
# The 1:2 anchor at scale 1 and the 2:1 anchor at scale 2^(2/3), of size 1.5 S (lesson 5):
assert all(np.allclose(lv["anchor_sides"], (1.5 * lv["stride"] / np.sqrt(2), 1.5 * lv["stride"] * 2 ** (2 / 3)
                                             * np.sqrt(2))) for lv in shapes_rf["levels"])
assert max(lv["objects"].max() for lv in shapes_rf["levels"][:3]) <= MAX_SIZE_FRACTION * 128 == 70
assert all(lv["objects"].max() < lv["rf_bottom_up"] for lv in shapes_rf["levels"][:3])

# %%
square = np.array([[0.0, 0.0, 10.0, 10.0]])
iou_near, iou_far = (box_iou(square, square + [dx, 0, dx, 0])[0, 0] for dx in (3.3, 3.4))
print(f"10 px square against a 10 px anchor: IoU {iou_near:.3f} at 3.3 px apart, {iou_far:.3f} at 3.4 px")

# %% tags=["hide-input"]
assert np.isclose(iou_near, (10 - 3.3) / (10 + 3.3)) and np.isclose(iou_far, (10 - 3.4) / (10 + 3.4))
assert iou_near >= 0.5 > iou_far  # (10 - d) / (10 + d) = 0.5 at d = 10 / 3

# %% [markdown]
# Each level's anchors start at $1.5 / \sqrt{2} = 1.06$ times its stride (lesson 5: sizes 1.5 S, the 1:2
# ratio at scale 1) and grow with it, and each shape lands on the level whose
# anchors match its size: every shape on P3 is smaller than every shape on P5, and none of these shapes
# (at most 70 px) needs P6 or P7. Why small objects go to the fine levels: a level places anchors only
# every `stride` pixels, and a small box overlaps well only an anchor of about its size centred within a
# few pixels of it. A 10 px square and a 10 px anchor $d$ px apart along one axis overlap $10 (10 - d)$
# px² of a union of $10 (10 + d)$: IoU $(10 - d) / (10 + d)$ reaches 0.5 only for $d \le 10 / 3 = 3.3$ px.
# P3's centres are 8 px apart; P7 has a single location for the whole image.
# Large objects go to the coarse levels, whose anchors have their size and whose windows, even through
# C_l alone, cover them. The top-down path gives P3 the wide context of C5 as well (its window grows from
# 55 px to C5's window plus one C5 step of 32 px, more than 3 times as wide), which is the point of the
# feature pyramid (FPN §3): fine locations
# with the coarse levels' semantics.
#
# The figure draws the table, and on the right the `paper` preset's levels at 800 px against COCO's size
# ranges (small below 32 px, large above 96 px, as the square root of the box's area): the same division
# of labour at the paper's scale, with anchors 32 to 512 px.

# %% mystnb={"image":{"alt":"Per pyramid level: anchor sides, stride, receptive field and the shapes each level takes"}}
paper_rf = receptive_field_data("paper", image_size=800, num_images=0)
as_image(plot_receptive_field(shapes_rf, paper_rf))

# %% tags=["hide-input"]
assert COCO_SIZES["small"][1] == 32 and COCO_SIZES["large"][0] == 96
assert PRESETS["paper"]["anchor_sizes"] == (32, 64, 128, 256, 512)

# %% [markdown]
# ## Odd sizes
#
# An image of 100 px gives C3, C4, C5 of 13, 7 and 4 (ceil(100 / 8), ceil(100 / 16), ceil(100 / 32)).
# Upsampling C4's 7 gives 14, one more than C3's 13, so the FPN crops the extra row and column
# (and the backward pass gives them zero gradient).

# %%
small = np.ascontiguousarray(images[:, :, :100, :100])
features_100 = model.fpn.forward(*model.backbone.forward(small))
model.clear_cache()
up, _ = upsample_nearest_forward(np.zeros((1, 64, 7, 7), dtype=np.float32), factor=2)
print("P3..P7 at 100 px:", [p.shape[2] for p in features_100], "; up2 of 7:", up.shape[2])

# %% tags=["hide-input"]
assert [p.shape[2] for p in features_100] == [-(-100 // s) for s in STRIDES] == [13, 7, 4, 2, 1]
assert up.shape[2] == 2 * 7 == -(-100 // 8) + 1

# %% [markdown]
# ## Where the parameters are
#
# `model.params` is a flat dict of dotted names to arrays; its keys say which part owns each weight.

# %%
parts = {part: sum(p.size for name, p in model.params.items() if name.startswith(part + "."))
         for part in ("backbone", "fpn", "cls_head", "box_head")}
for part, n in parts.items():
    print(f"{part:<9} {n:>8,}")
print(f"{'total':<9} {model.num_parameters():>8,}")
paper = PRESETS["paper"]

# %% [markdown]
# The same counts follow from the layers' shapes alone. A k x k conv from $c_{in}$ to $c_{out}$ channels has
# $k^2 c_{in} c_{out}$ weights and, if it has one, $c_{out}$ biases (the backbone's convs have none: a GroupNorm
# follows); a GroupNorm has a $\gamma$ and a $\beta$ per channel:

# %%
def conv_params(k, c_in, c_out, bias=True):
    return k * k * c_in * c_out + (c_out if bias else 0)


def norm_params(c):
    return 2 * c


def backbone_params(stem_width, widths, depths):
    """The stem (3x3 stride 2 + GN), then per block two 3x3 convs + GN, and on each stage's first block
    (stride 2) the 1x1 conv + GN shortcut."""
    n, c_in = conv_params(3, 3, stem_width, bias=False) + norm_params(stem_width), stem_width
    for width, depth in zip(widths, depths):
        for b in range(depth):
            n += conv_params(3, c_in, width, bias=False) + conv_params(3, width, width, bias=False)
            n += 2 * norm_params(width)
            if b == 0:
                n += conv_params(1, c_in, width, bias=False) + norm_params(width)
            c_in = width
    return n


def fpn_params(c3, c4, c5, width):
    """Three 1x1 laterals, three 3x3 output convs, P6 (3x3 on C5) and P7 (3x3 on P6)."""
    return (conv_params(1, c3, width) + conv_params(1, c4, width) + conv_params(1, c5, width)
            + 3 * conv_params(3, width, width) + conv_params(3, c5, width) + conv_params(3, width, width))


def head_params(width, depth, channels, norm, outputs):
    """``depth`` hidden 3x3 convs (+ GN if ``norm``), then a 3x3 conv to A x (K or 4) outputs."""
    n, c_in = 0, width
    for _ in range(depth):
        n += conv_params(3, c_in, channels) + (norm_params(channels) if norm else 0)
        c_in = channels
    return n + conv_params(3, c_in, outputs)


cfg = PRESETS["default"]
A = len(cfg["aspect_ratios"]) * len(cfg["scales"])
by_hand = {"backbone": backbone_params(cfg["stem_width"], cfg["widths"], cfg["depths"]),
           "fpn": fpn_params(*cfg["widths"][1:], cfg["fpn_channels"]),
           "cls_head": head_params(cfg["fpn_channels"], cfg["head_depth"], cfg["head_channels"],
                                   cfg["head_norm_groups"] > 0, A * 3),  # K = 3 classes
           "box_head": head_params(cfg["fpn_channels"], cfg["head_depth"], cfg["head_channels"],
                                   cfg["head_norm_groups"] > 0, A * 4)}
print(by_hand)

# %% tags=["hide-input"]
assert by_hand == parts and sum(by_hand.values()) == model.num_parameters()
assert (by_hand["backbone"], by_hand["fpn"], sum(by_hand.values())) == (307_824, 236_032, 728_431)
assert (paper["fpn_channels"], paper["head_depth"], paper["head_channels"]) == (256, 4, 256)
assert paper["depths"] == (2, 2, 2, 2)

# %% [markdown]
# The `default` preset has 728,431 parameters: 307,824 in the backbone and 236,032 in the pyramid;
# the heads hold the rest. The `paper` preset (256-channel pyramid, heads of four 256-filter convs,
# a ResNet-18-like backbone of two blocks per stage) is the paper's design on a small ResNet; it trains
# too, but slowly on a CPU.
#
# ## Summary
#
# - The backbone gives C3, C4, C5 at strides 8, 16, 32 (side ceil(H / stride)).
# - The FPN makes P3-P5 from laterals plus the top-down path, P6 from C5 with a stride-2 conv and P7 from
#   ReLU(P6): five levels, strides 8 to 128, one width.
# - Upsampled maps are cropped when sizes are odd; every level's size is ceil(H / stride).
# - A residual block uses x twice, so its backward adds the branch's gradient to the identity's unchanged
#   copy; stacked, the gradient at the input grows slowly with depth instead of compounding block by block.
# - The receptive field grows by $(k - 1) j$ at each conv ($j$ the spacing so far): through C3 a P3 location
#   sees 55 px, with the top-down path far more. Each level's anchors follow its stride, so small shapes take
#   P3's anchors and larger ones P4's and P5's.
#
# ## Exercises
#
# 1. Write the backward pass of nearest-neighbour upsampling: `lessons/exercises/ex4_upsample_backward.py`
#    (`numpy-retinanet check lessons/exercises/ex4_upsample_backward.py`).
# 2. Build `RetinaNet(3, preset="default", p6_from="p5")`. How many parameters does it have, and why do
#    they differ from the paper's wiring?
# 3. Feed a 200 x 120 image. Predict the sizes of P3..P7 before running it.
# 4. Write the residual block's backward: `lessons/exercises/ex7_residual_block_backward.py`
#    (`numpy-retinanet check lessons/exercises/ex7_residual_block_backward.py`).
# 5. With the recurrence, compute by hand the receptive field of P4 through C4 for the `paper` preset (two
#    blocks per stage), then check it with `receptive_field(RetinaNet(3, preset="paper"), 4, top_down=False)`.
