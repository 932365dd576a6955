"""The cluttered shapes regime (data/clutter.py): determinism, interface, imbalance, distractors, the seam."""

import json
import re

import numpy as np
import pytest
from scipy.ndimage import binary_fill_holes

import numpy_retinanet.data.clutter as clutter
from numpy_retinanet import cli
from numpy_retinanet.data.build import DataConfig, build_dataset
from numpy_retinanet.data.clutter import (
    CLEARANCE,
    DISTRACTOR_KINDS,
    FRAGMENT_KEEP,
    IMBALANCE_BOUND,
    MAX_SIDE_FRACTION,
    MIN_SIDE_FRACTION,
    REGIME_IMAGE_SIZE,
    ClutterDataset,
)
from numpy_retinanet.data.shapes import ALL_CLASS_NAMES, ShapesDataset
from numpy_retinanet.data.transforms import normalize
from numpy_retinanet.detection.anchors import AnchorGenerator
from numpy_retinanet.detection.matcher import BACKGROUND, match_anchors
from numpy_retinanet.engine.checkpoint import load_checkpoint
from numpy_retinanet.engine.inference import evaluate_model
from numpy_retinanet.model.presets import PRESETS, STRIDES


def nonzero_box(mask):
    """Tight box of a mask, computed independently of the dataset code."""
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def same_sample(a, b):
    return (np.array_equal(a[0], b[0]) and np.array_equal(a[1]["boxes"], b[1]["boxes"])
            and np.array_equal(a[1]["labels"], b[1]["labels"]))


@pytest.fixture(scope="module")
def drawn():
    """40 images of the regime at its own side: (dataset, [(picture, target, object masks, distractors)])."""
    ds = ClutterDataset(40, seed=3)
    return ds, [ds._draw(i) for i in range(len(ds))]


# ------------------------------------------------------------------ interface and determinism


def test_interface_is_the_shapes_datasets():
    ds = ClutterDataset(5, image_size=96, num_classes=2)
    assert len(ds) == 5 and ds.class_names == ["circle", "square"]
    for i in range(5):
        image, target = ds[i]
        picture, raw_target = ds.raw(i)
        n = len(target["labels"])
        assert image.shape == (3, 96, 96) and image.dtype == np.float32
        assert picture.shape == (96, 96, 3) and picture.dtype == np.uint8
        assert target["boxes"].shape == (n, 4) and target["boxes"].dtype == np.float32
        assert target["labels"].dtype == np.int64 and set(target["labels"].tolist()) <= {0, 1}
        np.testing.assert_array_equal(image, normalize(picture))
        np.testing.assert_array_equal(raw_target["boxes"], target["boxes"])
    assert same_sample(ds[-1], ds[4])
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(TypeError):
        ds[1.0]


