"""Your own images: a folder of image files and a COCO "instances" annotations file (``--dataset coco``).

``numpy-retinanet train --data DIR --annotations FILE`` trains on them; this module reads them.

The annotations file
    The JSON that COCO publishes for its detection task and that most labelling tools export:
    ``{"images": [{"id", "file_name", "width", "height"}, ...], "annotations": [{"id", "image_id",
    "category_id", "bbox": [x, y, w, h], "iscrowd", "area"}, ...], "categories": [{"id", "name"},
    ...]}``. ``width``/``height`` are optional (when given they must be the file's size), ``iscrowd``
    is optional (0), and ``area`` is optional (``w * h``): COCO's JSON gives the area of the object's
    mask, which is what decides whether it counts as small, medium or large in evaluation. Other
    keys (segmentations, licenses, info) are not read. ``file_name`` is relative to the folder.
Labels
    The categories, sorted by id, become the labels 0..K-1 (COCO's 80 ids run from 1 to 90 with
    gaps; a network has K outputs). ``class_names`` are their names, ``category_ids`` their ids,
    in label order, so that results can be written with the file's own ids.
Images
    Sorted by id. An image without annotations is kept: it teaches the detector to say "nothing".
    Each image is resized so that its longer side is ``image_size`` (bilinear, aspect kept: the
    scale s = image_size / max(W, H)) and put at the top-left of an ``image_size x image_size``
    canvas whose rest is the mean colour (0 once normalized), so that images of any sizes stack
    into one batch. The network sees every image at one size, and objects keep their proportions.
Boxes
    ``[x, y, w, h]`` becomes ``(x, y, x + w, y + h)`` and is multiplied by the same s, so a box
    follows its object. Detections go back with ``to_original``: divided by s and clipped to the
    image (the padding is no part of it). A box that pokes out of its image by at most
    ``BORDER_TOLERANCE`` pixels (rounding in an exporter) is clipped to it; further out, or with no
    width or height, it is refused with its annotation named.
Crowd boxes
    ``iscrowd: 1`` marks one box around a group of objects. It is kept in the target with
    ``"iscrowd"`` True: in training it makes no positive anchor and the anchors on it are ignored
    (``detection/matcher.py``); in evaluation it is matched but neither counts nor costs, as in
    pycocotools (``evaluation/coco.py``).
Splits
    The held-out images are either a second annotations file over the same folder (its categories
    must be the same) or a fraction of the first file's images, chosen by a permutation seeded by
    ``data_seed``: the same files for the same seed, whatever the machine.
Checks
    Everything is checked when the dataset is built, before a step is taken: the folder, the JSON and
    every field it uses, every annotation's image and category, every box, and every image file
    (present, an image Pillow can open, of the size the JSON says). Errors raise ValueError or
    FileNotFoundError naming the file and the entry.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from numpy_retinanet._checks import check_file, check_int, is_int
from numpy_retinanet.data.images import ImageFileError, load_image
from numpy_retinanet.data.transforms import PIXEL_MEAN, normalize

#: How far (pixels) a box may pass its image's border and be clipped to it instead of refused.
BORDER_TOLERANCE = 1.0

#: The most categories a file may have (a checkpoint holds at most 256 classes; COCO has 80).
MAX_CATEGORIES = 256

# Second word of the split's generator seed; the shapes images use 0 and the sample order 1.
_SPLIT_STREAM = 2


def _fail(where, expected, got):
    raise ValueError(f"{where} must be {expected}, got {got!r}")


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_annotations(path):
    """The checked contents of a COCO instances file: (images, categories).

    Returns
    -------
    images : list of dicts sorted by id: "id", "file_name", "width", "height" (None when the
        JSON does not say), "boxes" (n, 4) float64 (x1, y1, x2, y2), "category_ids" (n,) int64,
        "iscrowd" (n,) bool, "areas" (n,) float64, "annotation_ids" (n,) (for messages).
    categories : list of (id, name) sorted by id.
    """
    path = check_file("annotations", path, "a JSON file")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"annotations {path!r} must be a COCO instances JSON file, got a file that is not "
                         f"JSON ({e})") from e
    where = f"annotations {path!r}"
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        _fail(where, "a COCO instances JSON (an object with the lists 'images', 'annotations' and 'categories')",
              got)
    categories = {}
    for c in data["categories"]:
        if not isinstance(c, dict) or not is_int(c.get("id")) or not isinstance(c.get("name"), str):
            _fail(f"{where}: each category", "an object with an int 'id' and a string 'name'", c)
        if c["id"] in categories:
            _fail(f"{where}: category ids", "distinct", c["id"])
        categories[c["id"]] = c["name"]
    if not 1 <= len(categories) <= MAX_CATEGORIES:
        _fail(f"{where}: 'categories'", f"1 to {MAX_CATEGORIES} categories", len(categories))
    images = {}
    for im in data["images"]:
        if not isinstance(im, dict) or not is_int(im.get("id")) or not isinstance(im.get("file_name"), str):
            _fail(f"{where}: each image", "an object with an int 'id' and a string 'file_name'", im)
        size = (im.get("width"), im.get("height"))
        if size != (None, None) and not all(is_int(v) and v > 0 for v in size):
            _fail(f"{where}: image {im['id']}'s width and height", "ints > 0", size)
        if im["id"] in images:
            _fail(f"{where}: image ids", "distinct", im["id"])
        images[im["id"]] = {"id": im["id"], "file_name": im["file_name"], "width": size[0], "height": size[1],
                            "annotations": []}
    for a in data["annotations"]:
        if not isinstance(a, dict):
            _fail(f"{where}: each annotation", "an object", a)
        name = f"{where}: annotation {a.get('id', '(no id)')}"
        if a.get("image_id") not in images:
            _fail(f"{name}: 'image_id'", "the id of an image of the file", a.get("image_id"))
        if a.get("category_id") not in categories:
            _fail(f"{name}: 'category_id'", f"one of the categories' ids {sorted(categories)}", a.get("category_id"))
        bbox = a.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_number, bbox)):
            _fail(f"{name}: 'bbox'", "[x, y, w, h], four finite numbers", bbox)
        if a.get("iscrowd", 0) not in (0, 1):
            _fail(f"{name}: 'iscrowd'", "0 or 1", a.get("iscrowd"))
        if "area" in a and not (_number(a["area"]) and a["area"] >= 0):
            _fail(f"{name}: 'area'", "a number >= 0", a["area"])
        images[a["image_id"]]["annotations"].append(a)
    return [_image_record(images[i]) for i in sorted(images)], sorted(categories.items())


def _image_record(im):
    """An image's annotations as arrays (boxes still unchecked against the image's size)."""
    anns = im.pop("annotations")
    x, y, w, h = (np.array([a["bbox"][j] for a in anns], dtype=np.float64) for j in range(4))
    im["boxes"] = np.stack([x, y, x + w, y + h], axis=1).reshape(-1, 4)
    im["category_ids"] = np.array([a["category_id"] for a in anns], dtype=np.int64)
    im["iscrowd"] = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    im["areas"] = np.array([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns], dtype=np.float64)
    im["annotation_ids"] = [a.get("id", "(no id)") for a in anns]
    return im


def _check_image(folder, annotations, im):
    """The image file exists and opens, its size is the JSON's; its boxes lie in it (clipped within
    ``BORDER_TOLERANCE``) and have a width and a height. Sets "path", "width" and "height"."""
    path = os.path.join(folder, im["file_name"])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file {path!r} (image {im['id']} of annotations {annotations!r}) does not "
                                "exist")
    try:
        with Image.open(path) as img:  # reads the header only: the size, without decoding the pixels
            size = img.size
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path!r} (image {im['id']} of annotations {annotations!r}) is not an image that can "
                         f"be read: {e}") from e
    if im["width"] is not None and (im["width"], im["height"]) != size:
        raise ValueError(f"image {im['id']} of annotations {annotations!r} must be {im['width']}x{im['height']} "
                         f"as the JSON says, got a file of {size[0]}x{size[1]}: {path!r}")
    im["path"], (im["width"], im["height"]) = path, size
    boxes, limit = im["boxes"], np.array([0, 0, size[0], size[1]], dtype=np.float64)
    out = ((boxes[:, :2] < -BORDER_TOLERANCE).any(axis=1) | (boxes[:, 2:] > limit[2:] + BORDER_TOLERANCE).any(axis=1))
    clipped = np.clip(boxes, 0, np.tile(limit[2:], 2))
    flat = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    for bad, expected in ((out, f"inside its {size[0]}x{size[1]} image"), (flat, "of positive width and height")):
        if bad.any():
            j = int(np.argmax(bad))
            x1, y1, x2, y2 = boxes[j].tolist()
            raise ValueError(f"annotations {annotations!r}: annotation {im['annotation_ids'][j]}'s bbox must be "
                             f"{expected}, got [x, y, w, h] = {[x1, y1, x2 - x1, y2 - y1]} in {path!r}")
    im["file_boxes"], im["boxes"] = boxes, clipped


def split_indices(num_images, fraction, seed):
    """(train, held_out) indices of a fraction split: ``round(fraction * num_images)`` images held out
    (at least 1, and at least 1 left to train on), chosen by a permutation seeded by ``seed``; each
    list sorted."""
    num_images = check_int("num_images", num_images, 2)
    held = min(max(1, round(fraction * num_images)), num_images - 1)
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(num_images)
    return sorted(order[held:].tolist()), sorted(order[:held].tolist())


class CocoFormatDataset:
    """Images of a COCO instances file, resized and padded to one square size (module docstring).

    Parameters
    ----------
    folder : the folder ``file_name`` is relative to.
    annotations : the instances JSON file.
    image_size : int >= 32, the side of the square images the network sees.
    indices : which of the file's images (in id order) this dataset holds; None: all.
    num_images : at most this many of them (the first); None: all.

    ``ds[i]`` returns ``(image (3, S, S) float32, target)``, target ``{"boxes": (n, 4) float32
    (x1, y1, x2, y2) in the resized image's pixels, "labels": (n,) int64, "iscrowd": (n,) bool}``.
    ``ds.image_ids``, ``ds.class_names``, ``ds.category_ids`` (label k is category
    ``category_ids[k]``); ``to_original`` and ``original_target`` give the file's pixels.
    """

    def __init__(self, folder, annotations, image_size, indices=None, num_images=None):
        folder, annotations = os.fspath(folder), os.fspath(annotations)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"images folder {folder!r} does not exist (or is not a folder)")
        self.image_size = check_int("image_size", image_size, 32)
        images, categories = read_annotations(annotations)
        self.category_ids = [c for c, _ in categories]
        self.class_names = [name for _, name in categories]
        label_of = {c: k for k, c in enumerate(self.category_ids)}
        if indices is not None:
            images = [images[i] for i in indices]
        if num_images is not None:
            images = images[:check_int("num_images", num_images, 1)]
        if not images:
            raise ValueError(f"annotations {annotations!r} must list at least one image, got none")
        for im in images:
            _check_image(folder, annotations, im)
            im["labels"] = np.array([label_of[c] for c in im["category_ids"]], dtype=np.int64)
        self.images = images
        self.image_ids = [im["id"] for im in images]

    def __len__(self):
        return len(self.images)

    def scale(self, i):
        """s: the resized image's pixels are the file's times s (one factor for both axes)."""
        im = self.images[i]
        return self.image_size / max(im["width"], im["height"])

    def raw(self, i):
        """Image ``i`` as the network's picture: ``(uint8 (S, S, 3), target)``, for drawing."""
        im, s = self.images[i], self.scale(i)
        try:
            picture = load_image(im["path"])
        except FileNotFoundError as e:  # there when the dataset was built (it reads every header): gone since
            raise ImageFileError(str(e)) from e
        if picture.shape[:2] != (im["height"], im["width"]):  # an EXIF rotation would move every box
            raise ImageFileError(f"{im['path']!r} must be {im['width']}x{im['height']} once read, got "
                             f"{picture.shape[1]}x{picture.shape[0]} (an EXIF rotation?): rotate the file itself")
        w, h = max(1, round(im["width"] * s)), max(1, round(im["height"] * s))
        resized = np.asarray(Image.fromarray(picture).resize((w, h), Image.Resampling.BILINEAR))
        canvas = np.full((self.image_size, self.image_size, 3), round(PIXEL_MEAN * 255), dtype=np.uint8)
        canvas[:h, :w] = resized
        target = {"boxes": (im["boxes"] * s).astype(np.float32), "labels": im["labels"].copy(),
                  "iscrowd": im["iscrowd"].copy()}
        return canvas, target

    def __getitem__(self, i):
        picture, target = self.raw(i)
        return normalize(picture), target

    def to_original(self, i, boxes):
        """Boxes (n, 4) in image ``i``'s resized pixels -> float64 boxes in its file's pixels, clipped to it."""
        im = self.images[i]
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / self.scale(i)
        return np.clip(boxes, 0, [im["width"], im["height"], im["width"], im["height"]])

    def original_target(self, i):
        """Image ``i``'s ground truth in its file's pixels, as ``evaluation.coco`` reads it: "boxes"
        (the JSON's, not clipped: pycocotools scores those), "labels", "iscrowd" and "areas" (the
        JSON's, else w * h)."""
        im = self.images[i]
        return {"boxes": im["file_boxes"].copy(), "labels": im["labels"].copy(), "iscrowd": im["iscrowd"].copy(),
                "areas": im["areas"].copy()}
