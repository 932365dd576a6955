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
from numpy_retinanet.evaluation.coco import COCO_IOU_THRESHOLDS, RECALL_THRESHOLDS, evaluate_detections, match_image
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
assert np.isclose(box_iou(boxes[:1], boxes[1:2])[0, 0], 9 * 9 / (100 + 100 - 9 * 9))  # a 9 x 9 overlap
assert nms(boxes, scores, 0.5).tolist() == [0, 2]
assert batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 2, 3]

# %% [markdown]
# Box 1 overlaps box 0 in a 9 x 9 square, IoU 81 / (100 + 100 - 81) = 0.681, and is removed; box 2 overlaps
# nothing. Box 3 lies exactly on box 0, but it is another class: per-class NMS keeps it.
#
# ### NMS by hand
#
# (To write NMS and AP yourself before reading them, do exercises 9 and 10 first: `lessons/exercises/ex9_nms.py`
# and `lessons/exercises/ex10_average_precision.py`.)
#
# The greedy loop, written out: sort by score (a stable sort, so equal scores keep their input order), keep
# the best box, drop every remaining box whose IoU with it is *greater* than the threshold, repeat with what
# is left. The IoU is lesson 6's.

# %%
def nms_by_hand(boxes, scores, threshold):
    """Indices of the boxes (N, 4) that greedy NMS keeps, by decreasing score."""
    left = list(np.argsort(-scores, kind="stable"))  # best first
    keep = []
    while left:
        best = left.pop(0)
        keep.append(best)
        iou = box_iou(boxes[best][None], boxes[left])[0] if left else np.zeros(0)
        left = [i for i, overlap in zip(left, iou) if overlap <= threshold]
    return np.array(keep, dtype=np.int64)


print("by hand:", nms_by_hand(boxes, scores, 0.5))
half = np.array([[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 10, 20]], dtype=np.float64)
tied = np.array([0.5, 0.9, 0.9])  # boxes 1 and 2 tie, and are the same box; box 0 is half of it
print("IoU of box 0 with box 1:", float(box_iou(half[:1], half[1:2])[0, 0]))
print("kept:", nms_by_hand(half, tied, 0.5))

# %% tags=["hide-input"]
assert np.array_equal(nms_by_hand(boxes, scores, 0.5), nms(boxes, scores, 0.5))
assert box_iou(half[:1], half[1:2])[0, 0] == 0.5 == 50 / 100  # intersection 10 x 10 of union 10 x 20
assert nms_by_hand(half, tied, 0.5).tolist() == nms(half, tied, 0.5).tolist() == [1, 0]
assert nms(half, tied, 0.49).tolist() == [1]

# %% [markdown]
# A box at IoU exactly 0.5 with a kept box survives NMS at 0.5 (only IoU > 0.5 is dropped; at 0.49 it goes
# too). Of two boxes with one score, the earlier one is kept. On random boxes, with several thresholds, the
# hand-written loop keeps exactly the boxes `nms` keeps, and what it keeps has the two properties that
# define greedy NMS: no two kept boxes overlap by more than the threshold, and every removed box overlaps
# by more than the threshold a kept box ranked before it.

# %%
def nms_properties_hold(boxes, scores, keep, threshold):
    """Greedy NMS's output ``keep``: kept boxes pairwise IoU <= threshold; each removed box has IoU > threshold
    with a kept box ranked before it (by score, equal scores by index)."""
    iou = box_iou(boxes, boxes)
    kept = np.zeros(len(boxes), dtype=bool)
    kept[keep] = True
    rank = np.empty(len(boxes), dtype=np.int64)
    rank[np.argsort(-scores, kind="stable")] = np.arange(len(boxes))
    apart = np.all(iou[np.ix_(keep, keep)][~np.eye(len(keep), dtype=bool)] <= threshold)
    return apart and all(np.any(kept & (iou[j] > threshold) & (rank < rank[j])) for j in np.flatnonzero(~kept))


rng = np.random.default_rng(0)
corner = rng.uniform(0, 100, (300, 2))
random_boxes = np.concatenate([corner, corner + rng.uniform(5, 40, (300, 2))], axis=1)
random_scores = rng.integers(0, 20, 300) / 20  # few distinct scores: many ties
kept = {th: nms_by_hand(random_boxes, random_scores, th) for th in (0.3, 0.5, 0.7)}
print({th: len(k) for th, k in kept.items()}, "of", len(random_boxes), "boxes kept")

# %% tags=["hide-input"]
assert all(np.array_equal(k, nms(random_boxes, random_scores, th)) for th, k in kept.items())
assert all(nms_properties_hold(random_boxes, random_scores, k, th) for th, k in kept.items())

