"""The GPU code path, tested without a GPU: everything runs under a strict stand-in for CuPy.

``_strict_cupy`` wraps NumPy arrays in a "device" array that refuses what CuPy refuses
(implicit conversion to NumPy, host arrays as operands, NumPy functions on device arrays).
A training step, inference with post-processing and evaluation, and the trainer and the
command line with ``--device gpu`` run under it and must give the NumPy results; any place
that would fail on a real GPU with "Implicit conversion to a NumPy array is not allowed"
fails here. Real-CuPy versions of these checks are in ``test_gpu_real.py``.
"""

import json
import subprocess
import sys
import types

import _strict_cupy
import numpy as np
import pytest

from numpy_retinanet import backend, cli
from numpy_retinanet.backend import GPUUnavailableError, array_module, get_module, to_host
from numpy_retinanet.data.batching import get_batch
from numpy_retinanet.data.shapes import ShapesDataset, mask_to_box
from numpy_retinanet.detection.criterion import retinanet_loss
from numpy_retinanet.engine import trainer
from numpy_retinanet.engine.checkpoint import load_checkpoint, save_checkpoint
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.engine.inference import predict_dataset
from numpy_retinanet.evaluation.coco import evaluate_detections
from numpy_retinanet.gradcheck import all_passed, check_gradients, numerical_gradient
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn import functional as F
from numpy_retinanet.nn.optim import SGD

DeviceArray = _strict_cupy.ndarray
RTOL = 1e-6


@pytest.fixture
def xp(monkeypatch):
    """The stand-in module, registered as the module of its arrays; "gpu" resolves to it."""
    monkeypatch.setattr(backend, "_MODULES", dict(backend._MODULES))
    backend.register_array_module(DeviceArray, _strict_cupy.cupy)
    monkeypatch.setattr(backend, "get_gpu_module", lambda: _strict_cupy.cupy)
    return _strict_cupy.cupy


def assert_close(device_value, host_value, what):
    assert isinstance(device_value, DeviceArray), f"{what} left the device: {type(device_value)}"
    np.testing.assert_allclose(to_host(device_value), host_value, rtol=RTOL, atol=1e-12, err_msg=what)


# ---------------------------------------------------------------------------------------
# The stand-in is as strict as CuPy where host and device meet
# ---------------------------------------------------------------------------------------


def test_stand_in_refuses_what_cupy_refuses(xp):
    d = xp.asarray(np.arange(6.0).reshape(2, 3))  # host -> device copy: allowed, as in CuPy
    host = np.ones((2, 3))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(d)
    with pytest.raises(TypeError, match="Unsupported type"):
        d + host
    with pytest.raises(TypeError, match="Unsupported type"):
        host * d
    with pytest.raises(TypeError, match="Unsupported type"):
        d + np.array(1.0)  # even a 0-d host array (CuPy takes only scalars)
    with pytest.raises(TypeError):
        xp.concatenate([d, host])
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray"):
        d[...] = host
    with pytest.raises(TypeError):
        np.exp(d)
    with pytest.raises(TypeError, match="numpy.sum called on a device array"):
        np.sum(d)
    with pytest.raises(IndexError):  # stricter than CuPy: no implicit host -> device index copy
        d[np.array([0, 1])]
    # What CuPy allows: scalars (Python and NumPy), synchronizing conversions, explicit copies.
    assert_close(d * np.float64(2.0) + 1, np.arange(6.0).reshape(2, 3) * 2 + 1, "scalar arithmetic")
    assert float(d.sum()) == 15.0 and isinstance(d.sum(), DeviceArray)
    assert isinstance(d[0, 1], DeviceArray) and int(d[0, 1]) == 1
    np.testing.assert_array_equal(xp.asnumpy(d), np.arange(6.0).reshape(2, 3))


def test_a_host_only_helper_fails_on_a_device_array(xp):
    # shapes.mask_to_box is host-only (np.flatnonzero): fed a device array it must fail
    # loudly, which is what the stand-in exists to catch.
    with pytest.raises(TypeError, match="numpy.flatnonzero called on a device array"):
        mask_to_box(xp.asarray(np.ones((3, 3), dtype=bool)))


