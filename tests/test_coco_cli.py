"""COCO on the command line: ``evaluate`` prints pycocotools' twelve numbers and writes a results file
that pycocotools scores the same; ``detect --json`` writes that format for image files."""

import contextlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from numpy_retinanet import cli
from numpy_retinanet.data.build import DataConfig, build_dataset

pytest.importorskip("pycocotools", reason="pycocotools is the oracle: pip install -e '.[test]'")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

KEYS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small",
        "AR_medium", "AR_large")


def strict_json(text):
    """``json.loads`` refusing the bare words NaN and Infinity, which are not JSON (Python writes them)."""
    def refuse(word):
        raise ValueError(f"{word} is not JSON")
    return json.loads(text, parse_constant=refuse)


def cocoeval(annotations_file, results_file):
    """pycocotools' stats and printed summary for two files on disk."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        gt = COCO(str(annotations_file))
        e = COCOeval(gt, gt.loadRes(str(results_file)), "bbox")
        e.evaluate()
        e.accumulate()
        printed.seek(0)
        printed.truncate()
        e.summarize()
    return e.stats, printed.getvalue().splitlines()


def shapes_annotations(path, num_images):
    """The shipped model's held-out shapes images written as a COCO annotations file: image i has id i,
    label k category id k + 1, boxes as [x, y, w, h], area w * h."""
    ds = build_dataset(DataConfig(), "eval", num_images=num_images)
    annotations = []
    for i in range(num_images):
        target = ds.raw(i)[1]
        for (x1, y1, x2, y2), label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": label + 1, "iscrowd": 0,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})
    path.write_text(json.dumps({
        "images": [{"id": i, "width": 128, "height": 128, "file_name": f"{i}.png"} for i in range(num_images)],
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": name} for k, name in enumerate(ds.class_names)]}))
    return ds


def test_evaluate_prints_and_returns_what_pycocotools_gives_on_its_results_file(tmp_path, capsys):
    ds = shapes_annotations(tmp_path / "gt.json", num_images=12)
    assert cli.main(["evaluate", "--num-images", "12", "--json", "--results", str(tmp_path / "res.json")]) == 0
    out = strict_json(capsys.readouterr().out)
    stats, printed = cocoeval(tmp_path / "gt.json", tmp_path / "res.json")
    for key, theirs in zip(KEYS, stats):  # COCO's -1 (nothing of that area to score) is null
        assert (out[key] is None if theirs == -1 else out[key] == pytest.approx(theirs, abs=1e-12)), key
    assert out["AP"] > 0.5  # the shipped model finds the shapes: a real comparison, not of two empty sets
    results = json.loads((tmp_path / "res.json").read_text())
    assert {r["image_id"] for r in results} <= set(range(12)) and {r["category_id"] for r in results} <= {1, 2, 3}
    assert all(set(r) == {"image_id", "category_id", "bbox", "score"} for r in results)
    # The text output is pycocotools' summary, line for line, then the AP of each class by name.
    assert cli.main(["evaluate", "--num-images", "12"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:13] == printed
    assert [line.split()[0] for line in lines[14:]] == ds.class_names


def test_area_scale_moves_the_shapes_between_the_size_ranges(capsys):
    # At COCO's ranges no 128 px shape is large; scaled by (128 / 640)^2 some are.
    assert cli.main(["evaluate", "--num-images", "6", "--json"]) == 0
    coco = strict_json(capsys.readouterr().out)
    assert cli.main(["evaluate", "--num-images", "6", "--json", "--area-scale", str((128 / 640) ** 2)]) == 0
    scaled = strict_json(capsys.readouterr().out)
    assert coco["AP_large"] is None and scaled["AP_large"] > 0
    assert scaled["AP"] == coco["AP"]  # the range "all" does not move


def test_a_class_absent_from_the_images_scored_is_null_in_the_json_and_said_so_in_the_text(capsys):
    ds = build_dataset(DataConfig(), "eval", num_images=5)
    present = {ds.class_names[k] for i in range(5) for k in ds.raw(i)[1]["labels"]}
    [absent] = set(ds.class_names) - present  # the first 5 held-out images have no square
    assert cli.main(["evaluate", "--num-images", "5", "--json"]) == 0
    out = strict_json(capsys.readouterr().out)
    assert out["per_class_AP"][absent] is None and all(out["per_class_AP"][name] > 0 for name in present)
    assert cli.main(["evaluate", "--num-images", "5"]) == 0
    assert f"  {absent:<10} AP -1 (no {absent} in these images)" in capsys.readouterr().out.splitlines()


def test_detect_json_writes_cocos_results_format(tmp_path, capsys):
    ds = build_dataset(DataConfig(), "eval", num_images=2)
    names = ["000000000042.png", "cat.png"]
    for i, name in enumerate(names):
        # The second picture enlarged to 256 x 192: boxes come back in the file's pixels.
        picture = Image.fromarray(ds.raw(i)[0])
        (picture if i == 0 else picture.resize((256, 192))).save(tmp_path / name)
    paths = [str(tmp_path / n) for n in names]
    assert cli.main(["detect", *paths, "--out", str(tmp_path / "out"), "--score-threshold", "0.3",
                     "--json", str(tmp_path / "dets.json")]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith(str(tmp_path))]
    results = json.loads((tmp_path / "dets.json").read_text())
    # COCO names its images by their zero-padded id: that file is image 42; another name is itself.
    per_image = {42: 0, "cat": 0}
    for r in results:
        per_image[r["image_id"]] += 1
        x, y, w, h = r["bbox"]
        width, height = (128, 128) if r["image_id"] == 42 else (256, 192)
        assert 0 <= x <= x + w <= width and 0 <= y <= y + h <= height
        assert r["category_id"] in (1, 2, 3) and r["score"] >= 0.3
    # As many results per file as detections listed for it ("circle 0.93, square 0.88" or "nothing").
    counts = [0 if line.split(": ")[1].startswith("nothing ->") else line.count(",") + 1 for line in listed]
    assert [per_image[42], per_image["cat"]] == counts and sum(counts) > 0


# ---------------------------------------------------------------- your own COCO-format data, end to end


def test_train_and_evaluate_a_coco_format_folder_as_pycocotools_scores_it(tmp_path, capsys, monkeypatch):
    from _coco_files import write_coco_dataset

    from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL, load_checkpoint

    folder, path, data = write_coco_dataset(tmp_path / "data")
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    # A few steps from the shipped model (fine-tuning: its three classes are the file's three), so that
    # the results hold real detections of every kind, right and wrong. Paths relative to the folder.
    assert cli.main(["train", "--data", "data/images", "--annotations", "data/instances.json",
                     "--val-annotations", "data/instances.json", "--init", SHIPPED_MODEL, "--iterations", "2", "--batch-size", "2", "--workers", "1",
                     "--lr", "0.001", "--eval-images", "0", "--out", str(run)]) == 0
    printed_by_train = capsys.readouterr().out
    assert "loaded 75 of 75 parameters" in printed_by_train and "on coco (6 images)" in printed_by_train
    _, info = load_checkpoint(run / "checkpoint.npz")
    assert info["category_ids"] == [3, 7, 11] and info["class_names"] == ["circle", "square", "triangle"]

    results = tmp_path / "results.json"
    evaluate = ["evaluate", "--checkpoint", str(run / "checkpoint.npz"), "--data", str(folder),
                "--annotations", str(path), "--results", str(results)]
    assert cli.main(evaluate + ["--json"]) == 0
    out = strict_json(capsys.readouterr().out)
    stats, printed = cocoeval(path, results)
    for key, theirs in zip(KEYS, stats):
        assert (out[key] is None if theirs == -1 else out[key] == pytest.approx(theirs, abs=1e-12)), key
    assert out["AP"] > 0.3 and out["num_images"] == 6
    detections = json.loads(results.read_text())
    # The file's own ids, and boxes inside the file's own images (96 or 128 px), not the network's 128 px.
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    assert {r["category_id"] for r in detections} <= {3, 7, 11} and {r["image_id"] for r in detections} <= set(sizes)
    assert all(0 <= r["bbox"][0] <= r["bbox"][0] + r["bbox"][2] <= sizes[r["image_id"]][0] for r in detections)
    assert cli.main(evaluate) == 0
    assert capsys.readouterr().out.splitlines()[1:13] == printed
    # The run remembers its files (made absolute): from another folder, its held-out file is scored alike.
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert cli.main(["evaluate", "--checkpoint", str(run / "checkpoint.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["AP"] == out["AP"]


def test_init_loads_what_fits_and_keeps_a_new_classification_layer(tmp_path):
    from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL
    from numpy_retinanet.engine.trainer import init_from
    from numpy_retinanet.model.heads import prior_bias
    from numpy_retinanet.model.retinanet import RetinaNet

    shipped = load_shipped()
    model = RetinaNet(5)  # five classes: the last conv of the classification subnet has another shape
    fresh = {k: v.copy() for k, v in model.params.items()}
    lines = []
    loaded, kept = init_from(model, SHIPPED_MODEL, log=lines.append)
    assert kept == ["cls_head.subnet.6.weight", "cls_head.subnet.6.bias"] and len(loaded) == len(fresh) - 2
    for name in loaded:
        np.testing.assert_array_equal(model.params[name], shipped[name])
    for name in kept:
        np.testing.assert_array_equal(model.params[name], fresh[name])
    np.testing.assert_allclose(model.params["cls_head.subnet.6.bias"], prior_bias(0.01), rtol=1e-6)
    assert "loaded 73 of 75 parameters" in lines[0] and "cls_head.subnet.6.weight" in lines[0]


def test_init_refuses_a_checkpoint_of_which_nothing_fits():
    from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL
    from numpy_retinanet.engine.trainer import init_from
    from numpy_retinanet.model.retinanet import RetinaNet

    model = RetinaNet(3, preset="tiny")  # other widths everywhere: no parameter of the shipped model fits
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(ValueError, match="none of its 75 parameters fits this model \\(its preset: 'default'\\)"):
        init_from(model, SHIPPED_MODEL, log=lambda line: None)
    assert all(np.array_equal(model.params[k], v) for k, v in before.items())


def load_shipped():
    from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL, read_checkpoint

    return read_checkpoint(SHIPPED_MODEL)[1]


@pytest.mark.fault("traceback")
def test_a_results_file_that_cannot_be_written_is_one_line(tmp_path, capsys):
    from numpy_retinanet import cli

    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "results.json"  # under a file: no folder can be made there
    assert cli.main(["evaluate", "--num-images", "2", "--results", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write '{target}'" in err and "Traceback" not in err
