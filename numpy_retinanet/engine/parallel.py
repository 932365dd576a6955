"""Data-parallel gradients: each step's batch split between worker processes, one core each.

Why processes. In one process only the matrix products (OpenBLAS) use a second core;
the rest of a step (the im2col copies, GroupNorm, ReLU, drawing the shapes, matching
anchors) is single-threaded NumPy and Pillow. A default step took 199 ms with one BLAS
thread and 169 ms with two. Threads cannot share that rest out: it holds the GIL. With
two workers the step took 147-152 ms, against 168-170 ms in one process (alternating
runs of 100 steps on the 2-core VM this was written on, 11% of it idle: a worker that
finishes first waits for the other, and both wait while the main process steps).

How. The main process keeps the model and the optimizer. Each step it copies the
parameters into shared memory and sends every worker the step number; worker k, whose
model computes with that memory as its parameters and with a block of its own as its
gradients (``Module.place_in``), takes its part of that step's batch (``get_batch(...,
part=(k, workers))``), runs ``compute_gradients`` and answers with its losses; the main
process combines the parts and takes the SGD step (``engine.step.apply_gradients``),
exactly as with one process. Each worker draws its part of the next step's batch right
after it answers, while it would otherwise wait for the other workers and the SGD step:
300-step runs took 0.97x the wall time (median of 6 interleaved pairs, 0.87x to 1.00x)
at the same CPU time, and full default runs, with faster drawing too (``data.batching``),
0.945x and 0.963x. Shared memory rather than pickled arrays through the pipes: that cost
~18 ms a step for 728k parameters and two workers; and no copy between the shared memory
and the workers' models either: they compute in it (``Module.place_in``).

Combining. ``retinanet_loss`` divides by the positive anchors of the images it sees,
P_k for part k; the whole batch's loss divides by P = sum_k P_k. So part k's loss and
gradient are weighted by max(1, P_k) / max(1, P), and their sum is the whole batch's
loss and gradient: the same numbers as one process up to float rounding (the order of
the sums), which ``tests/test_parallel.py`` checks.

Workers are started with "spawn" (a fresh interpreter, no inherited BLAS threads) and
with OPENBLAS_NUM_THREADS=1, so two workers use two cores. They keep the normal scheduling
priority. Sending the step to the first worker wakes it onto the main process's core, and
the send to the second waits (1.8-2.0 ms of each step, timed in ``gradients``); workers at
nice 5 or under SCHED_BATCH do not take the core (the sends then take 0.12 ms), but the
steps took no less: 300-step runs of two workers, four rounds alternating, 80.4 ms a step on
average at normal priority, 80.7 at nice 5, 82.0 under SCHED_BATCH (December 2026). Both
cores are busy throughout either way (a worker draws its next part while it would wait), so
which process runs first does not change how much work there is. A worker's own Python error
(a NonFiniteStep, say) is raised in the main process as that error, with the worker's
traceback as its cause.

Failures. A worker that dies or stops answering raises ``WorkerFailed`` in the main
process, naming the worker and its exit code, signal, or silence; the caller's
parameters are untouched, so it can save them and stop. The main process never waits
blindly: each worker bumps a heartbeat counter in shared memory twice a second from a
thread of its own, and the wait for answers looks every 0.1 s whether a worker exited or
its heartbeat stood still for ``stuck_after`` seconds (a stopped process stops all its
threads). Workers ignore Ctrl-C and SIGTERM, which a terminal or a scheduler sends to the
whole process group: the main process handles them, finishes the step and saves. They
exit by themselves when the main process has gone. The shared memory has no name in
``/dev/shm`` while in use (see ``GradientWorkers.__init__``), so nothing is left behind
even when every process is killed at once.
"""

from __future__ import annotations

import atexit
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from contextlib import contextmanager

import numpy as np

from numpy_retinanet.backend import keep_freed_memory, peak_memory_mib, to_host
from numpy_retinanet.engine.config import TrainConfig

# Thread counts read once, when the BLAS library loads in the worker.
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

HEARTBEAT_EVERY = 0.5  # seconds between a worker's heartbeats
STUCK_AFTER = 10.0  # seconds without a heartbeat after which a worker counts as stuck
START_WITHIN = 60.0  # seconds a worker may take to start (interpreter, imports) before its first heartbeat
_LOOK_EVERY = 0.1  # seconds between the main process's looks at the workers while it waits


