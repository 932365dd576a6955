"""Training settings: the one place each default of a run is written.

``TrainConfig`` inherits the loss settings from ``detection.criterion.LossConfig`` and the data
settings from ``data.build.DataConfig`` and adds the optimization and the run's bookkeeping,
so ``TrainConfig(preset="tiny", loss="fl_star", image_size=64)`` sets any of them. Every field
is a ``_settings.setting`` with its help text and range: ``numpy-retinanet train`` makes one flag
per field from them (``cli.py``), and ``validate`` checks them. The model's architecture is a
preset (``model.presets.PRESETS``) with ``model_overrides`` applied.

This module imports no trainer, so the command line can show the defaults quickly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from numpy_retinanet._settings import check_settings, setting
from numpy_retinanet.data.build import MAX_IMAGE_SIZE, DataConfig
from numpy_retinanet.data.shapes import MIN_IMAGE_SIZE
from numpy_retinanet.detection.criterion import LossConfig
from numpy_retinanet.model.presets import PRESETS, resolve_config
from numpy_retinanet.nn.optim import WarmupCosineSchedule, WarmupStepSchedule

# The command line's number of worker processes on the CPU. Two use both cores of a 2-core
# laptop for the whole step, not only for the matrix products (engine/parallel.py gives the
# numbers); a fixed number, not the machine's core count, so that the same command gives the
# same numbers everywhere. TrainConfig's own default stays 1 (no processes are spawned), so
# scripts and lessons that call ``train`` need no ``if __name__ == "__main__"`` guard.
CLI_CPU_WORKERS = 2


def cli_workers(device: str, batch_size: int) -> int:
    """The worker processes of ``numpy-retinanet train`` when ``--workers`` is not given:
    CLI_CPU_WORKERS on the CPU, but no more than the batch has images (each needs a part); 1 on a GPU."""
    return min(CLI_CPU_WORKERS, batch_size) if device == "cpu" else 1


# The most pixels one training step may hold: batch_size * image_size ** 2. A step keeps every
# layer's activations for the backward pass, about 740 bytes per input pixel with the default
# preset (``numpy-retinanet bench model``: 92 MiB for 8 images of 128 px), so 2 ** 21 pixels
# (128 images of 128 px, or 2 of 1024 px) stay under about 1.5 GiB instead of running the machine out
# of memory in a step that a single Ctrl-C cannot stop. The paper preset takes ~18x more per
# pixel: give it smaller batches. MAX_BATCH_SIZE is this bound at the smallest image side.
MAX_STEP_PIXELS = 2 ** 21
MAX_BATCH_SIZE = MAX_STEP_PIXELS // MIN_IMAGE_SIZE ** 2
assert MAX_IMAGE_SIZE ** 2 <= MAX_STEP_PIXELS  # one image of the largest side fits a step


@dataclass
class TrainConfig(LossConfig, DataConfig):
    """Everything a run depends on; saved in the checkpoint and in metrics.json."""

    preset: str = setting("default", "model preset (model/presets.py); its settings can be changed one by one",
                          choices=tuple(PRESETS))
    # The recipe, measured (docs/recipe.md; AP on the 200 held-out images, a 2-core CPU): these defaults,
    # 4000 steps of 8 images at 128 px, lr 0.06, the paper's step schedule, reach AP 0.683 / AP50 0.934.
    # `--schedule cosine --iterations 3500` reaches AP 0.663 / AP50 0.913 (0.664 / 0.913 with other seeds) in
    # 0.90x the wall clock, timed alternating (A, B, A, B): the target of AP50 >= 0.90 with an eighth fewer
    # steps, and less AP. Timed again with the faster step (A, B, A, B): 306 and 272 s against 321 and 322 s,
    # under 5 minutes in one run of two; on 7 December 330 and 301 s against 353 and 336 s, in neither. The
    # defaults stay the step schedule, with its larger AP50 margin, and the shipped model and every figure
    # drawn from it come from them. At equal steps the two schedules
    # reach the same AP (4000 steps of 4 images: 0.592 / 0.861 cosine, 0.587 / 0.863 step); lr 0.12 gave no
    # more than 0.06; batches of 4 gave more AP per image but not per second; 96 px images lost AP50 on the
    # small shapes.
    iterations: int = setting(4000, "training steps", low=1)
    batch_size: int = setting(8, "images per step (batch_size * image_size^2 at most 2^21 pixels: "
                                 "engine/config.py)", low=1, high=MAX_BATCH_SIZE)
    lr: float = setting(0.06, "base learning rate (README: why higher than the paper's 0.01)", low=0.0,
                        low_open=True)
    momentum: float = setting(0.9, "SGD momentum (§4.1)", low=0.0, high=1.0)
    weight_decay: float = setting(1e-4, "weight decay of the conv weights (§4.1)", low=0.0)
    warmup_steps: int = setting(200, "steps of linear warm-up from warmup_factor x lr", low=0)
    warmup_factor: float = setting(1.0 / 3.0, "the lr at step 0, as a fraction of lr", low=0.0, low_open=True,
                                   high=1.0)
    schedule: str = setting("step", "learning rate after the warm-up: step (the paper's: 10x drops at decay_at) "
                                    "or cosine (half a cosine down to 0 at the last step; nn/optim.py)",
                            choices=("step", "cosine"))
    # The paper decays at 60k and 80k of 90k iterations: the same fractions here.
    decay_at: tuple = setting((2.0 / 3.0, 8.0 / 9.0), "fractions of the run after which the lr drops 10x",
                              low=0.0, low_open=True, high=1.0)
    clip_grad_norm: float = setting(10.0, "clip the global gradient norm at this (0: off)", low=0.0)
    seed: int = setting(0, "seed of the model's initialization", low=0)
    log_every: int = setting(50, "steps between progress lines", low=1)
    checkpoint_every: int = setting(500, "steps between checkpoints", low=1)
    device: str = setting("cpu", "where the math runs (gpu: CuPy)", choices=("cpu", "gpu"))
    workers: int = setting(1, "processes computing each step's gradient, one part of the batch each "
                              "(engine/parallel.py); at most batch_size", low=1)
    # Preset settings changed for this run, e.g. {"fpn_channels": 32}; each has a flag (cli.py).
    model_overrides: dict = field(default_factory=dict)

    def validate(self):
        """Raise ValueError naming each setting that is out of range or that does not fit another."""
        check_settings(self, "training settings")
        LossConfig.validate(self)  # how the loss settings relate (bg_iou <= fg_iou, FL*'s gamma > 0)
        step_pixels = self.batch_size * self.image_size ** 2
        if step_pixels > MAX_STEP_PIXELS:  # the memory of one step (MAX_STEP_PIXELS)
            raise ValueError(f"invalid training settings: batch_size * image_size^2 must be at most "
                             f"{MAX_STEP_PIXELS} pixels (at most about 1.5 GiB a step; engine/config.py), got "
                             f"{self.batch_size} * {self.image_size}^2 = {step_pixels}")
        if self.workers > self.batch_size:
            raise ValueError(f"invalid training settings: workers must be at most batch_size ({self.batch_size}), "
                             f"got {self.workers}")
        if self.workers > 1 and self.device != "cpu":
            raise ValueError(f"workers={self.workers} needs device 'cpu' (got {self.device!r}); "
                             "on a GPU one process computes the whole batch")
        resolve_config(self.preset, self.model_overrides)  # unknown model settings are named

    def milestones(self):
        """The steps at which the step schedule divides the rate by 10 (``decay_at`` of ``iterations``)."""
        return [int(round(f * self.iterations)) for f in self.decay_at]

    def lr_schedule(self):
        """The learning rate of each step, ``schedule(step)``: the ``schedule`` setting's (nn/optim.py)."""
        if self.schedule == "cosine":
            return WarmupCosineSchedule(self.lr, self.iterations, self.warmup_steps, self.warmup_factor)
        return WarmupStepSchedule(self.lr, self.warmup_steps, self.warmup_factor, self.milestones())

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["decay_at"] = list(self.decay_at)
        return d

    @classmethod
    def from_dict(cls, d, **changes):
        """The config saved by ``to_dict`` (JSON lists become tuples again), with ``changes`` applied.

        Readers of a checkpoint pass ``num_classes=model.num_classes``: a checkpoint saved outside the
        trainer holds an empty training config, and its model knows how many classes it has.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        if d and "schedule" not in d:  # saved before the setting existed: every such run used the step schedule
            d = {**d, "schedule": "step"}
        d = {k: v for k, v in {**d, **changes}.items() if k in known}
        if "decay_at" in d:
            d["decay_at"] = tuple(d["decay_at"])
        return cls(**d)
