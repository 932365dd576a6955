"""data/coco_format.py: a folder of images and a COCO instances JSON as a dataset; its checks, one line each."""

import json

import numpy as np
import pytest
from _coco_files import CATEGORY_IDS, CROWD_BOX, CROWD_IMAGE, EMPTY, IMAGES, write_coco_dataset
from PIL import Image

from numpy_retinanet import cli
from numpy_retinanet.data.build import DataConfig, build_dataset
from numpy_retinanet.data.coco_format import CocoFormatDataset, split_indices
from numpy_retinanet.data.transforms import denormalize


@pytest.fixture(scope="module")
def coco_files(tmp_path_factory):
    return write_coco_dataset(tmp_path_factory.mktemp("coco"))


def config(folder, path, **kw):
    return DataConfig(dataset="coco", data=str(folder), annotations=str(path), num_classes=3, image_size=64, **kw)


def test_labels_are_the_categories_sorted_by_id_and_map_back(coco_files):
    folder, path, data = coco_files
    ds = CocoFormatDataset(folder, path, 64)
    assert ds.category_ids == [3, 7, 11] and ds.class_names == ["circle", "square", "triangle"]
    assert ds.image_ids == [100 + n for n in range(len(IMAGES))]
    for i in range(len(ds)):
        anns = [a for a in data["annotations"] if a["image_id"] == ds.image_ids[i]]
        labels = ds[i][1]["labels"]
        assert [ds.category_ids[k] for k in labels] == [a["category_id"] for a in anns]