# %% [markdown]
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
assert np.allclose(COCO_IOU_THRESHOLDS, np.linspace(0.5, 0.95, 10))  # 0.50:0.05:0.95
assert np.allclose(RECALL_THRESHOLDS, np.linspace(0, 1, 101))  # 0:0.01:1
assert perfect["AP"] == perfect["AP50"] == perfect["AP75"] == 1.0
# the second box lies inside the object: IoU = its area over the object's
assert np.isclose(box_iou(np.array([[20, 20, 40, 40.0]]), np.array([[20, 20, 40, 32.4]]))[0, 0], 20 * 12.4 / (20 * 20))
assert loose["AP50"] == 1.0 and np.isclose(loose["AP75"], 51 / 101)
assert np.isclose(loose["AP"], (3 * 1 + 7 * 51 / 101) / 10)

# %% [markdown]
# - Perfect boxes give exactly 1.0.
# - A box at IoU 20 x 12.4 / (20 x 20) = 0.62 (it lies inside the object) counts at t = 0.50, 0.55 and
#   0.60 only: at those three thresholds both objects are found (AP 1); at the other seven the first
#   object is found at precision 1 and the second never, so precision is 1 up to recall 0.5 and 0 after:
#   51 of the 101 recall points, AP 51/101 = 0.505 (AP75). The mean over thresholds is
#   (3 x 1 + 7 x 51/101) / 10 = 0.653. Localization quality matters, which is why AP75 is reported apart.
# - A false positive above the true ones: precision is 1/2 after the second detection and 2/3 after the
#   third, so the monotone precision is 2/3 at every recall point.

# %% tags=["hide-input"]
assert np.isclose(false_first["AP"], 2 / 3)

# %% [markdown]
# ### COCO matching and AP by hand
#
# Matching, at one IoU threshold $t$, for one image and one class: go down the detections by score; each
# takes, among the ground-truth boxes not yet taken, the one it overlaps most, if that IoU is $\ge t$
# (pycocotools keeps the later box when two IoUs are equal, so the comparison is `>=`). A detection that
# takes a box is a true positive; any other, a false positive.

# %%
def coco_match_by_hand(ious, t):
    """ious (D, G): detections (by score) x ground truth. (D,) bool: true positives at t."""
    taken = np.zeros(ious.shape[1], dtype=bool)
    tp = np.zeros(ious.shape[0], dtype=bool)
    for d in range(ious.shape[0]):
        best, best_iou = -1, t
        for g in range(ious.shape[1]):
            if not taken[g] and ious[d, g] >= best_iou:
                best, best_iou = g, ious[d, g]
        if best >= 0:
            taken[best] = tp[d] = True
    return tp


# %% [markdown]
# Then AP of one class: sort the detections of *all* images by score; after the $n$-th, recall is
# $TP_n / G$ ($G$ boxes of the class) and precision is $TP_n / n$. The precision is replaced by its
# *envelope*, the highest precision at this or any later detection, so the curve never rises to the right;
# at each of the 101 recall thresholds $r = 0, 0.01, \dots, 1$ the envelope is read at the first detection
# whose recall reaches $r$ (0 if none does), and AP is the mean of those 101 numbers:
#
# $$\mathrm{AP} = \frac{1}{101} \sum_{r \in \{0, 0.01, \dots, 1\}} \hat p(r), \qquad
# \hat p(r) = \max_{m \ge n(r)} \frac{TP_m}{m}, \quad n(r) = \min\{n : TP_n / G \ge r\}.$$

# %%
def ap_by_hand(tp, det_scores, num_gt):
    """COCO AP of one class from its detections' flags tp (D,) and scores (D,), any order."""
    tp = tp[np.argsort(-det_scores, kind="stable")]
    recall = np.cumsum(tp) / num_gt
    precision = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # max of this and all later ones
    samples = [envelope[np.argmax(recall >= r)] if len(tp) and recall[-1] >= r else 0.0
               for r in np.linspace(0, 1, 101)]
    return float(np.mean(samples))


def class_matches_by_hand(detections, ground_truths, k, t):
    """Class k at IoU threshold t over a list of images: true-positive flags (D,), scores (D,), number of boxes."""
    tps, det_scores, num_gt = [], [], 0
    for det, gt in zip(detections, ground_truths):
        mine = np.flatnonzero(det["labels"] == k)
        mine = mine[np.argsort(-det["scores"][mine], kind="stable")]  # best first
        gt_boxes = np.asarray(gt["boxes"], dtype=np.float64)[gt["labels"] == k]
        tps.append(coco_match_by_hand(box_iou(det["boxes"][mine], gt_boxes), t))
        det_scores.append(det["scores"][mine])
        num_gt += len(gt_boxes)
    return np.concatenate(tps), np.concatenate(det_scores), num_gt


