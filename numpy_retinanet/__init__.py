"""numpy-retinanet: RetinaNet and the focal loss (Lin et al., 2017) in plain NumPy.

Every forward pass has a hand-written backward pass, proven right by gradient checks.
The layers, imports pointing down only (docs/ARCHITECTURE.md, "Layers" and "Layout"):
``backend``, ``_checks``, ``_settings``, ``gradcheck`` < ``nn`` (ops, losses, modules, optimizer) < ``detection``
(anchors, boxes, matcher, loss, post-processing) < ``model`` (backbone, FPN, heads, presets) < ``data``
(datasets, transforms, batching) < ``evaluation`` (COCO AP, pictures) < ``engine`` (settings, training,
workers, checkpoints, inference) < ``teaching``, ``tools`` (figures, exercises; ablation, benchmarks) < ``cli``.
"""

__version__ = "0.1.0"
