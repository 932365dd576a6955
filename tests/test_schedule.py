"""The learning-rate schedules (nn/optim.py) and how the training settings choose one (engine/config.py).

Expected values are computed here by hand from the formulas (cos(pi/2) = 0, cos(pi/3) = 1/2, ...),
never by the schedule under test.
"""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.engine.trainer import resumed_config, train
from numpy_retinanet.nn.optim import WarmupCosineSchedule, WarmupStepSchedule


def test_cosine_warm_up_is_the_step_schedules():
    cosine = WarmupCosineSchedule(0.1, total_steps=1000, warmup_steps=100, warmup_factor=0.25)
    assert cosine(0) == pytest.approx(0.025)
    assert cosine(50) == pytest.approx(0.1 * (0.25 + 0.75 * 0.5))
    step = WarmupStepSchedule(0.1, warmup_steps=100, warmup_factor=0.25, milestones=(900,))
    assert [cosine(t) for t in range(100)] == [step(t) for t in range(100)]


def test_cosine_at_hand_computed_points():
    # warm-up 100, cosine over the 900 steps 100 .. 1000
    s = WarmupCosineSchedule(0.1, total_steps=1000, warmup_steps=100)
    assert s(100) == pytest.approx(0.1)  # the end of the warm-up: the full rate
    assert s(100 + 300) == pytest.approx(0.1 * (1 + 0.5) / 2)  # a third of the way: cos(pi/3) = 1/2
    assert s(100 + 450) == pytest.approx(0.05)  # half way: cos(pi/2) = 0, half the rate
    assert s(100 + 600) == pytest.approx(0.1 * (1 - 0.5) / 2)  # two thirds: cos(2 pi/3) = -1/2
    assert s(1000) == 0.0 and s(5000) == 0.0  # at and after total_steps
    # The last step taken (999) is one 900th of half a period before 0: 0.1 (1 - cos(pi/900)) / 2.
    assert s(999) == pytest.approx(0.1 * (1 - math.cos(math.pi / 900)) / 2)
    assert 0 < s(999) < 1e-6


def test_cosine_without_warm_up_starts_at_the_full_rate():
    s = WarmupCosineSchedule(0.2, total_steps=4, warmup_steps=0)
    # cos(0), cos(pi/4), cos(pi/2), cos(3 pi/4)
    expected = [0.2, 0.1 * (1 + math.sqrt(0.5)), 0.1, 0.1 * (1 - math.sqrt(0.5))]
    assert [s(t) for t in range(4)] == pytest.approx(expected)


@settings(max_examples=30, deadline=None)
@given(total=st.integers(2, 300), warmup=st.integers(0, 300), factor=st.floats(0.01, 1.0),
       base_lr=st.floats(1e-4, 1.0))
def test_cosine_rises_then_falls_to_near_zero(total, warmup, factor, base_lr):
    s = WarmupCosineSchedule(base_lr, total_steps=total, warmup_steps=warmup, warmup_factor=factor)
    lrs = [s(t) for t in range(total)]
    assert all(0 < lr <= base_lr * (1 + 1e-12) for lr in lrs)
    end = min(warmup, total)
    assert all(a <= b for a, b in zip(lrs[:end], lrs[1:end + 1]))  # the warm-up never lowers the rate
    assert all(a >= b for a, b in zip(lrs[end:], lrs[end + 1:]))  # after it the rate never rises
    if warmup < total:
        assert lrs[warmup] == pytest.approx(base_lr)
        # the last step is the last of the half period: at most 1 - cos(pi / n) of the rate, n >= 1 steps down
        assert lrs[-1] <= base_lr * (1 - math.cos(math.pi / (total - warmup))) / 2 * (1 + 1e-9)


def test_cosine_arguments_are_checked():
    with pytest.raises(ValueError, match="total_steps must be an int >= 1, got 0"):
        WarmupCosineSchedule(0.1, total_steps=0)
    with pytest.raises(ValueError, match="base_lr must be"):
        WarmupCosineSchedule(0.0, total_steps=10)
    with pytest.raises(ValueError, match="warmup_steps must be an int >= 0, got -1"):
        WarmupCosineSchedule(0.1, total_steps=10, warmup_steps=-1)


def test_the_config_builds_the_schedule_it_names():
    step = TrainConfig(schedule="step", iterations=900, lr=0.03, warmup_steps=10, decay_at=(2 / 3, 8 / 9))
    s = step.lr_schedule()
    assert s(599) == pytest.approx(0.03) and s(600) == pytest.approx(0.003) and s(800) == pytest.approx(0.0003)
    cosine = TrainConfig(schedule="cosine", iterations=900, lr=0.03, warmup_steps=0).lr_schedule()
    assert cosine(450) == pytest.approx(0.015)  # half way: half the rate, whatever decay_at says
    with pytest.raises(ValueError, match="schedule must be one of 'step', 'cosine', got 'linear'"):
        TrainConfig(schedule="linear").validate()


TINY = dict(preset="tiny", image_size=64, iterations=6, batch_size=2, lr=0.05, warmup_steps=2, schedule="cosine",
            clip_grad_norm=5.0, eval_images=0, log_every=100, checkpoint_every=100, train_images=8)
QUIET = dict(log=lambda *a: None)


def test_training_uses_the_cosine_rates_and_a_resumed_run_continues_them(tmp_path):
    config = TrainConfig(**TINY)
    whole = train(config, tmp_path / "whole", **QUIET)
    # warm-up 2 steps from 1/3, then cos over the 4 steps 2 .. 6
    expected = [0.05 / 3, 0.05 * 2 / 3] + [0.025 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert whole["history"]["lr"] == pytest.approx(expected)
    train(config, tmp_path / "split", stop_after=3, **QUIET)
    resumed = train(config, tmp_path / "split", resume=True, **QUIET)
    assert resumed["history"]["lr"] == whole["history"]["lr"]
    assert resumed["history"]["total"] == pytest.approx(whole["history"]["total"], rel=1e-6)


def test_a_resumed_run_keeps_its_schedule():
    meta = {"train_config": TrainConfig(**TINY).to_dict(), "step": 3}
    assert resumed_config(meta).schedule == "cosine"
    with pytest.raises(ValueError, match="schedule 'step'"):
        resumed_config(meta, {"schedule": "step"})


def test_a_run_saved_before_the_schedule_setting_keeps_the_step_schedule():
    saved = TrainConfig(**dict(TINY, schedule="step", iterations=900, decay_at=(0.5, 0.75))).to_dict()
    del saved["schedule"]  # what a checkpoint written before the setting existed holds
    config = TrainConfig.from_dict(saved)
    assert config.schedule == "step"
    assert config.lr_schedule()(449) == pytest.approx(0.05) and config.lr_schedule()(450) == pytest.approx(0.005)
    # A config saved outside the trainer is empty: it takes every default.
    assert TrainConfig.from_dict({}) == TrainConfig()
    assert TrainConfig.from_dict({}, schedule="cosine").schedule == "cosine"
