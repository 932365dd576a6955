# %% [markdown]
# # Lesson 8: training on shapes
#
# Lessons 3 to 7 built every piece; this one puts them in a loop. One training step is
# batch -> `RetinaNet.forward` -> `retinanet_loss` -> `RetinaNet.backward` -> `SGD.step`. We take a few
# steps by hand, look at the optimizer and its schedule (§4.1, "Optimization"), then let
# `engine.trainer.train` run a whole training and write its run folder.
#
# The package ships the detector that the default recipe makes (`numpy-retinanet train`: 4000 steps of 8
# images, about six minutes on a 2-core CPU, AP 0.68). This lesson trains a much shorter run by hand
# and compares it with that model. Fast mode (`NUMPY_RETINANET_FAST=1`) trains the `tiny` preset on 8
# images of 64 px for 80 steps (seconds); otherwise the `default` preset trains for 600 steps on 128 px
# images (a few minutes).

# %%
import os
import tempfile

import numpy as np
from matplotlib.figure import Figure

from numpy_retinanet.data.batching import get_batch
from numpy_retinanet.data.shapes import ShapesDataset
from numpy_retinanet.detection.criterion import retinanet_loss
from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL
from numpy_retinanet.engine.config import TrainConfig
from numpy_retinanet.engine.inference import evaluate_model
from numpy_retinanet.engine.trainer import train
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn.optim import SGD, WarmupStepSchedule
from numpy_retinanet.teaching.figures import (
    FIGURE_TRAINING,
    as_image,
    detections_data,
    load_figure_model,
    plot_detections,
)

FAST = os.environ.get("NUMPY_RETINANET_FAST") == "1"

# %% [markdown]
# ## Steps by hand
#
# `get_batch(dataset, step, batch_size)` returns the images and targets of any training step directly
# (each epoch is a seeded permutation, with random horizontal flips, the paper's only augmentation).
# Ten steps of SGD on one batch of the `tiny` preset:

# %%
model = RetinaNet(num_classes=3, preset="tiny", seed=0)
dataset = ShapesDataset(8, image_size=64, num_classes=3, seed=0)
images, targets = get_batch(dataset, step=0, batch_size=4)
anchors = model.anchors(64, 64)
optimizer = SGD(model.params, lr=0.02, momentum=0.9, weight_decay=1e-4)
history = []
for _ in range(10):
    logits, deltas = model.forward(images)
    losses, dlogits, ddeltas = retinanet_loss(logits, deltas, anchors, targets)
    model.zero_grad()
    model.backward(dlogits, ddeltas)  # fills model.grads; changes no parameter
    optimizer.step(model.grads)  # p -= lr * (momentum buffer of grad + weight decay)
    history.append(losses["total"])
print("loss:", " ".join(f"{v:.3f}" for v in history))

# %% tags=["hide-input"]
assert np.all(np.diff(history) < 0)  # small steps down the gradient of one fixed batch

# %% [markdown]
# The loss on this batch falls at every one of the ten steps: each is a small step down the gradient of
# the same batch (a step too large would overshoot and raise it). Backward only fills `grads`; the
# optimizer is separate, so a gradient check (lesson 3) can call backward as often as it likes.
#
# ## The optimizer (§4.1)
#
# SGD with momentum 0.9 and weight decay 1e-4. Weight decay applies to weights only, not to biases or
# normalization parameters: decaying the classification bias would pull it from the prior
# $b = -4.595$ (lesson 7) towards 0, $p = 0.5$. With zero gradients, one step shrinks only the weights:

# %%
probe = RetinaNet(num_classes=3, preset="tiny", seed=0)
sgd = SGD(probe.params, lr=0.1, weight_decay=1e-4)
before = {k: v.copy() for k, v in probe.params.items()}
probe.zero_grad()
sgd.step(probe.grads)
prior = "cls_head.subnet.2.bias"
weight = "cls_head.subnet.2.weight"

# %% tags=["hide-input"]
assert np.array_equal(probe.params[prior], before[prior])
np.testing.assert_allclose(probe.params[weight], before[weight] * (1 - 0.1 * 1e-4), rtol=1e-6)

