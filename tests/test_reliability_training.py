"""Reliability of a training run (issue 16): nothing lost, nothing left behind, every fault a clear message.

Covered here: a run folder is never overwritten by accident and has one writer at a time
(a lock that a killed process does not leave stale); SIGTERM and Ctrl-C save and exit 143 / 130;
``--resume`` extends a run and refuses what contradicts it; a worker that fails, an image that
breaks mid-run or a disk that fills up stops the run with its parameters or its last checkpoint
kept. The divergence test (the last *good* checkpoint kept) is in test_trainer.py, the worker
processes' own faults in test_reliability_workers.py.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from numpy_retinanet import cli
from numpy_retinanet.data.batching import batch_indices
from numpy_retinanet.data.build import build_dataset
from numpy_retinanet.engine import trainer
from numpy_retinanet.engine.checkpoint import export_weights, load_checkpoint
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.engine.parallel import GradientWorkers
from numpy_retinanet.engine.run_folder import RunFolderInUse, claim_run_folder, json_text, write_run_file
from numpy_retinanet.engine.trainer import TrainingStopped, train

# Six steps of the tiny model: warm-up over steps 0-1, the lr drops at steps 4 and 5 (2/3 and 8/9 of 6).
TINY = dict(preset="tiny", image_size=64, iterations=6, batch_size=2, lr=0.05, warmup_steps=2, eval_images=0,
            log_every=3, checkpoint_every=2, train_images=4)
TINY_FLAGS = ["--preset", "tiny", "--image-size", "64", "--batch-size", "2", "--lr", "0.05", "--warmup-steps", "2",
              "--eval-images", "0", "--log-every", "3", "--checkpoint-every", "2", "--train-images", "4",
              "--workers", "1"]
QUIET = dict(log=lambda s: None)


def _cli(capsys, argv):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished six-step run; tests copy it before they change it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train(TrainConfig(**TINY), run, **QUIET)
    return run


def _copy(run, to):
    to.mkdir()
    for f in run.iterdir():
        (to / f.name).write_bytes(f.read_bytes())
    return to


# ---------------------------------------------------------------------------------------
# The run folder: never overwritten by accident, one writer at a time
# ---------------------------------------------------------------------------------------

@pytest.mark.fault("lost")
def test_a_second_train_into_a_run_folder_is_refused_and_the_run_kept(finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path / "run")
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    code, _, err = _cli(capsys, ["train", "--out", str(run), *TINY_FLAGS, "--iterations", "4"])
    assert code == 2
    assert str(run) in err and "--resume" in err and "--force" in err and "already holds a run" in err
    assert {f.name: f.read_bytes() for f in run.iterdir()} == before  # not one byte changed, no lock left


@pytest.mark.fault("lost")
def test_force_replaces_the_run(finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path / "run")
    code, _, _ = _cli(capsys, ["train", "--out", str(run), *TINY_FLAGS, "--iterations", "4", "--force"])
    assert code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 4 and metrics["config"]["iterations"] == 4
    assert load_checkpoint(run / "checkpoint.npz")[1]["step"] == 4
    assert sorted(f.name for f in run.iterdir()) == ["checkpoint.npz", "detections.png", "metrics.json",
                                                      "training_curve.png"]


# A process that claims a folder and waits; its pid is printed once it holds the claim.
_HOLDER = textwrap.dedent("""
    import os, sys, time
    from numpy_retinanet.engine.run_folder import claim_run_folder
    with claim_run_folder(sys.argv[1]):
        print(os.getpid(), flush=True)
        time.sleep(60)
