"""`numpy-retinanet bench model` runs and reports every part (no timing is asserted: speed targets live in the benchmark)."""

import importlib.util
import json
import subprocess
import sys

import pytest


def test_bench_model_reports_every_part():
    r = subprocess.run([sys.executable, "-m", "numpy_retinanet", "bench", "model", "--preset", "tiny",
                        "--image-size", "64", "--batch-size", "2", "--repeats", "1", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["ms"]) == {"forward", "loss", "backward", "sgd"}
    assert all(v > 0 for v in out["ms"].values())
    assert out["step_ms"] >= max(out["ms"].values())
    assert out["peak_step_memory_mib"] > 0 and out["batch"] == 2 and out["image_size"] == 64


def test_bench_on_gpu_without_cupy_is_a_clear_error():
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here: the missing-CuPy error cannot be exercised")
    r = subprocess.run([sys.executable, "-m", "numpy_retinanet", "bench", "model", "--device", "gpu",
                        "--preset", "tiny", "--repeats", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "gpu" in r.stderr and "Traceback" not in r.stderr
