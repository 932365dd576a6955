"""numpy-retinanet: RetinaNet and the focal loss (Lin et al., 2017) in plain NumPy.

Every forward pass has a hand-written backward pass, proven right by gradient checks.
See DESIGN.md for the layout: ``nn`` (ops, losses, modules, optimizer), ``model``
(backbone, FPN, heads), ``detection`` (anchors, boxes, matcher, loss, post-processing),
``data`` (synthetic shapes), ``engine`` (training, checkpoints, COCO-style evaluation).
"""

__version__ = "0.1.0"
