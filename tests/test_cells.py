"""tools/cells.py: many runs trained at once, each read when finished, continued when stopped, and
stopped together by Ctrl-C or SIGTERM (``numpy-retinanet ablate`` trains its tables with it)."""

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from numpy_retinanet.tools.table1 import ablation_config


def _cell(tmp_path, folder, lr=None):
    """A small cell: 8 steps of 2 images in the ablation recipe on 64 px plain shapes, 2 held-out images."""
    name = "FL, gamma 2, alpha .25"
    config = dataclasses.replace(ablation_config(name, 0, 8, eval_images=2, image_size=64, lr=lr), batch_size=2)
    return name, config, str(tmp_path / folder)


def _trains(monkeypatch):
    """Record how ``_train_cell`` calls the trainer: a list of each call's ``resume`` flag."""
    from numpy_retinanet.engine import trainer

    calls, real = [], trainer.train
    monkeypatch.setattr(trainer, "train", lambda *a, **k: calls.append(k.get("resume", False)) or real(*a, **k))
    return calls


@pytest.mark.fault("lost")
def test_a_cell_stopped_part_way_goes_on_from_its_checkpoint_and_ends_with_the_same_bits(tmp_path, monkeypatch):
    from numpy_retinanet.engine.checkpoint import load_checkpoint
    from numpy_retinanet.engine.trainer import train
    from numpy_retinanet.tools import cells, table1

    monkeypatch.setattr(table1, "CELL_CHECKPOINT_EVERY", 3)
    whole, part = _cell(tmp_path, "whole"), _cell(tmp_path, "part")
    assert whole[1].checkpoint_every == 3
    calls = _trains(monkeypatch)
    done = cells._train_cell(whole)
    # Stopped at step 5, as Ctrl-C stops a cell: the trainer saves the step.
    assert train(part[1], part[2], log=lambda s: None, stop_after=5)["interrupted"]
    assert cells._started_step(part[2], part[1]) == 5
    calls.clear()
    resumed = cells._train_cell(part)
    assert calls == [True]  # went on from step 5, not from step 0
    assert not resumed["reused"] and resumed["continued_from"] == 5 and resumed["AP"] == done["AP"]
    assert done["continued_from"] is None
    a, ia = load_checkpoint(Path(whole[2]) / "checkpoint.npz")
    b, ib = load_checkpoint(Path(part[2]) / "checkpoint.npz")
    assert ia["step"] == ib["step"] == 8
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    # Finished now: read, not trained, even when the cell would now print and save at other steps; which
    # changes none of its numbers (the same cell saved at its end only ends with the same bits).
    monkeypatch.setattr(table1, "CELL_CHECKPOINT_EVERY", 1000)
    calls.clear()
    again = cells._train_cell(_cell(tmp_path, "part"))
    assert again["reused"] and calls == [] and again["AP"] == done["AP"]
    once = _cell(tmp_path, "saved_once")
    assert cells._train_cell(once)["AP"] == done["AP"] and calls == [False]
    c, _ = load_checkpoint(Path(once[2]) / "checkpoint.npz")
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], c.params[k], err_msg=k)


def test_the_cells_say_what_is_left_before_they_start_and_the_most_left_starts_first(tmp_path, monkeypatch):
    from numpy_retinanet.engine.trainer import train
    from numpy_retinanet.tools import cells, table1

    monkeypatch.setattr(table1, "CELL_CHECKPOINT_EVERY", 3)
    finished, part, new = (_cell(tmp_path, f) for f in ("finished", "part", "new"))
    cells._train_cell(finished)
    train(part[1], part[2], log=lambda s: None, stop_after=5)
    said = []
    results = cells.run_cells([finished, part, new], log=said.append)
    # The estimate: the 11 steps left at the finished cell's seconds per step (well under two minutes).
    per_step = json.loads((Path(finished[2]) / "metrics.json").read_text())["train_seconds"] / 8
    assert 11 * per_step < 90
    assert said[0] == ("3 cells, 1 at a time: 1 finished (read from their run folders), 1 continue from their last "
                       "checkpoint, 1 start from step 0; 11 of 24 steps left to train, under two minutes (the "
                       f"finished cells took a median {per_step:.3f} s a step)")
    # The most steps left first (8, then 3, then the finished cell), each line counting the cells done.
    assert [line.split("] ")[1].split(" FL")[0] for line in said[1:]] == ["1/3", "2/3", "3/3"]
    assert [("(reused)" in line, "continued from step 5" in line) for line in said[1:]] == [
        (False, False), (False, True), (True, False)]
    assert all(", seed 0, 8 steps (" in line for line in said[1:])
    assert [r["reused"] for r in results] == [True, False, False] and results[1]["continued_from"] == 5