# %% [markdown]
# The learning rate is 0.01 for a batch of 16, divided by 10 at 60k and again at 80k of 90k iterations,
# after a linear warm-up over the first 500 iterations from a third of the rate [Detectron]:

# %%
schedule = WarmupStepSchedule(0.01, warmup_steps=500, warmup_factor=1 / 3, milestones=(60_000, 80_000))
for step in (0, 250, 500, 59_999, 60_000, 80_000):
    print(f"step {step:>6}: lr {schedule(step):.6f}")

# %% tags=["hide-input"]
assert np.isclose(schedule(0), 0.01 / 3) and np.isclose(schedule(250), 0.01 * 2 / 3)
assert schedule(500) == schedule(59_999) == 0.01
assert np.isclose(schedule(60_000), 0.001) and np.isclose(schedule(80_000), 0.0001)

# %% [markdown]
# `TrainConfig` keeps these proportions for shorter runs: decay at 60k / 90k = 2/3 and 80k / 90k = 8/9 of
# the iterations.

# %%
defaults = TrainConfig()

# %% tags=["hide-input"]
assert np.allclose(defaults.decay_at, (60_000 / 90_000, 80_000 / 90_000))
assert defaults.milestones() == [round(2 / 3 * defaults.iterations), round(8 / 9 * defaults.iterations)]
assert (defaults.preset, defaults.momentum, defaults.weight_decay) == ("default", 0.9, 1e-4)

# %% [markdown]
# ## A training run
#
# `train(config, run_folder)` runs the loop with that schedule, prints progress, and writes
# `checkpoint.npz`, `metrics.json`, `training_curve.png` and `detections.png` into the run folder (here a
# temporary one). The command line does the same: `numpy-retinanet train --out runs/shapes` trains the
# `default` preset with `TrainConfig`'s defaults, the recipe above scaled to 4000 steps (`numpy-retinanet
# train --help` lists every setting), splitting each batch between two worker processes, one core each
# (`--workers 2`, `engine/parallel.py`: the same gradient up to float rounding, in less time);
# `--resume runs/shapes` continues an interrupted run exactly (and `--iterations N` with it extends a
# finished one).
#
# The run below is *not* that recipe: it is a short one (`FIGURE_TRAINING`: 600 steps at lr 0.02, a
# 50-step warm-up, decay at 80% and 93% of the steps), so that it ends in a few minutes.

# %%
if FAST:
    config = TrainConfig(preset="tiny", image_size=64, iterations=80, batch_size=4, lr=0.05, warmup_steps=10,
                         clip_grad_norm=5.0, train_images=8, eval_images=8, log_every=20)
else:
    config = TrainConfig(**{**FIGURE_TRAINING, "eval_images": 200})
print(config)
run_dir = tempfile.TemporaryDirectory(prefix="lesson08-")
metrics = train(config, run_dir.name)

# %% [markdown]
# ## Our run beside the shipped model
#
# The shipped model's checkpoint keeps its loss history and settings (`load_figure_model` reads both).
# Its run used `TrainConfig`'s defaults, the recipe of this lesson at 4000 steps:

# %% mystnb={"image":{"alt":"Training loss against the step, log scale: the shipped 4000-step run and this run"}}
shipped = load_figure_model(SHIPPED_MODEL)
ours = load_figure_model(os.path.join(run_dir.name, "checkpoint.npz"))


def smoothed(history, window=50):
    """The total loss averaged over ``window`` steps (one point per window)."""
    total = np.asarray(history["total"])
    n = len(total) // window * window
    return np.arange(window, n + 1, window), total[:n].reshape(-1, window).mean(axis=1)


fig = Figure(figsize=(7, 3.5))
ax = fig.add_subplot()
for run, label in ((shipped, "shipped model (default recipe)"), (ours, "this lesson's run")):
    steps, loss = smoothed(run.history, window=50 if not FAST else 10)
    ax.plot(steps, loss, label=f"{label}: {run.step} steps")