def test_mixing_host_and_device_arrays_is_refused(xp):
    with pytest.raises(ValueError, match="different devices"):
        array_module(np.zeros(2), xp.zeros(2))
    assert array_module(xp.zeros(2), None, 3.0) is xp


def test_model_to_moves_every_parameter_and_gradient_and_back(xp):
    model = RetinaNet(3, preset="tiny", dtype=np.float64)
    before = model.state_dict()
    model.to(xp)
    assert all(isinstance(p, DeviceArray) for p in model.params.values())
    assert all(isinstance(g, DeviceArray) for g in model.grads.values())
    saved = model.state_dict()  # saving is host-only: plain NumPy copies
    assert all(type(v) is np.ndarray for v in saved.values())
    model.to(np)
    for k, v in model.params.items():
        assert type(v) is np.ndarray
        np.testing.assert_array_equal(v, before[k], err_msg=k)
        np.testing.assert_array_equal(saved[k], before[k], err_msg=k)


# ---------------------------------------------------------------------------------------
# Training and inference give the NumPy results
# ---------------------------------------------------------------------------------------


def _batch(dtype, n=2):
    images, targets = get_batch(ShapesDataset(4, 64, 3, seed=0), 0, n, seed=0)
    return images.astype(dtype), targets


def test_training_steps_match_numpy(xp):
    images, targets = _batch(np.float64)
    host = RetinaNet(3, preset="tiny", dtype=np.float64, seed=1)
    dev = RetinaNet(3, preset="tiny", dtype=np.float64, seed=1).to(xp)
    opts = {m: SGD(m.params, lr=0.01, momentum=0.9, weight_decay=1e-4) for m in (host, dev)}
    anchors = host.anchors(64, 64)
    assert_close(dev.anchors(64, 64), anchors, "anchors")
    for step in range(2):  # two steps, so the momentum buffers take part
        logits, deltas = host.forward(images)
        losses, dlogits, ddeltas = retinanet_loss(logits, deltas, anchors, targets)
        d_logits, d_deltas = dev.forward(xp.asarray(images))
        d_losses, d_dlogits, d_ddeltas = retinanet_loss(d_logits, d_deltas, dev.anchors(64, 64), targets)
        assert_close(d_logits, logits, "logits")
        assert_close(d_deltas, deltas, "deltas")
        assert d_losses["num_positive"] == losses["num_positive"] > 0
        for part in ("classification", "box_regression", "total"):
            assert d_losses[part] == pytest.approx(losses[part], rel=RTOL), part
        assert_close(d_dlogits, dlogits, "dlogits")
        assert_close(d_ddeltas, ddeltas, "ddeltas")
        dimages = {}
        for m, dl, dd in ((host, dlogits, ddeltas), (dev, d_dlogits, d_ddeltas)):
            m.zero_grad()
            dimages[m] = m.backward(dl, dd)
            opts[m].step(m.grads)
        assert_close(dimages[dev], dimages[host], "image gradient")
        for k, g in host.grads.items():
            assert_close(dev.grads[k], g, f"step {step} grad {k}")
        for k, p in host.params.items():
            assert_close(dev.params[k], p, f"step {step} param {k}")


