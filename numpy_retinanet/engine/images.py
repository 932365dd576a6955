"""Image files in and out for ``numpy-retinanet detect``: any PNG/JPEG to the network's input."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from numpy_retinanet.data.shapes import normalize
from numpy_retinanet.engine.inference import detect
from numpy_retinanet.visualize import draw_detections


def load_image(path):
    """Read an image file as (H, W, 3) uint8 RGB; grayscale, palette and RGBA are converted.

    RGBA is composited over white, so transparent areas do not turn black.
    Raises FileNotFoundError for a missing file and ValueError for a file that is not an image.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path!r} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba)
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path!r} is not an image that can be read (PNG or JPEG expected): {e}") from e
    return np.asarray(rgb, dtype=np.uint8)


def detect_files(model, paths, out_dir, class_names, xp=np, score_threshold=0.3):
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
