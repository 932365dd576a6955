"""Issue 16, classes 3-5 on the command line: every out-of-range setting is refused with a message
naming it, before any work; the gradient checker refuses a step it would divide by."""

from __future__ import annotations

import re

import numpy as np
import pytest

from numpy_retinanet import cli, gradcheck
from numpy_retinanet._settings import setting_fields
from numpy_retinanet.data.build import MAX_IMAGE_SIZE, MAX_OBJECTS
from numpy_retinanet.data.shapes import MIN_IMAGE_SIZE
from numpy_retinanet.detection.postprocess import postprocess
from numpy_retinanet.engine.config import MAX_BATCH_SIZE, MAX_STEP_PIXELS, TrainConfig
from numpy_retinanet.model.presets import PRESETS


def _gradcheck_inputs():
    x = np.array([0.5, -1.0, 2.0])
    return (lambda: float((x ** 2).sum())), {"x": x}, {"x": 2 * x}


@pytest.mark.fault("traceback")
@pytest.mark.parametrize("h", [0.0, -1e-5, float("nan"), float("inf")])
def test_gradcheck_refuses_a_step_that_is_not_positive_and_finite(h):
    f, inputs, analytic = _gradcheck_inputs()
    with pytest.raises(ValueError, match=r"^h must be a finite real number > 0"):
        gradcheck.check_gradients(f, inputs, analytic, h=h, verbose=False)
    with pytest.raises(ValueError, match=r"^h must be"):
        gradcheck.numerical_gradient(f, inputs["x"], h=h)
    with pytest.raises(ValueError, match=r"^h must be"):
        gradcheck.directional_check(f, inputs, analytic, h=h, verbose=False)


@pytest.mark.parametrize("tolerances, name", [(dict(rtol=0.0), "rtol"), (dict(atol=-1.0), "atol"),
                                              (dict(rtol=float("nan")), "rtol")])
@pytest.mark.fault("traceback")
def test_gradcheck_refuses_tolerances_it_would_divide_by(tolerances, name):
    f, inputs, analytic = _gradcheck_inputs()
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        gradcheck.check_gradients(f, inputs, analytic, verbose=False, **tolerances)


@pytest.mark.fault("traceback")
def test_gradcheck_still_passes_a_correct_gradient_at_a_valid_step():
    f, inputs, analytic = _gradcheck_inputs()
    assert gradcheck.all_passed(gradcheck.check_gradients(f, inputs, analytic, h=1e-4, verbose=False))


# --- the command line: each bad value exits 2 with one line naming the setting, no traceback ---

def _refused(capsys, argv, named):
    """Run the CLI on ``argv``; assert it refused with exit 2 and a message naming ``named``."""
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse refuses a flag's value itself
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    assert re.search(named, err), err
    return err


_FLOAT_SETTINGS = [f.name for f in setting_fields(TrainConfig) if type(f.default) is float]
_FLOAT_MODEL_SETTINGS = [n for n, v in PRESETS["default"].items()
                         if isinstance(v, float) or (isinstance(v, tuple) and isinstance(v[0], float))]


@pytest.mark.fault("silent")
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", _FLOAT_SETTINGS + _FLOAT_MODEL_SETTINGS)
def test_train_refuses_every_float_setting_that_is_not_finite(capsys, tmp_path, name, value):
    out = tmp_path / "run"
    # "--lr=-inf": argparse would read a separate "-inf" as a flag of its own.
    _refused(capsys, ["train", "--out", str(out), f"--{name.replace('_', '-')}={value}"], rf"{name}(\[0\])? must be")
    assert not out.exists()  # refused before anything was written


def test_float_settings_cover_the_ones_the_issue_names():
    assert {"lr", "momentum", "weight_decay"} <= set(_FLOAT_SETTINGS) and "prior" in _FLOAT_MODEL_SETTINGS


@pytest.mark.fault("lost")
@pytest.mark.parametrize("lr", ["0", "-0.1"])
def test_train_refuses_an_lr_that_is_not_positive(capsys, tmp_path, lr):
    _refused(capsys, ["train", "--out", str(tmp_path / "run"), "--lr", lr], r"lr must be a finite real number > 0")


