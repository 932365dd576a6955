# %% [markdown]
# # Lesson 9: inference, non-maximum suppression and average precision
#
# At test time the network's 3,069 x K scores and deltas per image become a short list of boxes
# (§4.1, "Inference"), and a list of boxes becomes a number: COCO's average precision (AP), the metric of
# every table in the paper. This lesson runs `detection.postprocess` and `evaluation.coco` on small
# hand-made cases, then on an *oracle*: a network that outputs exactly its training targets.

# %%
import numpy as np

from numpy_retinanet.data.batching import collate
from numpy_retinanet.data.shapes import ShapesDataset
from numpy_retinanet.detection.boxes import batched_nms, box_iou, nms
from numpy_retinanet.detection.criterion import assign_targets
from numpy_retinanet.detection.postprocess import postprocess
from numpy_retinanet.evaluation.coco import COCO_IOU_THRESHOLDS, RECALL_THRESHOLDS, evaluate_detections
from numpy_retinanet.model.retinanet import RetinaNet

# %% [markdown]
# ## From outputs to detections (§4.1)
#
# "To improve speed, we only decode box predictions from at most 1k top-scoring predictions per FPN level,
# after thresholding detector confidence at 0.05. The top predictions from all levels are merged and
# non-maximum suppression with a threshold of 0.5 is applied." `postprocess` does exactly this per image:
# sigmoid scores, threshold 0.05, top 1,000 per level, decode the deltas on their anchors (lesson 6), clip
# to the image, merge levels, NMS at 0.5 for each class separately, keep the best 100.
#
# ## Non-maximum suppression
#
# Neighbouring anchors see the same object, so a trained detector fires several times per object. NMS
# visits boxes by decreasing score, keeps one, and removes every remaining box whose IoU with it exceeds
# the threshold.

# %%
boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=np.float64)
scores = np.array([0.9, 0.8, 0.7, 0.6])
labels = np.array([0, 0, 0, 1])
print("IoU of box 1 with box 0:", round(float(box_iou(boxes[:1], boxes[1:2])[0, 0]), 3))
print("nms:", nms(boxes, scores, 0.5), " per-class nms:", batched_nms(boxes, scores, labels, 0.5))

# %% tags=["hide-input"]
assert round(float(box_iou(boxes[:1], boxes[1:2])[0, 0]), 3) == 0.681
assert nms(boxes, scores, 0.5).tolist() == [0, 2]
assert batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 2, 3]

# %% [markdown]
# Box 1 overlaps box 0 with IoU 0.681 and is removed; box 2 overlaps nothing. Box 3 lies exactly on box 0,
# but it is another class: per-class NMS keeps it.
#
# ## Average precision, COCO style
#
# Detections of one class, over all images, are sorted by score. Going down the list, a detection is a
# true positive if it overlaps a not-yet-matched ground-truth box of its class with IoU >= t, else a false
# positive. Precision and recall after each detection give a curve; precision is made monotone
# (from the right) and averaged at 101 recall points 0, 0.01, ..., 1. COCO's AP averages this over 10 IoU
# thresholds t = 0.50, 0.55, ..., 0.95 and over classes; AP50 and AP75 use one threshold.

# %%
gt = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 40, 40]], dtype=np.float64), "labels": np.array([0, 0])}]


def ap_of(det_boxes, det_scores):
    det = [{"boxes": np.array(det_boxes, dtype=np.float64), "scores": np.array(det_scores),
            "labels": np.zeros(len(det_boxes), dtype=np.int64)}]
    return evaluate_detections(det, gt, num_classes=1)


perfect = ap_of([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8])
loose = ap_of([[0, 0, 10, 10], [20, 20, 40, 32.4]], [0.9, 0.8])  # second box: IoU 0.62
false_first = ap_of([[50, 50, 60, 60], [0, 0, 10, 10], [20, 20, 40, 40]], [0.95, 0.9, 0.8])
for name, r in (("perfect", perfect), ("one box at IoU 0.62", loose), ("a false positive ranked first", false_first)):
    print(f"{name:<30} AP {r['AP']:.3f}  AP50 {r['AP50']:.3f}  AP75 {r['AP75']:.3f}")

# %% tags=["hide-input"]
assert len(COCO_IOU_THRESHOLDS) == 10 and len(RECALL_THRESHOLDS) == 101
assert perfect["AP"] == perfect["AP50"] == perfect["AP75"] == 1.0
assert round(float(box_iou(np.array([[20, 20, 40, 40.0]]), np.array([[20, 20, 40, 32.4]]))[0, 0]), 2) == 0.62
assert loose["AP50"] == 1.0 and np.isclose(loose["AP75"], 51 / 101) and round(51 / 101, 3) == 0.505
assert np.isclose(loose["AP"], (3 * 1 + 7 * 51 / 101) / 10) and round(loose["AP"], 3) == 0.653

# %% [markdown]
# - Perfect boxes give exactly 1.0.
# - A box at IoU 0.62 counts at t = 0.50, 0.55 and 0.60 only: at those three thresholds both objects are
#   found (AP 1); at the other seven the first object is found at precision 1 and the second never, so
#   precision is 1 up to recall 0.5 and 0 after: 51 of the 101 recall points, AP 0.505 (AP75). The mean
#   over thresholds is (3 x 1 + 7 x 51/101) / 10 = 0.653. Localization quality matters, which is why
#   AP75 is reported apart.
# - A false positive above the true ones: precision is 1/2 after the second detection and 2/3 after the
#   third, so the monotone precision is 2/3 at every recall point.