def _same_detections(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for key in ("boxes", "scores", "labels"):
            assert type(g[key]) is np.ndarray, f"post-processing must hand back host arrays ({key})"
            assert g[key].dtype == w[key].dtype, key
        np.testing.assert_array_equal(g["labels"], w["labels"])
        np.testing.assert_allclose(g["scores"], w["scores"], rtol=RTOL)
        np.testing.assert_allclose(g["boxes"], w["boxes"], rtol=RTOL)


def test_detection_and_evaluation_match_numpy(xp):
    dataset = ShapesDataset(4, 64, 3, seed=3)
    host = RetinaNet(3, preset="tiny", seed=2)  # float32: the inference dtype
    dev = RetinaNet(3, preset="tiny", seed=2).to(xp)
    # An untrained model scores every anchor near the prior 0.01: a threshold below it
    # yields detections to compare (the default 0.05 would yield none).
    kw = dict(batch_size=2, score_threshold=0.005, max_detections=20)
    dets, gts = predict_dataset(host, dataset, **kw)
    d_dets, d_gts = predict_dataset(dev, dataset, xp=xp, **kw)
    assert sum(len(d["scores"]) for d in dets) > 0
    _same_detections(d_dets, dets)
    # Ground truth made of some of the detections themselves, so AP is neither 0 nor nan
    # and any difference in the device's boxes or scores would move it.
    truth = [{"boxes": d["boxes"][::3], "labels": d["labels"][::3]} for d in dets]
    want = evaluate_detections(dets, truth, 3)
    got = evaluate_detections(d_dets, truth, 3)
    assert 0 < want["AP"] <= 1
    for key in ("AP", "AP50", "AP75"):
        assert got[key] == pytest.approx(want[key], rel=RTOL), key
    np.testing.assert_allclose(got["per_class_AP"], want["per_class_AP"], rtol=RTOL)
    for g, w in zip(d_gts, gts):
        np.testing.assert_array_equal(g["boxes"], w["boxes"])


def test_gradient_check_runs_on_device_arrays(xp):
    rng = np.random.default_rng(0)
    host = {"x": rng.standard_normal((1, 2, 5, 5)), "w": rng.standard_normal((3, 2, 3, 3)),
            "b": rng.standard_normal(3)}
    dout = rng.standard_normal((1, 3, 3, 3))
    dev = {k: xp.asarray(v) for k, v in host.items()}
    d_dout = xp.asarray(dout)

    def loss(a, d):
        return lambda: float((F.conv2d_forward(a["x"], a["w"], a["b"], stride=2, padding=1)[0] * d).sum())

    _, cache = F.conv2d_forward(dev["x"], dev["w"], dev["b"], stride=2, padding=1)
    analytic = dict(zip(("x", "w", "b"), F.conv2d_backward(d_dout, cache)))
    rows = check_gradients(loss(dev, d_dout), dev, analytic, verbose=False)
    assert all_passed(rows) and len(rows) == 3
    assert_close(numerical_gradient(loss(dev, d_dout), dev["w"]), numerical_gradient(loss(host, dout), host["w"]),
                 "numerical gradient")
    assert_close(dev["x"], host["x"], "input restored after the check")


def test_small_resnet50_forward_and_backward_match_numpy(xp):
    # the max-pool and the frozen batch norms of model/resnet50.py on the device
    from numpy_retinanet.model.resnet50 import ResNet50

    host = ResNet50(rng=np.random.default_rng(0), dtype=np.float64, depths=(1, 1, 1, 1), widths=(2, 2, 3, 4))
    device = ResNet50(rng=np.random.default_rng(0), dtype=np.float64, depths=(1, 1, 1, 1), widths=(2, 2, 3, 4)).to(xp)
    x = np.random.default_rng(1).standard_normal((2, 3, 21, 17))
    outs, d_outs = host.forward(x), device.forward(xp.asarray(x))
    for o, d in zip(outs, d_outs):
        assert_close(d, o, "C3..C5")
    douts = [np.ones_like(o) for o in outs]
    assert_close(device.backward(*[xp.asarray(d) for d in douts]), host.backward(*douts), "dimage")
    assert_close(device.grads["layer1.0.conv2.weight"], host.grads["layer1.0.conv2.weight"], "a conv's gradient")


# ---------------------------------------------------------------------------------------
# The trainer and the command line with --device gpu
# ---------------------------------------------------------------------------------------

TINY = dict(preset="tiny", image_size=64, iterations=4, batch_size=2, lr=0.02, warmup_steps=2,
            eval_images=2, log_every=2, checkpoint_every=100, train_images=4)


def test_resumed_on_the_gpu_a_cpu_run_ends_where_a_cpu_run_ends(xp, tmp_path, monkeypatch):
    seen = []
    step = trainer.compute_gradients

    def spy(model, images, *args):
        seen.append((type(images), {type(p) for p in model.params.values()}))
        return step(model, images, *args)

    cfg = TrainConfig(**TINY)
    trainer.train(cfg, tmp_path / "cpu", log=lambda s: None)
    trainer.train(cfg, tmp_path / "mixed", log=lambda s: None, stop_after=2)
    monkeypatch.setattr(trainer, "compute_gradients", spy)
    assert cli.main(["train", "--resume", str(tmp_path / "mixed"), "--device", "gpu"]) == 0
    assert seen == [(DeviceArray, {DeviceArray})] * 2  # both resumed steps ran on the device
    metrics = json.loads((tmp_path / "mixed" / "metrics.json").read_text())
    assert metrics["config"]["device"] == "gpu" and metrics["step"] == 4
    a, info_a = load_checkpoint(tmp_path / "cpu" / "checkpoint.npz")
    b, info_b = load_checkpoint(tmp_path / "mixed" / "checkpoint.npz")
    for k in a.params:
        np.testing.assert_allclose(b.params[k], a.params[k], rtol=RTOL, atol=1e-12, err_msg=k)
    for k in info_a["optimizer"]:
        np.testing.assert_allclose(info_b["optimizer"][k], info_a["optimizer"][k], rtol=RTOL, atol=1e-12,
                                   err_msg=k)


def test_cli_train_evaluate_detect_on_the_gpu_match_the_cpu(xp, tmp_path, capsys):
    args = ["--preset", "tiny", "--image-size", "64", "--iterations", "3", "--batch-size", "2",
            "--eval-images", "2", "--log-every", "3"]
    for device in ("cpu", "gpu"):
        assert cli.main(["train", *args, "--out", str(tmp_path / device), "--device", device]) == 0
    capsys.readouterr()
    runs = {d: json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("cpu", "gpu")}
    assert runs["gpu"]["config"]["device"] == "gpu"
    np.testing.assert_allclose(runs["gpu"]["history"]["total"], runs["cpu"]["history"]["total"], rtol=RTOL)

    # Three steps leave every score near the prior 0.01, below detect's 0.05 threshold: raise
    # the classifier's last bias so that evaluate and detect have detections to compare.
    model, info = load_checkpoint(tmp_path / "gpu" / "checkpoint.npz")
    last_bias = [k for k in model.params if k.startswith("cls_head.") and k.endswith(".bias")][-1]
    model.params[last_bias][...] = 1.0
    ckpt = save_checkpoint(tmp_path / "biased.npz", model, step=info["step"], train_config=info["train_config"])
    evaluated = {}
    for device in ("cpu", "gpu"):
        assert cli.main(["evaluate", "--checkpoint", ckpt, "--num-images", "3", "--json", "--device", device]) == 0
        evaluated[device] = json.loads(capsys.readouterr().out)
    assert evaluated["cpu"]["AP50"] > 0
    for key in ("AP", "AP50", "AP75"):
        assert evaluated["gpu"][key] == pytest.approx(evaluated["cpu"][key], rel=RTOL), key
    # null: a class with no object among the 3 images, on both devices alike.
    cpu_aps, gpu_aps = evaluated["cpu"]["per_class_AP"], evaluated["gpu"]["per_class_AP"]
    assert [name for name, ap in gpu_aps.items() if ap is None] == [name for name, ap in cpu_aps.items() if ap is None]
    np.testing.assert_allclose([ap for ap in gpu_aps.values() if ap is not None],
                               [ap for ap in cpu_aps.values() if ap is not None], rtol=RTOL)

    picture = ShapesDataset(1, 64, seed=5).raw(0)[0]
    from PIL import Image

    Image.fromarray(picture).save(tmp_path / "pic.png")
    printed = {}
    for device in ("cpu", "gpu"):
        out = tmp_path / f"drawn_{device}"
        assert cli.main(["detect", "--checkpoint", ckpt, str(tmp_path / "pic.png"), "--out", str(out),
                         "--score-threshold", "0.0", "--device", device]) == 0
        printed[device] = capsys.readouterr().out.replace(str(out), "OUT")
        assert (out / "pic_detections.png").stat().st_size > 0
    assert "nothing" not in printed["cpu"]
    assert printed["gpu"] == printed["cpu"]


# ---------------------------------------------------------------------------------------
# Asking for the GPU where there is none
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["train", "--preset", "tiny", "--iterations", "1"],
    ["evaluate", "--checkpoint", "never-read.npz"],
    ["detect", "--checkpoint", "never-read.npz", "x.png", "--out", "never-written"],
])
def test_gpu_without_cupy_is_a_clear_error(command, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GPUUnavailableError, match=r"CuPy is not installed; install the gpu extra: .*\[gpu\]"):
        get_module("gpu")
    assert cli.main([*command, "--device", "gpu"]) == 2
    err = capsys.readouterr().err
    assert f"numpy-retinanet {command[0]}: error: the GPU was asked for but CuPy is not installed" in err
    assert "pip install" in err and "[gpu]" in err
    assert list(tmp_path.iterdir()) == []  # it stopped before writing anything


