"""The main job's targets (issue 4): the default `numpy-retinanet train` on this 2-core CPU finishes
within 10 minutes, reaches AP50 >= 0.90 and AP >= 0.60 on 200 held-out images drawn with another
seed, and peaks at <= 2 GiB of memory.

A full default training run, so it is marked slow: `python -m pytest -m slow tests/test_targets.py`.
The time is the command's whole wall clock (start-up, training, evaluation, pictures), as a user sees it.
"""

import json
import subprocess
import sys
import time

import pytest

from numpy_retinanet.engine.config import TrainConfig

TIME_LIMIT_S = 600
MEMORY_LIMIT_MIB = 2048


@pytest.mark.slow
def test_default_training_meets_the_targets(tmp_path):
    run = tmp_path / "run"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "numpy_retinanet", "train", "--out", str(run)], check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    metrics = json.loads((run / "metrics.json").read_text())
    defaults = TrainConfig()
    assert metrics["config"]["eval_images"] == 200 and metrics["config"]["eval_seed"] != defaults.data_seed
    print(f"{seconds:.0f} s, AP {metrics['AP']:.3f}, AP50 {metrics['AP50']:.3f}, AP75 {metrics['AP75']:.3f}, "
          f"peak memory {metrics['peak_memory_mib']:.0f} MiB")
    assert metrics["AP50"] >= 0.90
    assert metrics["AP"] >= 0.60
    assert metrics["peak_memory_mib"] <= MEMORY_LIMIT_MIB
    assert seconds <= TIME_LIMIT_S
