"""SGD with momentum and weight decay, and two learning-rate schedules: the paper's warm-up +
step decay (§4.1), and warm-up + cosine decay (``--schedule cosine``; engine/config.py says why the default
recipe keeps the step schedule).

The optimizer is separate from backward (backward never changes a parameter), so
a gradient check can run backward any number of times.
"""

from __future__ import annotations

import math

import numpy as np

from numpy_retinanet._checks import check_int, check_real
from numpy_retinanet.backend import array_module, to_host


class SGD:
    """Stochastic gradient descent with momentum and L2 weight decay (PyTorch's form).

        g = grad + weight_decay * p      (decay only on weights with ndim > 1; see below)
        v = momentum * v + g
        p = p - lr * v

    Biases and normalization scales/shifts (1-D parameters) get no weight decay:
    shrinking them toward zero does not regularize the function, and decaying the
    classification prior bias (§3.3) would undo it.

    Parameters
    ----------
    params : dict name -> array, updated in place (``model.params``).
    lr, momentum, weight_decay : the paper uses 0.01 (batch 16), 0.9, 1e-4.
    """

    def __init__(self, params: dict, lr=0.01, momentum=0.9, weight_decay=1e-4):
        check_real("lr", lr, 0, low_open=True)
        check_real("momentum", momentum, 0, 1, high_open=True)
        check_real("weight_decay", weight_decay, 0)
        self.params = params
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.velocity = {k: array_module(p).zeros_like(p) for k, p in params.items()}

    def step(self, grads: dict, lr=None):
        """One update with ``grads`` (same keys as params); ``lr`` overrides the base rate."""
        lr = self.lr if lr is None else lr
        for k, p in self.params.items():
            g = grads[k]
            if self.weight_decay and p.ndim > 1:
                g = g + self.weight_decay * p
            v = self.velocity[k]
            v *= self.momentum
            v += g
            p -= lr * v

    def state_dict(self) -> dict:
        """Host copies of the momentum buffers, keyed like the parameters."""
        return {k: np.array(to_host(v), copy=True, order="C") for k, v in self.velocity.items()}

    def load_state_dict(self, state: dict):
        """Restore momentum buffers (names and shapes must match the parameters)."""
        if set(state) != set(self.velocity):
            raise ValueError("optimizer state does not match the parameters: "
                             f"missing {sorted(set(self.velocity) - set(state))[:5]}, "
                             f"unexpected {sorted(set(state) - set(self.velocity))[:5]}")
        for k, v in self.velocity.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise ValueError(f"optimizer state {k!r} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
            v[...] = array_module(v).asarray(state[k])


class WarmupStepSchedule:
    """Learning rate at each step: linear warm-up, then division by 10 at each milestone.

    lr(t) = base_lr * w(t) * decay^(number of milestones <= t), where
    w(t) = warmup_factor + (1 - warmup_factor) * t / warmup_steps for t < warmup_steps, else 1.
    Detectron: base_lr 0.01, warm-up 500 steps from 1/3, milestones 60k and 80k of 90k.
    """

    def __init__(self, base_lr, warmup_steps=500, warmup_factor=1.0 / 3.0, milestones=(), decay=0.1):
        check_real("base_lr", base_lr, 0, low_open=True)
        check_real("warmup_factor", warmup_factor, 0, 1, low_open=True)
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must be increasing, got {list(milestones)}")
        self.base_lr = base_lr
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 0)
        self.warmup_factor = warmup_factor
        self.milestones = [int(m) for m in milestones]
        self.decay = decay

    def __call__(self, step: int) -> float:
        lr = self.base_lr * self.decay ** sum(step >= m for m in self.milestones)
        if step < self.warmup_steps:
            lr *= self.warmup_factor + (1.0 - self.warmup_factor) * step / self.warmup_steps
        return float(lr)


class WarmupCosineSchedule:
    """Learning rate at each step: the same linear warm-up, then half a cosine from base_lr down to 0.

    lr(t) = base_lr * w(t)                                          for t < warmup_steps,
    lr(t) = base_lr * (1 + cos(pi * (t - warmup_steps) / (total_steps - warmup_steps))) / 2   after,
    with w(t) = warmup_factor + (1 - warmup_factor) * t / warmup_steps as in ``WarmupStepSchedule``.

    The rate is base_lr at the end of the warm-up and would reach 0 at ``total_steps``, one step
    after the last one taken (steps are numbered 0 .. total_steps - 1), so no step is wasted at
    rate 0. Instead of two 10x drops at chosen steps the rate falls smoothly, with nothing to
    choose but the length of the run ("SGDR", Loshchilov & Hutter 2017; "Bag of tricks", He et al. 2019).
    Like ``WarmupStepSchedule`` it is a function of the step alone, so a resumed run continues
    exactly; but it also depends on ``total_steps``: a run extended to more steps gets another curve.
    Steps at or after ``total_steps`` get rate 0.
    """

    def __init__(self, base_lr, total_steps, warmup_steps=500, warmup_factor=1.0 / 3.0):
        check_real("base_lr", base_lr, 0, low_open=True)
        check_real("warmup_factor", warmup_factor, 0, 1, low_open=True)
        self.base_lr = base_lr
        self.total_steps = check_int("total_steps", total_steps, 1)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 0)
        self.warmup_factor = warmup_factor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return float(self.base_lr * (self.warmup_factor + (1.0 - self.warmup_factor) * step / self.warmup_steps))
        progress = min(step - self.warmup_steps, self.decay_steps) / self.decay_steps  # 0 .. 1, held at 1 after
        return float(self.base_lr * 0.5 * (1.0 + math.cos(math.pi * progress)))

    @property
    def decay_steps(self):
        """Steps from the end of the warm-up to ``total_steps``, where the rate reaches 0 (at least 1:
        a run shorter than its warm-up is all warm-up, as with ``WarmupStepSchedule``)."""
        return max(1, self.total_steps - self.warmup_steps)
