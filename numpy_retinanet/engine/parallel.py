"""Data-parallel gradients: each step's batch split between worker processes, one core each.

Why processes. In one process only the matrix products (OpenBLAS) use a second core;
the rest of a step (the im2col copies, GroupNorm, ReLU, drawing the shapes, matching
anchors) is single-threaded NumPy and Pillow. A default step took 199 ms with one BLAS
thread and 169 ms with two. Threads cannot share that rest out: it holds the GIL. With
two workers the step took 147-152 ms, against 168-170 ms in one process (alternating
runs of 100 steps on the 2-core VM this was written on, 11% of it idle: a worker that
finishes first waits for the other, and both wait while the main process steps).

How. The main process keeps the model and the optimizer. Each step it copies the
parameters into shared memory and sends every worker the step number; worker k copies
them into its own model, draws its part of that step's batch
(``get_batch(..., part=(k, workers))``), runs ``compute_gradients``, writes its
gradients into its own block of shared memory and answers with its losses; the main
process combines the parts and takes the SGD step (``engine.step.apply_gradients``),
exactly as with one process. Shared memory rather than pickled arrays through the
pipes: that cost ~18 ms a step for 728k parameters and two workers.

Combining. ``retinanet_loss`` divides by the positive anchors of the images it sees,
P_k for part k; the whole batch's loss divides by P = sum_k P_k. So part k's loss and
gradient are weighted by max(1, P_k) / max(1, P), and their sum is the whole batch's
loss and gradient: the same numbers as one process up to float rounding (the order of
the sums), which ``tests/test_parallel.py`` checks.

Workers are started with "spawn" (a fresh interpreter, no inherited BLAS threads) and
with OPENBLAS_NUM_THREADS=1, so two workers use two cores. They ignore Ctrl-C: the
main process handles it, finishes the step and saves. A worker's error is raised in
the main process with the worker's traceback as its cause.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from contextlib import contextmanager
from multiprocessing import shared_memory

import numpy as np

from numpy_retinanet.backend import keep_freed_memory, peak_memory_mib, to_host
from numpy_retinanet.engine.config import TrainConfig

# Thread counts read once, when the BLAS library loads in the worker.
_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class WorkerTraceback(Exception):
    """The traceback of an error in a worker, shown as the cause of the error re-raised here."""

    def __str__(self):
        return "\n" + self.args[0]


@contextmanager
def _environment(values):
    """Set environment variables for the block (a spawned process copies them at start)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class FlatLayout:
    """Where each parameter lives in one flat vector: name -> (offset, shape), in ``params`` order."""

    def __init__(self, params: dict):
        self.dtype = np.dtype(next(iter(params.values())).dtype)
        self.slots, offset = {}, 0
        for name, p in params.items():
            self.slots[name] = (offset, tuple(p.shape))
            offset += int(np.prod(p.shape))
        self.size = offset

    def on(self, block):
        """A flat (size,) array whose memory is the shared block ``block``."""
        return np.ndarray((self.size,), dtype=self.dtype, buffer=block.buf)

    def views(self, flat) -> dict:
        """name -> a view of ``flat`` (size,) with that parameter's shape."""
        return {name: flat[o:o + int(np.prod(shape))].reshape(shape) for name, (o, shape) in self.slots.items()}


def _worker(conn, config_dict, part, layout, params_name, grads_name):
    """A worker's loop: build the model and data once, then answer one request per step.

    Requests: a step number -> ("ok", losses), its gradients written to the block
    ``grads_name``; "peak_memory" -> ("ok", MiB); None -> exit. A failure answers
    ("error", (exception, traceback text)).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    keep_freed_memory()
    from numpy_retinanet.data.batching import get_batch
    from numpy_retinanet.data.build import build_dataset
    from numpy_retinanet.engine.step import compute_gradients
    from numpy_retinanet.model.retinanet import RetinaNet

    config = TrainConfig.from_dict(config_dict)
    model = RetinaNet(config.num_classes, preset=config.preset, seed=config.seed, **config.model_overrides)
    dataset = build_dataset(config, "train")
    anchors = model.anchors(config.image_size, config.image_size)
    params_block = shared_memory.SharedMemory(name=params_name)
    grads_block = shared_memory.SharedMemory(name=grads_name)
    shared_params, shared_grads = layout.views(layout.on(params_block)), layout.views(layout.on(grads_block))
    conn.send(("ok", None))
    try:
        while True:
            request = conn.recv()
            if request is None:
                return
            try:
                if request == "peak_memory":
                    conn.send(("ok", peak_memory_mib()))
                    continue
                for name, p in model.params.items():
                    p[...] = shared_params[name]
                images, targets = get_batch(dataset, request, config.batch_size, seed=config.data_seed,
                                            part=(part, config.workers))
                losses, grads = compute_gradients(model, images, targets, anchors, config)
                for name, g in grads.items():
                    shared_grads[name][...] = g
                conn.send(("ok", losses))
            except Exception as e:
                conn.send(("error", (e, traceback.format_exc())))
    finally:
        del shared_params, shared_grads  # views must go before the blocks close
        params_block.close()
        grads_block.close()


class WorkerFailed(RuntimeError):
    """A worker process died or stopped answering; the caller's parameters are untouched."""


