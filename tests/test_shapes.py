"""The synthetic shapes dataset (data/shapes.py, transforms.py, batching.py): determinism, exact boxes, pixels, flips, batches."""

import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpy_retinanet.data.batching import batch_indices, collate, get_batch, iterate_batches
from numpy_retinanet.data.shapes import ALL_CLASS_NAMES, MAX_BOX_IOU, MIN_CONTRAST, MIN_VISIBLE, ShapesDataset
from numpy_retinanet.data.transforms import denormalize, hflip, normalize


def nonzero_box(mask):
    """Tight box of a mask, computed independently of the dataset code."""
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def same_sample(a, b):
    return (
        np.array_equal(a[0], b[0])
        and np.array_equal(a[1]["boxes"], b[1]["boxes"])
        and np.array_equal(a[1]["labels"], b[1]["labels"])
    )


# ------------------------------------------------------------------ construction


def test_class_names_follow_num_classes():
    assert ShapesDataset(2).class_names == ["circle", "square", "triangle"]
    names = ShapesDataset(2, num_classes=7).class_names
    assert len(names) == 7 and len(set(names)) == 7 and names[:3] == ["circle", "square", "triangle"]
    assert ShapesDataset(2, num_classes=1).class_names == ["circle"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, r"num_classes must be an int in \[1, 7\], got 0"),
        ({"num_classes": len(ALL_CLASS_NAMES) + 1}, r"num_classes must be an int in \[1, 7\], got 8"),
        ({"image_size": 32}, "image_size must be an int >= 64, got 32"),
        ({"seed": -1}, "seed must be an int >= 0, got -1"),
        ({"noise_std": -1.0}, r"^noise_std must be a finite real number >= 0, got -1\.0$"),
        ({"max_objects": 0}, "max_objects must be an int >= 1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShapesDataset(3, **kwargs)


def test_indexing_follows_sequence_rules():
    ds = ShapesDataset(3)
    assert len(ds) == 3
    assert same_sample(ds[-1], ds[2])
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(TypeError):
        ds[1.0]


# ------------------------------------------------------------------ samples


def test_sample_shapes_and_dtypes():
    ds = ShapesDataset(20, image_size=96)
    for i in range(20):
        image, target = ds[i]
        n = len(target["labels"])
        assert image.shape == (3, 96, 96) and image.dtype == np.float32
        assert target["boxes"].shape == (n, 4) and target["boxes"].dtype == np.float32
        assert target["labels"].shape == (n,) and target["labels"].dtype == np.int64
        assert -2.0 <= image.min() and image.max() <= 2.0
        raw, raw_target = ds.raw(i)
        assert raw.shape == (96, 96, 3) and raw.dtype == np.uint8
        np.testing.assert_array_equal(image, normalize(raw))
        np.testing.assert_array_equal(raw_target["boxes"], target["boxes"])


def test_deterministic_and_independent_of_access_order():
    a, b = ShapesDataset(8, seed=5), ShapesDataset(8, seed=5)
    forward = [a[i] for i in range(8)]
    backward = [b[i] for i in reversed(range(8))][::-1]
    assert all(same_sample(x, y) for x, y in zip(forward, backward))
    assert same_sample(a[3], forward[3])  # drawing again gives the same arrays


def test_different_seeds_give_different_images():
    a, b = ShapesDataset(8, seed=0), ShapesDataset(8, seed=1)
    assert not any(np.array_equal(a[i][0], b[i][0]) for i in range(8))


def test_boxes_labels_and_object_counts_over_many_images():
    ds = ShapesDataset(100, num_classes=7, max_objects=4)
    counts, labels = [], []
    for i in range(100):
        _, t = ds[i]
        b = t["boxes"]
        counts.append(len(b))
        labels.extend(t["labels"].tolist())
        assert (b[:, :2] >= 0).all() and (b[:, 2:] <= 128).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        np.testing.assert_array_equal(b, np.round(b))  # pixel edges
        sides = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
        assert (sides <= 70).all()  # the largest frame is 70 px at 128 x 128
    assert max(counts) <= 4
    assert 2 <= counts.count(0) <= 25  # about 10 % of images are empty
    assert set(labels) == set(range(7))


def test_shape_sizes_scale_with_the_image():
    small = [ShapesDataset(30, image_size=64)[i][1]["boxes"] for i in range(30)]
    large = [ShapesDataset(30, image_size=256)[i][1]["boxes"] for i in range(30)]
    side = lambda boxes: np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])  # noqa: E731
    small_sides = np.concatenate([side(b) for b in small])
    large_sides = np.concatenate([side(b) for b in large])
    assert small_sides.max() <= 35 and large_sides.max() <= 140
    assert large_sides.max() > 70  # larger images do get larger shapes


