# %% [markdown]
# # Lesson 4: from backbone to feature pyramid
#
# RetinaNet is "a single, unified network composed of a backbone network and two task-specific
# subnetworks" (§4). The backbone turns an image into feature maps C3, C4, C5 at strides 8, 16 and 32;
# a Feature Pyramid Network (FPN) turns those into P3 to P7, one map per scale, each with the same
# number of channels, on which the heads (lesson 7) run. This lesson follows the shapes through
# both and checks the wiring the paper specifies (§4, "Feature Pyramid Network Backbone").

# %%
import numpy as np

from numpy_retinanet.data.shapes import ShapesDataset
from numpy_retinanet.model.presets import PRESETS, STRIDES
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.functional import upsample_nearest_forward

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
assert c3.shape == (1, 32, 16, 16) and c4.shape == (1, 64, 8, 8) and c5.shape == (1, 128, 4, 4)
assert model.backbone.out_channels == (32, 64, 128)

# %% [markdown]
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
assert [p.shape[2:] for p in features] == [tuple(s) for s in model.level_shapes(128, 128)]
assert [p.shape[2] for p in features] == [16, 8, 4, 2, 1]
assert all(p.shape[1] == 64 for p in features) and model.fpn.p6_from == "c5"

# %% [markdown]
# P3 (16 x 16 locations, stride 8) is fine enough for the smallest shapes; P7 has a single location
# for the whole image. Lesson 5 places anchors of growing size on these levels.
#
# P6 is the stride-2 conv of C5, not of P5. The module that computes it agrees:

# %%
p6_from_c5 = model.fpn.p6.forward(c5)
model.clear_cache()

# %% tags=["hide-input"]
np.testing.assert_allclose(p6_from_c5, features[3], rtol=1e-6)

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
assert [p.shape[2] for p in features_100] == [13, 7, 4, 2, 1] and up.shape[2] == 14

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

# %% tags=["hide-input"]
assert sum(parts.values()) == model.num_parameters() == 728_431
assert parts["backbone"] == 307_824 and parts["fpn"] == 236_032
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
#
# ## Exercises
#
# 1. Write the backward pass of nearest-neighbour upsampling: `lessons/exercises/ex4_upsample_backward.py`
#    (`numpy-retinanet check lessons/exercises/ex4_upsample_backward.py`).
# 2. Build `RetinaNet(3, preset="default", p6_from="p5")`. How many parameters does it have, and why do
#    they differ from the paper's wiring?
# 3. Feed a 200 x 120 image. Predict the sizes of P3..P7 before running it.
