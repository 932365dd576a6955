"""The trained model behind the figures that need one (detections, training curve, Figure 4).

``make_figures`` loads the shipped model (``engine.checkpoint.SHIPPED_MODEL``: the default
recipe's run, AP about 0.70) or a run's checkpoint with ``load_figure_model``, and each figure
names it in its title (``FigureModel.caption``). Loading, not training, keeps the figures the
same on every machine. ``train_figure_model`` (``FIGURE_TRAINING``) trains a short run for the
lessons that train one by hand.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from numpy_retinanet.data.build import build_dataset
from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL, load_checkpoint
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.engine.trainer import train

#: How ``numpy-retinanet figures`` trains the model behind the figures that need one: the
#: default preset for 600 steps (minutes on a CPU), seeded, so it is the same model every time
#: on one machine. A schedule for a short run: twice the default rate after a 50-step warm-up,
#: with the gradient norm clipped at 10 for safety, decayed late (at 80% and 93% of the steps)
#: so that most steps learn at the full rate.
FIGURE_TRAINING = dict(preset="default", iterations=600, batch_size=8, lr=0.02, warmup_steps=50, schedule="step",
                       decay_at=(0.8, 0.93), clip_grad_norm=10.0, seed=0, data_seed=0, eval_images=0,
                       log_every=50, checkpoint_every=10**9)
#: Held-out images for the detections, their AP and Figure 4.
FIGURE_EVAL_IMAGES = 200


@dataclass
class FigureModel:
    """A trained model and what the figures say about it."""

    model: object
    history: dict  # the trainer's loss history
    train_config: dict  # TrainConfig.to_dict()
    step: int
    source: str  # "the shipped model", "trained by numpy-retinanet figures" or a checkpoint's path

    def caption(self, sep=" "):
        """What the model is and where it came from; ``sep`` goes before the source."""
        c = self.train_config
        return (f"RetinaNet '{c['preset']}' preset, {self.step} steps x {c['batch_size']} images, "
                f"seed {c['seed']}{sep}({self.source})")

    def held_out(self, num_images=FIGURE_EVAL_IMAGES):
        """The run's held-out images (its data settings and eval seed, never trained on)."""
        config = TrainConfig.from_dict(self.train_config, num_classes=self.model.num_classes)
        return build_dataset(config, "eval", num_images=num_images)


def train_figure_model(log=print, **overrides):
    """Train the figures' model (``FIGURE_TRAINING`` with ``overrides``) in a temporary run folder."""
    config = TrainConfig(**{**FIGURE_TRAINING, **overrides})
    with tempfile.TemporaryDirectory(prefix="numpy-retinanet-figures-") as run:
        metrics = train(config, run, log=log)
        model, info = load_checkpoint(Path(run) / "checkpoint.npz")
    return FigureModel(model, metrics["history"], config.to_dict(), info["step"],
                       "trained by numpy-retinanet figures")


def load_figure_model(checkpoint):
    """A ``FigureModel`` from a run's ``checkpoint.npz`` (it must hold the loss history)."""
    model, info = load_checkpoint(checkpoint)
    history = info["extra"].get("history")
    if not history or not history.get("step"):
        raise ValueError(f"checkpoint {checkpoint!r} holds no loss history; the training curve needs "
                         "the checkpoint of a run made by `numpy-retinanet train`")
    config = TrainConfig.from_dict(info["train_config"]).to_dict()
    source = "the shipped model" if os.path.abspath(checkpoint) == SHIPPED_MODEL else str(checkpoint)
    return FigureModel(model, history, config, info["step"], source)
