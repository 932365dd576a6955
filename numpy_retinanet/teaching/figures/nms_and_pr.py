"""Non-maximum suppression (§4.1, "Inference") and the precision-recall curve behind COCO AP (§5), drawn
from the figures' trained model on held-out shapes images.

``nms_data`` runs the model on one image and post-processes its outputs twice: without NMS
(``nms_threshold=1.0`` removes nothing) and with the paper's NMS at 0.5; ``plot_nms`` draws both.
``precision_recall_data`` matches one class's detections COCO-style at one IoU threshold
(``evaluation.coco.match_image``) and reads the curve with ``precision_at_recall_thresholds``;
``plot_precision_recall`` draws the raw points, their monotone envelope and the 101 samples whose
mean is AP. Registered as the figures "nms_before_after" and "precision_recall".
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from numpy_retinanet.backend import array_module
from numpy_retinanet.detection.boxes import box_iou
from numpy_retinanet.engine.inference import detect, predict_dataset
from numpy_retinanet.evaluation.coco import (
    RECALL_THRESHOLDS,
    match_image,
    precision_at_recall_thresholds,
)
from numpy_retinanet.evaluation.visualize import DRAW_SCORE_THRESHOLD, PALETTE, save_figure
from numpy_retinanet.teaching.figures.registry import _rect, register_figure

#: The held-out image of the NMS figure: four shapes, about 30 detections above 0.3 before NMS.
NMS_IMAGE_INDEX = 19
#: The precision-recall figure: the shipped model's triangles on 50 held-out images at IoU 0.75, where
#: false positives are ranked among the true ones, so that the envelope differs from the raw curve.
PR_IMAGES = 50
PR_CLASS = 2
PR_IOU = 0.75


def nms_data(model, dataset, index, nms_threshold=0.5):
    """One image's detections before and after per-class NMS (§4.1).

    Both come from ``engine.inference.detect`` (so from ``detection.postprocess``): "before" with
    ``nms_threshold=1.0``, which removes nothing (an IoU is never above 1), and no cap on the
    number of detections; "after" with ``nms_threshold`` and postprocess's cap of 100.

    Returns
    -------
    dict with "picture" (H, W, 3) uint8, "target" (ground truth), "before" and "after"
    (each ``{"boxes" (n, 4), "scores" (n,), "labels" (n,)}``, sorted by score), "nms_threshold".
    """
    picture, target = dataset.raw(index)
    image = dataset[index][0][None].astype(model.dtype)
    h, w = image.shape[2:]
    image = array_module(model.anchors(h, w)).asarray(image)
    every = len(model.anchors(h, w)) * model.num_classes  # more than postprocess can ever return
    before = detect(model, image, nms_threshold=1.0, max_detections=every)[0]
    after = detect(model, image, nms_threshold=nms_threshold)[0]
    return {"picture": picture, "target": target, "before": before, "after": after, "nms_threshold": nms_threshold}


def _colour(label):
    return tuple(c / 255 for c in PALETTE[int(label) % len(PALETTE)])


def _draw_boxes(ax, data, dets, class_names, score_threshold, named):
    """The picture, its ground truth (dashed white) and the detections above ``score_threshold`` in
    their class's colour, lowest score first; ``named`` writes class and score above each box."""
    picture = data["picture"]
    h, w = picture.shape[:2]
    ax.imshow(picture, extent=(0, w, h, 0), interpolation="nearest")
    for box in data["target"]["boxes"]:
        ax.add_patch(_rect(box, edgecolor="white", linewidth=1.2, linestyle="--"))
    shown = np.flatnonzero(dets["scores"] >= score_threshold)
    for i in shown[::-1]:  # sorted by score: the best drawn last, on top
        label = int(dets["labels"][i])
        ax.add_patch(_rect(dets["boxes"][i], halo="white" if named else None, edgecolor=_colour(label),
                           linewidth=2.0 if named else 0.9))
        if named:
            x1, y1 = dets["boxes"][i][:2]
            ax.text(x1, y1 - 1, f"{class_names[label]} {dets['scores'][i]:.2f}", fontsize=8, color="white",
                    va="bottom", bbox={"facecolor": _colour(label), "edgecolor": "none", "pad": 1.0})
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    return len(shown)