def test_boxes_are_tight_boxes_of_the_painted_silhouettes():
    # Without noise every visible pixel of a shape has exactly its colour. The visible
    # part of shape k is its silhouette minus those of later shapes; it must be exactly
    # the set of pixels of that colour, and the box must be the tight box of the *full*
    # silhouette (before occlusion), with x2 = last column + 1.
    ds = ShapesDataset(60, noise_std=0)
    occluded_box_differs = 0
    for i in range(60):
        image, target = ds.raw(i)
        masks = ds.masks(i)
        assert masks.shape == (len(target["labels"]), 128, 128)
        background = ~masks.any(axis=0)
        for k, mask in enumerate(masks):
            np.testing.assert_array_equal(target["boxes"][k], nonzero_box(mask))
            visible = mask & ~masks[k + 1:].any(axis=0)
            assert visible.sum() >= MIN_VISIBLE * mask.sum()
            colour = image[visible][0]
            np.testing.assert_array_equal(np.all(image == colour, axis=2), visible)
            if background.any():
                gap = np.linalg.norm(image[background].astype(float) - colour, axis=1).min()
                assert gap >= MIN_CONTRAST - 1  # - 1: background rounded to whole levels
            if nonzero_box(visible) != nonzero_box(mask):
                occluded_box_differs += 1
    # The property was exercised: some shapes are partly hidden at their box edge.
    assert occluded_box_differs > 0


def test_boxes_overlap_at_most_max_box_iou():
    ds = ShapesDataset(60)
    for i in range(60):
        b = ds[i][1]["boxes"].astype(np.float64)
        for p in range(len(b)):
            for q in range(p + 1, len(b)):
                iw = max(0.0, min(b[p, 2], b[q, 2]) - max(b[p, 0], b[q, 0]))
                ih = max(0.0, min(b[p, 3], b[q, 3]) - max(b[p, 1], b[q, 1]))
                inter = iw * ih
                union = np.prod(b[p, 2:] - b[p, :2]) + np.prod(b[q, 2:] - b[q, :2]) - inter
                assert inter / union <= MAX_BOX_IOU


def test_a_thousand_images_draw_quickly():
    # About 1 ms each on one core; the bound leaves room for a loaded machine.
    ds = ShapesDataset(1000)
    start = time.perf_counter()
    for i in range(1000):
        ds[i]
    assert time.perf_counter() - start < 10.0


# ------------------------------------------------------------------ pixels


def test_normalize_constants_and_round_trip_of_every_level():
    levels = np.arange(256, dtype=np.uint8)
    picture = np.stack([levels, levels[::-1], levels], axis=1)[None]  # (1, 256, 3)
    x = normalize(picture)
    assert x.shape == (3, 1, 256) and x.dtype == np.float32
    # (0 / 255 - 0.5) / 0.25 = -2; (255 / 255 - 0.5) / 0.25 = 2.
    assert x[0, 0, 0] == -2.0 and x[0, 0, 255] == 2.0 and x[1, 0, 0] == 2.0
    np.testing.assert_array_equal(denormalize(x), picture)
    # normalize computes in place on channels-first rows; the plain formula, entry by entry, gives the same bits
    plain = ((picture.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.25)).transpose(2, 0, 1)
    assert x.tobytes() == np.ascontiguousarray(plain).tobytes() and x.flags.c_contiguous


