"""Worker processes can neither hang a run nor leave anything behind (issue 16; engine.parallel).

A worker killed, stopped, sent SIGTERM or SIGINT; the main process killed, stopped with
its workers (Ctrl-Z), or interrupted twice while it waits. After each: the error names
the worker and what happened, no process is left, and no shared memory keeps a name.
Linux only (/proc), like the workers' memory sharing these tests look at.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.engine.parallel import GradientWorkers, WorkerFailed
from numpy_retinanet.model.retinanet import RetinaNet

TINY = dict(preset="tiny", image_size=64, iterations=8, batch_size=4, lr=0.05, warmup_steps=2,
            clip_grad_norm=5.0, eval_images=0, log_every=4, checkpoint_every=100, train_images=16, workers=2)
ENV = dict(os.environ, MPLBACKEND="Agg")


def running(pid):
    """Whether process ``pid`` exists and has not ended (a zombie has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def still_running(pids, within=30.0):
    """The pids among ``pids`` still running after waiting up to ``within`` seconds (a guard, not a timing)."""
    deadline = time.monotonic() + within
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if running(p)]


def shared_files(pid):
    """The files in /dev/shm (or multiprocessing's pym-* files) that process ``pid`` has mapped, as /proc shows them:
    a path, ending in " (deleted)" once it has no name."""
    with open(f"/proc/{pid}/maps") as f:
        paths = {line.split(maxsplit=5)[5].strip() for line in f if len(line.split(maxsplit=5)) == 6}
    return sorted(p for p in paths if p.startswith("/dev/shm/") or "/pym-" in p or "/psm_" in p)


def assert_no_named_shared_memory(pids):
    """Every process in ``pids`` maps shared memory, and none of it has a name left: a SIGKILL of all of them,
    at any moment, could leave nothing in /dev/shm. Returns the files' former names."""
    names = []
    for pid in pids:
        files = shared_files(pid)
        assert files, f"process {pid} maps no shared memory: {files}"
        assert all(f.endswith(" (deleted)") for f in files), files
        names += [f.removesuffix(" (deleted)") for f in files]
    return names


@pytest.fixture
def model():
    return RetinaNet(TrainConfig(**TINY).num_classes, preset="tiny", seed=3)


@pytest.mark.fault("lost")
def test_a_killed_worker_raises_worker_failed_and_leaves_nothing(model):
    pool = GradientWorkers(TrainConfig(**TINY), model.params)
    pids = [proc.pid for proc in pool._procs]
    names = assert_no_named_shared_memory([os.getpid(), *pids])
    before = {k: p.copy() for k, p in model.params.items()}
    os.kill(pids[0], signal.SIGKILL)
    with pytest.raises(WorkerFailed, match=r"^training worker 0 died \(killed by SIGKILL\)$") as failed:
        pool.gradients(0, model.params)
    assert (failed.value.worker, failed.value.exitcode) == (0, -signal.SIGKILL)
    assert isinstance(failed.value, RuntimeError)
    assert "Traceback" not in str(failed.value)
    for k in before:  # the caller's parameters were not touched: it can save them
        np.testing.assert_array_equal(model.params[k], before[k], err_msg=k)
    assert not [p for p in pids if running(p)]  # the other worker was stopped and joined too
    assert not [n for n in names if os.path.exists(n)]
    pool.close()


@pytest.mark.fault("hang")
def test_a_stopped_worker_raises_stopped_answering_and_is_killed(model):
    with pytest.raises(ValueError, match="stuck_after must be a positive number of seconds, got 0"):
        GradientWorkers(TrainConfig(**TINY), model.params, stuck_after=0)
    pool = GradientWorkers(TrainConfig(**TINY), model.params, stuck_after=2)
    pids = [proc.pid for proc in pool._procs]
    os.kill(pids[1], signal.SIGSTOP)  # its heartbeat thread stops with it
    try:
        with pytest.raises(WorkerFailed, match=r"^training worker 1 stopped answering \(no heartbeat for 2 s; "
                                               r"stopped or deadlocked\?\)$") as failed:
            pool.gradients(0, model.params)
        assert (failed.value.worker, failed.value.exitcode) == (1, None)
        pool.close()
        assert not [p for p in pids if running(p)]  # SIGKILL ends even a stopped process
    finally:
        if running(pids[1]):
            os.kill(pids[1], signal.SIGKILL)


@pytest.mark.fault("hang")
def test_close_ends_a_stopped_worker(model):
    # SIGTERM would wait for a SIGCONT for ever; close() asks, waits, then sends SIGKILL.
    pool = GradientWorkers(TrainConfig(**TINY), model.params)
    pool.gradients(0, model.params)
    pids = [proc.pid for proc in pool._procs]
    os.kill(pids[0], signal.SIGSTOP)
    try:
        pool.close(wait=1)
        assert not [p for p in pids if running(p)]
    finally:
        if running(pids[0]):
            os.kill(pids[0], signal.SIGKILL)


@pytest.mark.fault("lost")
def test_workers_ignore_sigterm_and_sigint(model):
    # A scheduler's SIGTERM and a terminal's Ctrl-C reach the whole process group; the main process decides.
    with GradientWorkers(TrainConfig(**TINY), model.params) as pool:
        first_losses, first_grads = pool.gradients(0, model.params)
        first_grads = {k: g.copy() for k, g in first_grads.items()}
        for proc in pool._procs:
            os.kill(proc.pid, signal.SIGTERM)
            os.kill(proc.pid, signal.SIGINT)
        losses, grads = pool.gradients(0, model.params)
        assert [proc.exitcode for proc in pool._procs] == [None, None]
    assert losses == first_losses
    for k in grads:
        np.testing.assert_array_equal(grads[k], first_grads[k], err_msg=k)