def class_ap_by_hand(detections, ground_truths, k, t):
    """AP of class k at IoU threshold t over a list of images."""
    return ap_by_hand(*class_matches_by_hand(detections, ground_truths, k, t))


def coco_ap_by_hand(detections, ground_truths, num_classes):
    """The mean over COCO's 10 IoU thresholds and the classes that have ground truth."""
    present = [k for k in range(num_classes) if any(np.any(gt["labels"] == k) for gt in ground_truths)]
    return float(np.mean([class_ap_by_hand(detections, ground_truths, k, t)
                          for t in COCO_IOU_THRESHOLDS for k in present]))


def as_detections(det_boxes, det_scores):
    return [{"boxes": np.array(det_boxes, dtype=np.float64), "scores": np.array(det_scores),
             "labels": np.zeros(len(det_boxes), dtype=np.int64)}]


cases = {"perfect": ([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8]),
         "loose": ([[0, 0, 10, 10], [20, 20, 40, 32.4]], [0.9, 0.8]),
         "false_first": ([[50, 50, 60, 60], [0, 0, 10, 10], [20, 20, 40, 40]],
                         [0.95, 0.9, 0.8])}
for name, case in cases.items():
    print(f"{name:<12} AP by hand {coco_ap_by_hand(as_detections(*case), gt, 1):.3f}")

# %% tags=["hide-input"]
assert coco_ap_by_hand(as_detections(*cases["perfect"]), gt, 1) == perfect["AP"]
assert np.isclose(coco_ap_by_hand(as_detections(*cases["loose"]), gt, 1), loose["AP"], rtol=0, atol=1e-15)
assert np.isclose(class_ap_by_hand(as_detections(*cases["loose"]), gt, 0, 0.75), loose["AP75"], rtol=0, atol=1e-15)
assert np.isclose(coco_ap_by_hand(as_detections(*cases["false_first"]), gt, 1), false_first["AP"], rtol=0, atol=1e-15)
# detection 0 overlaps both boxes equally, detection 1 only box 0: 0 takes the later box (pycocotools), so 1 finds box 0
assert coco_match_by_hand(np.array([[0.6, 0.6], [0.6, 0.0]]), 0.5).tolist() == [True, True]
assert match_image(np.array([[0.6, 0.6], [0.6, 0.0]]), np.array([0.5])).tolist() == [[True, True]]

# %% [markdown]
# The hand-written AP gives `evaluate_detections`' numbers on the three cases above; on the shipped
# detector's thousands of detections below it will too.

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

results, oracle_dets = {}, {}
for name, threshold in (("NMS at 0.5", 0.5), ("no NMS", 1.0)):  # nms_threshold 1.0 removes nothing
    oracle_dets[name] = postprocess(oracle_logits, box_t, anchors, (128, 128), nms_threshold=threshold,
                                    level_sizes=model.level_sizes(128, 128))
    results[name] = (evaluate_detections(oracle_dets[name], targets, num_classes=3),
                     sum(len(d["boxes"]) for d in oracle_dets[name]))
num_objects = sum(len(t["boxes"]) for t in targets)
print(f"{int(positive.sum())} positive anchors for the {num_objects} objects")
for name, (r, n) in results.items():
    print(f"{name:<11}: {n:>4} detections for {num_objects} objects, AP {r['AP']:.3f}")
# for the checks: the IoUs between objects of one class in one image (and of each object with itself)
same_class = [box_iou(t["boxes"], t["boxes"])[np.equal.outer(t["labels"], t["labels"])] for t in targets]

# %% tags=["hide-input"]
# one score above 0.05 per positive anchor (sigmoid(10) in its class, sigmoid(-10) elsewhere), never over 100 an image
assert positive.sum(axis=1).max() <= 100 and results["no NMS"][1] == int(positive.sum()) > num_objects
# each of them decodes to an object's box exactly (decoding inverts the coding, lesson 6)
assert all(np.allclose(box_iou(d["boxes"], t["boxes"]).max(axis=1, initial=0), 1)
           for d, t in zip(oracle_dets["no NMS"], targets))