@pytest.mark.parametrize("kwargs, match", [
    ({"num_classes": 8}, r"num_classes must be an int in \[1, 7\], got 8"),
    ({"image_size": 32}, "image_size must be an int >= 64, got 32"),
    ({"seed": -1}, "seed must be an int >= 0, got -1"),
    ({"max_distractors": -1}, "max_distractors must be an int >= 0, got -1"),
    ({"noise_std": -1.0}, "noise_std must be a finite real number >= 0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClutterDataset(3, **kwargs)


def test_image_i_depends_only_on_seed_and_i():
    a, b = ClutterDataset(6, seed=5), ClutterDataset(9, seed=5)  # another length: the same images
    forward = [a[i] for i in range(6)]
    backward = [b[i] for i in reversed(range(6))][::-1]
    assert all(same_sample(x, y) for x, y in zip(forward, backward))
    other = ClutterDataset(6, seed=6)
    assert not any(np.array_equal(a[i][0], other[i][0]) for i in range(6))


def test_build_dataset_selects_the_regime_by_name():
    config = DataConfig(dataset="shapes-clutter", image_size=96, eval_seed=7)
    ds = build_dataset(config, "eval", num_images=3)
    assert isinstance(ds, ClutterDataset) and len(ds) == 3
    assert same_sample(ds[2], ClutterDataset(3, image_size=96, seed=7)[2])
    assert isinstance(build_dataset(DataConfig(), "eval", num_images=3), ShapesDataset)
    with pytest.raises(ValueError, match="dataset must be one of 'shapes', 'shapes-clutter', 'coco', got 'clutter'"):
        build_dataset(DataConfig(dataset="clutter"), "train")


# ------------------------------------------------------------------ objects and distractors


def test_boxes_are_tight_inside_the_image_and_of_the_regimes_sizes(drawn):
    ds, scenes = drawn
    size = ds.image_size
    for _, target, masks, distractors in scenes:
        for box, mask in zip(target["boxes"], masks):
            np.testing.assert_array_equal(box, nonzero_box(mask))
            assert box[0] >= 0 and box[1] >= 0 and box[2] <= size and box[3] <= size
            # A shape's frame is MIN..MAX_SIDE_FRACTION of the side; Pillow's edge pixels may fall short by one.
            assert round(MIN_SIDE_FRACTION * size) - 2 <= max(box[2] - box[0], box[3] - box[1])
            assert max(box[2] - box[0], box[3] - box[1]) <= round(MAX_SIDE_FRACTION * size)
        for box, mask in zip(distractors["boxes"], distractors["masks"]):
            np.testing.assert_array_equal(box, nonzero_box(mask))


def test_distractors_are_never_labelled_and_never_touch_an_object(drawn):
    ds, scenes = drawn
    kinds_seen = set()
    for _, target, masks, distractors in scenes:
        assert len(target["labels"]) == len(target["boxes"]) == len(masks)  # one label per object, none more
        for kind, name, mask in zip(distractors["kinds"], distractors["shapes"], distractors["masks"]):
            kinds_seen.add(kind)
            for x1, y1, x2, y2 in target["boxes"].astype(int):
                # Not one distractor pixel within CLEARANCE of a labelled box.
                near = mask[max(0, y1 - CLEARANCE):y2 + CLEARANCE, max(0, x1 - CLEARANCE):x2 + CLEARANCE]
                assert not near.any()
            if kind == "other":
                assert name not in ds.class_names
            else:
                assert name in ds.class_names
            if kind == "outline":  # hollow: filling its holes adds pixels
                assert binary_fill_holes(mask).sum() > mask.sum()
    assert kinds_seen == set(DISTRACTOR_KINDS)


def test_a_fragment_is_a_class_shape_cut_and_never_whole():
    rng = np.random.default_rng(0)
    cuts = 0
    for name in ("circle", "square", "triangle"):
        for _ in range(60):
            side, angle = int(rng.integers(10, 33)), rng.uniform(0, 2 * np.pi)
            whole = clutter._rasterize(name, 20, 20, side, angle, 80)
            part = clutter._fragment(np.random.default_rng(cuts), name, angle, 20, 20, side, 80)
            cuts += 1
            if part is None:
                continue
            assert not (part & ~whole).any()  # a piece of the shape
            kept = part.sum() / whole.sum()
            assert FRAGMENT_KEEP[0] <= kept <= FRAGMENT_KEEP[1]
            if name == "square":  # a strip off an edge: a rectangle, never a square
                x1, y1, x2, y2 = nonzero_box(part)
                assert part.sum() == (x2 - x1) * (y2 - y1) and (x2 - x1) != (y2 - y1)


def test_with_every_kind_a_class_no_distractor_is_an_other_shape():
    ds = ClutterDataset(10, image_size=128, num_classes=len(ALL_CLASS_NAMES))
    kinds = [k for i in range(10) for k in ds.distractors(i)["kinds"]]
    assert kinds and "other" not in kinds


# ------------------------------------------------------------------ the imbalance


def anchor_counts(dataset, num_images, preset="default"):
    """(anchors per image, positive anchors, negative anchors) over the first ``num_images`` images, as the
    trainer's matcher labels them, with the preset's anchors."""
    p = PRESETS[preset]
    gen = AnchorGenerator(p["anchor_sizes"], STRIDES, p["aspect_ratios"], p["scales"])
    anchors = gen.anchors(dataset.image_size, dataset.image_size, dtype=np.float64)
    positive = negative = 0
    for i in range(num_images):
        matched = match_anchors(anchors, dataset.raw(i)[1]["boxes"])
        positive += int((matched >= 0).sum())
        negative += int((matched == BACKGROUND).sum())
    return len(anchors), positive, negative


def documented_rows():
    """The rows of the module docstring's table: {(dataset, side): (anchors, positives per image, ratio)}."""
    rows = re.findall(r"^(shapes[\w-]*), (\d+) px +([\d,]+) +([\d.]+) +1 : ([\d,]+)$", clutter.__doc__, re.M)
    return {(name, int(side)): (int(a.replace(",", "")), float(p), int(r.replace(",", ""))) for name, side, a, p, r in rows}


def test_the_documented_imbalance_is_measured_and_keeps_the_bound():
    rows = documented_rows()
    assert set(rows) == {("shapes", 128), ("shapes-clutter", REGIME_IMAGE_SIZE), ("shapes-clutter", 128)}
    for (name, side), (anchors, per_image, ratio) in rows.items():
        ds = build_dataset(DataConfig(dataset=name, image_size=side), "train", num_images=200)
        m, positive, negative = anchor_counts(ds, 200)
        assert (m, round(positive / 200, 2), round(negative / positive)) == (anchors, per_image, ratio), (name, side)
    assert rows["shapes-clutter", REGIME_IMAGE_SIZE][2] > IMBALANCE_BOUND  # the regime keeps its promise
    assert rows["shapes", 128][2] < IMBALANCE_BOUND / 2  # and the plain one is far from the paper's
    assert f"better than 1 : {IMBALANCE_BOUND}" in clutter.__doc__.replace(",", "")


# ------------------------------------------------------------------ end to end


def test_train_and_evaluate_run_on_the_regime_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    rc = cli.main(["train", "--dataset", "shapes-clutter", "--preset", "tiny", "--image-size", "64",
                   "--iterations", "2", "--batch-size", "2", "--train-images", "4", "--eval-images", "2",
                   "--workers", "1", "--out", str(run)])
    assert rc == 0
    assert json.loads((run / "metrics.json").read_text())["config"]["dataset"] == "shapes-clutter"
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", str(run / "checkpoint.npz"), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["dataset"] == "shapes-clutter" and scored["num_images"] == 2
    model, _ = load_checkpoint(run / "checkpoint.npz")
    direct = evaluate_model(model, ClutterDataset(2, image_size=64, seed=DataConfig.eval_seed))
    assert scored["AP"] == direct["AP"] and scored["AP50"] == direct["AP50"]
