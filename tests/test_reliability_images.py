"""Issue 16, images and ``detect``: every odd image file is read right or refused by name, and
detect's memory and output names are bounded and unique."""

import numpy as np
import pytest
from PIL import Image

from numpy_retinanet import cli
from numpy_retinanet.data.images import load_image, load_image_within
from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL, load_checkpoint
from numpy_retinanet.engine.inference import _output_names, detect_files

PICTURE = np.random.default_rng(0).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)


@pytest.mark.fault("silent")
def test_a_16_bit_png_is_scaled_by_its_bit_depth_not_clipped(tmp_path):
    gray = PICTURE[..., 0]
    # v * 257 spreads 0..255 over 0..65535 exactly; clipping would turn every value above 255 white
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = load_image(tmp_path / "deep.png")
    assert out.shape == (40, 56, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


@pytest.mark.fault("silent")
def test_a_float_image_is_stretched_from_its_minimum_to_its_maximum(tmp_path):
    a = np.linspace(0.2, 0.7, 40 * 56, dtype=np.float32).reshape(40, 56)
    Image.fromarray(a, mode="F").save(tmp_path / "float.tiff")
    out = load_image(tmp_path / "float.tiff")[..., 0].astype(int)
    assert out.min() == 0 and out.max() == 255
    assert np.all(np.diff(out.ravel()) >= 0)  # the order of the values is kept: nothing clipped flat
    assert len(np.unique(out)) == 256


@pytest.mark.fault("silent")
def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(PICTURE)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display", what a phone held upright writes
    img.save(tmp_path / "phone.png", exif=exif)
    np.testing.assert_array_equal(load_image(tmp_path / "phone.png"), np.rot90(PICTURE, k=-1))


@pytest.mark.fault("traceback")
@pytest.mark.parametrize("limit", [40 * 56 - 1, (40 * 56) // 2 - 1])  # Pillow warns over the limit, errs over 2x
def test_an_image_over_the_decompression_bomb_limit_is_refused_naming_the_file(tmp_path, monkeypatch, limit):
    Image.fromarray(PICTURE).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ValueError, match=r"bomb\.png.*more pixels than Pillow's limit"):
        load_image(tmp_path / "bomb.png")


@pytest.mark.fault("small")
def test_a_directory_and_a_non_image_are_named_for_what_they_are(tmp_path):
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ValueError, match=r"folder\.png' is a directory"):
        load_image(tmp_path / "folder.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.png' is not an image"):
        load_image(tmp_path / "notes.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")


@pytest.mark.fault("memory")
def test_load_image_within_shrinks_the_longer_side_and_reports_the_file_size(tmp_path):
    Image.fromarray(PICTURE).save(tmp_path / "p.png")
    out, size = load_image_within(tmp_path / "p.png", 28)
    assert size == (56, 40) and out.shape == (20, 28, 3)
    out, size = load_image_within(tmp_path / "p.png", 56)  # not larger than the limit: untouched
    np.testing.assert_array_equal(out, PICTURE)


@pytest.mark.fault("lost")
def test_output_names_are_unique_when_inputs_share_a_file_name():
    names = _output_names(["a/x.png", "b/x.png", "x_2.png", "c/x.jpg"])
    assert len(set(names)) == 4
    assert names[0] == "x_detections.png"


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(SHIPPED_MODEL)


def _shapes_picture():
    from numpy_retinanet.data.build import DataConfig, build_dataset

    held_out = build_dataset(DataConfig(), "eval", num_images=1)
    return held_out.raw(0)[0]


@pytest.mark.fault("memory")
def test_detect_shrinks_a_large_image_and_maps_the_boxes_back(tmp_path, shipped):
    model, info = shipped
    picture = _shapes_picture()
    h, w = picture.shape[:2]
    Image.fromarray(picture).save(tmp_path / "small.png")
    # Each pixel as a 2x2 block: shrinking by 2 gives the picture back up to the filter's blur.
    Image.fromarray(picture.repeat(2, axis=0).repeat(2, axis=1)).save(tmp_path / "big.png")
    _, _, small = next(detect_files(model, [tmp_path / "small.png"], tmp_path, info["class_names"],
                                    max_side=max(h, w)))
    _, big_path, big = next(detect_files(model, [tmp_path / "big.png"], tmp_path, info["class_names"],
                                         max_side=max(h, w)))
    assert len(small["boxes"]) > 0
    np.testing.assert_array_equal(big["labels"], small["labels"])
    # within one file pixel (half a pixel of the shrunk picture); unmapped boxes would be off by half
    np.testing.assert_allclose(big["boxes"], 2 * small["boxes"], atol=1.0)
    assert Image.open(big_path).size[0] >= w  # drawn from the shrunk picture (magnified if small)


@pytest.mark.fault("lost")
def test_detect_writes_one_output_per_input_when_file_names_collide(tmp_path, shipped):
    model, info = shipped
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        Image.fromarray(_shapes_picture()).save(tmp_path / d / "x.png")
    outs = [o for _, o, _ in detect_files(model, [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"],
                                         tmp_path, info["class_names"])]
    assert len(set(outs)) == 2 and all(Image.open(o).size for o in outs)


@pytest.mark.parametrize("flags, said", [
    (["--score-threshold", "nan"], "argument --score-threshold: the value must be a finite real number in [0, 1], got nan"),
    (["--score-threshold", "2"], "argument --score-threshold: the value must be a finite real number in [0, 1], got 2.0"),
    (["--max-side", "8"], "argument --max-side: the value must be an int in [32, 1333], got 8")])
@pytest.mark.fault("silent")
def test_detect_refuses_bad_flags_by_name(tmp_path, capsys, flags, said):
    Image.fromarray(PICTURE).save(tmp_path / "p.png")
    with pytest.raises(SystemExit) as e:  # argparse: before any file is read
        cli.main(["detect", str(tmp_path / "p.png"), "--out", str(tmp_path / "out"), *flags])
    assert e.value.code == 2 and said in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.fault("small")
def test_detect_names_a_directory_given_as_an_image(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    assert cli.main(["detect", str(tmp_path / "folder"), "--out", str(tmp_path / "out")]) == 2
    assert "folder' is a directory" in capsys.readouterr().err



@pytest.mark.fault("memory")
@pytest.mark.slow
def test_detect_on_a_9000x9000_png_stays_under_2_gib(tmp_path):
    import subprocess
    import sys

    from PIL import ImageDraw

    img = Image.new("RGB", (9000, 9000), (30, 30, 30))
    ImageDraw.Draw(img).ellipse((1000, 1000, 4000, 4000), fill=(220, 40, 40))
    img.save(tmp_path / "big.png")  # a few hundred kB on disk, 81 million pixels decoded
    del img
    # A fresh Python runs detect and reports its child's peak resident memory (ru_maxrss, KiB on Linux):
    # this process's RUSAGE_CHILDREN would also count the children of earlier tests.
    runner = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    r = subprocess.run([sys.executable, "-c", runner, sys.executable, "-m", "numpy_retinanet", "detect",
                        str(tmp_path / "big.png"), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[-1]) < 2 * 1024**2
    assert Image.open(tmp_path / "out" / "big_detections.png").size == (1333, 1333)
