"""torchvision's retinanet_resnet50_fpn against the NumPy one, through ``numpy-retinanet convert``.

Runs where torchvision is importable (it needs torch; torchvision's wheels from the package index
need the CUDA build of torch, which runs on the CPU). The reference has random weights made to
behave (``tools/torchvision_agreement.py``): batch-norm statistics from a pass over a random
picture, then randomly perturbed, and output layers whose scores spread over (0, 1).

The fast tests run torchvision's model built for small pictures (short side 160, long side at most
240); the ``slow`` one runs it as published (800 / 1333) on three pictures of different shapes.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the comparison with torchvision needs torch (pip install torch)")
pytest.importorskip("torchvision", reason="the comparison with torchvision needs torchvision (pip install torchvision)")

from numpy_retinanet.cli import main  # noqa: E402
from numpy_retinanet.engine.checkpoint import load_checkpoint  # noqa: E402
from numpy_retinanet.model.resnet50_fpn import COCO_CATEGORY_NAMES  # noqa: E402
from numpy_retinanet.tools.torchvision_agreement import (  # noqa: E402
    SIZES,
    compare,
    convert,
    random_picture,
    random_torchvision_retinanet,
    torchvision_stages,
)
from numpy_retinanet.tools.torchvision_weights import checkpoint_to_torchvision  # noqa: E402

SMALL = dict(min_size=160, max_size=240)
SMALL_SIZES = ((120, 160), (150, 125), (83, 194))  # landscape, portrait, and one the long side bounds
INPUT_ATOL = 1e-5  # the transformed input: float32 values up to ~2.6, a few ulps apart at most
LEVEL_RTOL = 1e-4  # each level's head outputs, relative to the output's largest entry (the bound)
BOX_ATOL = 1e-2  # pixels


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory):
    # a low prior bias: scores above 0.05 are few, so the threshold decides (fewer than 300 are kept on
    # two of the three pictures); at 800 pixels the 300 best decide
    reference = random_torchvision_retinanet(seed=0, logit_bias=-7.0, **SMALL)
    return reference, convert(reference, tmp_path_factory.mktemp("small"))


def assert_agrees(result):
    assert result["input_error"] <= INPUT_ATOL, result["input_error"]
    assert result["anchor_error"] == 0  # whole pixels on both sides
    assert max(result["level_errors"]) <= LEVEL_RTOL, result["level_errors"]
    reference, ours = result["reference"], result["ours"]
    assert len(reference["scores"]) > 10  # the weights were drawn so that many anchors score above 0.05
    assert result["matched"] == len(reference["scores"]) == len(ours["scores"])
    assert result["box_error"] <= BOX_ATOL


@pytest.mark.parametrize("k", range(len(SMALL_SIZES)))
def test_small_pictures_give_torchvisions_input_head_outputs_and_detections(small_pair, k):
    reference, ours = small_pair
    assert_agrees(compare(reference, ours, random_picture(*SMALL_SIZES[k], seed=k), **SMALL))


@pytest.mark.slow
def test_three_pictures_at_800_pixels_give_torchvisions_detections(tmp_path):
    reference = random_torchvision_retinanet(seed=1)
    ours = convert(reference, tmp_path)
    for k, size in enumerate(SIZES):
        assert_agrees(compare(reference, ours, random_picture(*size, seed=10 + k)))


def test_converted_checkpoint_names_cocos_classes(small_pair, tmp_path):
    reference, _ = small_pair
    torch.save(reference.state_dict(), tmp_path / "r.pth")
    assert main(["convert", str(tmp_path / "r.pth"), str(tmp_path / "r.npz"), "--bn-eps", "1e-5"]) == 0
    _, info = load_checkpoint(tmp_path / "r.npz")
    assert info["class_names"] == list(COCO_CATEGORY_NAMES) and info["category_ids"] == list(range(91))
    assert info["model"]["bn_eps"] == 1e-5


def test_round_trip_loads_strictly_into_torchvision_and_gives_its_outputs(small_pair, tmp_path):
    from torchvision.models.detection import retinanet_resnet50_fpn

    reference, _ = small_pair
    torch.save(reference.state_dict(), tmp_path / "r.pth")
    assert main(["convert", str(tmp_path / "r.pth"), str(tmp_path / "ours.npz"), "--bn-eps", "1e-5"]) == 0
    assert main(["convert", str(tmp_path / "ours.npz"), str(tmp_path / "back.pth"), "--to", "torch"]) == 0
    again = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, **SMALL).eval()
    again.load_state_dict(torch.load(tmp_path / "back.pth", weights_only=True), strict=True)
    picture = random_picture(100, 140, seed=5)
    _, levels, _, detections, _ = torchvision_stages(reference, picture)
    _, levels_again, _, detections_again, _ = torchvision_stages(again, picture)
    for level, level_again in zip(levels, levels_again):
        for out, out_again in zip(level, level_again):
            assert np.abs(out - out_again).max() <= LEVEL_RTOL * np.abs(out).max()
    np.testing.assert_array_equal(detections["labels"], detections_again["labels"])
    np.testing.assert_allclose(detections["boxes"], detections_again["boxes"], atol=BOX_ATOL)


def test_eps_of_the_coco_weights_survives_the_round_trip(small_pair, tmp_path):
    # converted with eps 0 (torchvision's COCO weights) and written back for BatchNorm2d's eps of 1e-5:
    # running_var + eps is the same number, so the batch norms compute the same function
    reference, _ = small_pair
    torch.save(reference.state_dict(), tmp_path / "r.pth")
    assert main(["convert", str(tmp_path / "r.pth"), str(tmp_path / "r.npz")]) == 0  # --bn-eps 0 by default
    checkpoint_to_torchvision(tmp_path / "r.npz", tmp_path / "back.pth")
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    original = reference.state_dict()
    name = "backbone.body.layer3.2.bn2.running_var"
    assert torch.allclose(back[name] + 1e-5, original[name], rtol=1e-6)
    assert back["backbone.body.layer3.2.bn2.num_batches_tracked"].item() == 0


@pytest.mark.parametrize("content", ["text", "list", "resnet18"])
def test_convert_refuses_a_file_that_is_not_a_retinanet_state_dict_in_one_line(tmp_path, capsys, content):
    path = tmp_path / "x.pth"
    if content == "text":
        path.write_text("not a checkpoint")
    elif content == "list":
        torch.save([torch.zeros(2)], path)
    else:
        from torchvision.models import resnet18

        torch.save(resnet18().state_dict(), path)
    assert main(["convert", str(path), str(tmp_path / "out.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a state dict of torchvision's retinanet_resnet50_fpn" in err
    assert not (tmp_path / "out.npz").exists()


def test_convert_to_torch_refuses_a_checkpoint_of_another_architecture(tmp_path, capsys):
    from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL

    assert main(["convert", SHIPPED_MODEL, str(tmp_path / "x.pth"), "--to", "torch"]) == 2
    assert "must hold torchvision's architecture" in capsys.readouterr().err


@pytest.mark.slow
def test_detect_runs_the_converted_weights_on_a_photo(tmp_path, capsys):
    from PIL import Image

    reference = random_torchvision_retinanet(seed=2)
    torch.save(reference.state_dict(), tmp_path / "r.pth")
    assert main(["convert", str(tmp_path / "r.pth"), str(tmp_path / "r.npz"), "--bn-eps", "1e-5"]) == 0
    Image.fromarray(random_picture(240, 320, seed=3)).save(tmp_path / "photo.jpg")
    assert main(["detect", "--checkpoint", str(tmp_path / "r.npz"), str(tmp_path / "photo.jpg"),
                 "--out", str(tmp_path / "out"), "--json", str(tmp_path / "d.json")]) == 0
    assert (tmp_path / "out" / "photo_detections.png").exists()
    assert "photo.jpg: " in capsys.readouterr().out