class GradientWorkers:
    """``config.workers`` worker processes computing the gradient of each step's batch.

        with GradientWorkers(config, model.params) as workers:
            losses, grads = workers.gradients(step, model.params)

    ``gradients`` returns what ``compute_gradients`` returns for the whole batch of
    ``step`` (``get_batch(dataset, step, ...)``), up to float rounding.
    """

    def __init__(self, config: TrainConfig, params: dict):
        config.validate()  # among others: workers from 1 to batch_size, and the CPU
        self._conns, self._procs, self._blocks = [], [], []
        self._layout = layout = FlatLayout(params)
        context = multiprocessing.get_context("spawn")
        try:
            nbytes = layout.size * layout.dtype.itemsize
            self._blocks = [shared_memory.SharedMemory(create=True, size=nbytes)
                            for _ in range(1 + config.workers)]
            self._params_flat = layout.on(self._blocks[0])
            self._grads_flat = [layout.on(b) for b in self._blocks[1:]]
            self._params = layout.views(self._params_flat)
            with _environment(_ONE_THREAD):
                for k in range(config.workers):
                    ours, theirs = context.Pipe()
                    proc = context.Process(target=_worker, daemon=True, name=f"numpy-retinanet worker {k}",
                                           args=(theirs, config.to_dict(), k, layout, self._blocks[0].name,
                                                 self._blocks[1 + k].name))
                    proc.start()
                    theirs.close()
                    self._conns.append(ours)
                    self._procs.append(proc)
            self._receive_all()  # each worker says it is ready, or why not
        except BaseException:
            self.close()
            raise

    def _dead(self, k):
        self._procs[k].join(timeout=5)
        return WorkerFailed(f"training worker {k} exited unexpectedly (exit code {self._procs[k].exitcode})")

    def _send_all(self, message):
        for k, conn in enumerate(self._conns):
            try:
                conn.send(message)
            except (BrokenPipeError, ConnectionResetError):
                raise self._dead(k) from None

    def _receive_all(self):
        """One answer from every worker, in order; the first error is raised after all are read,
        so that no answer is left in a pipe to be mistaken for the next one."""
        answers = []
        for k, conn in enumerate(self._conns):
            try:
                answers.append(conn.recv())
            except (EOFError, ConnectionResetError):
                raise self._dead(k) from None
        for status, payload in answers:
            if status == "error":
                error, text = payload
                raise error from WorkerTraceback(text)
        return [payload for _, payload in answers]

    def gradients(self, step: int, params: dict):
        """Losses and gradients of the batch of ``step`` at ``params`` (name -> array).

        Returns (losses, grads) like ``compute_gradients``: losses a dict with
        "classification", "box_regression", "total" (floats) and "num_positive" (int);
        grads a new dict name -> array, the whole batch's gradient.
        """
        for name, p in params.items():
            self._params[name][...] = to_host(p)
        self._send_all(step)
        parts = self._receive_all()
        num_positive = sum(part["num_positive"] for part in parts)
        weights = [max(1, part["num_positive"]) / max(1, num_positive) for part in parts]
        losses = {key: sum(w * part[key] for w, part in zip(weights, parts))
                  for key in ("classification", "box_regression")}
        losses["total"] = losses["classification"] + losses["box_regression"]
        losses["num_positive"] = num_positive
        flat = weights[0] * self._grads_flat[0]  # a new array: the shared blocks are rewritten next step
        for w, part_flat in zip(weights[1:], self._grads_flat[1:]):
            flat += w * part_flat
        return losses, self._layout.views(flat)

    def peak_memory_mib(self) -> list:
        """Each worker's peak resident memory so far, in MiB."""
        self._send_all("peak_memory")
        return self._receive_all()

    def close(self):
        """Stop the workers (politely, then by force after 5 s)."""
        for conn in self._conns:
            try:
                conn.send(None)
            except (OSError, ValueError):  # already gone
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []
        self._params = self._params_flat = self._grads_flat = None  # views must go before the blocks close
        for block in self._blocks:
            block.close()
            block.unlink()
        self._blocks = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