class WorkerTraceback(Exception):
    """The traceback of an error in a worker, shown as the cause of the error re-raised here."""

    def __str__(self):
        return "\n" + self.args[0]


class WorkerFailed(RuntimeError):
    """A worker process died or stopped answering; the workers have been stopped.

    ``worker``: its number (0 to workers - 1); ``exitcode``: as ``Process.exitcode``
    (negative: killed by that signal), None when the worker was stuck rather than dead.
    """

    def __init__(self, message: str, worker: int, exitcode: int | None):
        super().__init__(message)
        self.worker, self.exitcode = worker, exitcode


def _how_it_ended(exitcode: int) -> str:
    """How a process ended, in words: "killed by SIGKILL" for -9, "exit code 1" for 1."""
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:  # a signal number without a name
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


@contextmanager
def environment(values):
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


def _memory_order(a) -> tuple:
    """The axes of ``a`` from the slowest to the fastest in memory (``a.transpose`` of it is
    C-contiguous), e.g. (0, 2, 3, 1) for a Conv2d weight; C order for any other layout."""
    axes = tuple(sorted(range(a.ndim), key=lambda i: -a.strides[i]))
    return axes if a.transpose(axes).flags.c_contiguous else tuple(range(a.ndim))


class FlatLayout:
    """Where each parameter lives in one flat vector: name -> (offset, shape, memory order),
    in ``params`` order. The memory order is the parameter's own, so that a view of a
    Conv2d weight is laid out as the weight is (``nn.modules.Conv2d``)."""

    def __init__(self, params: dict):
        self.dtype = np.dtype(next(iter(params.values())).dtype)
        self.slots, offset = {}, 0
        for name, p in params.items():
            self.slots[name] = (offset, tuple(p.shape), _memory_order(to_host(p)))
            offset += int(np.prod(p.shape))
        self.size = offset
        self.nbytes = offset * self.dtype.itemsize

    def on(self, block):
        """A flat (size,) array whose memory is the shared block ``block`` (``nbytes`` bytes)."""
        return np.frombuffer(block, dtype=self.dtype, count=self.size)

    def views(self, flat) -> dict:
        """name -> a view of ``flat`` (size,) with that parameter's shape and memory order."""
        return {name: flat[o:o + int(np.prod(shape))].reshape([shape[i] for i in order]).transpose(np.argsort(order))
                for name, (o, shape, order) in self.slots.items()}


def _beat(heartbeat, parent_pid):
    """A worker's heartbeat thread: bump ``heartbeat`` every HEARTBEAT_EVERY seconds.

    It also ends the worker at once when the main process has gone (the worker's parent
    changes): without this a worker in the middle of a long step would finish it first,
    and only then find its pipe closed.
    """
    while os.getppid() == parent_pid:
        heartbeat.value += 1
        time.sleep(HEARTBEAT_EVERY)
    os._exit(0)  # nothing to clean up: the shared memory has no name, the pipe closes with the process


