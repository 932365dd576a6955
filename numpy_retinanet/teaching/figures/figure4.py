"""Figure 4 of the paper from the figures' trained model: "figure4_loss_cdf".

The curves and the drawing are ``evaluation/loss_cdf.py``'s; this registers the figure.
"""

from __future__ import annotations

from numpy_retinanet.evaluation.loss_cdf import loss_cdf_curves, plot_loss_cdf
from numpy_retinanet.evaluation.visualize import save_figure
from numpy_retinanet.teaching.figures.registry import register_figure


@register_figure("figure4_loss_cdf", needs_model=True)
def _figure4_loss_cdf(out_dir, trained):
    curves = loss_cdf_curves(trained.model, trained.held_out())
    return save_figure(plot_loss_cdf(curves, trained.caption()), out_dir / "figure4_loss_cdf.png")