ax.set_yscale("log")
ax.set(xlabel="step", ylabel="loss per positive anchor (mean over the window)", title="Training loss")
ax.legend()
fig.tight_layout()
as_image(fig)

# %% tags=["hide-input"]
assert shipped.train_config["iterations"] == defaults.iterations == 4000
assert shipped.train_config["lr"] == defaults.lr and shipped.train_config["decay_at"] == list(defaults.decay_at)

# %% [markdown]
# Both curves fall fast at first and slowly after; the shipped model keeps learning for thousands of
# steps more. The loss history is also in `metrics["history"]`, one entry per step: the last quarter of
# our run is lower than the first, and the shipped run, which trained much longer, ends lower still.

# %%
total = np.array(metrics["history"]["total"])
quarter = len(total) // 4
first, last = total[:quarter].mean(), total[-quarter:].mean()
print(f"mean loss: first quarter {first:.3f}, last quarter {last:.3f}")

# %% tags=["hide-input"]
assert len(total) == config.iterations and np.all(np.isfinite(total))
assert last < first  # training lowers the loss
assert np.mean(shipped.history["total"][-100:]) < last  # the long run ends lower

# %% [markdown]
# ## What the two detectors find
#
# Both are scored on the same held-out images (their evaluation seed; lesson 9 explains AP). In fast mode
# our `tiny` model has seen 8 small images for seconds: expect few good boxes.

# %% mystnb={"image":{"alt":"Four held-out shapes images with the shipped model's detections and dashed ground truth"}}
held_out = shipped.held_out(num_images=50 if FAST else 200)
shipped_ap = evaluate_model(shipped.model, held_out)
print(f"our run: {ours.step} steps, AP {metrics['AP']:.3f}, AP50 {metrics['AP50']:.3f} "
      f"on {config.eval_images} held-out images of {config.image_size} px")
print(f"shipped: {shipped.step} steps, AP {shipped_ap['AP']:.3f}, AP50 {shipped_ap['AP50']:.3f} "
      f"on {len(held_out)} held-out images of {held_out.image_size} px")
as_image(plot_detections(detections_data(shipped.model, held_out, range(4)), held_out.class_names,
                         "The shipped model (scores >= 0.3; ground truth dashed)", columns=2))

# %% tags=["hide-input"]
assert ours.step == config.iterations and shipped_ap["AP"] > metrics["AP"]  # 4000 steps beat a short run
assert FAST or round(shipped_ap["AP"], 2) == 0.68  # the AP the introduction gives

# %% mystnb={"image":{"alt":"The same kind of images with the detections of this lesson's short run"}}
ours_held_out = ours.held_out(num_images=4)
as_image(plot_detections(detections_data(ours.model, ours_held_out, range(4)), ours_held_out.class_names,
                         f"This lesson's run, {ours.step} steps (scores >= 0.3; ground truth dashed)", columns=2))

# %%
run_dir.cleanup()

# %% [markdown]
# ## Summary
#
# - A step is forward, loss, backward (fills `grads`), optimizer step; nothing else changes a parameter.
# - SGD with momentum 0.9, weight decay 1e-4 on weights only; linear warm-up, then /10 twice.
# - `engine.trainer.train` (or `numpy-retinanet train`) runs the loop, checkpoints, resumes exactly, stops
#   with a clear message if the loss turns NaN or blows up (keeping the last good checkpoint), and evaluates
#   at the end.
# - A 600-step run learns the shapes only roughly; the shipped model, the default recipe's 4000 steps,
#   reaches AP about 0.7. `numpy-retinanet detect` and `evaluate` use it when given no checkpoint.
#
# ## Exercises
#
# 1. Train with `clip_grad_norm=0` and `lr=0.2` in fast mode's config. What does the trainer report, and
#    which checkpoint is left?
# 2. Stop a run with `train(config, folder, stop_after=20)`, resume it with `train(TrainConfig(), folder,
#    resume=True)`, and check that the parameters equal an uninterrupted run's (`tests/test_trainer.py`).
# 3. Train the `default` preset with `gamma=0` (alpha-balanced CE) and compare the curves (lesson 10 shows
#    what the committed ablation found).