@pytest.mark.fault("hang")
def test_a_second_ctrl_c_while_waiting_stops_every_worker(model):
    # The trainer's handling: a first SIGINT asks to stop after the step, a second raises KeyboardInterrupt.
    # A stopped worker makes the wait last (stuck_after is long): only the interrupt can end it.
    interrupts = []

    def handle(signum, frame):
        interrupts.append(signum)
        if len(interrupts) == 2:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handle)
    pool = GradientWorkers(TrainConfig(**TINY), model.params, stuck_after=600)
    pids = [proc.pid for proc in pool._procs]
    timers = [threading.Timer(t, os.kill, (os.getpid(), signal.SIGINT)) for t in (0.5, 1.0)]
    try:
        os.kill(pids[0], signal.SIGSTOP)
        for timer in timers:
            timer.start()
        with pytest.raises(KeyboardInterrupt):
            with pool:
                pool.gradients(0, model.params)
        assert interrupts == [signal.SIGINT, signal.SIGINT]
        assert not [p for p in pids if running(p)]
    finally:
        for timer in timers:
            timer.cancel()
            timer.join()
        signal.signal(signal.SIGINT, old)
        for p in pids:
            if running(p):
                os.kill(p, signal.SIGKILL)


# Run in a child process: workers, then steps without end; prints the worker pids as JSON.
ENDLESS = f"""
import json
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.engine.parallel import GradientWorkers
from numpy_retinanet.model.retinanet import RetinaNet
config = TrainConfig(**{TINY!r})
model = RetinaNet(config.num_classes, preset="tiny")
pool = GradientWorkers(config, model.params, stuck_after=3)
print(json.dumps([proc.pid for proc in pool._procs]), flush=True)
step = 0
while True:
    pool.gradients(step, model.params)
    step += 1
    print("step", step, flush=True)
"""


@pytest.mark.fault("memory")
def test_workers_end_by_themselves_when_the_main_process_is_killed(tmp_path):
    with open(tmp_path / "stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", ENDLESS], stdout=subprocess.PIPE, stderr=err, text=True,
                                env=ENV)
    try:
        pids = json.loads(proc.stdout.readline())
        assert proc.stdout.readline().startswith("step ")
        names = assert_no_named_shared_memory([proc.pid, *pids])
        proc.kill()  # SIGKILL: no handler, no atexit, no close()
        proc.wait()
        assert still_running(pids) == []
    finally:
        proc.kill()
        for p in pids:
            if running(p):
                os.kill(p, signal.SIGKILL)
    assert not [n for n in names if os.path.exists(n)]
    assert (tmp_path / "stderr").read_text() == ""  # the workers ended quietly: no traceback


@pytest.mark.fault("hang")
def test_a_run_stopped_with_ctrl_z_goes_on_after_fg():
    # Ctrl-Z stops the whole group, the main process too, for longer than stuck_after, and fg wakes it in no
    # set order. Here: the workers stop first, while the main process waits for their answers, and wake last;
    # the main process must not take their silence while it was stopped itself for theirs.
    script = ENDLESS.replace("while True:", "import sys\nfor line in sys.stdin:")  # a step for each line
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True)
    try:
        pids = json.loads(proc.stdout.readline())
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(6)  # stuck_after is 3 s
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.5)
        for p in pids:
            with contextlib.suppress(ProcessLookupError):  # gone if the main process took them for stuck
                os.kill(p, signal.SIGCONT)
        for step in range(1, 4):
            line = proc.stdout.readline()
            assert line == f"step {step}\n", line or proc.stderr.read()  # "": it has exited, says why
            proc.stdin.write("go\n")
            proc.stdin.flush()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert still_running(pids) == []


# Run in a child process: a worker killed, a worker stopped, and workers never closed (left to exit).
FAILURES = f"""
import json, os, signal
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.engine.parallel import GradientWorkers, WorkerFailed
from numpy_retinanet.model.retinanet import RetinaNet
config = TrainConfig(**{TINY!r})
model = RetinaNet(config.num_classes, preset="tiny")
for sig in (signal.SIGKILL, signal.SIGSTOP):
    pool = GradientWorkers(config, model.params, stuck_after=2)
    pool.gradients(0, model.params)
    os.kill(pool._procs[1].pid, sig)
    try:
        pool.gradients(1, model.params)
    except WorkerFailed as e:
        print(e)
pool = GradientWorkers(config, model.params)
pool.gradients(0, model.params)
print(json.dumps([proc.pid for proc in pool._procs]), flush=True)
"""


@pytest.mark.fault("memory")
def test_failures_and_an_unclosed_pool_leave_no_warning_and_no_process():
    # Python's resource tracker would print "leaked shared_memory objects" at exit, and an unclosed pool's
    # workers (which ignore SIGTERM) would make multiprocessing's exit wait for them for ever.
    out = subprocess.run([sys.executable, "-c", FAILURES], capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    lines = out.stdout.splitlines()
    assert lines[:2] == ["training worker 1 died (killed by SIGKILL)",
                         "training worker 1 stopped answering (no heartbeat for 2 s; stopped or deadlocked?)"]
    assert still_running(json.loads(lines[2])) == []
