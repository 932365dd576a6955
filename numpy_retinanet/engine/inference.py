"""Running a trained model over images: detections (§4.1 inference) and COCO-style AP on a dataset."""

from __future__ import annotations

import numpy as np

from numpy_retinanet.backend import array_module, to_host
from numpy_retinanet.detection.postprocess import postprocess
from numpy_retinanet.engine.evaluate import evaluate_detections


def detect(model, images, score_threshold=0.05, topk_per_level=1000, nms_threshold=0.5, max_detections=100):
    """Detections for a batch: images (N, 3, H, W) in the model's dtype and device.

    Returns a list of N dicts {"boxes" (n, 4), "scores" (n,), "labels" (n,)} of host
    NumPy arrays, sorted by score (Detectron's inference settings by default).
    """
    h, w = images.shape[2:]
    logits, deltas = model.forward(images, keep_cache=False)
    xp = array_module(logits)
    return postprocess(logits, deltas, model.anchors(h, w, xp=xp), (h, w), score_threshold=score_threshold,
                       topk_per_level=topk_per_level, nms_threshold=nms_threshold,
                       max_detections=max_detections, level_sizes=model.level_sizes(h, w))


def predict_dataset(model, dataset, batch_size=16, xp=np, **detect_kwargs):
    """Detections and ground truths for every image of ``dataset`` (in index order)."""
    detections, ground_truths = [], []
    for start in range(0, len(dataset), batch_size):
        samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        images = np.stack([s[0] for s in samples]).astype(model.dtype, copy=False)
        detections += detect(model, xp.asarray(images), **detect_kwargs)
        ground_truths += [{"boxes": to_host(s[1]["boxes"]), "labels": to_host(s[1]["labels"])} for s in samples]
    return detections, ground_truths


def evaluate_model(model, dataset, batch_size=16, xp=np):
    """COCO-style AP of ``model`` on ``dataset``: the dict of ``evaluate_detections``."""
    detections, ground_truths = predict_dataset(model, dataset, batch_size=batch_size, xp=xp)
    return evaluate_detections(detections, ground_truths, model.num_classes)