def test_denormalize_saturates_outside_the_displayable_range():
    x = np.array([-5.0, -2.0, 0.0, 2.0, 5.0], dtype=np.float32)
    out = denormalize(np.broadcast_to(x, (3, 1, 5)))
    # -2 -> 0, 0 -> 127.5 rounds to the even 128, 2 -> 255; beyond saturates.
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 128, 255, 255])


@pytest.mark.parametrize(
    "func, arg, match",
    [
        (normalize, np.zeros((4, 4, 3), dtype=np.float32), r"^image must be an array of dtype uint8, got dtype float32$"),
        (normalize, np.zeros((3, 4, 4), dtype=np.uint8), r"^image must be an array of shape \(H, W, 3\), got shape \(3, 4, 4\)$"),
        (denormalize, np.zeros((4, 4, 3), dtype=np.float32), r"^image must be an array of shape \(3, H, W\), got shape \(4, 4, 3\)$"),
        (denormalize, np.full((3, 2, 2), np.nan, dtype=np.float32), r"^image must be finite, got NaN values$"),
    ],
)
def test_pixel_functions_refuse_bad_input(func, arg, match):
    with pytest.raises(ValueError, match=match):
        func(arg)


# ------------------------------------------------------------------ flips and batches


def test_hflip_moves_pixels_and_boxes_together():
    image = np.zeros((3, 10, 20), dtype=np.float32)
    image[:, 2:7, 2:6] = 1.0  # columns 2..5 -> box x from 2 to 6
    target = {"boxes": np.array([[2, 2, 6, 7]], dtype=np.float32), "labels": np.array([1])}
    flipped, flipped_target = hflip(image, target)
    # x1' = W - x2 = 20 - 6 = 14, x2' = W - x1 = 18: columns 14..17.
    np.testing.assert_array_equal(flipped_target["boxes"], [[14, 2, 18, 7]])
    assert nonzero_box(flipped[0]) == [14, 2, 18, 7]
    assert flipped_target["labels"] is target["labels"]
    assert target["boxes"][0, 0] == 2 and image[0, 2, 2] == 1.0  # inputs untouched


def test_hflip_matches_flipped_silhouettes_and_twice_is_identity():
    ds = ShapesDataset(10, noise_std=0)
    for i in range(10):
        sample = ds[i]
        flipped = hflip(*sample)
        for k, mask in enumerate(ds.masks(i)):
            np.testing.assert_array_equal(flipped[1]["boxes"][k], nonzero_box(mask[:, ::-1]))
        assert same_sample(hflip(*flipped), sample)


def test_collate_stacks_images_and_keeps_targets():
    ds = ShapesDataset(3, image_size=64)
    images, targets = collate([ds[i] for i in range(3)])
    assert images.shape == (3, 3, 64, 64) and images.dtype == np.float32
    assert len(targets) == 3 and np.array_equal(targets[1]["boxes"], ds[1][1]["boxes"])
    with pytest.raises(ValueError, match="same shape"):
        collate([ds[0], ShapesDataset(1, image_size=96)[0]])
    with pytest.raises(ValueError, match="at least one"):
        collate([])


