"""Settings: one home each (engine/config.py and its bases), every one a train flag, each reaching its use."""

import ast
import dataclasses
import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import numpy_retinanet
from numpy_retinanet._settings import check_settings, setting, setting_fields
from numpy_retinanet.cli import _given_settings, build_parser
from numpy_retinanet.data.build import DataConfig, build_dataset
from numpy_retinanet.data.shapes import ShapesDataset
from numpy_retinanet.detection.criterion import LossConfig, assign_targets, retinanet_loss
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.engine.trainer import train
from numpy_retinanet.model.presets import MODEL_SETTINGS
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.losses import focal_loss_star_forward

TINY = dict(preset="tiny", image_size=64, iterations=40, batch_size=4, lr=0.05, warmup_steps=5,
            clip_grad_norm=5.0, eval_images=0, log_every=20, checkpoint_every=100, train_images=8)


def _train_parser():
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices["train"]


def _parse_train(*argv):
    return build_parser().parse_args(["train", *argv])


# ------------------------------------------------------------------ the flags come from the fields


def test_every_training_setting_has_a_flag_showing_its_default():
    actions = {a.dest: a for a in _train_parser()._actions}
    fields = setting_fields(TrainConfig)
    # The bases' settings are TrainConfig's too: the loss and data settings have flags as well.
    assert {f.name for f in setting_fields(LossConfig)} | {f.name for f in setting_fields(DataConfig)} <= {
        f.name for f in fields}
    for f in fields:
        assert f.name in actions, f"no flag for {f.name}"
        flag = "--" + f.name.replace("_", "-")
        assert flag in actions[f.name].option_strings
        assert "(default: " in actions[f.name].help, f.name
    for name in ("lr", "iterations", "gamma", "alpha", "fg_iou", "image_size"):
        assert f"(default: {getattr(TrainConfig, name):g})" in actions[name].help
    for name in MODEL_SETTINGS:
        assert "model." + name in actions, f"no flag for the preset setting {name}"


def test_help_lists_the_choices_and_every_default():
    text = _train_parser().format_help()
    assert "{focal,ce,fl_star}" in text and "{tiny,default,paper}" in text and "{cpu,gpu}" in text
    assert text.count("(default:") == len(setting_fields(TrainConfig)) + len(MODEL_SETTINGS) + 1  # + --out
    assert "default 12 24 48 96 192" in text  # the default preset's anchor sizes


def test_flags_reach_the_config_with_their_types():
    args = _parse_train("--loss", "fl_star", "--gamma", "4", "--beta", "0", "--smooth-l1-beta", "0",
                        "--fg-iou", "0.6", "--bg-iou", "0.45", "--no-allow-low-quality", "--schedule", "step",
                        "--decay-at", "0.5", "0.75", "--image-size", "96", "--fpn-channels", "32", "--anchor-sizes", "8", "16", "32",
                        "64", "128", "--p6-from", "p5")
    settings, overrides = _given_settings(args)
    config = TrainConfig(**settings, model_overrides=overrides)
    assert (config.loss, config.gamma, config.beta, config.smooth_l1_beta) == ("fl_star", 4.0, 0.0, 0.0)
    assert (config.fg_iou, config.bg_iou, config.allow_low_quality) == (0.6, 0.45, False)
    assert config.schedule == "step" and config.decay_at == (0.5, 0.75) and config.image_size == 96
    assert TrainConfig(**_given_settings(_parse_train("--schedule", "cosine"))[0]).schedule == "cosine"
    assert overrides == {"fpn_channels": 32, "anchor_sizes": (8, 16, 32, 64, 128), "p6_from": "p5"}
    config.validate()
    model = RetinaNet(config.num_classes, preset=config.preset, **config.model_overrides)
    assert model.cfg["fpn_channels"] == 32 and model.anchor_generator.sizes[0] == 8


def test_flags_not_given_keep_the_config_defaults():
    settings, overrides = _given_settings(_parse_train())
    assert settings == {} and overrides == {}
    assert TrainConfig(**settings) == TrainConfig()