# an object's positives decode to one box (IoU 1 > 0.5); two objects of a class never overlap by more than 0.5
assert max(np.max(iou[iou < 1 - 1e-9], initial=0) for iou in same_class) <= 0.5
assert results["NMS at 0.5"][1] == num_objects and results["NMS at 0.5"][0]["AP"] == 1.0
assert np.isclose(results["no NMS"][0]["AP"], coco_ap_by_hand(oracle_dets["no NMS"], targets, 3), rtol=0, atol=1e-12)
assert results["no NMS"][0]["AP"] < 1

# %% [markdown]
# Every positive anchor decodes to its object's box exactly, and no image has more than 100 of them, so
# without NMS there is one detection per positive anchor, several per object. With NMS each object keeps
# one detection (its duplicates overlap it with IoU 1, while two objects of one class never overlap by more
# than 0.5) and AP is exactly 1.0. Without NMS the duplicates are false positives (each object can be
# matched once), and AP falls far below 1 (the AP by hand agrees), although every box is perfect.
#
# ## A trained detector
#
# The package ships the detector that `numpy-retinanet train` makes with its default recipe (lesson 8):
# 4000 steps of 8 images, about six minutes on a 2-core CPU. `load_checkpoint` reads it (no pickle), and
# `engine.inference.evaluate_model` runs this lesson's pipeline, `postprocess` then `evaluate_detections`,
# on the held-out images its run was scored on (seed 1000, never trained on):

# %% mystnb={"image":{"alt":"Eight held-out shapes images with the shipped model's detections and dashed ground truth"}}
import os

from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL, load_checkpoint
from numpy_retinanet.engine.inference import evaluate_model, predict_dataset
from numpy_retinanet.teaching.figures import (
    as_image,
    detections_data,
    nms_data,
    plot_detections,
    plot_nms,
    plot_precision_recall,
    precision_recall_data,
)
from numpy_retinanet.teaching.figures.nms_and_pr import NMS_IMAGE_INDEX, PR_CLASS, PR_IMAGES, PR_IOU

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
assert info["step"] == info["train_config"]["iterations"] == 4000  # the checkpoint's own record

# %% [markdown]
# ### NMS on one of these images
#
# Held-out image 19 holds several shapes. Before NMS (`nms_threshold=1.0`, which removes nothing, and no cap
# on the number of detections) the detector proposes many boxes around them; per-class NMS at 0.5 leaves
# one per shape. The same figure, with the model named in its title, is `figures/nms_before_after.png`
# (`numpy-retinanet figures --only nms_before_after`).

# %% mystnb={"image":{"alt":"One held-out image: many overlapping boxes before NMS, one per shape after"}}
nms_example = nms_data(detector, held_out, NMS_IMAGE_INDEX)
before, after = nms_example["before"], nms_example["after"]
print(f"before NMS: {len(before['boxes'])} detections above 0.05, "
      f"{int(np.sum(before['scores'] >= 0.3))} of them >= 0.3")
print(f"after NMS: {len(after['boxes'])} above 0.05, {int(np.sum(after['scores'] >= 0.3))} >= 0.3, "
      f"for {len(nms_example['target']['boxes'])} objects")
kept_by_hand = []
for k in np.unique(before["labels"]):  # NMS class by class
    members = np.flatnonzero(before["labels"] == k)
    survivors = nms_by_hand(before["boxes"][members], before["scores"][members], 0.5)
    kept_by_hand += list(members[survivors])
kept_by_hand = np.sort(kept_by_hand)  # then by score (stable: ties keep this order), the best 100
kept_by_hand = kept_by_hand[np.argsort(-before["scores"][kept_by_hand], kind="stable")][:100]
shown_iou = box_iou(after["boxes"][after["scores"] >= 0.3], nms_example["target"]["boxes"])
as_image(plot_nms(nms_example, info["class_names"], f"NMS (§4.1) on held-out image {NMS_IMAGE_INDEX}"))

# %% tags=["hide-input"]
np.testing.assert_array_equal(before["boxes"][kept_by_hand], after["boxes"])  # NMS by hand, class by class
assert int(np.sum(after["scores"] >= 0.3)) == len(nms_example["target"]["boxes"]) > 1  # as many as shapes ...
assert sorted(shown_iou.argmax(axis=1)) == list(range(len(shown_iou)))  # ... each on a different object ...
assert np.all(shown_iou.max(axis=1) >= 0.5)  # ... with IoU >= 0.5

# %% [markdown]
# `nms_by_hand`, run class by class on the detections before NMS, keeps exactly the detections after it;
# the detections of score >= 0.3 that remain are as many as the shapes, one on each.
#
# ### A precision-recall curve
#
# The triangles, at IoU 0.75, on the first 50 held-out images: the grey dots are the precision after each
# detection, the black steps their envelope, the blue circles the 101 samples; AP at this threshold is their
# mean. Where a false positive outranks true ones, the raw precision dips below the envelope. The same curve,
# with the model named in its title, is `figures/precision_recall.png`.

