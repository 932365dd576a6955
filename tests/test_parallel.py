"""Data-parallel gradients (engine.parallel): the same numbers as one process, clean exits.

Exact resume and divergence with workers are in test_trainer.py (parametrized over workers)."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from numpy_retinanet import cli
from numpy_retinanet.data.batching import get_batch
from numpy_retinanet.data.shapes import ShapesDataset
from numpy_retinanet.engine.checkpoint import load_checkpoint
from numpy_retinanet.engine.config import CLI_CPU_WORKERS, TrainConfig, cli_workers
from numpy_retinanet.engine.parallel import FlatLayout, GradientWorkers, WorkerFailed
from numpy_retinanet.engine.step import compute_gradients, global_grad_norm
from numpy_retinanet.engine.trainer import train
from numpy_retinanet.model.retinanet import RetinaNet

TINY = dict(preset="tiny", image_size=64, iterations=8, batch_size=4, lr=0.05, warmup_steps=2,
            clip_grad_norm=5.0, eval_images=0, log_every=4, checkpoint_every=100, train_images=16)


def one_process(config, model, step):
    dataset = ShapesDataset(config.train_images, config.image_size, config.num_classes, seed=config.data_seed,
                            max_objects=config.max_objects)
    images, targets = get_batch(dataset, step, config.batch_size, seed=config.data_seed)
    losses, grads = compute_gradients(model, images, targets, model.anchors(config.image_size, config.image_size),
                                      config)
    return losses, {k: g.copy() for k, g in grads.items()}


def assert_same_step(a, b):
    (la, ga), (lb, gb) = a, b
    assert la["num_positive"] == lb["num_positive"]
    for key in ("classification", "box_regression", "total"):
        assert lb[key] == pytest.approx(la[key], rel=1e-5), key
    for k in ga:
        np.testing.assert_allclose(gb[k], ga[k], rtol=1e-4, atol=1e-6 * np.abs(ga[k]).max(), err_msg=k)


def test_shared_views_are_laid_out_as_the_parameters_are():
    # The workers compute in these views: a Conv2d weight's view must be stored (F, KH, KW, C)
    # as the weight is, or every conv call would copy its filter matrix again.
    params = RetinaNet(3, preset="tiny").params
    layout = FlatLayout(params)
    flat = np.arange(layout.size, dtype=np.float32)
    views = layout.views(flat)
    assert list(views) == list(params)
    transposed = [k for k, p in params.items() if not p.flags.c_contiguous]
    assert "cls_head.subnet.0.weight" in transposed
    for k, p in params.items():
        assert views[k].shape == p.shape and views[k].strides == p.strides, k
        assert np.shares_memory(views[k], flat)
    sizes = [p.size for p in params.values()]
    starts = np.cumsum([0] + sizes[:-1])
    for (k, v), o, n in zip(views.items(), starts, sizes):  # each view covers its own slice, once
        assert sorted(v.ravel().tolist()) == list(range(o, o + n)), k


def test_the_gradient_norm_sums_in_c_order_whatever_the_layout():
    # Summed in memory order, these squares round differently (the last bit): the norm, and the
    # clipping it decides, must not depend on how a gradient is stored.
    rng = np.random.default_rng(1)
    stored = (rng.standard_normal((8, 3, 3, 16)) * 10.0 ** rng.uniform(-3, 3, (8, 3, 3, 16))).astype(np.float32)
    g = stored.transpose(0, 3, 1, 2)  # (F, C, KH, KW), stored (F, KH, KW, C) like a Conv2d weight
    c = np.ascontiguousarray(g)
    assert math.sqrt((g.astype(np.float64) ** 2).sum()) != math.sqrt((c.astype(np.float64) ** 2).sum())
    assert global_grad_norm({"w": g}) == global_grad_norm({"w": c}) == math.sqrt((c.astype(np.float64) ** 2).sum())


@pytest.mark.parametrize("workers", [2, 3])  # 3: parts of 2, 1 and 1 images
def test_workers_give_the_whole_batch_loss_and_gradient(workers):
    config = TrainConfig(**dict(TINY, workers=workers))
    model = RetinaNet(config.num_classes, preset="tiny", seed=3)
    with GradientWorkers(config, model.params) as pool:
        # After step k a worker draws ahead its part of step k + 1: step 1 takes that part,
        # steps 5 and 4 come out of order and must not take the part drawn ahead.
        for step in (0, 1, 5, 4):
            expected = one_process(config, model, step)
            assert_same_step(expected, pool.gradients(step, model.params))


def test_a_part_without_objects_is_weighted_right():
    # One image per part; about one image in ten has no shape. Find a step with such an
    # image: its part's loss was divided by max(1, 0) = 1, the others' by their positives.
    config = TrainConfig(**dict(TINY, workers=4, train_images=64))
    model = RetinaNet(config.num_classes, preset="tiny", seed=3)
    dataset = ShapesDataset(config.train_images, config.image_size, seed=config.data_seed)
    steps = [s for s in range(60) if 0 < sum(len(t["boxes"]) == 0 for t in get_batch(dataset, s, 4)[1]) < 4]
    assert steps, "no step with an image without shapes among the first 60"
    with GradientWorkers(config, model.params) as pool:
        assert_same_step(one_process(config, model, steps[0]), pool.gradients(steps[0], model.params))


def test_training_with_two_workers_ends_where_one_process_ends(tmp_path):
    train(TrainConfig(**TINY), tmp_path / "one", log=lambda s: None)
    train(TrainConfig(**dict(TINY, workers=2)), tmp_path / "two", log=lambda s: None)
    a, _ = load_checkpoint(tmp_path / "one" / "checkpoint.npz")
    b, info = load_checkpoint(tmp_path / "two" / "checkpoint.npz")
    assert info["train_config"]["workers"] == 2
    for k in a.params:
        np.testing.assert_allclose(b.params[k], a.params[k], rtol=1e-3, atol=1e-5, err_msg=k)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    np.testing.assert_allclose(two["history"]["total"], one["history"]["total"], rtol=1e-4)
    assert (one["processes"], two["processes"]) == (1, 3)


@pytest.mark.fault("lost")
def test_a_dead_worker_is_reported_and_the_others_are_stopped():
    # More failure cases (stuck workers, signals, a killed main process) are in test_reliability_workers.py.
    config = TrainConfig(**dict(TINY, workers=2))
    model = RetinaNet(config.num_classes, preset="tiny")
    pool = GradientWorkers(config, model.params)
    procs = list(pool._procs)
    procs[1].kill()
    procs[1].join()
    with pytest.raises(WorkerFailed, match=r"^training worker 1 died \(killed by SIGKILL\)$") as failed:
        pool.gradients(0, model.params)
    assert (failed.value.worker, failed.value.exitcode) == (1, -signal.SIGKILL)
    assert [proc.exitcode for proc in procs] == [-signal.SIGKILL, -signal.SIGKILL]  # worker 0 stopped at once
    with pytest.raises(ValueError, match="closed"):  # its answers could no longer be matched to steps
        pool.gradients(0, model.params)
    pool.close()  # a second close does nothing


def test_bad_worker_counts_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"workers must be at most batch_size \(4\), got 5"):
        train(TrainConfig(**dict(TINY, workers=5)), tmp_path)  # more parts than images
    with pytest.raises(ValueError, match="workers=2 needs device 'cpu'"):
        TrainConfig(**dict(TINY, workers=2, device="gpu")).validate()
    with pytest.raises(ValueError, match="part must be"):
        get_batch(ShapesDataset(4, 64), 0, 2, part=(0, 3))


def test_the_command_line_spawns_no_more_workers_than_the_batch_has_images(tmp_path, capsys):
    assert [cli_workers("cpu", b) for b in (1, 2, 8)] == [1, CLI_CPU_WORKERS, CLI_CPU_WORKERS]
    assert cli_workers("gpu", 8) == 1
    # A batch of one image: one process (the default of two would be refused, one part per image).
    code = cli.main(["train", "--preset", "tiny", "--image-size", "64", "--batch-size", "1", "--iterations", "1",
                     "--eval-images", "0", "--train-images", "2", "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]["workers"] == 1


@pytest.mark.fault("small")
def test_ctrl_c_saves_a_checkpoint_and_stops_the_workers(tmp_path):
    run = tmp_path / "run"
    # A terminal's Ctrl-C signals the whole process group: the main process and its workers.
    proc = subprocess.Popen([sys.executable, "-m", "numpy_retinanet", "train", "--preset", "tiny", "--image-size",
                             "64", "--iterations", "100000", "--batch-size", "2", "--log-every", "5",
                             "--workers", "2", "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, MPLBACKEND="Agg"))
    try:
        for line in proc.stdout:
            if line.startswith("step "):
                break
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err  # 128 + SIGINT, after saving
    assert "stopped at step" in out and "--resume" in out
    model, info = load_checkpoint(run / "checkpoint.npz")
    assert 5 <= info["step"] < 100000
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["interrupted"] and metrics["step"] == info["step"]
    # No process is left behind in the group (multiprocessing's resource tracker, which
    # frees the shared memory, exits once the main process has gone: allow it a moment).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        left = subprocess.run(["ps", "-o", "pid,args", "-g", str(proc.pid)], capture_output=True, text=True).stdout
        pytest.fail(f"processes left in the group after exit:\n{left}")
