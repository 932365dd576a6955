"""The one place a dataset is constructed: ``build_dataset(config, split)``.

Training, the held-out evaluation of a run, ``numpy-retinanet evaluate``, the figures, the
ablation and the worker processes all ask this function, so they draw the same images from
the same settings: the held-out set that ``evaluate`` scores is the one the run was scored
on. Three datasets plug in today: "shapes" (``data/shapes.py``), "shapes-clutter"
(``data/clutter.py``, the paper's imbalance and hard negatives in miniature) and "coco"
(``data/coco_format.py``: your own folder of images with a COCO instances JSON). Another plugs in
the same way: a class with ``len(ds)``, ``ds[i] -> (image (3, H, W) float32, {"boxes": (n, 4),
"labels": (n,)})``, ``ds.raw(i)`` and ``ds.class_names``, a name in ``DataConfig.dataset``'s
choices, and a branch in ``build_dataset``. A dataset that resizes its images also has
``to_original(i, boxes)`` and ``original_target(i)``, and one from a file ``category_ids`` and
``image_ids``: evaluation then scores in the files' pixels and writes the files' ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from numpy_retinanet._settings import check_settings, setting
from numpy_retinanet.data.clutter import REGIME_IMAGE_SIZE, ClutterDataset
from numpy_retinanet.data.coco_format import MAX_CATEGORIES, CocoFormatDataset, read_annotations, split_indices
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

    dataset: str = setting("shapes", "the dataset: shapes (data/shapes.py) or shapes-clutter, small shapes among "
                                     f"distractors, the paper's imbalance at --image-size {REGIME_IMAGE_SIZE} "
                                     "(data/clutter.py), both drawn on the fly; or coco, your own images with a COCO "
                                     "instances JSON (data/coco_format.py; --data selects it)",
                        choices=("shapes", "shapes-clutter", "coco"))
    data: str = setting("", "coco: the folder of the images (file_name in the JSON is relative to it)")
    annotations: str = setting("", "coco: the instances JSON of the training images (and of the held-out ones "
                                   "when there is no --val-annotations)")
    val_annotations: str = setting("", "coco: an instances JSON of held-out images in the same folder (else "
                                       "--val-fraction of --annotations' images are held out)")
    val_fraction: float = setting(0.1, "coco: the fraction of --annotations' images held out (seeded by "
                                       "--data-seed) when there is no --val-annotations", low=0.0, low_open=True,
                                  high=1.0, high_open=True)
    image_size: int = setting(128, "side of the square images, in pixels", low=MIN_IMAGE_SIZE,
                                 high=MAX_IMAGE_SIZE)
    num_classes: int = setting(3, f"kinds of shapes, the first K of {', '.join(ALL_CLASS_NAMES)}; coco: the number of "
                                  "categories of the JSON (set from it on the command line)", low=1,
                               high=MAX_CATEGORIES)
    max_objects: int = setting(4, "most shapes per image (0 to this many; fewer: more background per object)",
                               low=1, high=MAX_OBJECTS)
    train_images: int = setting(20000, "training images (drawn from data_seed; coco: every image of the training "
                                       "split)", low=1)
    data_seed: int = setting(0, "seed of the training images and of their order", low=0)
    eval_images: int = setting(200, "held-out images scored at the end of training (0: none; coco: the first "
                                    "this many of the held-out split)", low=0)
    eval_seed: int = setting(1000, "seed of the held-out images (another seed than data_seed)", low=0)

    def validate(self):
        """Raise ValueError naming each setting that is out of range or that does not fit the dataset."""
        check_settings(self, "data settings")
        coco_files = {"data": self.data, "annotations": self.annotations, "val_annotations": self.val_annotations}
        if self.dataset == "coco":
            for name in ("data", "annotations"):
                if not coco_files[name]:
                    raise ValueError(f"invalid data settings: {name} must be given for the coco dataset "
                                     f"(--data DIR --annotations FILE), got none")
        else:
            given = [name for name, value in coco_files.items() if value]
            if given:
                raise ValueError(f"invalid data settings: {given[0]} is a setting of the coco dataset, got it with "
                                 f"dataset {self.dataset!r}")
            if self.num_classes > len(ALL_CLASS_NAMES):
                raise ValueError(f"invalid data settings: num_classes must be at most {len(ALL_CLASS_NAMES)} for "
                                 f"{self.dataset} (the kinds of shapes), got {self.num_classes}")


def build_dataset(config: DataConfig, split: str, num_images=None):
    """The dataset of ``split`` ("train" or "eval") that ``config`` describes.

    Parameters
    ----------
    config : a DataConfig (a TrainConfig is one).
    split : "train": ``train_images`` images drawn from ``data_seed``; "eval": the held-out
        images, ``eval_images`` of them drawn from ``eval_seed``. For "coco": every image of
        ``annotations`` (but the held-out fraction), and the held-out images (``val_annotations``, or
        the fraction chosen by ``data_seed``); ``train_images``, ``eval_images`` and ``eval_seed``
        play no part.
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
    if config.dataset == "coco":
        return _coco_split(config, split, num_images)
    if config.dataset == "shapes-clutter":
        return ClutterDataset(count, config.image_size, config.num_classes, seed=seed, max_objects=config.max_objects)
    return ShapesDataset(count, config.image_size, config.num_classes, seed=seed, max_objects=config.max_objects)


def _coco_split(config, split, num_images):
    """The "coco" dataset of ``split`` (module docstring of ``data/coco_format.py``: "Splits")."""
    file, indices = config.annotations, None
    if split == "eval" and config.val_annotations:
        file = config.val_annotations
        categories = [c for c, _ in read_annotations(config.annotations)[1]]
    elif not config.val_annotations:
        count = len(read_annotations(config.annotations)[0])
        if count < 2:
            raise ValueError(f"annotations {config.annotations!r} must list at least 2 images to hold some out "
                             f"(or give val_annotations), got {count}")
        train, held_out = split_indices(count, config.val_fraction, config.data_seed)
        indices = train if split == "train" else held_out
    ds = CocoFormatDataset(config.data, file, config.image_size, indices=indices, num_images=num_images)
    if file != config.annotations and ds.category_ids != categories:
        raise ValueError(f"val_annotations {file!r} must have the categories of annotations {config.annotations!r} "
                         f"(ids {categories}), got ids {ds.category_ids}")
    if len(ds.class_names) != config.num_classes:
        raise ValueError(f"num_classes must be {len(ds.class_names)}, the number of categories of {file!r}, got "
                         f"{config.num_classes}")
    return ds
