"""Running a trained model over images: detections (§4.1 inference), COCO-style AP on a dataset,
and detections drawn on image files (``numpy-retinanet detect``)."""

from __future__ import annotations

import os

import numpy as np

from numpy_retinanet._checks import check_int, check_probability
from numpy_retinanet.backend import array_module, to_host
from numpy_retinanet.data.images import MAX_SIDE, MIN_SIDE, load_image_within
from numpy_retinanet.data.torchvision_transform import boxes_to_original, torchvision_transform
from numpy_retinanet.data.transforms import normalize
from numpy_retinanet.detection.postprocess import postprocess
from numpy_retinanet.evaluation.coco import evaluate_detections
from numpy_retinanet.evaluation.visualize import DRAW_SCORE_THRESHOLD, draw_detections
from numpy_retinanet.model.resnet50_fpn import TORCHVISION_POSTPROCESS, ResNet50FPNRetinaNet


def detect(model, images, **settings):
    """Detections for a batch: images (N, 3, H, W) in the model's dtype and device.

    ``settings`` are ``detection.postprocess.postprocess``'s (score_threshold, topk_per_level,
    nms_threshold, max_detections), whose defaults are Detectron's inference settings.

    Returns a list of N dicts {"boxes" (n, 4), "scores" (n,), "labels" (n,)} of host
    NumPy arrays, sorted by score.
    """
    if isinstance(model, ResNet50FPNRetinaNet):
        raise ValueError("model must be one of this package's presets to run on normalized images, got torchvision's "
                         "architecture, which runs on pictures through its own transform (detect_torchvision)")
    h, w = images.shape[2:]
    logits, deltas = model.forward(images, keep_cache=False)
    xp = array_module(logits)
    return postprocess(logits, deltas, model.anchors(h, w, xp=xp), (h, w), level_sizes=model.level_sizes(h, w),
                       **settings)


def detect_torchvision(model, pictures, xp=np, **transform):
    """Detections of torchvision's RetinaNet (``model/resnet50_fpn.py``) on uint8 pictures, as
    torchvision runs it: its transform (``data/torchvision_transform.py``), the network, its
    post-processing (``TORCHVISION_POSTPROCESS``) on each picture's resized size, and the boxes
    mapped back to the picture's pixels.

    Parameters
    ----------
    pictures : list of (H_i, W_i, 3) uint8 arrays.
    transform : ``torchvision_transform``'s ``min_size`` and ``max_size`` (default: 800 and 1333).

    Returns
    -------
    a list of dicts {"boxes" (n, 4) in the picture's pixels, "scores" (n,), "labels" (n,)}, as ``detect``.
    """
    batch, sizes = torchvision_transform(pictures, **transform)
    h, w = batch.shape[2:]
    logits, deltas = model.forward(xp.asarray(batch.astype(model.dtype, copy=False)), keep_cache=False)
    anchors, level_sizes = model.anchors(h, w, xp=xp), model.level_sizes(h, w)
    out = []
    for i, (picture, size) in enumerate(zip(pictures, sizes)):
        det = postprocess(logits[i:i + 1], deltas[i:i + 1], anchors, size, level_sizes=level_sizes,
                          **TORCHVISION_POSTPROCESS)[0]
        out.append(dict(det, boxes=boxes_to_original(det["boxes"], size, picture.shape[:2])))
    return out


def predict_dataset(model, dataset, batch_size=16, xp=np, **detect_kwargs):
    """Detections and ground truths for every image of ``dataset`` (in index order), in the pixels
    of the images the model sees; a target's ``"iscrowd"`` flags are kept."""
    detections, ground_truths = [], []
    for start in range(0, len(dataset), batch_size):
        samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        images = np.stack([s[0] for s in samples]).astype(model.dtype, copy=False)
        detections += detect(model, xp.asarray(images), **detect_kwargs)
        ground_truths += [{k: to_host(v) for k, v in s[1].items() if k in ("boxes", "labels", "iscrowd")}
                          for s in samples]
    return detections, ground_truths


def in_original_pixels(dataset, detections, ground_truths):
    """Detections and ground truths in the pixels of the image files, for a dataset that resized
    its images (``data/coco_format.py``: ``to_original`` and ``original_target``); unchanged for
    the others, whose images are drawn at their size.

    The ground truths are then the annotations file's own (with its ``"area"`` of each object), so
    the numbers are those pycocotools gives for these detections on that file.
    """
    if not hasattr(dataset, "to_original"):
        return detections, ground_truths
    detections = [dict(d, boxes=dataset.to_original(i, d["boxes"])) for i, d in enumerate(detections)]
    return detections, [dataset.original_target(i) for i in range(len(dataset))]