@given(st.integers(1, 12), st.integers(1, 9), st.integers(0, 2**16))
def test_every_epoch_of_the_stream_is_a_permutation(num_images, batch_size, seed):
    steps = -(-3 * num_images // batch_size)  # enough steps for three epochs
    stream = np.concatenate([batch_indices(k, batch_size, num_images, seed)[0] for k in range(steps)])
    for e in range(3):
        np.testing.assert_array_equal(np.sort(stream[e * num_images:(e + 1) * num_images]), np.arange(num_images))


def test_batch_indices_are_a_function_of_the_step():
    first = batch_indices(7, 4, 10, seed=3)
    again = batch_indices(7, 4, 10, seed=3)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    # Steps 7 and 8 of batch 4 are stream positions 28..35, i.e. step 14..17 of batch 2.
    four = np.concatenate([batch_indices(k, 4, 10, seed=3)[0] for k in (7, 8)])
    two = np.concatenate([batch_indices(k, 2, 10, seed=3)[0] for k in (14, 15, 16, 17)])
    np.testing.assert_array_equal(four, two)
    other = np.concatenate([batch_indices(k, 10, 10, seed=4)[0] for k in range(3)])
    ours = np.concatenate([batch_indices(k, 10, 10, seed=3)[0] for k in range(3)])
    assert not np.array_equal(other, ours)


def test_batch_indices_are_the_documented_stream_though_each_epoch_is_drawn_once():
    # Position p of the stream is entry p % n of epoch p // n, drawn from default_rng([seed, 1, epoch]):
    # a permutation, then one flip coin per position. batch_indices keeps each epoch's draw; recomputed
    # here from that rule for every position, over steps that go back and forth between epochs.
    for seed, n, batch in ((3, 10, 4), (0, 7, 3)):
        for step in (0, 1, 5, 2, 9, 3, 12, 0):
            indices, flips = batch_indices(step, batch, n, seed)
            indices[:] = -1  # what a caller does with the result must not reach the kept epochs
            indices, flips = batch_indices(step, batch, n, seed)
            for j, p in enumerate(range(step * batch, (step + 1) * batch)):
                rng = np.random.default_rng([seed, 1, p // n])
                order, coins = rng.permutation(n), rng.random(n) < 0.5
                assert (indices[j], flips[j]) == (order[p % n], coins[p % n])


def test_batch_larger_than_the_dataset_spans_epochs():
    indices, _ = batch_indices(0, 7, 3, seed=0)
    # positions 0..6: epochs 0 and 1 entirely, one image of epoch 2 -> counts 3, 2, 2.
    assert sorted(np.bincount(indices, minlength=3).tolist()) == [2, 2, 3]


def test_shuffle_and_flip_switches():
    indices, flips = batch_indices(2, 4, 5, seed=0, shuffle=False, flip=False)
    # positions 8..11 of 0,1,2,3,4, 0,1,2,3,4, ... are 3, 4, 0, 1.
    np.testing.assert_array_equal(indices, [3, 4, 0, 1])
    assert not flips.any()
    coins = np.concatenate([batch_indices(k, 50, 100, seed=1)[1] for k in range(20)])
    assert 0.4 < coins.mean() < 0.6


def test_resuming_at_step_k_gives_the_same_batches():
    ds = ShapesDataset(6, image_size=64)
    run = list(iterate_batches(ds, 4, seed=2, num_steps=4))
    resumed = list(iterate_batches(ds, 4, seed=2, start_step=2, num_steps=2))
    assert len(run) == 4 and len(resumed) == 2
    for (images_a, targets_a), (images_b, targets_b) in zip(run[2:], resumed):
        np.testing.assert_array_equal(images_a, images_b)
        for ta, tb in zip(targets_a, targets_b):
            np.testing.assert_array_equal(ta["boxes"], tb["boxes"])


def test_get_batch_flips_the_chosen_samples():
    ds = ShapesDataset(6, image_size=64)
    indices, flips = batch_indices(1, 6, 6, seed=9)
    assert flips.any() and not flips.all()  # both cases are exercised for this seed
    images, targets = get_batch(ds, 1, 6, seed=9)
    assert images.shape == (6, 3, 64, 64)
    for j, (i, f) in enumerate(zip(indices, flips)):
        image, target = ds[int(i)]
        b = target["boxes"]
        expected_image = image[:, :, ::-1] if f else image
        expected_boxes = np.stack([64 - b[:, 2], b[:, 1], 64 - b[:, 0], b[:, 3]], axis=1) if f else b
        np.testing.assert_array_equal(images[j], expected_image)
        np.testing.assert_array_equal(targets[j]["boxes"], expected_boxes)
