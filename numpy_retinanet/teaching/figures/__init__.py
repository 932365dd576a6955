"""Every figure in figures/ is made here, from the package's own code (``numpy-retinanet figures``).

One module per subject, each registering its figures with ``registry.register_figure``:

- ``focal_loss``: Figure 1 of the paper (§3.2), the focal loss against p_t, and its gradient
  (Appendix B);
- ``receptive_field``: each pyramid level's stride and receptive field beside its anchors (§4);
- ``anchors``: the anchors of each pyramid level and their matching to boxes (§4);
- ``sigmoid_vs_softmax``: the classification output as K sigmoids, beside a softmax with background (§3, §4);
- ``clutter``: example images of the cluttered regime ("shapes-clutter"), objects and distractors;
- ``detections``, ``training_curve`` and ``figure4``: the figures of a trained model
  (``figure_model``): its detections (§4.1), its loss while training, and Figure 4 (§5.1);
- ``nms_and_pr``: the same model's detections before and after NMS (§4.1), and a precision-recall
  curve with COCO's 101-point interpolation (§5).

Each figure keeps its data apart from its drawing: a ``*_data`` or ``*_curves`` function computes
the arrays with the package's own functions (tests compare them with the paper's formulas), and a
``plot_*`` function draws exactly those arrays. ``make_figures`` makes them in registration
order, which is the order of the imports below. The PNGs are committed and regenerate byte for
byte (``evaluation.visualize.save_figure``).
"""

from numpy_retinanet.teaching.figures.figure_model import (
    FIGURE_TRAINING,
    FigureModel,
    load_figure_model,
    train_figure_model,
)
from numpy_retinanet.teaching.figures.registry import FIGURES, as_image, make_figures, register_figure

# The subjects, in the order make_figures makes their figures: importing a subject registers its
# figures, so this order is FIGURES' order. isort must not sort it.
# isort: off
from numpy_retinanet.teaching.figures.focal_loss import (
    GAMMAS,
    focal_loss_curves,
    focal_loss_gradient_curves,
    plot_focal_loss_gradient,
    plot_focal_loss_vs_pt,
)
from numpy_retinanet.teaching.figures.receptive_field import (
    COCO_SIZES,
    plot_receptive_field,
    receptive_field,
    receptive_field_data,
)
from numpy_retinanet.teaching.figures.anchors import (
    anchors_per_level_data,
    figure_image,
    matched_anchors_data,
    plot_anchors_per_level,
    plot_matched_anchors,
    preset_anchor_generator,
)
from numpy_retinanet.teaching.figures.sigmoid_vs_softmax import (
    plot_sigmoid_vs_softmax,
    sigmoid_vs_softmax_data,
    softmax_with_background,
)
from numpy_retinanet.teaching.figures.clutter import clutter_examples_data, plot_clutter_examples
from numpy_retinanet.teaching.figures.detections import detections_data, plot_detections
from numpy_retinanet.teaching.figures import training_curve  # noqa: F401  (registers "training_curve")
from numpy_retinanet.evaluation.loss_cdf import FIGURE4_GAMMAS, loss_cdf_curves, plot_loss_cdf
from numpy_retinanet.teaching.figures import figure4  # noqa: F401  (registers figure4_loss_cdf)
from numpy_retinanet.teaching.figures.nms_and_pr import (
    nms_data,
    plot_nms,
    plot_precision_recall,
    precision_recall_data,
)
# isort: on

__all__ = [
    "FIGURES",
    "register_figure",
    "make_figures",
    "as_image",
    "GAMMAS",
    "focal_loss_curves",
    "focal_loss_gradient_curves",
    "plot_focal_loss_vs_pt",
    "plot_focal_loss_gradient",
    "COCO_SIZES",
    "receptive_field",
    "receptive_field_data",
    "plot_receptive_field",
    "softmax_with_background",
    "sigmoid_vs_softmax_data",
    "plot_sigmoid_vs_softmax",
    "clutter_examples_data",
    "plot_clutter_examples",
    "FIGURE4_GAMMAS",
    "FIGURE_TRAINING",
    "FigureModel",
    "train_figure_model",
    "load_figure_model",
    "figure_image",
    "preset_anchor_generator",
    "anchors_per_level_data",
    "plot_anchors_per_level",
    "matched_anchors_data",
    "plot_matched_anchors",
    "loss_cdf_curves",
    "plot_loss_cdf",
    "detections_data",
    "plot_detections",
    "nms_data",
    "plot_nms",
    "precision_recall_data",
    "plot_precision_recall",
]
