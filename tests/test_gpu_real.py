"""The GPU path on real CuPy: the checks of ``test_gpu_path.py`` against the NumPy results.

Every test here is marked ``gpu`` and is skipped, with the reason, where CuPy is not
installed or sees no CUDA device. They also check that the strict stand-in used by
``test_gpu_path.py`` models CuPy faithfully: it offers only names CuPy has, and what it
refuses, CuPy refuses too.
"""

import json

import _strict_cupy
import numpy as np
import pytest

from numpy_retinanet import cli
from numpy_retinanet.backend import to_host
from numpy_retinanet.data.batching import get_batch
from numpy_retinanet.data.shapes import ShapesDataset
from numpy_retinanet.detection.criterion import retinanet_loss
from numpy_retinanet.engine.inference import predict_dataset
from numpy_retinanet.evaluation.coco import evaluate_detections
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.optim import SGD

pytestmark = pytest.mark.gpu


def assert_close(device_value, host_value, what, rtol=1e-6):
    # The GPU sums in another order than the CPU: entries that cancel to ~0 are compared
    # against the scale of the whole array rather than relatively.
    assert not isinstance(device_value, np.ndarray), f"{what} left the device"
    host_value = np.asarray(host_value)
    atol = 1e-9 * float(np.abs(host_value).max(initial=0.0))
    np.testing.assert_allclose(to_host(device_value), host_value, rtol=rtol, atol=atol, err_msg=what)


def test_stand_in_offers_only_what_cupy_has(cupy):
    names = [n for n in vars(_strict_cupy.cupy) if not n.startswith("__")]
    assert [n for n in names if not hasattr(cupy, n)] == []
    methods = [n for n in dir(_strict_cupy.ndarray) if not n.startswith("_")]
    methods += [n for n in vars(_strict_cupy.ndarray) if n.startswith("__") and callable(vars(_strict_cupy.ndarray)[n])
                and n not in ("__init__", "__array_function__")]
    assert [n for n in methods if not hasattr(cupy.ndarray, n)] == []


def test_cupy_refuses_what_the_stand_in_refuses(cupy):
    d = cupy.asarray(np.arange(6.0).reshape(2, 3))
    host = np.ones((2, 3))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(d)
    with pytest.raises(TypeError):
        d + host
    with pytest.raises(TypeError):
        d + np.array(1.0)
    with pytest.raises(TypeError):
        cupy.concatenate([d, host])
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray"):
        d[...] = host
    assert float((d * np.float64(2.0)).sum()) == 30.0  # NumPy scalars are accepted, as in the stand-in


def test_training_step_on_cupy_matches_numpy(cupy):
    images, targets = get_batch(ShapesDataset(4, 64, 3, seed=0), 0, 2, seed=0)
    images = images.astype(np.float64)
    host = RetinaNet(3, preset="tiny", dtype=np.float64, seed=1)
    dev = RetinaNet(3, preset="tiny", dtype=np.float64, seed=1).to(cupy)
    results = {}
    for m, x in ((host, images), (dev, cupy.asarray(images))):
        logits, deltas = m.forward(x)
        losses, dlogits, ddeltas = retinanet_loss(logits, deltas, m.anchors(64, 64), targets)
        m.zero_grad()
        dimages = m.backward(dlogits, ddeltas)
        SGD(m.params, lr=0.01).step(m.grads)
        results[m] = logits, deltas, losses, dimages
    for what, d, h in zip(("logits", "deltas"), results[dev], results[host]):
        assert_close(d, h, what)
    assert results[dev][2]["num_positive"] == results[host][2]["num_positive"] > 0
    assert results[dev][2]["total"] == pytest.approx(results[host][2]["total"], rel=1e-6)
    assert_close(results[dev][3], results[host][3], "image gradient")
    for k in host.params:
        assert_close(dev.grads[k], host.grads[k], f"grad {k}")
        assert_close(dev.params[k], host.params[k], f"param {k}")


def test_detection_and_evaluation_on_cupy_match_numpy(cupy):
    dataset = ShapesDataset(4, 64, 3, seed=3)
    host = RetinaNet(3, preset="tiny", dtype=np.float64, seed=2)
    dev = RetinaNet(3, preset="tiny", dtype=np.float64, seed=2).to(cupy)
    kw = dict(batch_size=2, score_threshold=0.005, max_detections=20)
    dets, _ = predict_dataset(host, dataset, **kw)
    d_dets, _ = predict_dataset(dev, dataset, xp=cupy, **kw)
    assert sum(len(d["scores"]) for d in dets) > 0
    for g, w in zip(d_dets, dets):
        assert all(type(g[k]) is np.ndarray for k in ("boxes", "scores", "labels"))
        np.testing.assert_array_equal(g["labels"], w["labels"])
        np.testing.assert_allclose(g["scores"], w["scores"], rtol=1e-6)
        np.testing.assert_allclose(g["boxes"], w["boxes"], rtol=1e-6, atol=1e-6)
    truth = [{"boxes": d["boxes"][::3], "labels": d["labels"][::3]} for d in dets]
    want, got = evaluate_detections(dets, truth, 3), evaluate_detections(d_dets, truth, 3)
    assert want["AP"] > 0
    for key in ("AP", "AP50", "AP75"):
        assert got[key] == pytest.approx(want[key], rel=1e-6), key


def test_cli_train_on_cupy_follows_the_cpu_run(cupy, tmp_path, capsys):
    args = ["train", "--preset", "tiny", "--image-size", "64", "--iterations", "3", "--batch-size", "2",
            "--eval-images", "2", "--log-every", "3"]
    for device in ("cpu", "gpu"):
        assert cli.main([*args, "--out", str(tmp_path / device), "--device", device]) == 0
    runs = {d: json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("cpu", "gpu")}
    assert runs["gpu"]["config"]["device"] == "gpu"
    # float32 training: the two devices round differently, by about 1e-7 per operation.
    np.testing.assert_allclose(runs["gpu"]["history"]["total"], runs["cpu"]["history"]["total"], rtol=1e-4)