def _worker(conn, config_dict, part, layout, params_block, grads_block, heartbeat, parent_pid):
    """A worker's loop: build the model and data once, then answer one request per step.

    Answers ("ok", None) when ready. Requests: a step number -> ("ok", losses), its
    gradients written to ``grads_block``; "peak_memory" -> ("ok", MiB); None -> exit.
    A failure answers ("error", (exception, traceback text)). Returns quietly when the
    main process has gone (its end of the pipe closed).
    """
    # Ctrl-C and SIGTERM go to the whole process group; they are the main process's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_beat, args=(heartbeat, parent_pid), daemon=True).start()
    try:
        try:
            keep_freed_memory()
            from numpy_retinanet.data.batching import get_batch
            from numpy_retinanet.data.build import build_dataset
            from numpy_retinanet.engine.step import compute_gradients
            from numpy_retinanet.model.retinanet import RetinaNet

            config = TrainConfig.from_dict(config_dict)
            model = RetinaNet(config.num_classes, preset=config.preset, seed=config.seed, **config.model_overrides)
            dataset = build_dataset(config, "train")
            anchors = model.anchors(config.image_size, config.image_size)
            # The model computes with the shared memory itself: the main process writes the
            # parameters there before each request, and backward adds the gradients into this
            # worker's block, where the main process reads them (no copy either way). The
            # values placed in now are this model's initialization, overwritten before any step.
            model.place_in(layout.views(layout.on(params_block)), layout.views(layout.on(grads_block)))
        except Exception as e:
            conn.send(("error", (e, traceback.format_exc())))
            return

        def draw(step):
            """This worker's part of the batch of ``step``, or the error drawing it raised."""
            try:
                return get_batch(dataset, step, config.batch_size, seed=config.data_seed, part=(part, config.workers))
            except Exception as e:
                return e

        conn.send(("ok", None))
        drawn = None  # (step, draw(step)): the part drawn ahead, see below
        while True:
            request = conn.recv()
            if request is None:
                return
            try:
                if request == "peak_memory":
                    conn.send(("ok", peak_memory_mib()))
                    continue
                batch = drawn[1] if drawn is not None and drawn[0] == request else draw(request)
                drawn = None
                if isinstance(batch, Exception):
                    raise batch
                images, targets = batch
                losses, _ = compute_gradients(model, images, targets, anchors, config)  # grads: in grads_block
                conn.send(("ok", losses))
            except Exception as e:
                conn.send(("error", (e, traceback.format_exc())))
                continue
            # Draw the next step's part now, while the other workers finish theirs and the
            # main process takes the SGD step: a core that would wait does it, not the next
            # step. The next request is that step (after a run's last step, the part drawn
            # is never used).
            drawn = (request + 1, draw(request + 1))
    except (EOFError, BrokenPipeError, ConnectionResetError):  # the main process has gone
        return


