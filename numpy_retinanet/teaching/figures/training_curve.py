"""The training curve of the figures' trained model: its loss history, drawn by
``visualize.plot_training_curve`` (as every ``numpy-retinanet train`` run draws its own).
Registered as the figure "training_curve".
"""

from __future__ import annotations

from numpy_retinanet.evaluation.visualize import plot_training_curve
from numpy_retinanet.teaching.figures.registry import register_figure


@register_figure("training_curve", needs_model=True)
def _training_curve(out_dir, trained):
    return plot_training_curve(trained.history, out_dir / "training_curve.png",
                               title="Training loss\n" + trained.caption(sep="\n"))
