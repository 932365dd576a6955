"""Training settings, in a module of their own so the command line can show their defaults
without importing the whole trainer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    """Everything a run depends on; saved in the checkpoint and in metrics.json."""

    preset: str = "default"
    image_size: int = 128
    num_classes: int = 3
    iterations: int = 4000
    batch_size: int = 8
    lr: float = 0.06
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    warmup_factor: float = 1.0 / 3.0
    # The paper decays at 60k and 80k of 90k iterations: the same fractions here.
    decay_at: tuple = (2.0 / 3.0, 8.0 / 9.0)
    clip_grad_norm: float = 10.0  # 0 = off
    alpha: float = 0.25
    gamma: float = 2.0
    loss: str = "focal"  # or "ce" (alpha-balanced cross-entropy, Table 1a)
    train_images: int = 20000
    max_objects: int = 4  # shapes per image are 0..max_objects (fewer: more background per object)
    seed: int = 0
    data_seed: int = 0
    eval_images: int = 200
    eval_seed: int = 1000  # held-out images are drawn with another seed
    log_every: int = 50
    checkpoint_every: int = 500
    device: str = "cpu"
    # Processes computing each step's gradient, one part of the batch each (engine.parallel);
    # 1 computes it in the calling process. The command line's default is 2 on the CPU.
    workers: int = 1
    model_overrides: dict = field(default_factory=dict)

    def validate(self):
        checks = [("image_size", self.image_size >= 64), ("num_classes", 1 <= self.num_classes <= 7),
                  ("iterations", self.iterations >= 1), ("batch_size", self.batch_size >= 1),
                  ("lr", self.lr > 0), ("train_images", self.train_images >= 1), ("max_objects", self.max_objects >= 1),
                  ("eval_images", self.eval_images >= 0), ("log_every", self.log_every >= 1),
                  ("checkpoint_every", self.checkpoint_every >= 1), ("clip_grad_norm", self.clip_grad_norm >= 0),
                  ("loss", self.loss in ("focal", "ce")), ("device", self.device in ("cpu", "gpu")),
                  ("workers", 1 <= self.workers <= max(1, self.batch_size))]
        bad = [name for name, ok in checks if not ok]
        if bad:
            raise ValueError(f"invalid training settings: " + ", ".join(f"{b}={getattr(self, b)!r}" for b in bad)
                             + (" (workers must be 1 to batch_size)" if "workers" in bad else ""))
        if self.workers > 1 and self.device != "cpu":
            raise ValueError(f"workers={self.workers} needs device 'cpu' (got {self.device!r}); "
                             "on a GPU one process computes the whole batch")

    def milestones(self):
        return [int(round(f * self.iterations)) for f in self.decay_at]

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["decay_at"] = list(self.decay_at)
        return d

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "decay_at" in d:
            d["decay_at"] = tuple(d["decay_at"])
        return cls(**d)