@pytest.mark.parametrize("flag, value, named", [
    ("--batch-size", MAX_BATCH_SIZE + 1, rf"batch_size must be an int in \[1, {MAX_BATCH_SIZE}\]"),
    ("--image-size", MAX_IMAGE_SIZE + 1, rf"image_size must be an int in \[{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}\]"),
    ("--fpn-channels", 0, r"fpn_channels must be an int >= 1, got 0"),
    ("--max-objects", MAX_OBJECTS + 1, rf"max_objects must be an int in \[1, {MAX_OBJECTS}\]"),
])
@pytest.mark.fault("memory")
def test_train_refuses_sizes_out_of_their_limits(capsys, tmp_path, flag, value, named):
    _refused(capsys, ["train", "--out", str(tmp_path / "run"), flag, str(value)], named)


@pytest.mark.fault("memory")
def test_train_refuses_a_batch_whose_pixels_exceed_one_steps_memory(capsys, tmp_path):
    # Each value alone is within its own limit; together they are twice the pixels of a step.
    batch = 2 * MAX_STEP_PIXELS // MAX_IMAGE_SIZE ** 2
    assert batch <= MAX_BATCH_SIZE
    _refused(capsys, ["train", "--out", str(tmp_path / "run"), "--batch-size", str(batch), "--image-size",
                      str(MAX_IMAGE_SIZE)], rf"batch_size \* image_size\^2 must be at most {MAX_STEP_PIXELS}")


@pytest.mark.fault("memory")
def test_the_largest_allowed_sizes_are_accepted_by_the_config():
    TrainConfig(batch_size=MAX_BATCH_SIZE, image_size=MIN_IMAGE_SIZE).validate()
    TrainConfig(batch_size=MAX_STEP_PIXELS // MAX_IMAGE_SIZE ** 2, image_size=MAX_IMAGE_SIZE).validate()


@pytest.mark.parametrize("flag, value", [("--batch-size", str(MAX_BATCH_SIZE + 1)), ("--batch-size", "0"),
                                         ("--image-size", str(MAX_IMAGE_SIZE + 1)), ("--image-size", "big")])
@pytest.mark.fault("memory")
def test_bench_refuses_sizes_out_of_their_limits(capsys, flag, value):
    _refused(capsys, ["bench", "model", flag, value], rf"argument {flag}: the value must be an int")


@pytest.mark.fault("silent")
@pytest.mark.parametrize("value", ["nan", "inf", "2", "-0.5", "half"])
def test_detect_refuses_a_score_threshold_that_is_not_a_probability(capsys, tmp_path, value):
    out = tmp_path / "drawn"
    _refused(capsys, ["detect", "any.png", "--out", str(out), "--score-threshold", value],
             r"argument --score-threshold: the value must be a (finite )?real number")
    assert not out.exists()


@pytest.mark.fault("silent")
@pytest.mark.parametrize("setting", ["score_threshold", "nms_threshold"])
@pytest.mark.parametrize("value", [float("nan"), 2.0, -0.1])
def test_postprocess_refuses_thresholds_that_are_not_probabilities(setting, value):
    logits, deltas = np.zeros((1, 1, 1)), np.zeros((1, 1, 4))
    anchors = np.array([[0.0, 0.0, 8.0, 8.0]])
    with pytest.raises(ValueError, match=rf"^{setting} must be a finite real number in \[0, 1\]"):
        postprocess(logits, deltas, anchors, (16, 16), **{setting: value})


@pytest.mark.fault("traceback")
@pytest.mark.parametrize("argv, command", [(["evaluate", "runs/shapes"], "evaluate"),
                                           (["train", "--bogus"], "train"),
                                           (["evaluate", "--eval-images", "5"], "evaluate")])
def test_an_unknown_argument_is_refused_by_its_command_with_the_commands_usage(capsys, argv, command):
    err = _refused(capsys, argv, rf"(?m)^numpy-retinanet {command}: error: unrecognized arguments: ")
    assert err.startswith(f"usage: numpy-retinanet {command} ")  # the flags it does take, not the command list
