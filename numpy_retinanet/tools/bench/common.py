"""What every benchmark shares: timers that wait for the GPU, a training step split into parts,
and the peak memory of a call."""

from __future__ import annotations

import time

import numpy as np

from numpy_retinanet.data.batching import get_batch
from numpy_retinanet.data.build import DataConfig, build_dataset
from numpy_retinanet.engine.config import TrainConfig

# Images per step in every benchmark: the default training batch.
BATCH = TrainConfig.batch_size


def timed(fn):
    """Seconds one call of ``fn()`` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0

def synchronize(xp):
    """Wait for queued GPU work, so a timer measures the work and not its launch."""
    if xp is not np:
        xp.cuda.Stream.null.synchronize()


STEP_PARTS = ("forward", "loss", "backward", "sgd")


def step_timer(model, images, targets, anchors, xp=np):
    """A function running one training step of ``model`` and returning its part times.

    The step is forward, loss (``retinanet_loss``), backward and an SGD update, on
    the same batch every call; the returned array holds the seconds of each part,
    in the order of ``STEP_PARTS``. On a GPU it waits for the queued work after
    each part, so the timer measures the work and not its launch. The ops skip their
    NaN scans, as they do in a training step (``engine.step.compute_gradients``).
    """
    from numpy_retinanet._checks import nan_scans_skipped
    from numpy_retinanet.detection.criterion import retinanet_loss
    from numpy_retinanet.nn.optim import SGD

    opt = SGD(model.params, lr=0.001)

    @nan_scans_skipped()
    def step():
        t = [time.perf_counter()]
        logits, deltas = model.forward(images)
        synchronize(xp)
        t.append(time.perf_counter())
        _, dlogits, ddeltas = retinanet_loss(logits, deltas, anchors, targets)
        synchronize(xp)
        t.append(time.perf_counter())
        model.zero_grad()
        model.backward(dlogits, ddeltas, image_grad=False)  # as in training (and PyTorch's images need none)
        synchronize(xp)
        t.append(time.perf_counter())
        opt.step(model.grads)
        synchronize(xp)
        t.append(time.perf_counter())
        return np.diff(t)

    return step


def host_peak_memory_mib(fn):
    """Peak memory NumPy allocates while ``fn()`` runs, in MiB (tracemalloc: NumPy reports to it)."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def shapes_batch(batch, image_size):
    """The batch every benchmark times: step 0 of a ``batch``-image shapes training set, host arrays.

    Returns (images (batch, 3, image_size, image_size) float32, targets).
    """
    return get_batch(build_dataset(DataConfig(image_size=image_size, train_images=batch), "train"), 0, batch)
