"""Training end to end at tiny size: the loss falls, every run file is written, resume is exact."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from numpy_retinanet.data.batching import get_batch
from numpy_retinanet.data.build import build_dataset
from numpy_retinanet.engine.checkpoint import load_checkpoint
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.engine.step import NonFiniteStep, compute_gradients
from numpy_retinanet.engine.trainer import TrainingDiverged, train
from numpy_retinanet.model.retinanet import RetinaNet

# Eight training images: the tiny model can fit them in a few seconds, so a falling
# loss is a reliable sign that forward, loss, backward and SGD work together.
TINY = dict(preset="tiny", image_size=64, iterations=60, batch_size=4, lr=0.05, warmup_steps=10,
            clip_grad_norm=5.0, eval_images=8, log_every=20, checkpoint_every=25, train_images=8)


def test_tiny_training_lowers_the_loss_and_writes_every_file(tmp_path):
    lines = []
    metrics = train(TrainConfig(**TINY), tmp_path, log=lines.append)
    for name in ("checkpoint.npz", "metrics.json", "training_curve.png", "detections.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["step"] == 60 and not on_disk["interrupted"]
    for key in ("AP", "AP50", "AP75", "peak_memory_mib", "train_seconds"):
        assert key in on_disk
    total = np.array(metrics["history"]["total"])
    assert len(total) == 60
    assert total[-15:].mean() < 0.7 * total[:15].mean()
    assert any(line.startswith("step     20/60") and "img/s" in line and "ETA" in line for line in lines)


def test_metrics_json_is_strict_json_with_null_for_a_class_absent_from_the_images_scored(tmp_path):
    config = TrainConfig(**dict(TINY, iterations=2, eval_images=2))
    train(config, tmp_path, log=lambda s: None)
    held_out = build_dataset(config, "eval")
    present = {k for i in range(2) for k in held_out.raw(i)[1]["labels"].tolist()}
    assert len(present) < config.num_classes  # the two images leave a class out: its AP is undefined

    def refuse(word):  # the bare words NaN and Infinity are not JSON: jq and JavaScript refuse the file
        raise ValueError(word)

    per_class = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=refuse)["per_class_AP"]
    assert [k for k, ap in enumerate(per_class) if ap is None] == sorted(set(range(config.num_classes)) - present)


@pytest.mark.parametrize("workers", [1, 2])  # 2: the batch split between processes (engine.parallel)
def test_interrupted_and_resumed_run_ends_with_the_same_parameters(tmp_path, workers):
    cfg = dict(TINY, iterations=30, eval_images=0, workers=workers)
    full = tmp_path / "full"
    part = tmp_path / "part"
    train(TrainConfig(**cfg), full, log=lambda s: None)
    stopped = train(TrainConfig(**cfg), part, log=lambda s: None, stop_after=12)
    assert stopped["interrupted"] and stopped["step"] == 12
    train(TrainConfig(), part, resume=True, log=lambda s: None)
    a, ia = load_checkpoint(full / "checkpoint.npz")
    b, ib = load_checkpoint(part / "checkpoint.npz")
    assert ia["step"] == ib["step"] == 30
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    for k in ia["optimizer"]:
        np.testing.assert_array_equal(ia["optimizer"][k], ib["optimizer"][k], err_msg=k)


@pytest.mark.fault("lost")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_diverging_run_stops_at_the_step_and_keeps_the_last_good_checkpoint(tmp_path, workers):
    # The lr ramps up from 0.025 x 2 = 0.05 by 0.05 a step during the warm-up: a few sane steps, then it blows up.
    cfg = TrainConfig(**dict(TINY, iterations=40, lr=2.0, warmup_steps=40, warmup_factor=0.025, checkpoint_every=1,
                             eval_images=0, workers=workers))
    with pytest.raises(TrainingDiverged) as caught:
        train(cfg, tmp_path, log=lambda s: None)
    message = str(caught.value)
    found = re.search(r"the (classification|box_regression) loss is (\S+).* at step (\d+)", message)
    assert found, message
    part, bad_step = found.group(1), int(found.group(3))
    model, info = load_checkpoint(tmp_path / "checkpoint.npz")
    assert bad_step > 2 and info["step"] == bad_step - 1 and f"step {bad_step - 1}) was kept" in message
    assert all(np.isfinite(v).all() for v in model.params.values())
    # The kept parameters give a sane loss on their own step's batch; the next step's did not.
    dataset = build_dataset(cfg, "train")
    images, targets = get_batch(dataset, bad_step - 1, cfg.batch_size, seed=cfg.data_seed)
    losses, _ = compute_gradients(model, images, targets, model.anchors(64, 64), cfg)
    first = info["extra"]["history"][part][0]
    assert losses[part] <= 10 * max(1.0, first) < float(found.group(2).rstrip(","))


@pytest.mark.parametrize("where", ["images", "a conv weight of the backbone", "a weight of the heads"])
def test_a_nan_in_the_step_is_found_without_the_ops_own_nan_scans(where):
    # Inside compute_gradients the ops do not scan their arguments for NaN (_checks.nan_scans_skipped):
    # the images are checked at the network's door and the loss checks the heads' outputs.
    cfg = TrainConfig(**TINY)
    model = RetinaNet(cfg.num_classes, preset=cfg.preset, seed=0)
    images, targets = get_batch(build_dataset(cfg, "train"), 0, cfg.batch_size, seed=cfg.data_seed)
    if where == "images":
        images[1, 2, 30, 40] = np.nan
    else:
        prefix = "backbone." if "backbone" in where else "box_head."
        name = next(k for k, p in model.params.items() if k.startswith(prefix) and p.ndim == 4)
        model.params[name][0, 0, 1, 1] = np.nan
    with pytest.raises(NonFiniteStep, match="NaN"):
        compute_gradients(model, images, targets, model.anchors(64, 64), cfg)
    assert model.num_pending() == 0  # nothing is left half-done for the next step


def test_a_training_step_computes_no_gradient_for_the_images(monkeypatch):
    # Only the parameters' gradients are used: the stem's conv skips its dx (a GEMM and col2im).
    from numpy_retinanet.nn import functional

    calls, backward = [], functional.conv2d_backward

    def recording(dout, cache, need_dx=True):
        calls.append((cache[2][1], need_dx))  # (input channels, need_dx)
        return backward(dout, cache, need_dx=need_dx)

    monkeypatch.setattr(functional, "conv2d_backward", recording)
    cfg = TrainConfig(**TINY)
    model = RetinaNet(cfg.num_classes, preset=cfg.preset, seed=0)
    images, targets = get_batch(build_dataset(cfg, "train"), 0, cfg.batch_size, seed=cfg.data_seed)
    compute_gradients(model, images, targets, model.anchors(64, 64), cfg)
    assert len(calls) > 10 and [c for c in calls if not c[1]] == [(3, False)]


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"batch_size must be an int in \[1, \d+\], got 0"):
        train(TrainConfig(**dict(TINY, batch_size=0)), tmp_path)
    with pytest.raises(FileNotFoundError, match="checkpoint.npz"):
        train(TrainConfig(), tmp_path / "nothing", resume=True)


def test_cli_train_evaluate_detect(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "numpy_retinanet"]
    r = subprocess.run(cmd + ["train", "--preset", "tiny", "--image-size", "64", "--iterations", "6",
                              "--batch-size", "2", "--eval-images", "4", "--log-every", "3", "--out", str(run)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "AP50" in r.stdout
    r = subprocess.run(cmd + ["evaluate", "--checkpoint", str(run / "checkpoint.npz"), "--num-images", "4",
                              "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= {"AP", "AP50", "AP75"} and out["num_images"] == 4
    from PIL import Image

    from numpy_retinanet.data.shapes import ShapesDataset

    picture = ShapesDataset(1, 64, seed=5).raw(0)[0]
    Image.fromarray(picture).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(picture).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(picture).save(tmp_path / "pic.jpg")
    (tmp_path / "notes.png").write_text("not an image")
    images = [str(tmp_path / n) for n in ("gray.png", "rgba.png", "pic.jpg")]
    r = subprocess.run(cmd + ["detect", "--checkpoint", str(run / "checkpoint.npz"), *images,
                              "--out", str(tmp_path / "out"), "--score-threshold", "0.0"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    for n in ("gray", "rgba", "pic"):
        assert (tmp_path / "out" / f"{n}_detections.png").stat().st_size > 0
    r = subprocess.run(cmd + ["detect", "--checkpoint", str(run / "checkpoint.npz"), str(tmp_path / "notes.png"),
                              "--out", str(tmp_path / "out2")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert "notes.png" in r.stderr and "not an image" in r.stderr
    r = subprocess.run(cmd + ["evaluate", "--checkpoint", str(tmp_path / "missing.npz")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "missing.npz" in r.stderr


def test_the_command_line_writes_lines_to_a_pipe_as_it_prints_them(tmp_path):
    # `train > log` or `ablate | tee`: each progress line must reach the file when it is printed. Python
    # buffers stdout in 8 KiB blocks when it is not a terminal (an ablation's first block came after hours),
    # so the command line switches stdout to line buffering; a timing-free check of that switch.
    code = ("import sys; from numpy_retinanet.cli import main; "
            f"main(['export', {str(tmp_path / 'missing.npz')!r}, {str(tmp_path / 'x.npz')!r}]); "
            "print('line buffering', sys.stdout.line_buffering)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().endswith("line buffering True"), (r.stdout, r.stderr)