# %% tags=["hide-input"]
assert np.isclose(false_first["AP"], 2 / 3)

# %% [markdown]
# ## An oracle: why NMS is needed
#
# Give the post-processing the outputs a network would produce if it had learned its training targets
# exactly (lesson 6): logit +10 for the class of each positive anchor and -10 everywhere else, and the
# encoded ground-truth box as the deltas of each positive. On 50 held-out images:

# %%
model = RetinaNet(num_classes=3, preset="default")
anchors = model.anchors(128, 128)
dataset = ShapesDataset(50, image_size=128, num_classes=3, seed=1000)
_, targets = collate([dataset[i] for i in range(len(dataset))])
cls_t, box_t, positive, _ = assign_targets(anchors, targets, num_classes=3)
oracle_logits = np.where(cls_t == 1, 10.0, -10.0).astype(np.float32)

results = {}
for name, threshold in (("NMS at 0.5", 0.5), ("no NMS", 1.0)):  # nms_threshold 1.0 removes nothing
    dets = postprocess(oracle_logits, box_t, anchors, (128, 128), nms_threshold=threshold,
                       level_sizes=model.level_sizes(128, 128))
    results[name] = (evaluate_detections(dets, targets, num_classes=3), sum(len(d["boxes"]) for d in dets))
num_objects = sum(len(t["boxes"]) for t in targets)
for name, (r, n) in results.items():
    print(f"{name:<11}: {n:>4} detections for {num_objects} objects, AP {r['AP']:.3f}")

# %% tags=["hide-input"]
assert num_objects == 106 and int(positive.sum()) == results["no NMS"][1] == 500
assert results["NMS at 0.5"][1] == 106 and results["NMS at 0.5"][0]["AP"] == 1.0
assert results["no NMS"][0]["AP"] < 0.3 and results["no NMS"][1] - num_objects == 394

# %% [markdown]
# The 106 objects have 500 positive anchors, and every one of them decodes to its object's box exactly.
# With NMS each object keeps one detection and AP is exactly 1.0. Without NMS the 394 duplicates are false
# positives (each object can be matched once), and AP falls below 0.3, although every box is perfect.
#
# ## A trained detector
#
# The package ships the detector that `numpy-retinanet train` makes with its default recipe (lesson 8):
# 4000 steps of 8 images, about ten minutes on a 2-core CPU. `load_checkpoint` reads it (no pickle), and
# `engine.inference.evaluate_model` runs this lesson's pipeline, `postprocess` then `evaluate_detections`,
# on the held-out images its run was scored on (seed 1000, never trained on):

# %% mystnb={"image":{"alt":"Eight held-out shapes images with the shipped model's detections and dashed ground truth"}}
import os

from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL, load_checkpoint
from numpy_retinanet.engine.inference import evaluate_model
from numpy_retinanet.teaching.figures import as_image, detections_data, plot_detections

FAST = os.environ.get("NUMPY_RETINANET_FAST") == "1"
detector, info = load_checkpoint(SHIPPED_MODEL)
held_out = ShapesDataset(50 if FAST else 200, image_size=128, num_classes=3, seed=1000)
result = evaluate_model(detector, held_out)
print(f"shipped model (step {info['step']}) on {len(held_out)} held-out images: AP {result['AP']:.3f}, "
      f"AP50 {result['AP50']:.3f}, AP75 {result['AP75']:.3f}")
print("per class:", {name: round(ap, 3) for name, ap in zip(info["class_names"], result["per_class_AP"])})
as_image(plot_detections(detections_data(detector, held_out, range(8)), info["class_names"],
                         "Detections of the shipped model (scores >= 0.3; ground truth dashed)"))

# %% tags=["hide-input"]
assert info["step"] == 4000 and result["AP50"] > 0.9 and result["AP"] > 0.65

# %% [markdown]
# AP50 is above 0.9: at IoU 0.5 nearly every shape is found, ranked above the false alarms. AP, which
# averages over stricter IoU thresholds up to 0.95, is lower (about 0.7 on the 200 images): the boxes are
# good but not pixel-tight. The command line gives the same numbers: `numpy-retinanet evaluate` (the
# shipped model by default, or `--checkpoint runs/shapes/checkpoint.npz` for your own run).
#
# ## Summary
#
# - Inference: sigmoid scores > 0.05, top 1,000 per level, decode, clip, per-class NMS at 0.5, top 100.
# - NMS keeps the best of overlapping boxes of one class; without it a dense detector's duplicates are
#   false positives.
# - COCO AP: per class, precision over 101 recall points (made monotone), averaged over IoU thresholds
#   0.50:0.05:0.95; AP50 and AP75 at one threshold.
# - The shipped detector reaches AP50 above 0.9 and AP about 0.7 on the held-out shapes.
#
# ## Exercises
#
# 1. Give the oracle a score that depends on the anchor's IoU with its box (e.g. logit 10 x IoU). Does NMS
#    still keep the best-localized box? Does AP change?
# 2. Add Gaussian noise to the oracle's deltas (`box_t + sigma * noise`) and plot AP, AP50 and AP75
#    against sigma.
# 3. Set `max_detections=1` in `postprocess` for the oracle. What happens to AP on images with several
#    objects?