# %% mystnb={"image":{"alt":"Precision against recall of the triangles at IoU 0.75: raw points, envelope, 101 samples"}}
dets, gts = predict_dataset(detector, held_out)
pr = precision_recall_data(dets[:PR_IMAGES], gts[:PR_IMAGES], PR_CLASS, PR_IOU)
name = info["class_names"][PR_CLASS]
print(f"{name} at IoU {PR_IOU}: {len(pr['recall'])} detections, {pr['num_gt']} objects, AP {pr['ap']:.3f}")
tp, det_scores, _ = class_matches_by_hand(dets[:PR_IMAGES], gts[:PR_IMAGES], PR_CLASS, PR_IOU)
tp = tp[np.argsort(-det_scores, kind="stable")]  # by hand, by decreasing score: is a false one above a true one?
false_before_true = np.any(tp[1:] & np.logical_or.accumulate(~tp)[:-1])
as_image(plot_precision_recall(pr, name, f"the first {PR_IMAGES} held-out images"))

# %% tags=["hide-input"]
assert np.isclose(pr["ap"], class_ap_by_hand(dets[:PR_IMAGES], gts[:PR_IMAGES], PR_CLASS, PR_IOU), rtol=0, atol=1e-15)
assert false_before_true and np.any(pr["envelope"] > pr["precision"])  # ... so the raw precision dips

# %% [markdown]
# The hand-written AP of these detections equals the figure's, and the whole of COCO AP by hand, every class
# at every threshold on all the held-out images, is the number `evaluate_model` printed above:

# %%
by_hand = coco_ap_by_hand(dets, gts, 3)
print(f"AP by hand {by_hand:.6f}, evaluate_model {result['AP']:.6f}")

present = [k for k in range(3) if any(np.any(gt["labels"] == k) for gt in gts)]  # as coco_ap_by_hand
by_hand_50 = np.mean([class_ap_by_hand(dets, gts, k, 0.5) for k in present])
print(f"AP50 by hand {by_hand_50:.6f}, evaluate_model {result['AP50']:.6f}")

# %% tags=["hide-input"]
assert np.isclose(by_hand, result["AP"], rtol=0, atol=1e-12)
assert np.isclose(by_hand_50, result["AP50"], rtol=0, atol=1e-12)
assert by_hand_50 > 0.9 and round(by_hand, 1) == 0.7 and by_hand < by_hand_50

# %% [markdown]
# AP50 by hand, above 0.9, is `evaluate_model`'s too: at IoU 0.5 nearly every shape is found, ranked above
# the false alarms. AP, which averages over stricter IoU thresholds up to 0.95, is lower (about 0.7): the
# boxes are good but not pixel-tight. The command line gives the same numbers: `numpy-retinanet evaluate` (the
# shipped model by default, or `--checkpoint runs/shapes/checkpoint.npz` for your own run).
#
# ## Summary
#
# - Inference: sigmoid scores > 0.05, top 1,000 per level, decode, clip, per-class NMS at 0.5, top 100.
# - NMS keeps the best of overlapping boxes of one class; without it a dense detector's duplicates are
#   false positives.
# - NMS by hand is a short loop: sort, keep the best, drop IoU > threshold, repeat; it equals `nms`.
# - COCO AP: per class, detections matched greedily by score (each takes the best-IoU box not yet taken),
#   precision made monotone and read at 101 recall points, averaged over IoU thresholds 0.50:0.05:0.95;
#   AP50 and AP75 at one threshold. Written by hand, it equals `evaluate_detections`.
# - The shipped detector reaches AP50 above 0.9 and AP about 0.7 on the held-out shapes (by hand too).
#
# ## Exercises
#
# 1. Give the oracle a score that depends on the anchor's IoU with its box (e.g. logit 10 x IoU). Does NMS
#    still keep the best-localized box? Does AP change?
# 2. Add Gaussian noise to the oracle's deltas (`box_t + sigma * noise`) and plot AP, AP50 and AP75
#    against sigma.
# 3. Set `max_detections=1` in `postprocess` for the oracle. What happens to AP on images with several
#    objects?
# 4. Write NMS yourself: `lessons/exercises/ex9_nms.py`; then the AP of one class as COCO computes it:
#    `lessons/exercises/ex10_average_precision.py` (`numpy-retinanet check FILE`, `--hint N` when stuck).
