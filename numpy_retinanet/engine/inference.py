"""Running a trained model over images: detections (§4.1 inference), COCO-style AP on a dataset,
and detections drawn on image files (``numpy-retinanet detect``)."""

from __future__ import annotations

import os

import numpy as np

from numpy_retinanet.backend import array_module, to_host
from numpy_retinanet.data.images import load_image
from numpy_retinanet.data.transforms import normalize
from numpy_retinanet.detection.postprocess import postprocess
from numpy_retinanet.evaluation.coco import evaluate_detections
from numpy_retinanet.evaluation.visualize import DRAW_SCORE_THRESHOLD, draw_detections


def detect(model, images, **settings):
    """Detections for a batch: images (N, 3, H, W) in the model's dtype and device.

    ``settings`` are ``detection.postprocess.postprocess``'s (score_threshold, topk_per_level,
    nms_threshold, max_detections), whose defaults are Detectron's inference settings.

    Returns a list of N dicts {"boxes" (n, 4), "scores" (n,), "labels" (n,)} of host
    NumPy arrays, sorted by score.
    """
    h, w = images.shape[2:]
    logits, deltas = model.forward(images, keep_cache=False)
    xp = array_module(logits)
    return postprocess(logits, deltas, model.anchors(h, w, xp=xp), (h, w), level_sizes=model.level_sizes(h, w),
                       **settings)


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


def detect_files(model, paths, out_dir, class_names, xp=np, score_threshold=DRAW_SCORE_THRESHOLD):
    """Run the detector on each file; write ``<name>_detections.png`` into ``out_dir``.

    Images are used at their own size (the network is fully convolutional and the
    anchors follow the image size); objects should be about as large as in training.
    Every file is read first, so a bad file stops the run before any output is written.

    Yields (path, output path, detections above ``score_threshold``).
    """
    pictures = [(p, load_image(p)) for p in paths]
    for path, picture in pictures:
        h, w = picture.shape[:2]
        if h < 32 or w < 32:
            raise ValueError(f"image {path!r} is {w}x{h}; at least 32x32 pixels are needed")
        x = normalize(picture)[None].astype(model.dtype)
        dets = detect(model, xp.asarray(x))[0]
        keep = dets["scores"] >= score_threshold
        dets = {k: v[keep] for k, v in dets.items()}
        stem = os.path.splitext(os.path.basename(path))[0]
        out_path = os.path.join(out_dir, f"{stem}_detections.png")
        draw_detections(picture, dets, class_names, score_threshold=score_threshold,
                        scale=max(1, 256 // max(h, w))).save(out_path)
        yield path, out_path, dets
