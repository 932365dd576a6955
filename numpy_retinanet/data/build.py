"""The one place a dataset is constructed: ``build_dataset(config, split)``.

Training, the held-out evaluation of a run, ``numpy-retinanet evaluate``, the figures, the
ablation and the worker processes all ask this function, so they draw the same images from
the same settings: the held-out set that ``evaluate`` scores is the one the run was scored
on. Two datasets plug in today: "shapes" (``data/shapes.py``) and "shapes-clutter"
(``data/clutter.py``, the paper's imbalance and hard negatives in miniature). Another (a folder
of COCO-format images, say) plugs in the same way: a class with
``len(ds)``, ``ds[i] -> (image (3, H, W) float32, {"boxes": (n, 4), "labels": (n,)})``,
``ds.raw(i)`` and ``ds.class_names``, a name in ``DataConfig.dataset``'s choices, and a
branch in ``build_dataset``.
"""

from __future__ import annotations

from dataclasses import dataclass

from numpy_retinanet._settings import check_settings, setting
from numpy_retinanet.data.clutter import REGIME_IMAGE_SIZE, ClutterDataset
from numpy_retinanet.data.shapes import ALL_CLASS_NAMES, MIN_IMAGE_SIZE, MIN_SIZE_FRACTION, ShapesDataset

#: The splits ``build_dataset`` knows: the training images and the held-out ones.
SPLITS = ("train", "eval")

#: The largest image side a run may ask for. A training step keeps every layer's activations
#: for the backward pass: about 740 bytes per input pixel with the default preset (measured with
#: ``numpy-retinanet bench model``), so one 1024 x 1024 image already takes ~0.7 GiB; the
#: paper trains at 800 pixels. ``engine.config.MAX_STEP_PIXELS`` bounds a whole batch.
MAX_IMAGE_SIZE = 1024

#: The most shapes an image may ask for: this many of the smallest shapes (a side of
#: MIN_SIZE_FRACTION of the image) would tile the whole image, so more can never be placed
#: and would only spend placement tries (a run with max_objects 100000 draws for minutes).
MAX_OBJECTS = int((1 / MIN_SIZE_FRACTION) ** 2)


@dataclass
class DataConfig:
    """Every setting of the data. ``engine.config.TrainConfig`` inherits these fields."""

    dataset: str = setting("shapes", "the dataset, drawn on the fly: shapes (data/shapes.py) or shapes-clutter, "
                                     f"small shapes among distractors, the paper's imbalance at --image-size "
                                     f"{REGIME_IMAGE_SIZE} (data/clutter.py)", choices=("shapes", "shapes-clutter"))
    image_size: int = setting(128, "side of the square images, in pixels", low=MIN_IMAGE_SIZE,
                                 high=MAX_IMAGE_SIZE)
    num_classes: int = setting(3, f"kinds of shapes, the first K of {', '.join(ALL_CLASS_NAMES)}", low=1,
                               high=len(ALL_CLASS_NAMES))
    max_objects: int = setting(4, "most shapes per image (0 to this many; fewer: more background per object)",
                               low=1, high=MAX_OBJECTS)
    train_images: int = setting(20000, "training images (drawn from data_seed)", low=1)
    data_seed: int = setting(0, "seed of the training images and of their order", low=0)
    eval_images: int = setting(200, "held-out images scored at the end of training (0: none)", low=0)
    eval_seed: int = setting(1000, "seed of the held-out images (another seed than data_seed)", low=0)

    def validate(self):
        """Raise ValueError naming each setting that is out of range."""
        check_settings(self, "data settings")


def build_dataset(config: DataConfig, split: str, num_images=None):
    """The dataset of ``split`` ("train" or "eval") that ``config`` describes.

    Parameters
    ----------
    config : a DataConfig (a TrainConfig is one).
    split : "train": ``train_images`` images drawn from ``data_seed``; "eval": the held-out
        images, ``eval_images`` of them drawn from ``eval_seed``.
    num_images : the first this many images of the split instead (the same images: image i
        does not depend on the dataset's length); None: the split's own count.

    Returns
    -------
    A dataset: ``len(ds)``, ``ds[i] -> (image (3, H, W) float32, target)``, ``ds.raw(i)``,
    ``ds.class_names`` (K names, in label order).
    """
    if not isinstance(config, DataConfig):
        raise ValueError(f"config must be a DataConfig (or a TrainConfig), got {type(config).__name__}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
    config.validate()
    count, seed = (config.train_images, config.data_seed) if split == "train" else (config.eval_images,
                                                                                   config.eval_seed)
    if num_images is not None:
        count = num_images
    if config.dataset == "shapes-clutter":
        return ClutterDataset(count, config.image_size, config.num_classes, seed=seed, max_objects=config.max_objects)
    return ShapesDataset(count, config.image_size, config.num_classes, seed=seed, max_objects=config.max_objects)