def evaluate_model(model, dataset, batch_size=16, xp=np, area_scale=1.0):
    """COCO-style AP and AR of ``model`` on ``dataset``: the dict of ``evaluate_detections``
    (``area_scale`` is its), in the pixels of the image files (``in_original_pixels``)."""
    return evaluate_with_detections(model, dataset, batch_size, xp, area_scale)[0]


def evaluate_with_detections(model, dataset, batch_size=16, xp=np, area_scale=1.0):
    """``evaluate_model``'s dict and the detections it scored, in the image files' pixels (the ones
    ``evaluation.coco.coco_results`` writes)."""
    detections, ground_truths = in_original_pixels(dataset, *predict_dataset(model, dataset, batch_size, xp=xp))
    return evaluate_detections(detections, ground_truths, model.num_classes, area_scale=area_scale), detections


def _output_names(paths):
    """``<stem>_detections.png`` for each path, made unique: a later ``b/x.png`` after ``a/x.png``
    becomes ``x_2_detections.png`` (then ``_3``, ...), so that no output overwrites another."""
    names, used = [], set()
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        name, k = f"{stem}_detections.png", 1
        while name in used:
            k += 1
            name = f"{stem}_{k}_detections.png"
        used.add(name)
        names.append(name)
    return names


def image_id_of(path):
    """The ``image_id`` of a file in a COCO results file: COCO names an image by its id, zero-padded
    (``000000397133.jpg`` is image 397133), so a name of digits only gives that int, and detections
    of COCO's own images load straight into pycocotools; any other name gives itself without its
    extension (``photos/cat.jpg`` -> ``"cat"``)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return int(stem) if stem.isdigit() else stem


def detect_files(model, paths, out_dir, class_names, xp=np, score_threshold=DRAW_SCORE_THRESHOLD,
                 max_side=MAX_SIDE):
    """Run the detector on each file; write ``<name>_detections.png`` into ``out_dir``.

    An image whose longer side exceeds ``max_side`` (default ``MAX_SIDE``) is shrunk to it, aspect
    kept, before the model sees it: the model's memory grows with the pixel count (several hundred
    bytes per pixel), so this bounds it. The drawing is of the shrunk picture; the yielded boxes are
    mapped back to the file's own pixels. Smaller images are used at their own size (the network is
    fully convolutional and the anchors follow the image size); objects should be about as large as
    in training. torchvision's architecture (``model/resnet50_fpn.py``) gets its own transform
    instead (``detect_torchvision``: resized to a short side of 800). Every file is read first, so a
    bad file stops the run before any output is written.
    Two inputs of one file name (``a/x.png``, ``b/x.png``) get distinct outputs (``x_2_...``).

    Yields (path, output path, detections above ``score_threshold`` in the file's pixels).
    """
    score_threshold = check_probability("score_threshold", score_threshold)
    max_side = check_int("max_side", max_side, MIN_SIDE, MAX_SIDE)
    pictures = [(p, *load_image_within(p, max_side)) for p in paths]
    for (path, picture, (w0, h0)), name in zip(pictures, _output_names(paths)):
        h, w = picture.shape[:2]
        if h < 32 or w < 32:
            raise ValueError(f"image {path!r} is {w}x{h} (after shrinking to at most {max_side} pixels a side); "
                             f"at least 32x32 pixels are needed")
        if isinstance(model, ResNet50FPNRetinaNet):  # its own transform; boxes come in the picture's pixels
            dets = detect_torchvision(model, [picture], xp=xp)[0]
        else:
            dets = detect(model, xp.asarray(normalize(picture)[None].astype(model.dtype)))[0]
        keep = dets["scores"] >= score_threshold
        dets = {k: v[keep] for k, v in dets.items()}
        out_path = os.path.join(out_dir, name)
        draw_detections(picture, dets, class_names, score_threshold=score_threshold,
                        scale=max(1, 256 // max(h, w))).save(out_path)
        # Shrinking scaled x by w / w0 and y by h / h0: undo it per axis.
        dets["boxes"] = dets["boxes"] * np.array([w0 / w, h0 / h, w0 / w, h0 / h], dtype=dets["boxes"].dtype)
        yield path, out_path, dets