def test_images_are_resized_by_their_longer_side_and_padded_and_the_boxes_follow(coco_files):
    folder, path, data = coco_files
    ds = CocoFormatDataset(folder, path, 64)
    for i, (side, _) in enumerate(IMAGES):
        image, target = ds[i]
        assert image.shape == (3, 64, 64) and image.dtype == np.float32
        s = 64 / side
        anns = [a for a in data["annotations"] if a["image_id"] == ds.image_ids[i]]
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        expected = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1) * s
        np.testing.assert_allclose(target["boxes"], expected, rtol=1e-6)
        assert target["iscrowd"].tolist() == [bool(a["iscrowd"]) for a in anns]
        # The picture fills round(side * s) pixels; the rest is padding of the mean colour (0 normalized).
        filled = round(side * s)
        assert not image[:, filled:, :].any() and not image[:, :, filled:].any()
        # Back in the file's pixels: the file's own boxes (the network's pixels divided by s).
        np.testing.assert_allclose(ds.to_original(i, target["boxes"]),
                                   np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1), atol=1e-4)
    # The resized picture is the file's picture, shrunk: compare with Pillow's own resize.
    picture = np.asarray(Image.open(folder / "img0.png").convert("RGB").resize((64, 64), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(denormalize(ds[0][0]), picture)


def test_an_image_without_annotations_is_kept_and_the_crowd_box_is_flagged(coco_files):
    folder, path, _ = coco_files
    ds = CocoFormatDataset(folder, path, 64)
    assert len(ds) == len(IMAGES) and len(ds[EMPTY][1]["boxes"]) == 0
    truth = ds.original_target(CROWD_IMAGE)
    x, y, w, h = CROWD_BOX
    crowd = truth["boxes"][truth["iscrowd"]]
    assert crowd.tolist() == [[x, y, x + w, y + h]] and truth["areas"][truth["iscrowd"]].tolist() == [w * h]
    assert ds.category_ids[truth["labels"][truth["iscrowd"]][0]] == CATEGORY_IDS[1]


def test_detections_in_the_padding_are_clipped_to_the_file(coco_files):
    folder, path, _ = coco_files
    ds = CocoFormatDataset(folder, path, 64)
    # Image 1 is 96 px: 64 / 96 of it, 43 px, is picture; a box over the padding ends at the file's edge.
    assert ds.to_original(1, [[40.0, 40.0, 64.0, 64.0]]).tolist() == [[60.0, 60.0, 96.0, 96.0]]


def test_a_fraction_split_is_seeded_disjoint_and_complete(coco_files):
    folder, path, _ = coco_files
    train, held = split_indices(10, 0.3, seed=4)
    assert (train, held) == split_indices(10, 0.3, seed=4) and len(held) == 3
    assert sorted(train + held) == list(range(10))
    assert split_indices(10, 0.3, seed=5) != (train, held)
    assert split_indices(3, 0.01, 0)[1] and split_indices(3, 0.99, 0)[0]  # at least one on each side
    tr = build_dataset(config(folder, path, val_fraction=0.34), "train")
    ev = build_dataset(config(folder, path, val_fraction=0.34), "eval")
    assert len(ev) == 2 and sorted(tr.image_ids + ev.image_ids) == [100 + n for n in range(len(IMAGES))]
    # With a second file, it is the held-out set and the first file is trained on whole.
    with_file = config(folder, path, val_annotations=str(path))
    assert build_dataset(with_file, "eval").image_ids == build_dataset(with_file, "train").image_ids
    assert len(build_dataset(with_file, "train")) == len(IMAGES)


def test_num_classes_must_be_the_files(coco_files):
    folder, path, _ = coco_files
    with pytest.raises(ValueError, match=r"^num_classes must be 3, the number of categories of .*instances\.json"):
        build_dataset(DataConfig(dataset="coco", data=str(folder), annotations=str(path), num_classes=2), "train")


# ---------------------------------------------------------------- bad input: one line, exit 2


def _train(capsys, tmp_path, folder, annotations, *more):
    out = tmp_path / "run"
    rc = cli.main(["train", "--data", str(folder), "--annotations", str(annotations), "--out", str(out),
                   "--iterations", "1", "--workers", "1", *more])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    return err


def _edited(tmp_path, data, change):
    data = json.loads(json.dumps(data))
    change(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return path


def test_a_missing_folder_or_file_is_named(capsys, tmp_path, coco_files):
    folder, path, _ = coco_files
    err = _train(capsys, tmp_path, folder, tmp_path / "missing.json")
    assert "missing.json" in err and "does not exist" in err
    err = _train(capsys, tmp_path, tmp_path / "nowhere", path)
    assert "images folder" in err and "nowhere" in err


@pytest.mark.parametrize("content, named", [
    ("not json {", r"must be a COCO instances JSON file, got a file that is not JSON"),
    ('{"images": []}', r"must be a COCO instances JSON \(an object with the lists 'images', 'annotations' and "
                       r"'categories'\), got \['images'\]"),
    ("[1, 2]", r"got 'list'"),
])
def test_a_file_that_is_not_coco_instances_is_refused(capsys, tmp_path, coco_files, content, named):
    import re

    folder, _, _ = coco_files
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert re.search(named, _train(capsys, tmp_path, folder, path))


@pytest.mark.parametrize("change, named", [
    (lambda d: d["annotations"][0].update(bbox=[100.0, 0.0, 40.0, 10.0]), r"annotation 1's bbox must be inside its 128x128 image"),
    (lambda d: d["annotations"][0].update(bbox=[0.0, 0.0, 0.0, 10.0]), r"annotation 1's bbox must be of positive width and height"),
    (lambda d: d["annotations"][0].update(bbox=[0.0, 0.0, 10.0]), r"annotation 1: 'bbox' must be \[x, y, w, h\]"),
    (lambda d: d["annotations"][0].update(category_id=99), r"annotation 1: 'category_id' must be one of the categories' ids \[3, 7, 11\], got 99"),
    (lambda d: d["annotations"][0].update(image_id=5), r"annotation 1: 'image_id' must be the id of an image of the file, got 5"),
    (lambda d: d["annotations"][0].update(iscrowd=2), r"'iscrowd' must be 0 or 1, got 2"),
    (lambda d: d["images"][0].update(file_name="gone.png"), r"image file .*gone\.png.* does not exist"),
    (lambda d: d["images"][0].update(file_name="notes.png"), r"notes\.png.* is not an image that can be read"),
    (lambda d: d["images"][0].update(width=100), r"image 100 of annotations .* must be 100x128 as the JSON says, got a file of 128x128"),
    (lambda d: d["categories"].append({"id": 3, "name": "again"}), r"category ids must be distinct, got 3"),
])
def test_bad_entries_are_named_in_one_line(capsys, tmp_path, coco_files, change, named):
    import re

    folder, _, data = coco_files
    (folder / "notes.png").write_text("not an image")
    assert re.search(named, _train(capsys, tmp_path, folder, _edited(tmp_path, data, change)))


def test_a_box_a_rounding_past_the_border_is_clipped(tmp_path, coco_files):
    folder, _, data = coco_files
    path = _edited(tmp_path, data, lambda d: d["annotations"][0].update(bbox=[100.0, 0.0, 28.5, 10.0]))
    ds = CocoFormatDataset(folder, path, 128)
    assert ds[0][1]["boxes"][0].tolist() == [100.0, 0.0, 128.0, 10.0]
    assert ds.original_target(0)["boxes"][0].tolist() == [100.0, 0.0, 128.5, 10.0]  # scored as the file says


def test_coco_settings_need_the_coco_dataset_and_its_files(capsys, tmp_path):
    with pytest.raises(ValueError, match=r"annotations is a setting of the coco dataset, got it with dataset 'shapes'"):
        DataConfig(annotations="x.json").validate()
    with pytest.raises(ValueError, match=r"annotations must be given for the coco dataset"):
        DataConfig(dataset="coco", data="x").validate()


def _evaluate(capsys, *argv):
    rc = cli.main(["evaluate", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_evaluate_refuses_half_a_dataset_and_categories_the_checkpoint_does_not_know(capsys, tmp_path, coco_files):
    folder, _, data = coco_files
    assert "--data and --annotations must be given together" in _evaluate(capsys, "--data", str(folder))
    # The shipped model's classes are categories 1, 2, 3 (no ids were saved with it); this file's are 3, 7, 11.
    err = _evaluate(capsys, "--data", str(folder), "--annotations", str(coco_files[1]))
    assert "category ids must be the checkpoint's [1, 2, 3]" in err and "got [3, 7, 11]" in err