def test_bad_flag_values_end_in_a_message_naming_each_setting(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "numpy_retinanet", "train", "--out", str(tmp_path / "run")]
    cases = [(["--lr", "-1", "--iterations", "0"], ["lr must be a finite real number > 0.0, got -1.0",
                                                   "iterations must be an int >= 1, got 0"]),
             (["--loss", "hinge"], ["invalid choice: 'hinge'"]),
             (["--loss", "fl_star", "--gamma", "0"], ["gamma must be > 0 for fl_star"]),
             (["--bg-iou", "0.6"], ["bg_iou must be <= fg_iou (0.5), got 0.6"]),
             (["--alpha", "1.5"], ["alpha must be a finite real number in [0.0, 1.0], got 1.5"]),
             (["--widths", "4", "-4", "4", "4"], ["invalid model settings: widths[1] must be an int >= 1, got -4"]),
             (["--widths", "4", "4"], ["widths and depths need 4 entries"]),
             (["--prior", "1"], ["prior must be a finite real number in (0.0, 1.0), got 1.0"])]
    for argv, expected in cases:
        r = subprocess.run(cmd + argv, capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 2, (argv, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
        for text in expected:
            assert text in r.stderr, (argv, r.stderr)
    assert not (tmp_path / "run").exists()


def test_version_flag_prints_the_installed_version():
    r = subprocess.run([sys.executable, "-m", "numpy_retinanet", "--version"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0
    assert r.stdout.strip() == f"numpy-retinanet {importlib.metadata.version('numpy-retinanet')}"
    assert numpy_retinanet.__version__ == importlib.metadata.version("numpy-retinanet")


# ------------------------------------------------------------------ validation from the fields


@dataclasses.dataclass
class _Example:
    n: int = setting(3, "a count", low=1, high=5)
    x: float = setting(0.5, "a fraction", low=0.0, low_open=True, high=1.0)
    name: str = setting("a", "a name", choices=("a", "b"))
    flag: bool = setting(True, "a switch")
    pair: tuple = setting((1.0, 2.0), "numbers", low=0.0)
    maybe: float = setting(1.0, "a number or None", low=0.0, optional=True)


@pytest.mark.parametrize("field, value, message", [
    ("n", 0, "n must be an int in [1, 5], got 0"),
    ("n", 2.0, "n must be an int in [1, 5], got 2.0"),
    ("n", True, "n must be an int in [1, 5], got True"),
    ("x", 0.0, "x must be a finite real number in (0.0, 1.0], got 0.0"),
    ("x", float("nan"), "x must be a finite real number in (0.0, 1.0], got nan"),
    ("x", "0.5", "x must be a finite real number in (0.0, 1.0], got str '0.5'"),
    ("name", "c", "name must be one of 'a', 'b', got 'c'"),
    ("flag", 1, "flag must be true or false, got 1"),
    ("pair", (1.0, -2.0), "pair[1] must be a finite real number >= 0.0, got -2.0"),
    ("pair", (), "pair must be a non-empty list of numbers, got ()"),
    ("maybe", -1.0, "maybe must be a finite real number >= 0.0, got -1.0"),
])
def test_check_settings_names_the_setting_the_range_and_the_value(field, value, message):
    with pytest.raises(ValueError) as e:
        check_settings(dataclasses.replace(_Example(), **{field: value}), "example settings")
    assert str(e.value) == f"invalid example settings: {message}"


def test_check_settings_accepts_values_in_range_and_reports_every_bad_one():
    check_settings(_Example(n=5, x=1.0, name="b", flag=False, pair=(0.0,), maybe=None))
    check_settings(_Example(n=np.int64(2), x=np.float32(0.25), pair=(np.float64(1.0), 3)))
    with pytest.raises(ValueError, match=r"n must .*; x must .*; name must"):
        check_settings(_Example(n=9, x=2.0, name="z"))


# ------------------------------------------------------------------ loss settings reach the criterion


def _batch():
    model = RetinaNet(3, preset="tiny", dtype=np.float64, seed=1)
    ds = ShapesDataset(2, 64, 3, seed=4)
    images = np.stack([ds[i][0] for i in range(2)]).astype(np.float64)
    targets = [ds[i][1] for i in range(2)]
    logits, deltas = model.forward(images, keep_cache=False)
    return logits, deltas, model.anchors(64, 64), targets


def test_fl_star_settings_of_the_config_make_the_classification_loss():
    logits, deltas, anchors, targets = _batch()
    config = TrainConfig(loss="fl_star", gamma=4.0, beta=0.5)
    losses, _, _ = retinanet_loss(logits, deltas, anchors, targets, config)
    cls_t, _, positive, valid = assign_targets(anchors, targets, 3, 0.5, 0.4, True)
    star = focal_loss_star_forward(logits, cls_t, gamma=4.0, beta=0.5)[0]
    expected = float((star * valid[..., None]).sum() / max(1, positive.sum()))
    assert losses["classification"] == pytest.approx(expected, rel=1e-12)


def test_matcher_and_smooth_l1_settings_of_the_config_are_used():
    logits, deltas, anchors, targets = _batch()
    base = retinanet_loss(logits, deltas, anchors, targets, TrainConfig())[0]
    stricter = retinanet_loss(logits, deltas, anchors, targets, TrainConfig(fg_iou=0.7, bg_iou=0.5))[0]
    _, _, positive, _ = assign_targets(anchors, targets, 3, 0.7, 0.5, True)
    assert stricter["num_positive"] == int(positive.sum()) < base["num_positive"]
    l1 = retinanet_loss(logits, deltas, anchors, targets, TrainConfig(smooth_l1_beta=0.0))[0]
    assert l1["box_regression"] != base["box_regression"]
    # keywords change one setting of a config; unknown ones are refused
    same = retinanet_loss(logits, deltas, anchors, targets, TrainConfig(), fg_iou=0.7, bg_iou=0.5)[0]
    assert same == stricter
    with pytest.raises(ValueError, match=r"settings must be among the loss settings .*\['lr'\]"):
        retinanet_loss(logits, deltas, anchors, targets, lr=0.1)


def test_training_with_fl_star_lowers_the_loss(tmp_path):
    metrics = train(TrainConfig(**TINY, loss="fl_star", gamma=2.0, beta=1.0), tmp_path, log=lambda s: None)
    total = np.array(metrics["history"]["total"])
    assert np.isfinite(total).all()
    assert total[-10:].mean() < 0.8 * total[:10].mean()
    assert metrics["config"]["loss"] == "fl_star" and metrics["config"]["beta"] == 1.0


# ------------------------------------------------------------------ the dataset seam


def test_build_dataset_draws_the_splits_the_settings_describe():
    config = DataConfig(image_size=96, num_classes=2, max_objects=2, train_images=5, data_seed=3, eval_images=4,
                        eval_seed=9)
    train_set, held_out = build_dataset(config, "train"), build_dataset(config, "eval")
    assert (len(train_set), len(held_out)) == (5, 4)
    for ds, seed in ((train_set, 3), (held_out, 9)):
        reference = ShapesDataset(len(ds), 96, 2, seed=seed, max_objects=2)
        for i in range(len(ds)):
            np.testing.assert_array_equal(ds[i][0], reference[i][0])
            np.testing.assert_array_equal(ds[i][1]["boxes"], reference[i][1]["boxes"])
    assert held_out.class_names == ["circle", "square"]
    first = build_dataset(config, "eval", num_images=2)
    np.testing.assert_array_equal(first[1][0], held_out[1][0])
    with pytest.raises(ValueError, match="split must be one of 'train', 'eval', got 'test'"):
        build_dataset(config, "test")
    with pytest.raises(ValueError, match=r"image_size must be an int in \[64, 1024\], got 32"):
        build_dataset(DataConfig(image_size=32), "train")


def test_only_build_dataset_constructs_a_dataset_in_the_package():
    root = pathlib.Path(numpy_retinanet.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == \
                    "ShapesDataset":
                found.append(str(path.relative_to(root)))
    assert found == ["data/build.py"]


def test_evaluate_scores_the_run_on_its_own_held_out_images_and_names_its_classes(tmp_path):
    run = tmp_path / "run"
    metrics = train(TrainConfig(**dict(TINY, eval_images=6, eval_seed=77, max_objects=2, num_classes=2,
                                       iterations=10)), run, log=lambda s: None)
    env = dict(os.environ, MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, "-m", "numpy_retinanet", "evaluate", "--checkpoint",
                        str(run / "checkpoint.npz"), "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["num_images"], out["seed"]) == (6, 77)
    assert out["AP"] == metrics["AP"] and out["AP50"] == metrics["AP50"]
    assert list(out["per_class_AP"]) == ["circle", "square"]


def test_the_paper_values_are_the_defaults_everywhere_they_are_used():
    """One value per setting: LossConfig's defaults, the building blocks' defaults and the paper's."""
    import inspect

    from numpy_retinanet.detection.criterion import assign_targets
    from numpy_retinanet.detection.matcher import match_anchors
    from numpy_retinanet.nn.losses import focal_loss_star_forward, sigmoid_focal_loss_forward, smooth_l1_forward

    def default(fn, name):
        return inspect.signature(fn).parameters[name].default

    paper = dict(loss="focal", alpha=0.25, gamma=2.0, beta=1.0, smooth_l1_beta=0.11, fg_iou=0.5, bg_iou=0.4,
                 allow_low_quality=True)  # PAPER.md: §3.2, Table 1b, Table 3, §4, [Detectron]
    assert dataclasses.asdict(LossConfig()) == paper
    assert {k: getattr(TrainConfig(), k) for k in paper} == paper
    assert (default(sigmoid_focal_loss_forward, "alpha"), default(sigmoid_focal_loss_forward, "gamma")) == (0.25, 2.0)
    assert (default(focal_loss_star_forward, "gamma"), default(focal_loss_star_forward, "beta")) == (2.0, 1.0)
    assert default(smooth_l1_forward, "beta") == 0.11
    for fn in (match_anchors, assign_targets):
        assert (default(fn, "fg_iou"), default(fn, "bg_iou"), default(fn, "allow_low_quality")) == (0.5, 0.4, True)
