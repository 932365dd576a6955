"""The cluttered shapes regime ("shapes-clutter"): small shapes among look-alikes that are not objects.

Why a second regime. The focal loss (§3) is an answer to one problem: a dense detector
scores ~10^5 anchors per image, about 1 in 1000 of them matches an object, and the
negatives are many and easy, so their summed loss swamps the few positives and the hard
negatives. On the plain shapes (``data/shapes.py``: large shapes on a smooth gradient)
almost every negative is easy *and* easy to tell from an object: nothing in the background
looks like a shape. This regime rebuilds the paper's problem in miniature, with the same
classes, the same interface and the same settings:

Objects (labelled)
    0 to ``max_objects`` shapes of the first ``num_classes`` kinds of ``ALL_CLASS_NAMES``
    (about ``EMPTY_FRACTION`` of the images have none), *small*: sides from
    ``MIN_SIDE_FRACTION`` to ``MAX_SIDE_FRACTION`` of the image (10 to 32 px at 256 px), so
    each matches only a few anchors. Placement rules, colours, noise and exact boxes are
    those of the plain shapes: box IoU between two objects at most ``MAX_BOX_IOU``, each
    keeps ``MIN_VISIBLE`` of its pixels, colours ``MIN_CONTRAST`` from the background.
Distractors (never labelled: the hard negatives)
    ``max_distractors // 2`` to ``max_distractors`` of them per image, of the objects' sizes
    and colours, in three kinds (``DISTRACTOR_KINDS``):

    - ``other``: a filled shape of a kind that is not a class (diamond, plus, hexagon, star
      with three classes; a hexagon is nearly a circle and a diamond a turned square);
    - ``outline``: a class's shape drawn hollow, a ring ``max(1, side // OUTLINE_WIDTH)`` px wide;
    - ``fragment``: a class's shape with a straight cut, keeping ``FRAGMENT_KEEP`` (55 % to
      80 %) of its pixels and its centre: a circle with a flat side, a triangle without a tip
      (a quadrilateral), a square without a strip along an edge (a rectangle), never a whole
      shape of a class (``_cut_direction``).

    With ``num_classes = 7`` no kind is left over, and ``other`` gives way to the two
    others. A distractor's box never touches an object's box (``CLEARANCE`` px apart), so
    an object's silhouette is exactly its class's; distractors may cover each other.
Background
    The plain shapes' colour gradient with grey stripes over it (a sinusoid of random angle,
    period ``STRIPE_PERIOD`` and amplitude ``STRIPE_AMPLITUDE``): edges everywhere, as in a
    photograph, instead of a smooth field.
Determinism
    Image ``i`` depends only on ``(seed, i)``, as in ``ShapesDataset``.

The regime is built for images of ``REGIME_IMAGE_SIZE`` (256) px: ``--dataset shapes-clutter
--image-size 256``. The image side is the one setting every dataset shares, so the command
line's default (128) stays; at 128 px the same scene, scaled down, has 4x fewer anchors.

Measured (``tests/test_clutter.py`` derives every number of this table; ``tools/negatives.py``
the shares below it). Anchors are labelled as the trainer's matcher labels them
(``detection.matcher.match_anchors``: best IoU >= 0.5 positive, < 0.4 negative, each box's best
anchors positive too), with the default preset's anchors, on the first 200 training images
(seed 0) at the default ``max_objects`` (4):

========================  =======  ==================  ==========================
regime, image side        anchors  positives per image positive : negative anchors
========================  =======  ==================  ==========================
shapes, 128 px              3,069  11.39               1 : 267
shapes-clutter, 256 px     12,276  9.55                1 : 1,282
shapes-clutter, 128 px      3,069  4.99                1 : 613
========================  =======  ==================  ==========================

The regime promises better than 1 : 1000 (``IMBALANCE_BOUND``) at 256 px; at 128 px it does not
reach it: the imbalance comes from many anchors per object, as in the paper's 800 px images.
The Table 1 ablation (``tools/ablate.py``) runs the regime at 144 px with at most 2 shapes per
image (a third of the pixels of 256 px): its runs counted 3.9 positive anchors per image of 3,987,
1 : 1028 (``figures/table1_shapes_clutter.md``, which also measures the shares below on its
24000-step models; twice the steps move their AP 1.06x to 1.13x).

Who carries the classification loss (``tools/negatives.py``; the table is
``figures/shapes_clutter_negatives.json``, which ``tests/test_clutter_regime.py`` holds it to).
The default preset trained 1000 steps with the alpha-balanced CE (``--loss ce``, alpha .25;
``tools.negatives.MEASURE_TRAINING``) on each regime at its side, scored on 64 held-out images;
"FL" scores the same outputs with the focal loss (gamma 2, alpha .25). Shares of the loss and of
|dL/dx| summed over every class output of the anchors the loss counts; easy: a negative with
p_t > 0.9; hardest 1 %: the negatives of highest loss; on distractors: negatives whose anchor
overlaps a distractor by IoU >= 0.5 ("-": the plain regime has none).

==============  ====  ========  =========  ==============  ===========  ==============
regime          loss  share of  positives  easy negatives  hardest 1 %  on distractors
==============  ====  ========  =========  ==============  ===========  ==============
shapes          CE    loss         73.1 %          15.3 %       23.8 %               -
shapes          CE    gradient     48.8 %          30.6 %       44.9 %               -
shapes          FL    loss         98.6 %           0.0 %        1.4 %               -
shapes          FL    gradient     93.5 %           0.3 %        6.5 %               -
shapes-clutter  CE    loss         77.6 %          18.3 %       21.5 %           7.3 %
shapes-clutter  CE    gradient     49.4 %          41.9 %       48.5 %          16.3 %
shapes-clutter  FL    loss         99.7 %           0.0 %        0.3 %           0.1 %
shapes-clutter  FL    gradient     98.0 %           0.3 %        2.0 %           0.7 %

Read with care. After 1000 steps the model still fires weakly: the positives carry three
quarters of the CE loss, and all but 405 of the 584,784 negative outputs of the plain regime, and
all but 198 of the 2,352,651 of the cluttered one, have p_t > 0.9. So in both regimes nearly
every negative is easy; the easy ones carry 15 % (plain) and 18 % (cluttered) of the CE loss,
and 31 % against 42 % of its gradient: with four times the negatives per positive, their pull on
the gradient grows, as §3 says. The distractors are where the hard negatives are: the negatives
on a distractor are 0.3 % of the cluttered regime's negatives but 18 % of its hardest 1 %, and
carry 7 % of the CE loss and 16 % of its gradient. The focal loss on the same outputs leaves all
the negatives under 2 % of the loss and 7 % of the gradient.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion

from numpy_retinanet._checks import check_int
from numpy_retinanet.data.shapes import (
    ALL_CLASS_NAMES,
    EMPTY_FRACTION,
    GRADIENT_SPREAD,
    PLACEMENT_TRIES,
    ShapesDataset,
    _contrasting_colour,
    _rasterize,
    image_rng,
    mask_to_box,
    place_object,
)

#: The image side the regime is built for, and the one its imbalance is measured at.
REGIME_IMAGE_SIZE = 256
#: The smallest positive : negative ratio of anchors the regime promises at REGIME_IMAGE_SIZE
#: with the default preset (the paper: ~1:1000, §3 and §4.1).
IMBALANCE_BOUND = 1000

MIN_SIDE_FRACTION = 10 / 256
MAX_SIDE_FRACTION = 32 / 256
MAX_DISTRACTORS = 12
DISTRACTOR_KINDS = ("other", "outline", "fragment")
#: An outline is side / OUTLINE_WIDTH px wide (at least 1).
OUTLINE_WIDTH = 6
#: The share of its silhouette a fragment keeps.
FRAGMENT_KEEP = (0.55, 0.8)
#: Pixels between a distractor's box and every object's box.
CLEARANCE = 2
#: Stripes of the background: period in pixels, amplitude in grey levels (0-255).
STRIPE_PERIOD = (6.0, 20.0)
STRIPE_AMPLITUDE = (8.0, 24.0)


# ------------------------------------------------------------------ drawing


def _background(rng, size):
    """The gradient of the plain shapes plus grey stripes: ``(float32 (3, H, W), start, end)``.

    ``start`` and ``end`` are the gradient's end colours, which object colours keep away from.
    """
    start = rng.integers(0, 256, size=3)
    end = np.clip(start + rng.integers(-GRADIENT_SPREAD, GRADIENT_SPREAD + 1, size=3), 0, 255)
    angle, stripe_angle = rng.uniform(0, 2 * np.pi, size=2)
    period, amplitude = rng.uniform(*STRIPE_PERIOD), rng.uniform(*STRIPE_AMPLITUDE)
    coords = np.arange(size, dtype=np.float32) + 0.5
    x, y = coords[None, :], coords[:, None]
    # Position along the gradient in [0, 1] over the diagonal, as in data.shapes.draw_scene.
    t = ((x / size - 0.5) * float(np.cos(angle)) + (y / size - 0.5) * float(np.sin(angle))) / 2**0.5 + 0.5
    phase = (x * float(np.cos(stripe_angle)) + y * float(np.sin(stripe_angle))) * float(2 * np.pi / period)
    image = start[:, None, None].astype(np.float32) + t[None] * (end - start)[:, None, None].astype(np.float32)
    return image + float(amplitude) * np.sin(phase)[None], start, end


def _outline(mask, side):
    """The ring of ``mask``'s pixels within ``max(1, side // OUTLINE_WIDTH)`` px of its edge."""
    width = max(1, side // OUTLINE_WIDTH)
    return mask & ~binary_erosion(mask, iterations=width)


def _cut_direction(rng, name, angle):
    """The direction (radians) of a fragment's cut: from the centre toward the part removed.

    Chosen so that no fragment is a whole shape of a class: a triangle loses a tip (a cut
    toward a vertex, within 15 degrees, leaves a quadrilateral; a cut toward an edge would
    leave a smaller triangle), a square loses a strip along an edge (a rectangle; a corner cut
    would leave a near-triangle); any other shape is cut in any direction.
    """
    if name == "triangle":
        return angle + 2 * np.pi * int(rng.integers(3)) / 3 + rng.uniform(-np.pi / 12, np.pi / 12)
    if name == "square":
        return np.pi / 2 * int(rng.integers(4))
    return rng.uniform(0, 2 * np.pi)


def _fragment(rng, name, angle, x0, y0, side, size):
    """The shape ``name`` in its frame, cut by a straight line that keeps FRAGMENT_KEEP of it, or None.

    The cut runs across ``_cut_direction`` at a distance from the centre drawn so that the kept
    part holds the centre; a draw keeping too much or too little is refused.
    """
    mask = _rasterize(name, x0, y0, side, angle, size)
    ys, xs = np.nonzero(mask)
    c = (side - 1) / 2
    a = _cut_direction(rng, name, angle)
    along = (xs - x0 - c) * np.cos(a) + (ys - y0 - c) * np.sin(a)  # signed distance from the centre
    keep = along < rng.uniform(0.1, 0.4) * side
    if not FRAGMENT_KEEP[0] <= keep.mean() <= FRAGMENT_KEEP[1]:
        return None
    out = np.zeros_like(mask)
    out[ys[keep], xs[keep]] = True
    return out


def _distractor(rng, kind, num_classes, size, side, x0, y0):
    """One distractor of ``kind`` in the frame of ``side`` px at (x0, y0): ``(shape name, mask)``;
    the mask is None when the draw was refused."""
    angle = rng.uniform(0, 2 * np.pi)
    if kind == "other":
        name = ALL_CLASS_NAMES[int(rng.integers(num_classes, len(ALL_CLASS_NAMES)))]
        return name, _rasterize(name, x0, y0, side, angle, size)
    name = ALL_CLASS_NAMES[int(rng.integers(num_classes))]
    if kind == "outline":
        return name, _outline(_rasterize(name, x0, y0, side, angle, size), side)
    return name, _fragment(rng, name, angle, x0, y0, side, size)


def draw_clutter_scene(rng, image_size, num_classes, max_objects=4, max_distractors=MAX_DISTRACTORS,
                       noise_std=6.0):
    """Draw one image of the cluttered regime (see the module docstring).

    Parameters
    ----------
    rng : numpy.random.Generator
    image_size : int, side H = W of the square image
    num_classes : int, labels are drawn from ``range(num_classes)``
    max_objects : int, most labelled shapes
    max_distractors : int, most distractors (at least half as many are tried)
    noise_std : float, standard deviation of the grey pixel noise (0-255 scale)

    Returns
    -------
    image : ndarray (H, W, 3) uint8
    target : {"boxes": (n, 4) float32, "labels": (n,) int64}, the objects in drawing order
    objects : ndarray (n, H, W) bool, the objects' full silhouettes
    distractors : {"boxes": (d, 4) float32, "kinds": list of d names of DISTRACTOR_KINDS,
        "shapes": list of the d shapes they were drawn from, "masks": (d, H, W) bool}
    """
    size = image_size
    image, start, end = _background(rng, size)
    min_side = round(MIN_SIDE_FRACTION * size)
    max_side = round(MAX_SIDE_FRACTION * size)

    def frame():
        s = int(rng.integers(min_side, max_side + 1))
        x0, y0 = (int(v) for v in rng.integers(0, size - s + 1, size=2))
        return s, x0, y0

    # Objects, with the plain shapes' placement rules (data.shapes.draw_scene).
    num_objects = 0 if rng.random() < EMPTY_FRACTION else int(rng.integers(1, max_objects + 1))
    boxes, labels, masks, visible, colours = [], [], [], [], []
    for _ in range(num_objects):
        label = int(rng.integers(num_classes))
        colour = _contrasting_colour(rng, start, end)
        for _ in range(PLACEMENT_TRIES):
            s, x0, y0 = frame()
            mask = _rasterize(ALL_CLASS_NAMES[label], x0, y0, s, rng.uniform(0, 2 * np.pi), size)
            if not place_object(mask, boxes, masks, visible):
                continue
            labels.append(label)
            colours.append(colour)
            break

    # Distractors: never within CLEARANCE px of an object's box, so no object is touched.
    kinds = DISTRACTOR_KINDS if num_classes < len(ALL_CLASS_NAMES) else DISTRACTOR_KINDS[1:]
    keep_out = np.zeros((size, size), dtype=bool)
    for x1, y1, x2, y2 in (b.astype(int) for b in boxes):
        keep_out[max(0, y1 - CLEARANCE):y2 + CLEARANCE, max(0, x1 - CLEARANCE):x2 + CLEARANCE] = True
    d_boxes, d_kinds, d_shapes, d_masks, d_colours = [], [], [], [], []
    for _ in range(int(rng.integers(max_distractors // 2, max_distractors + 1))):
        kind = kinds[int(rng.integers(len(kinds)))]
        colour = _contrasting_colour(rng, start, end)
        for _ in range(PLACEMENT_TRIES):
            s, x0, y0 = frame()
            if keep_out[y0:y0 + s, x0:x0 + s].any():
                continue
            name, mask = _distractor(rng, kind, num_classes, size, s, x0, y0)
            if mask is None:
                continue
            d_boxes.append(mask_to_box(mask))
            d_kinds.append(kind)
            d_shapes.append(name)
            d_masks.append(mask)
            d_colours.append(colour)
            break

    # Paint distractors, then objects: their pixels are apart, so only the order among each
    # group's own members matters (later covers earlier).
    for mask, colour in zip(d_masks + masks, d_colours + colours):
        np.copyto(image, colour.astype(np.float32)[:, None, None], where=mask)
    if noise_std > 0:
        image += noise_std * rng.standard_normal((1, size, size), dtype=np.float32)
    np.rint(image, out=image)
    np.clip(image, 0, 255, out=image)

    def stack(items, shape, dtype):
        return np.stack(items) if items else np.zeros(shape, dtype=dtype)

    return (
        np.ascontiguousarray(image.astype(np.uint8).transpose(1, 2, 0)),
        {"boxes": stack(boxes, (0, 4), np.float32), "labels": np.array(labels, dtype=np.int64)},
        stack(masks, (0, size, size), bool),
        {"boxes": stack(d_boxes, (0, 4), np.float32), "kinds": d_kinds, "shapes": d_shapes,
         "masks": stack(d_masks, (0, size, size), bool)},
    )


class ClutterDataset(ShapesDataset):
    """A fixed, lazily drawn set of cluttered shapes images (see the module docstring).

    Parameters
    ----------
    num_images : int >= 1
    image_size : int >= 64, side of the square images (the regime's: REGIME_IMAGE_SIZE)
    num_classes : int in [1, 7], the first ``num_classes`` of ``ALL_CLASS_NAMES``
    seed : int >= 0
    max_objects : int >= 1
    max_distractors : int >= 0
    noise_std : float >= 0, grey pixel noise (0-255 scale)

    The interface of ``ShapesDataset``: ``ds[i]`` returns ``(image (3, H, W) float32 normalized,
    {"boxes": (n, 4) float32, "labels": (n,) int64})``; ``ds.raw(i)`` the picture (uint8
    (H, W, 3)) and the target; ``ds.class_names``; Python's sequence rules for indices. Also
    ``ds.distractors(i)``: what was drawn and not labelled.
    """

    def __init__(self, num_images, image_size=REGIME_IMAGE_SIZE, num_classes=3, seed=0, max_objects=4,
                 max_distractors=MAX_DISTRACTORS, noise_std=6.0):
        # The shapes dataset's settings, checks, length and normalized items; the drawing is this one's.
        super().__init__(num_images, image_size, num_classes, seed, max_objects, noise_std)
        self.max_distractors = check_int("max_distractors", max_distractors, 0)

    def _draw(self, i):
        rng = image_rng(self.seed, i, self.num_images)
        return draw_clutter_scene(rng, self.image_size, self.num_classes, self.max_objects, self.max_distractors,
                                  self.noise_std)

    def raw(self, i):
        """Image ``i`` as a picture: ``(uint8 (H, W, 3), target)``, for drawing."""
        image, target, _, _ = self._draw(i)
        return image, target

    def masks(self, i):
        """Full silhouettes of image ``i``'s objects: (n, H, W) bool, box order."""
        return self._draw(i)[2]

    def distractors(self, i):
        """Image ``i``'s distractors: {"boxes" (d, 4), "kinds" and "shapes" (d names each), "masks" (d, H, W)}."""
        return self._draw(i)[3]
