"""The detector that ships with the package: what it is, that it works, and that the README's
command reproduces it bit for bit (slow: a full default training run).

The AP thresholds are the issue's acceptance (AP >= 0.68, AP50 >= 0.92 on the held-out images).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL, export_weights, load_checkpoint, read_checkpoint
from numpy_retinanet.engine.config import CLI_CPU_WORKERS, TrainConfig
from numpy_retinanet.engine.trainer import train

CLI = [sys.executable, "-m", "numpy_retinanet"]
ENV = dict(os.environ, MPLBACKEND="Agg")


def test_the_shipped_model_is_the_default_recipe_in_float32_without_optimizer_state():
    meta, params, optim = read_checkpoint(SHIPPED_MODEL)
    assert optim == {} and not meta["has_optimizer"]
    assert all(p.dtype == np.float32 for p in params.values())
    assert sum(p.size for p in params.values()) == 728_431
    assert os.path.getsize(SHIPPED_MODEL) < 3.5e6  # "a few MB": 2.9 MB of float32 parameters, compressed
    # the run's settings are the command line's defaults: TrainConfig's, with its worker processes
    # (`schedule` came later: a config saved without it reads as the step schedule it was trained with;
    # so did the coco dataset's files and split, which a shapes run reads as their empty defaults).
    expected = TrainConfig(workers=CLI_CPU_WORKERS)
    assert TrainConfig.from_dict(meta["train_config"]) == expected
    assert set(meta["train_config"]) == set(expected.to_dict()) - {"schedule", "data", "annotations",
                                                                   "val_annotations", "val_fraction"}
    assert meta["step"] == expected.iterations == len(meta["extra"]["history"]["total"])
    model, info = load_checkpoint(SHIPPED_MODEL)
    assert info["class_names"] == ["circle", "square", "triangle"] and model.preset == "default"


def test_evaluate_and_detect_use_the_shipped_model_by_default(tmp_path):
    r = subprocess.run(CLI + ["evaluate", "--json"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["checkpoint"] == SHIPPED_MODEL and (out["num_images"], out["seed"]) == (200, 1000)
    assert out["AP"] >= 0.68 and out["AP50"] >= 0.92, out
    from PIL import Image

    from numpy_retinanet.data.build import DataConfig, build_dataset

    held_out = build_dataset(DataConfig(), "eval", num_images=1)
    Image.fromarray(held_out.raw(0)[0]).save(tmp_path / "shapes.png")
    r = subprocess.run(CLI + ["detect", str(tmp_path / "shapes.png"), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    names = {held_out.class_names[k] for k in held_out.raw(0)[1]["labels"]}
    assert all(name in r.stdout for name in names), (names, r.stdout)
    assert (tmp_path / "out" / "shapes_detections.png").stat().st_size > 0


def test_export_keeps_the_parameters_and_the_meta_and_drops_the_optimizer(tmp_path):
    config = TrainConfig(preset="tiny", image_size=64, iterations=3, batch_size=2, eval_images=0, train_images=4)
    train(config, tmp_path / "run", log=lambda s: None)
    out = export_weights(tmp_path / "run" / "checkpoint.npz", tmp_path / "weights.npz")
    model, info = load_checkpoint(out)
    full, full_info = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert info["optimizer"] is None and full_info["optimizer"]
    for name, value in full.params.items():
        np.testing.assert_array_equal(model.params[name], value, err_msg=name)
    assert info["train_config"] == full_info["train_config"] and info["class_names"] == full_info["class_names"]
    assert os.path.getsize(out) < os.path.getsize(tmp_path / "run" / "checkpoint.npz")
    r = subprocess.run(CLI + ["export", str(tmp_path / "missing.npz"), str(tmp_path / "x.npz")],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 2 and "missing.npz" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_the_readme_command_reproduces_the_shipped_model_bit_for_bit(tmp_path):
    subprocess.run(CLI + ["train", "--out", str(tmp_path / "run")], check=True, stdout=subprocess.DEVNULL, env=ENV)
    subprocess.run(CLI + ["export", str(tmp_path / "run" / "checkpoint.npz"), str(tmp_path / "shipped.npz")],
                   check=True, stdout=subprocess.DEVNULL, env=ENV)
    meta, params, _ = read_checkpoint(tmp_path / "shipped.npz")
    shipped_meta, shipped, _ = read_checkpoint(SHIPPED_MODEL)
    assert params.keys() == shipped.keys()
    for name in shipped:
        np.testing.assert_array_equal(params[name], shipped[name], err_msg=name)
    assert meta["extra"]["history"] == shipped_meta["extra"]["history"]