def test_the_estimate_is_the_median_step_of_the_finished_cells_times_the_steps_left_per_job(tmp_path):
    from numpy_retinanet.tools import cells

    def cell(name, seconds=None):
        job = _cell(tmp_path, name)
        if seconds is not None:  # a finished cell that took this long
            Path(job[2]).mkdir(parents=True)
            (Path(job[2]) / "metrics.json").write_text(json.dumps(
                {"config": job[1].to_dict(), "step": 8, "interrupted": False, "AP": 0.5, "train_seconds": seconds}))
        return job

    # Three finished cells of 8 steps: 0.5, 1 and 8 s a step (the last one paused: the median ignores it).
    done = [cell("a", 4.0), cell("b", 8.0), cell("c", 64.0)]
    new = [cell(f"new{i}") for i in range(4)]
    jobs = done + new
    left, finished = cells._cell_states(jobs)
    assert left == [0, 0, 0, 8, 8, 8, 8]
    assert [m["train_seconds"] for m in finished[:3]] == [4.0, 8.0, 64.0] and finished[3:] == [None] * 4

    def estimate(jobs, left):
        return cells._estimate(jobs, left, cells._cell_states(jobs)[1], 2)

    # 32 steps at 1 s over 2 jobs: 16 s.
    assert estimate(jobs, left) == ", under two minutes (the finished cells took a median 1.000 s a step)"
    # No ablation ends before its longest cell: 3000 s, not 3000 / 2.
    assert estimate(done + new[:1], [0, 0, 0, 3000]).startswith(", about 50 minutes (")
    assert estimate(done, [0, 0, 0]) == ""  # nothing left
    assert estimate(new, [8] * 4) == ""  # nothing finished to tell the time of a step
    many = done + [cell(f"long{i}") for i in range(400)]  # 3200 steps at 1 s, 2 at a time: 1600 s
    assert estimate(many, [0, 0, 0] + [8] * 400).startswith(", about 27 minutes (")
    many = done + [cell(f"longer{i}") for i in range(1800)]  # 14400 steps at 1 s, 2 at a time: 7200 s
    assert estimate(many, [0, 0, 0] + [8] * 1800).startswith(", about 2.0 hours (")


@pytest.mark.fault("lost")
def test_a_cell_stopped_by_a_signal_keeps_every_later_cell_from_starting(tmp_path, monkeypatch):
    import threading

    from numpy_retinanet.engine import trainer
    from numpy_retinanet.tools import cells

    # As in a cell process whose trainer caught SIGINT: the pool may already have queued its next cell.
    monkeypatch.setattr(cells, "_STOP", threading.Event())
    calls = []
    stopped = {"interrupted": True, "signal": "SIGINT"}
    monkeypatch.setattr(trainer, "train", lambda *a, **k: calls.append(a[1]) or stopped)
    first, later = _cell(tmp_path, "first"), _cell(tmp_path, "later")
    assert cells._train_cell(first) == {"name": first[0], "interrupted": True, "signal": "SIGINT"}
    assert cells._STOP.is_set()
    assert cells._train_cell(later) == {"name": later[0], "interrupted": True} and calls == [first[2]]


@pytest.mark.fault("lost")
def test_a_checkpoint_of_another_cell_or_of_the_last_step_starts_the_cell_again(tmp_path, monkeypatch):
    from numpy_retinanet.engine.trainer import train
    from numpy_retinanet.tools import cells, table1

    monkeypatch.setattr(table1, "CELL_CHECKPOINT_EVERY", 3)
    name, config, folder = _cell(tmp_path, "cell")
    other = _cell(tmp_path, "cell", lr=0.01)[1]  # another rate: another cell, were it in this folder
    train(other, folder, log=lambda s: None, stop_after=5)
    assert cells._started_step(folder, config) is None
    # The last step saved but no metrics (a machine gone before the evaluation): nothing to resume.
    train(config, folder, log=lambda s: None, force=True)
    (Path(folder) / "metrics.json").unlink()
    assert cells._started_step(folder, config) is None
    (Path(folder) / "checkpoint.npz").write_bytes(b"cut off")
    assert cells._started_step(folder, config) is None
    calls = _trains(monkeypatch)
    assert cells._train_cell((name, config, folder))["AP"] >= 0 and calls == [False]


