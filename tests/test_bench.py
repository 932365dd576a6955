"""`numpy-retinanet bench model` and `bench` (all) run and report every part (no timing is asserted: speed targets live in the benchmark)."""

import importlib.util
import json
import subprocess
import sys

import pytest


def _bench_json(*args):
    """``numpy-retinanet bench ARGS`` on the tiny preset, 2 images of 64 px, one repeat; its JSON output."""
    r = subprocess.run([sys.executable, "-m", "numpy_retinanet", "bench", *args, "--preset", "tiny",
                        "--image-size", "64", "--batch-size", "2", "--repeats", "1", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_bench_model_reports_every_part():
    out = _bench_json("model")
    assert set(out["ms"]) == {"forward", "loss", "backward", "sgd"}
    assert all(v > 0 for v in out["ms"].values())
    assert out["step_ms"] >= max(out["ms"].values())
    assert out["peak_step_memory_mib"] > 0 and out["batch"] == 2 and out["image_size"] == 64


def test_bench_all_without_torch_reports_every_op_and_the_step():
    out = _bench_json("all", "--no-torch")
    names = [o["op"] for o in out["ops"]]
    for part in ("backbone", "FPN", "heads", "loss", "post-processing", "bench conv 128->128 3x3 s2"):
        assert any(n.startswith(part) for n in names), (part, names)
    assert all(o["numpy_ms"] > 0 and "torch_ms" not in o for o in out["ops"])
    assert set(out["step"]) == {"numpy", "train"}
    assert out["step"]["numpy"]["step"] >= out["step"]["numpy"]["forward"] > 0
    # The step as `train` takes it: the command line's worker processes, one image each here.
    train = out["step"]["train"]
    assert train["workers"] == 2 and train["step"] > 0
    assert train["images_per_s"] == pytest.approx(2 / (train["step"] / 1e3), rel=1e-2)
    assert out["peak_step_memory_mib"] > 0
    # Every conv, and only a conv, has the time of its GEMMs alone; the step's floor is their sum
    # over the step's convs (the bench convs are not in the step), each as often as the step calls it.
    convs = [o for o in out["ops"] if o["op"].startswith(("conv ", "bench conv "))]
    assert len(convs) > len(names) // 2
    assert all(o["gemm_ms"] > 0 for o in convs)
    assert not any("gemm_ms" in o for o in out["ops"] if o not in convs)
    floor = sum(o["gemm_ms"] * o["count"] for o in convs if o["op"].startswith("conv "))
    assert out["step"]["numpy"]["conv_gemms"] == pytest.approx(floor, abs=1e-3)


def test_bench_on_gpu_without_cupy_is_a_clear_error():
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here: the missing-CuPy error cannot be exercised")
    r = subprocess.run([sys.executable, "-m", "numpy_retinanet", "bench", "model", "--device", "gpu",
                        "--preset", "tiny", "--repeats", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "gpu" in r.stderr and "Traceback" not in r.stderr