def plot_nms(data, class_names, title, score_threshold=DRAW_SCORE_THRESHOLD):
    """Draw ``nms_data``: the detections above ``score_threshold`` before NMS (left) and after (right).
    Returns the ``Figure``; the rectangles of each panel are the ground truth, then exactly those
    detections."""
    fig = Figure(figsize=(9.0, 5.4))
    left, right = fig.subplots(1, 2)
    n_before = _draw_boxes(left, data, data["before"], class_names, score_threshold, named=False)
    n_after = _draw_boxes(right, data, data["after"], class_names, score_threshold, named=True)
    left.set_title(f"before NMS: {n_before} boxes with score >= {score_threshold:g}", fontsize=10)
    right.set_title(f"after NMS at IoU {data['nms_threshold']:g}, per class: {n_after} boxes", fontsize=10)
    labels = sorted(set(data["before"]["labels"].tolist()) | set(data["target"]["labels"].tolist()))
    handles = [Line2D([], [], color=_colour(k), linewidth=2.0, label=class_names[k]) for k in labels]
    handles.append(Line2D([], [], color="0.4", linewidth=1.2, linestyle="--", label="ground truth (dashed white)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.84, bottom=0.09, wspace=0.05)
    return fig


def precision_recall_data(detections, ground_truths, class_index, iou_threshold):
    """The precision-recall curve of one class at one IoU threshold, as COCO AP reads it (§5).

    The class's detections of every image, each image's sorted by score and matched greedily with
    ``match_image``, are sorted by score over all images (stable, as ``evaluate_detections``);
    after the n-th detection, ``recall = TP / num_gt`` and ``precision = TP / n``. Detections as
    ``postprocess`` returns them (at most 100 per image), so COCO's cap of 100 per image and class
    never removes one, and ``ap`` is ``evaluate_detections``' per-class AP at this threshold.

    Returns
    -------
    dict with "recall" and "precision" (D,) after each detection, "envelope" (D,) the precision
    made monotone from the right (``max(precision[n:])``), "recall_thresholds" (101,), "samples"
    (101,) the envelope read at each recall threshold (0 where recall never reaches it, from
    ``precision_at_recall_thresholds``), "ap" (their mean), "num_gt", "class_index",
    "iou_threshold".
    """
    scores, matched, num_gt = [], [], 0
    for det, gt in zip(detections, ground_truths):
        gt_boxes = np.asarray(gt["boxes"], dtype=np.float64)[np.asarray(gt["labels"]) == class_index]
        mine = np.flatnonzero(np.asarray(det["labels"]) == class_index)
        mine = mine[np.argsort(-det["scores"][mine], kind="stable")]
        matched.append(match_image(box_iou(np.asarray(det["boxes"], dtype=np.float64)[mine], gt_boxes),
                                   np.array([iou_threshold]))[0])
        scores.append(det["scores"][mine])
        num_gt += len(gt_boxes)
    if num_gt == 0:
        raise ValueError(f"class_index must be a class with ground truth, got {class_index}")
    order = np.argsort(-np.concatenate(scores), kind="stable")
    tp = np.concatenate(matched)[order]
    recall = np.cumsum(tp) / num_gt
    precision = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    samples = precision_at_recall_thresholds(tp[None, :], num_gt)[0][0]
    return {"recall": recall, "precision": precision,
            "envelope": np.maximum.accumulate(precision[::-1])[::-1], "recall_thresholds": RECALL_THRESHOLDS,
            "samples": samples, "ap": float(samples.mean()), "num_gt": num_gt, "class_index": class_index,
            "iou_threshold": iou_threshold}


def plot_precision_recall(data, class_name, caption=""):
    """Draw ``precision_recall_data``: the precision after each detection (grey dots), the monotone
    envelope (a step line), the 101 samples (blue dots) and their mean, AP, in the title."""
    fig = Figure(figsize=(7.5, 5.0))
    ax = fig.subplots()
    ax.plot(data["recall"], data["precision"], "o", color="0.55", markersize=2.5,
            label="precision after each detection")
    # A recall threshold r reads the envelope at the first detection whose recall reaches r, so each
    # value holds on the recall interval to its left: steps-pre.
    ax.plot(data["recall"], data["envelope"], "-", color="black", linewidth=1.2, drawstyle="steps-pre",
            label="monotone envelope: max(precision to the right)")
    ax.plot(data["recall_thresholds"], data["samples"], "o", color="#377eb8", markersize=3.5, markerfacecolor="none",
            label="101 samples at recall 0, 0.01, ..., 1")
    top = data["recall"][-1] if len(data["recall"]) else 0.0
    if top < 1:
        ax.annotate(f"recall never passes\n{top:.3f}: the samples\nabove it are 0", xy=(top + 0.01, 0.0),
                    xytext=(top + 0.03, 0.25), fontsize=9, arrowprops={"arrowstyle": "->", "color": "0.3"})
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=9)
    title = (f"{class_name}, IoU {data['iou_threshold']:g}: {len(data['recall'])} detections, "
             f"{data['num_gt']} objects; AP = mean of the 101 samples = {data['ap']:.3f}")
    fig.suptitle(title + (f"\n{caption}" if caption else ""), fontsize=10)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.87 if caption else 0.92, bottom=0.11)
    return fig


@register_figure("nms_before_after", needs_model=True)
def _nms_before_after(out_dir, trained):
    held_out = trained.held_out(num_images=NMS_IMAGE_INDEX + 1)
    data = nms_data(trained.model, held_out, NMS_IMAGE_INDEX)
    title = f"Non-maximum suppression (§4.1) on held-out image {NMS_IMAGE_INDEX}\n{trained.caption()}"
    return save_figure(plot_nms(data, held_out.class_names, title), out_dir / "nms_before_after.png")


@register_figure("precision_recall", needs_model=True)
def _precision_recall(out_dir, trained):
    held_out = trained.held_out(num_images=PR_IMAGES)
    data = precision_recall_data(*predict_dataset(trained.model, held_out), PR_CLASS, PR_IOU)
    caption = f"{len(held_out)} held-out images; {trained.caption()}"
    fig = plot_precision_recall(data, held_out.class_names[PR_CLASS], caption)
    return save_figure(fig, out_dir / "precision_recall.png")