@pytest.mark.parametrize("count, message", [(0, "found no CUDA device"),
                                            (RuntimeError("cudaErrorNoDevice"), "cudaErrorNoDevice")])
def test_gpu_without_a_device_is_a_clear_error(count, message, monkeypatch):
    def get_device_count():
        if isinstance(count, Exception):
            raise count
        return count

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(
        getDeviceCount=get_device_count)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(GPUUnavailableError, match=message) as e:
        get_module("gpu")
    assert "[gpu]" in str(e.value) and "--device cpu" in str(e.value)


def test_importing_the_package_never_imports_cupy():
    # A meta-path finder records (and refuses) every attempt to import cupy while each
    # module of the package is imported; asking for the GPU must then fail with the hint.
    code = """
import importlib, importlib.util, pkgutil, sys

class Blocker:
    tried = []
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "cupy":
            Blocker.tried.append(name)
            raise ImportError("cupy is blocked in this test")
        return None

sys.meta_path.insert(0, Blocker())
import numpy_retinanet
# torch_mirror is the one module that needs an optional extra (torch, for the benchmark).
optional = set() if importlib.util.find_spec("torch") else {"numpy_retinanet.tools.torch_mirror"}
names = [m.name for m in pkgutil.walk_packages(numpy_retinanet.__path__, "numpy_retinanet.")
         if not m.name.endswith("__main__") and m.name not in optional]
for name in names:
    importlib.import_module(name)
assert len(names) > 20, names
assert Blocker.tried == [], Blocker.tried
from numpy_retinanet.backend import GPUUnavailableError, get_module
try:
    get_module("gpu")
except GPUUnavailableError as e:
    assert "[gpu]" in str(e) and Blocker.tried == ["cupy"], (e, Blocker.tried)
else:
    raise AssertionError("get_module('gpu') did not fail without CuPy")
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={"MPLBACKEND": "Agg", "PATH": ""})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_crowd_boxes_in_the_loss_match_numpy(xp):
    images, targets = _batch(np.float64)
    targets = [dict(t, iscrowd=np.arange(len(t["boxes"])) % 2 == 0) for t in targets]  # every other box a crowd
    assert any(t["iscrowd"].any() for t in targets) and any((~t["iscrowd"]).any() for t in targets)
    anchors = RetinaNet(3, preset="tiny", dtype=np.float64).anchors(64, 64)
    rng = np.random.default_rng(0)
    logits, deltas = rng.standard_normal((len(targets), len(anchors), 3)), rng.standard_normal((len(targets), len(anchors), 4))
    losses, dlogits, ddeltas = retinanet_loss(logits, deltas, anchors, targets)
    d_losses, d_dlogits, d_ddeltas = retinanet_loss(xp.asarray(logits), xp.asarray(deltas), xp.asarray(anchors),
                                                    targets)
    assert d_losses["num_positive"] == losses["num_positive"]
    assert d_losses["total"] == pytest.approx(losses["total"], rel=RTOL)
    assert_close(d_dlogits, dlogits, "dlogits")
    assert_close(d_ddeltas, ddeltas, "ddeltas")
