"""The synthetic shapes dataset: coloured shapes on noisy gradients, drawn with Pillow.

RetinaNet is trained on COCO in the paper (§5); here a detector must learn in
minutes on a CPU, so the images are drawn on the fly: 0 to ``max_objects``
shapes (circle, square, triangle, ...; one class per kind of shape) of random size,
colour and position on a random colour gradient with pixel noise.

Images
    Image ``i`` is drawn from its own generator, seeded by ``(seed, i)``, so
    ``ds[i]`` is the same whatever was drawn before it, and two seeds give two
    different datasets. About ``EMPTY_FRACTION`` of the images have no object
    (a detector must learn to say "nothing"); the others have 1 to ``max_objects``
    objects, fewer when a shape finds no free place.
Shapes
    Sizes run from ``10/128`` to ``70/128`` of the image side, positions keep the
    whole shape inside the image, and colours stand at least ``MIN_CONTRAST`` (RGB
    distance, 0-255 scale) from every colour of the background gradient. Later shapes
    are drawn over earlier ones, but a placement is refused when its box has
    IoU > ``MAX_BOX_IOU`` with an earlier box (so NMS at 0.5 never has to choose
    between two true objects) or when it would leave an earlier shape less than
    ``MIN_VISIBLE`` of its pixels.
Boxes
    Exact and tight: each box is the bounding box of the pixels its shape painted,
    in continuous coordinates (x1 = first column, x2 = last column + 1), taken
    *before* later shapes cover part of it. A partly hidden shape keeps its full
    box, as in COCO. Boxes and labels are listed in drawing order.
Pixels
    ``ds[i]`` is normalized by ``data.transforms.normalize``; ``ds.raw(i)`` is the picture.

"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from numpy_retinanet._checks import check_int, check_real
from numpy_retinanet.data.transforms import normalize
from numpy_retinanet.detection.boxes import _iou

ALL_CLASS_NAMES = ("circle", "square", "triangle", "diamond", "plus", "hexagon", "star")

EMPTY_FRACTION = 0.1
MIN_SIZE_FRACTION = 10 / 128
MAX_SIZE_FRACTION = 70 / 128
MIN_CONTRAST = 100.0
MAX_BOX_IOU = 0.3
MIN_VISIBLE = 0.5
#: Placements tried per object before giving up on it.
PLACEMENT_TRIES = 20
#: Largest per-channel difference between the two ends of the background gradient.
GRADIENT_SPREAD = 60
MIN_IMAGE_SIZE = 64

# Second word of every image's generator seed; the sample order uses 1 (data.batching),
# so image i and epoch i of the same seed never share a random stream.
_IMAGE_STREAM = 0


def image_rng(seed, i, num_images):
    """The random generator of image ``i`` of a dataset of ``num_images`` drawn from ``seed``.

    ``i`` follows Python's sequence rules (negative counts from the end; TypeError for a
    non-int, IndexError past the end). Image i depends on (seed, i) alone, not on the order
    in which images are asked for nor on ``num_images``. Every synthetic dataset draws with it.
    """
    if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
        raise TypeError(f"index must be an int, got {type(i).__name__}")
    if not -num_images <= i < num_images:
        raise IndexError(f"index {i} out of range for a dataset of {num_images} images")
    return np.random.default_rng([seed, _IMAGE_STREAM, int(i) % num_images])


# ------------------------------------------------------------------ drawing


def _polygon(cx, cy, radii, angle):
    """Vertices at equal angular steps around (cx, cy), alternating through ``radii``."""
    k = np.arange(len(radii))
    a = angle + 2 * np.pi * k / len(radii)
    return list(zip((cx + radii * np.cos(a)).tolist(), (cy + radii * np.sin(a)).tolist()))


def _rasterize(name, x0, y0, s, angle, image_size):
    """Silhouette of one shape whose frame covers pixel columns x0..x0+s-1, rows y0..y0+s-1.

    Returns a bool mask of shape (image_size, image_size). Pillow's integer
    coordinates are pixel indices, so a frame of ``s`` pixels spans ``s - 1``.
    """
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    x1, y1 = x0 + s - 1, y0 + s - 1
    cx, cy, r = x0 + (s - 1) / 2, y0 + (s - 1) / 2, (s - 1) / 2
    if name == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=255)
    elif name == "square":
        draw.rectangle([x0, y0, x1, y1], fill=255)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, np.full(3, r), angle), fill=255)
    elif name == "diamond":
        draw.polygon(_polygon(cx, cy, np.full(4, r), 0.0), fill=255)
    elif name == "plus":
        arm = round(s / 3)
        o = (s - arm) // 2
        draw.rectangle([x0, y0 + o, x1, y0 + o + arm - 1], fill=255)
        draw.rectangle([x0 + o, y0, x0 + o + arm - 1, y1], fill=255)
    elif name == "hexagon":
        draw.polygon(_polygon(cx, cy, np.full(6, r), angle), fill=255)
    else:  # star: five points, inner radius 0.4 of the outer
        draw.polygon(_polygon(cx, cy, np.tile([r, 0.4 * r], 5), angle), fill=255)
    return np.asarray(canvas) != 0


def mask_to_box(mask):
    """Tight box of a mask's pixels in continuous coordinates: x2 = last column + 1.

    Parameters
    ----------
    mask : ndarray, shape (H, W), bool, with at least one True pixel

    Returns
    -------
    ndarray, shape (4,), float32, (x1, y1, x2, y2)
    """
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


def _contrasting_colour(rng, start, end):
    """A random RGB colour at least MIN_CONTRAST from every colour between ``start`` and ``end``.

    The background gradient runs along the segment from ``start`` to ``end`` (int (3,)
    arrays), so the distance that matters is the distance to that segment.
    """
    direction = end - start
    # Integer colours: a nonzero direction has squared length >= 1, so the max only
    # guards the flat background (direction 0, where any u gives the point ``start``).
    length2 = max(int(direction @ direction), 1)
    # Rejection sampling ends quickly: the colours too close to the segment fill a
    # capsule of at most 7.5e6 of the cube's 16.8e6, so more than half of the tries pass.
    while True:
        colour = rng.integers(0, 256, size=3)
        u = min(max((colour - start) @ direction / length2, 0.0), 1.0)
        if np.linalg.norm(colour - (start + u * direction)) >= MIN_CONTRAST:
            return colour


def place_object(mask, boxes, masks, visible):
    """Add the shape ``mask`` (H, W) bool to a scene's objects, if the placement rules allow it.

    Refused (False, nothing changed) when its box overlaps an earlier object's box by more than
    MAX_BOX_IOU, or when it would leave an earlier object less than MIN_VISIBLE of its silhouette
    visible. Accepted (True): its box, mask and visible part are appended to ``boxes``, ``masks``
    and ``visible``, and the earlier objects' visible parts lose what it covers.
    """
    box = mask_to_box(mask)
    # _iou is box_iou without its checks, which take twice as long as the IoU of these few boxes
    # (mask_to_box's boxes are valid by construction).
    if boxes and _iou(np, box[None], np.stack(boxes)).max() > MAX_BOX_IOU:
        return False
    if any(np.count_nonzero(v & ~mask) < MIN_VISIBLE * np.count_nonzero(m) for v, m in zip(visible, masks)):
        return False
    for v in visible:
        v &= ~mask
    boxes.append(box)
    masks.append(mask)
    visible.append(mask.copy())
    return True


def draw_scene(rng, image_size, num_classes, max_objects=4, noise_std=6.0):
    """Draw one image of the shapes dataset.

    Parameters
    ----------
    rng : numpy.random.Generator
    image_size : int, side H = W of the square image
    num_classes : int, labels are drawn from ``range(num_classes)``
    max_objects : int
    noise_std : float, standard deviation of the grey pixel noise (0-255 scale)

    Returns
    -------
    image : ndarray (H, W, 3) uint8
    boxes : ndarray (n, 4) float32, tight boxes of the full silhouettes, drawing order
    labels : ndarray (n,) int64
    masks : ndarray (n, H, W) bool, the full silhouettes before any occlusion
    """
    size = image_size
    start = rng.integers(0, 256, size=3)
    end = np.clip(start + rng.integers(-GRADIENT_SPREAD, GRADIENT_SPREAD + 1, size=3), 0, 255)
    angle = rng.uniform(0, 2 * np.pi)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    # Position along the gradient direction, in [0, 1] over the image diagonal.
    # Python floats keep the arithmetic in float32 (NumPy scalars would promote it).
    t = (coords[None, :] * float(np.cos(angle)) + coords[:, None] * float(np.sin(angle))) / 2**0.5 + 0.5
    # Painted channels first (3, H, W): NumPy is several times faster on long rows than
    # on a trailing axis of 3; the picture is transposed once at the end.
    image = start[:, None, None].astype(np.float32) + t[None] * (end - start)[:, None, None].astype(np.float32)

    num_objects = 0 if rng.random() < EMPTY_FRACTION else int(rng.integers(1, max_objects + 1))
    min_side = round(MIN_SIZE_FRACTION * size)  # >= 5 px: Pillow paints even 2 px shapes
    max_side = round(MAX_SIZE_FRACTION * size)
    boxes, labels, masks, visible = [], [], [], []
    for _ in range(num_objects):
        label = int(rng.integers(num_classes))
        colour = _contrasting_colour(rng, start, end)
        for _ in range(PLACEMENT_TRIES):
            s = int(rng.integers(min_side, max_side + 1))
            x0, y0 = (int(v) for v in rng.integers(0, size - s + 1, size=2))
            mask = _rasterize(ALL_CLASS_NAMES[label], x0, y0, s, rng.uniform(0, 2 * np.pi), size)
            if not place_object(mask, boxes, masks, visible):
                continue
            labels.append(label)
            np.copyto(image, colour.astype(np.float32)[:, None, None], where=mask)
            break

    if noise_std > 0:
        # One noise value per pixel for all channels: grain, not colour speckle, and a
        # third of the cost.
        image += noise_std * rng.standard_normal((1, size, size), dtype=np.float32)
    np.rint(image, out=image)
    np.clip(image, 0, 255, out=image)
    n = len(boxes)
    return (
        np.ascontiguousarray(image.astype(np.uint8).transpose(1, 2, 0)),
        np.stack(boxes) if n else np.zeros((0, 4), dtype=np.float32),
        np.array(labels, dtype=np.int64),
        np.stack(masks) if n else np.zeros((0, size, size), dtype=bool),
    )


class ShapesDataset:
    """A fixed, lazily drawn set of shapes images (see the module docstring).

    Parameters
    ----------
    num_images : int >= 1
    image_size : int >= 64, side of the square images
    num_classes : int in [1, 7], the first ``num_classes`` of ``ALL_CLASS_NAMES``
    seed : int >= 0
    max_objects : int >= 1
    noise_std : float >= 0, grey pixel noise (0-255 scale); 0 gives clean images

    ``ds[i]`` returns ``(image, target)``: image (3, H, W) float32, normalized;
    target ``{"boxes": (n, 4) float32, "labels": (n,) int64}``. Indices follow
    Python's sequence rules (negative counts from the end, IndexError past it).
    """

    def __init__(self, num_images, image_size=128, num_classes=3, seed=0, max_objects=4, noise_std=6.0):
        self.num_images = check_int("num_images", num_images, 1)
        self.image_size = check_int("image_size", image_size, MIN_IMAGE_SIZE)
        self.num_classes = check_int("num_classes", num_classes, 1, len(ALL_CLASS_NAMES))
        self.seed = check_int("seed", seed, 0)
        self.max_objects = check_int("max_objects", max_objects, 1)
        self.noise_std = check_real("noise_std", noise_std, 0)
        self.class_names = list(ALL_CLASS_NAMES[: self.num_classes])

    def __len__(self):
        return self.num_images

    def _draw(self, i):
        rng = image_rng(self.seed, i, self.num_images)
        return draw_scene(rng, self.image_size, self.num_classes, self.max_objects, self.noise_std)

    def raw(self, i):
        """Image ``i`` as a picture: ``(uint8 (H, W, 3), target)``, for drawing."""
        image, boxes, labels, _ = self._draw(i)
        return image, {"boxes": boxes, "labels": labels}

    def masks(self, i):
        """Full silhouettes of image ``i``'s shapes before occlusion: (n, H, W) bool, box order."""
        return self._draw(i)[3]

    def __getitem__(self, i):
        image, target = self.raw(i)
        return normalize(image), target