@pytest.mark.fault("lost")
@pytest.mark.slow  # about 15 s: cells trained to the end, then a run interrupted
def test_ctrl_c_keeps_the_finished_cells_and_a_rerun_reads_them(tmp_path):
    import os
    import signal
    import time

    args = [sys.executable, "-m", "numpy_retinanet", "ablate", "--out", str(tmp_path), "--work", str(tmp_path / "w"),
            "--seeds", "1", "--eval-images", "2", "--jobs", "2", "--only", "CE, alpha .75"]
    quick = subprocess.run(args + ["--iterations", "2"], capture_output=True, text=True, timeout=300)
    assert quick.returncode == 0, quick.stderr
    p = subprocess.Popen(args[:-2] + ["--only", "CE, alpha .75", "FL, gamma 2, alpha .25", "--iterations", "2000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(8)
    os.killpg(p.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole group
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in err and "the finished cells are kept" in err
    # the cells of the first run (2 steps, and 4 and 1 for the Converged? rows) are untouched and read again
    again = subprocess.run(args + ["--iterations", "2"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("(reused)") == 3


def _two_cells_in_training(tmp_path):
    """``ablate --jobs 2`` of two 3000-step cells, started and a few steps into training: (its arguments,
    the process, the two cells' run folders)."""
    import time

    args = [sys.executable, "-m", "numpy_retinanet", "ablate", "--out", str(tmp_path), "--work", str(tmp_path / "w"),
            "--seeds", "1", "--eval-images", "2", "--jobs", "2", "--image-size", "64", "--iterations", "3000",
            "--only", "CE, alpha .25", "CE, alpha .50"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    folders = [tmp_path / "w" / "shapes_64px_3000steps_2eval" / f"CE_alpha{a}_lr0.03_seed0" for a in ("25", "50")]
    deadline = time.monotonic() + 120
    while not all((f / ".lock").exists() for f in folders) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # a few steps into training
    return args, p, folders


@pytest.mark.fault("lost")
@pytest.mark.slow  # about 20 s: two cells started, then stopped
def test_sigterm_to_the_parent_alone_stops_its_cells_and_a_rerun_continues_them(tmp_path):
    import os
    import signal

    args, p, folders = _two_cells_in_training(tmp_path)
    os.kill(p.pid, signal.SIGTERM)  # the parent only, as `kill PID` or `timeout` sends it
    out, err = p.communicate(timeout=120)
    assert p.returncode == 143 and "Traceback" not in err and "the cells in training saved their step" in err
    # Both cells ended with their parent (before the fix they trained on, orphaned): each saved its step.
    steps = []
    for folder in folders:
        m = json.loads((folder / "metrics.json").read_text())
        assert m["interrupted"] and m["signal"] is None and 0 < m["step"] < 3000
        steps.append(m["step"])
    again = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = again.stdout.readline()
    again.send_signal(signal.SIGTERM)
    again.communicate(timeout=120)
    assert first == ("2 cells, 2 at a time: 0 finished (read from their run folders), 2 continue from their last "
                     f"checkpoint, 0 start from step 0; {6000 - sum(steps):,} of 6,000 steps left to train\n")


def _children(pid):
    """The process ids whose parent is ``pid`` (read from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.fault("traceback")
@pytest.mark.slow  # about 6 s: two cells started, one killed
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the cell processes in /proc (Linux)")
def test_a_cell_process_killed_is_one_clear_line_and_the_other_cell_saves_its_step(tmp_path):
    import os
    import signal
    import time

    args, p, folders = _two_cells_in_training(tmp_path)
    # The cell processes: the parent's children but its resource tracker, which holds no cell's lock.
    pid_of = {f: int((f / ".lock").read_text()) for f in folders}
    assert set(pid_of.values()) <= set(_children(p.pid)) and len(set(pid_of.values())) == 2
    killed, survivor = folders
    os.kill(pid_of[killed], signal.SIGKILL)  # as the out-of-memory killer ends a process
    out, err = p.communicate(timeout=120)
    # Before, the command ended in a BrokenProcessPool traceback.
    assert p.returncode == 1 and "Traceback" not in err
    assert ("numpy-retinanet ablate: a cell's process ended abruptly (killed by a signal, or out of memory?); the "
            "other cells in training saved their step and the finished ones are kept: the same command continues "
            "every cell from its last checkpoint") in err
    m = json.loads((survivor / "metrics.json").read_text())
    assert m["interrupted"] and 0 < m["step"] < 3000
    # No cell process outlives the command.
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in pid_of.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pid_of.values())


@pytest.mark.fault("traceback")
@pytest.mark.parametrize("text", ['{"config": {', "[1, 2]"])
def test_a_cells_unreadable_metrics_are_a_clear_error_naming_the_file(tmp_path, text):
    from numpy_retinanet.tools import cells

    job = _cell(tmp_path, "cell")
    Path(job[2]).mkdir()
    (Path(job[2]) / "metrics.json").write_text(text)  # not the trainer's: it writes the file whole or not at all
    with pytest.raises(ValueError, match=re.escape(f"cannot read the cell's '{job[2]}/metrics.json' (") + r".*"
                       + re.escape("); remove it, and the command trains the cell again")):
        cells.plan([job])