class GradientWorkers:
    """``config.workers`` worker processes computing the gradient of each step's batch.

        with GradientWorkers(config, model.params) as workers:
            losses, grads = workers.gradients(step, model.params)

    ``gradients`` returns what ``compute_gradients`` returns for the whole batch of
    ``step`` (``get_batch(dataset, step, ...)``), up to float rounding. It, start-up and
    ``peak_memory_mib`` raise ``WorkerFailed`` when a worker has died or has had no
    heartbeat for ``stuck_after`` seconds; the workers are then stopped and this object
    can no longer be used.
    """

    def __init__(self, config: TrainConfig, params: dict, stuck_after: float = STUCK_AFTER):
        config.validate()  # among others: workers from 1 to batch_size, and the CPU
        if not stuck_after > 0:
            raise ValueError(f"stuck_after must be a positive number of seconds, got {stuck_after}")
        self.stuck_after = float(stuck_after)
        self._conns, self._procs = [], []
        self._layout = layout = FlatLayout(params)
        context = multiprocessing.get_context("spawn")
        # The shared blocks: multiprocessing's shared arrays, not SharedMemory. Each is a
        # file in /dev/shm that multiprocessing deletes the moment it has opened it; the
        # workers get its open file descriptor when they are spawned. On Linux a deleted
        # file lives on, unnamed, while any process has it open or mapped, and is freed
        # with the last one. So no name is ever left in /dev/shm, even when the whole
        # process group is killed with SIGKILL (a named SharedMemory block outlives every
        # process that used it until someone unlinks it), and Python's resource tracker
        # has nothing to track or to warn about. (Where /dev/shm lacks room, the file is
        # in a temporary folder instead, deleted in the same way.)
        self._blocks = [context.RawArray(ctypes.c_uint8, layout.nbytes) for _ in range(1 + config.workers)]
        self._heartbeats = [context.RawValue(ctypes.c_uint64, 0) for _ in range(config.workers)]
        self._params_flat = layout.on(self._blocks[0])
        self._grads_flat = [layout.on(b) for b in self._blocks[1:]]
        self._params = layout.views(self._params_flat)
        try:
            with environment(ONE_BLAS_THREAD):
                for k in range(config.workers):
                    ours, theirs = context.Pipe()
                    proc = context.Process(target=_worker, daemon=True, name=f"numpy-retinanet worker {k}",
                                           args=(theirs, config.to_dict(), k, layout, self._blocks[0],
                                                 self._blocks[1 + k], self._heartbeats[k], os.getpid()))
                    self._procs.append(proc)
                    self._conns.append(ours)
                    proc.start()
                    theirs.close()
            # At exit, multiprocessing joins every child it started: a worker left running
            # (close() never reached) would make that wait forever, since it ignores the
            # SIGTERM multiprocessing sends first. atexit runs the last registered first.
            atexit.register(self.close)
            self._receive_all()  # each worker says it is ready, or why not
        except BaseException:
            self.close(wait=0)
            raise

    def _failed(self, k) -> WorkerFailed:
        """The WorkerFailed for worker k, which died (or closed its pipe, and is dying)."""
        self._procs[k].join(timeout=5)
        code = self._procs[k].exitcode
        how = "its pipe closed" if code is None else _how_it_ended(code)
        return WorkerFailed(f"training worker {k} died ({how})", k, code)

    def _look(self, seen, last_look):
        """Raise WorkerFailed if a worker has exited or its heartbeat stood still too long.

        ``seen``: per worker [heartbeat value, when it was last seen to change], updated
        here. Returns the time of this look.
        """
        now = time.monotonic()
        if now - last_look > self.stuck_after / 2:
            # This process itself did not run for a while (Ctrl-Z stops the whole group,
            # or the machine is overloaded): the workers' silence is not theirs.
            for s in seen:
                s[1] = now
        for k, (proc, heartbeat, s) in enumerate(zip(self._procs, self._heartbeats, seen)):
            if proc.exitcode is not None:
                raise self._failed(k)
            beat = heartbeat.value
            if beat != s[0]:
                s[0], s[1] = beat, now
                continue
            silence = self.stuck_after if beat else max(self.stuck_after, START_WITHIN)  # 0: not started yet
            if now - s[1] > silence:
                raise WorkerFailed(f"training worker {k} stopped answering (no heartbeat for {silence:g} s; "
                                   "stopped or deadlocked?)", k, None)
        return now

    def _check_open(self):
        if not self._procs:
            raise ValueError("these GradientWorkers are closed (after a failure or close())")

    def _send_all(self, message):
        try:
            for k, conn in enumerate(self._conns):
                try:
                    conn.send(message)
                except (BrokenPipeError, ConnectionResetError):
                    raise self._failed(k) from None
        except BaseException:
            self.close(wait=0)
            raise

    def _receive_all(self):
        """One answer from every worker; the first error is raised after all are read, so
        that no answer is left in a pipe to be mistaken for the next one.

        Why a heartbeat and not a time limit on the answer: a step's time depends on the
        preset, the image size and the machine (a paper-preset step takes many seconds),
        so no limit fits every run, while a process that runs at all beats twice a second.
        If the wait is cut short (a worker failed, a second Ctrl-C's KeyboardInterrupt),
        the workers are stopped at once: their answers can no longer be matched to steps.
        """
        answers = [None] * len(self._conns)
        waiting = dict(zip(self._conns, range(len(self._conns))))
        seen = [[h.value, time.monotonic()] for h in self._heartbeats]
        try:
            last_look = time.monotonic()
            while waiting:
                for conn in multiprocessing.connection.wait(list(waiting), timeout=_LOOK_EVERY):
                    k = waiting.pop(conn)
                    try:
                        answers[k] = conn.recv()
                    except (EOFError, ConnectionResetError):
                        raise self._failed(k) from None
                last_look = self._look(seen, last_look)
        except BaseException:
            self.close(wait=0)
            raise
        for status, payload in answers:
            if status == "error":
                error, text = payload
                raise error from WorkerTraceback(text)
        return [payload for _, payload in answers]

    def gradients(self, step: int, params: dict):
        """Losses and gradients of the batch of ``step`` at ``params`` (name -> array).

        Returns (losses, grads) like ``compute_gradients``: losses a dict with
        "classification", "box_regression", "total" (floats) and "num_positive" (int);
        grads a new dict name -> array, the whole batch's gradient. ``params`` is only read.
        """
        self._check_open()
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
        self._check_open()
        self._send_all("peak_memory")
        return self._receive_all()

    def close(self, wait: float = 5.0):
        """Stop the workers and wait for them: ask, then SIGKILL those still running after
        ``wait`` seconds (they ignore SIGTERM, and a stopped process obeys only SIGKILL).
        Called again, it does nothing."""
        atexit.unregister(self.close)
        for conn in self._conns:
            try:
                conn.send(None)
            except (OSError, ValueError):  # already gone
                pass
        deadline = time.monotonic() + wait
        for proc in self._procs:
            if proc.pid is not None:  # started
                proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self._procs:
            if proc.pid is not None and proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []
        # Let the shared blocks go: their memory is freed with the last process that maps them.
        self._params = self._params_flat = self._grads_flat = None
        self._blocks, self._heartbeats = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