""")


def _holder(folder):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert int(proc.stdout.readline()) == proc.pid
    return proc


@pytest.mark.fault("lost")
def test_two_trainings_cannot_write_one_folder_and_a_killed_one_leaves_no_stale_lock(tmp_path, capsys):
    folder = tmp_path / "run"
    proc = _holder(folder)
    try:
        with pytest.raises(RunFolderInUse, match=rf"in use by another training \(process {proc.pid}\)"):
            with claim_run_folder(folder):
                pass
        code, _, err = _cli(capsys, ["train", "--out", str(folder), *TINY_FLAGS, "--iterations", "2"])
        assert code == 2 and f"process {proc.pid}" in err
        assert not (folder / "checkpoint.npz").exists()
    finally:
        proc.kill()  # SIGKILL: no clean-up code runs in the holder
        proc.wait()
    with claim_run_folder(folder):  # the kernel released the dead process's lock
        assert (folder / ".lock").read_text() == str(os.getpid())
    assert not (folder / ".lock").exists()


@pytest.mark.fault("traceback")
def test_out_naming_a_file_or_an_unwritable_place_is_a_clear_error(tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    code, _, err = _cli(capsys, ["train", "--out", str(afile), *TINY_FLAGS])
    assert code == 2 and "is a file, not a folder" in err and str(afile) in err
    assert afile.read_text() == "keep me"
    code, _, err = _cli(capsys, ["train", "--out", "/proc/numpy-retinanet-run", *TINY_FLAGS])
    assert code == 2 and "cannot make the run folder '/proc/numpy-retinanet-run'" in err


@pytest.mark.fault("traceback")
@pytest.mark.parametrize("argv", [["detect", "any.png"], ["figures", "--only", "focal_loss_vs_pt"]])
def test_the_output_folder_of_detect_and_figures_naming_a_file_or_an_unwritable_place_is_a_clear_error(
        tmp_path, capsys, argv):
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    code, _, err = _cli(capsys, [*argv, "--out", str(afile)])
    assert code == 2 and f"--out '{afile}' is a file, not a folder: give another --out" in err  # not [Errno 17]
    assert afile.read_text() == "keep me"
    code, _, err = _cli(capsys, [*argv, "--out", "/proc/numpy-retinanet-out"])
    assert code == 2 and "cannot make --out '/proc/numpy-retinanet-out'" in err


# ---------------------------------------------------------------------------------------
# Signals: save, then exit 128 + the signal's number
# ---------------------------------------------------------------------------------------

def _start_training(run, *flags):
    proc = subprocess.Popen([sys.executable, "-m", "numpy_retinanet", "train", "--out", str(run), *TINY_FLAGS,
                             "--iterations", "100000", "--log-every", "1", "--checkpoint-every", "1000", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, MPLBACKEND="Agg"))
    for line in proc.stdout:
        if line.startswith("step "):
            return proc
    raise AssertionError(proc.communicate()[1])


@pytest.mark.fault("lost")
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_save_the_run_and_exit_with_the_shell_code(tmp_path, signum, code):
    run = tmp_path / "run"
    proc = _start_training(run)
    try:
        proc.send_signal(signum)  # to the main process only, as kill, timeout and schedulers do
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["interrupted"] and metrics["signal"] == signal.Signals(signum).name
    _, info = load_checkpoint(run / "checkpoint.npz")
    assert info["step"] == metrics["step"] >= 1 and len(info["extra"]["history"]["total"]) == info["step"]
    assert sorted(f.name for f in run.iterdir()) == ["checkpoint.npz", "metrics.json", "training_curve.png"]


@pytest.mark.fault("hang")
def test_a_second_sigterm_aborts_at_once_and_leaves_no_partial_file(tmp_path):
    run = tmp_path / "run"
    proc = _start_training(run)
    try:
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert not [f.name for f in run.iterdir() if f.name.startswith(".")]  # no lock, no half-written checkpoint


# ---------------------------------------------------------------------------------------
# --resume: extends a run, refuses what contradicts it
# ---------------------------------------------------------------------------------------

@pytest.mark.fault("silent")
def test_resume_with_more_iterations_extends_the_run_at_its_last_learning_rate(finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path / "run")
    code, out, _ = _cli(capsys, ["train", "--resume", str(run), "--iterations", "10"])
    assert code == 0 and "resuming" in out
    history = json.loads((run / "metrics.json").read_text())["history"]
    first = json.loads((finished_run / "metrics.json").read_text())["history"]
    assert history["step"] == list(range(1, 11)) and history["total"][:6] == first["total"]
    assert history["lr"][:6] == first["lr"] and history["lr"][6:] == [first["lr"][-1]] * 4
    # The same as a run planned with 10 steps and the drops at steps 4 and 5, bit for bit.
    planned = train(TrainConfig(**dict(TINY, iterations=10, decay_at=(0.4, 0.5))), tmp_path / "planned", **QUIET)
    assert planned["history"]["lr"] == history["lr"]
    a, _ = load_checkpoint(run / "checkpoint.npz")
    b, _ = load_checkpoint(tmp_path / "planned" / "checkpoint.npz")
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)


@pytest.mark.parametrize("flags, named", [
    ([], "the run has 6 steps, not more than the run's step 6: give more --iterations"),
    (["--iterations", "5"], "iterations 5 is not more than the run's step 6"),
    (["--iterations", "8", "--preset", "default"], "preset 'default' (the run's: 'tiny')"),
    (["--iterations", "8", "--lr", "0.1"], "lr 0.1 (the run's: 0.05)"),
    (["--iterations", "8", "--fpn-channels", "64"], "model setting fpn_channels 64 (the run's: 8)"),
    (["--iterations", "8", "--force"], "--force replaces a run and --resume continues it"),
    (["--iterations", "8", "--out", "elsewhere"], "--out elsewhere is not the run being resumed"),
    (["--iterations", "8", "--schedule", "cosine"], "schedule 'cosine' (the run's: 'step')"),
])
@pytest.mark.fault("silent")
def test_resume_refuses_what_contradicts_the_run(finished_run, tmp_path, capsys, flags, named):
    run = _copy(finished_run, tmp_path / "run")
    before = (run / "checkpoint.npz").read_bytes()
    code, _, err = _cli(capsys, ["train", "--resume", str(run), *flags])
    assert code == 2 and named in err, err
    assert (run / "checkpoint.npz").read_bytes() == before


@pytest.mark.fault("silent")
def test_resume_accepts_flags_that_repeat_the_run(finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path / "run")
    code, _, err = _cli(capsys, ["train", "--resume", str(run), "--out", str(run), *TINY_FLAGS, "--iterations", "7"])
    assert code == 0, err
    assert load_checkpoint(run / "checkpoint.npz")[1]["step"] == 7


@pytest.mark.fault("silent")
def test_a_cosine_run_cannot_be_extended(tmp_path, capsys):
    run = tmp_path / "run"
    train(TrainConfig(**dict(TINY, schedule="cosine")), run, **QUIET)
    code, _, err = _cli(capsys, ["train", "--resume", str(run), "--iterations", "8"])
    assert code == 2 and "cosine schedule is planned over its 6 steps" in err


def test_json_text_is_strict_json_with_null_for_what_could_not_be_scored():
    value = {"AP": float("nan"), "per_class_AP": [0.5, float("nan")], "nested": ({"x": float("inf")}, 1, "a")}
    text = json_text(value)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"AP": None, "per_class_AP": [0.5, None], "nested": [{"x": None}, 1, "a"]}


@pytest.mark.fault("lost")
def test_export_refuses_to_write_over_the_checkpoint_it_reads(finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path / "run")
    before = (run / "checkpoint.npz").read_bytes()
    for out in (run / "checkpoint.npz", tmp_path / "run" / ".." / "run" / "checkpoint.npz"):
        code, _, err = _cli(capsys, ["export", str(run / "checkpoint.npz"), str(out)])
        assert code == 2 and "would replace the checkpoint it reads" in err
    assert (run / "checkpoint.npz").read_bytes() == before  # still resumable: momentum and settings kept
    code, _, _ = _cli(capsys, ["train", "--resume", str(run), "--iterations", "7"])
    assert code == 0


@pytest.mark.fault("silent")
def test_resume_refuses_exported_weights(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    export_weights(finished_run / "checkpoint.npz", run / "checkpoint.npz")
    code, _, err = _cli(capsys, ["train", "--resume", str(run), "--iterations", "8"])
    assert code == 2 and "holds parameters only" in err and "cannot be resumed" in err


# ---------------------------------------------------------------------------------------
# Faults during training: a failed worker, a full disk
# ---------------------------------------------------------------------------------------

@pytest.mark.fault("lost")
def test_a_failed_worker_stops_the_run_with_its_parameters_saved(tmp_path, monkeypatch):
    class KilledAtStep3(GradientWorkers):
        def gradients(self, step, params):
            if step == 3:  # worker 1 is killed (the OOM killer, a user) while the main process waits
                os.kill(self._procs[1].pid, signal.SIGKILL)
            return super().gradients(step, params)

    monkeypatch.setattr(trainer, "GradientWorkers", KilledAtStep3)
    run = tmp_path / "run"
    with pytest.raises(TrainingStopped, match=r"worker 1 died \(killed by SIGKILL\).*parameters of step 3 were "
                                              r"saved.*--resume") as e:
        train(TrainConfig(**dict(TINY, workers=2)), run, **QUIET)
    assert "Traceback" not in str(e.value)
    _, info = load_checkpoint(run / "checkpoint.npz")
    assert info["step"] == 3 and info["optimizer"]  # momentum too: the run can go on
    monkeypatch.undo()
    assert train(TrainConfig(), run, resume=True, **QUIET)["step"] == 6  # and the run goes on


@pytest.mark.fault("traceback")
def test_a_full_disk_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    saves = []
    real_save = trainer.save_checkpoint

    def fills_up(path, *args, **kwargs):
        saves.append(kwargs["step"])
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, f"cannot write checkpoint {str(path)!r}: No space left on device")
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(trainer, "save_checkpoint", fills_up)
    run = tmp_path / "run"
    code, _, err = _cli(capsys, ["train", "--out", str(run), *TINY_FLAGS, "--iterations", "6"])
    assert code == 1
    assert "No space left on device" in err and f"step {saves[0]}) was kept" in err and "--resume" in err
    assert load_checkpoint(run / "checkpoint.npz")[1]["step"] == saves[0] == 2
    assert not (run / ".lock").exists()


@pytest.mark.fault("lost")
def test_metrics_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    # Before, metrics.json was written in place: a process killed or a disk filled while writing it (a few MB
    # for a long run's history) left half a file, and a finished run looked unreadable.
    path = tmp_path / "metrics.json"
    write_run_file(path, '{"step": 1}')
    assert json.loads(path.read_text()) == {"step": 1}

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_run_file(path, '{"step": 2, "history": [' + "0, " * 100_000 + "0]}")
    assert json.loads(path.read_text()) == {"step": 1}  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # and no temporary left beside it
    monkeypatch.undo()
    # The trainer writes its metrics so.
    written = []
    monkeypatch.setattr(trainer, "write_run_file", lambda p, text: written.append(p) or write_run_file(p, text))
    metrics = train(TrainConfig(**{**TINY, "iterations": 2}), tmp_path / "run", **QUIET)
    assert written == [str(tmp_path / "run" / "metrics.json")]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["step"] == metrics["step"] == 2


@pytest.mark.fault("small")
def test_no_lock_is_left_after_a_refused_or_failed_run(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = _cli(capsys, ["train", "--out", str(run), *TINY_FLAGS, "--iterations", "2", "--lr", "1e9"])
    assert code == 1 and "diverged" in err
    assert not (run / ".lock").exists()


@pytest.mark.fault("lost")
@pytest.mark.parametrize("workers", [1, 2])
def test_an_image_cut_off_stops_the_run_with_the_parameters_of_its_step_saved(tmp_path, workers):
    # A COCO image whose header reads (the dataset is built) but whose pixels are cut off: drawing the
    # batch that holds it fails. The step's parameters are intact, so they are saved, and the run goes on
    # from them once the file is readable again. (Before, the steps since the last checkpoint were lost.)
    from _coco_files import write_coco_dataset

    folder, annotations, _ = write_coco_dataset(tmp_path / "coco")
    config = TrainConfig(**dict(TINY, dataset="coco", data=str(folder), annotations=str(annotations),
                                iterations=8, checkpoint_every=100, workers=workers))
    dataset = build_dataset(config, "train")
    first, second = (set(batch_indices(k, config.batch_size, len(dataset), config.data_seed)[0].tolist())
                     for k in (0, 1))
    broken = dataset.images[min(second - first)]["path"]  # first drawn at step 1: step 0 trains
    good = Path(broken).read_bytes()
    Path(broken).write_bytes(good[: len(good) // 3])
    run = tmp_path / "run"
    with pytest.raises(TrainingStopped) as caught:
        train(config, run, **QUIET)
    message = str(caught.value)
    assert f"{broken!r} is not an image that can be read" in message and "image file is truncated" in message
    assert f"The parameters of step 1 were saved to {run / 'checkpoint.npz'}" in message
    assert f"put a readable copy of the file back and continue with: numpy-retinanet train --resume {run}" in message
    model, info = load_checkpoint(run / "checkpoint.npz")
    assert info["step"] == 1 and all(np.isfinite(p).all() for p in model.params.values())
    Path(broken).write_bytes(good)
    assert train(config, run, resume=True, **QUIET)["step"] == config.iterations


@pytest.mark.fault("lost")
@pytest.mark.parametrize("workers", [1, 2])
def test_an_image_deleted_mid_run_stops_the_run_with_the_parameters_of_its_step_saved(tmp_path, workers):
    # The file goes away after step 3 (the dataset read its header at the start); the next step that draws
    # it stops the run, its parameters saved, and the run finishes once the file is back.
    from _coco_files import write_coco_dataset

    folder, annotations, _ = write_coco_dataset(tmp_path / "coco")
    config = TrainConfig(**dict(TINY, dataset="coco", data=str(folder), annotations=str(annotations),
                                iterations=12, log_every=3, checkpoint_every=100, workers=workers))
    gone = build_dataset(config, "train").images[0]["path"]
    good = Path(gone).read_bytes()

    def log(line):
        if line.lstrip().startswith("step") and int(line.split()[1].split("/")[0]) == 3:
            Path(gone).unlink()

    run = tmp_path / "run"
    with pytest.raises(TrainingStopped) as caught:
        train(config, run, log=log)
    message = str(caught.value)
    step = int(message.split("The parameters of step ")[1].split()[0])
    assert f"image {gone!r} does not exist" in message and f"train --resume {run}" in message
    assert 3 <= step < config.iterations and load_checkpoint(run / "checkpoint.npz")[1]["step"] == step
    Path(gone).write_bytes(good)
    assert train(config, run, resume=True, **QUIET)["step"] == config.iterations
