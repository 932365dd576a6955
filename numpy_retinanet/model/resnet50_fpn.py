"""The RetinaNet of torchvision's ``retinanet_resnet50_fpn`` (v1, COCO box AP 36.4), built from
this package's pieces, so its published weights run in NumPy (``numpy-retinanet convert``).

    images (N, 3, H, W), H and W multiples of 32 (``data/torchvision_transform.py``)
      -> ResNet-50 with frozen batch norm (``model/resnet50.py``): C3, C4, C5 (512, 1024, 2048 channels)
      -> FPN (``model/fpn.py``, 256 channels): laterals 1x1 and outputs 3x3 on C3-C5, nearest
         upsampling; P6 = 3x3 stride-2 conv of P5 (torchvision's v1: ``LastLevelP6P7(256, 256)``
         takes P5, the paper takes C5), P7 = 3x3 stride-2 conv of ReLU(P6)
      -> the paper's heads (``model/heads.py``): four 3x3 convs + ReLU, no normalization; A*K
         logits with the prior bias, A*4 deltas
      -> logits (N, M, K), deltas (N, M, 4), M anchors in torchvision's convention
         (``detection/anchors_torchvision.py``), ordered level, row, column, anchor.

K = 91 for COCO: torchvision's labels are COCO's category ids (0 is "__background__" and 10 ids
are unused, ``COCO_CATEGORY_NAMES``). Its post-processing is ``detection.postprocess``'s with
``TORCHVISION_POSTPROCESS``.
"""

from __future__ import annotations

import numpy as np

from numpy_retinanet._checks import check_array, check_int, check_real
from numpy_retinanet.detection.anchors_torchvision import TorchvisionAnchorGenerator
from numpy_retinanet.model.fpn import FPN
from numpy_retinanet.model.heads import RetinaHead, prior_bias
from numpy_retinanet.model.resnet50 import ResNet50
from numpy_retinanet.nn.modules import Module

#: The ``preset`` name of this architecture in a checkpoint's model config.
RESNET50_FPN = "torchvision_resnet50_fpn"

#: torchvision's RetinaNet post-processing (``RetinaNet.__init__``'s defaults): keyword arguments of
#: ``detection.postprocess.postprocess``. Unlike Detectron, 300 detections, and boxes that clipping
#: leaves empty are kept.
TORCHVISION_POSTPROCESS = dict(score_threshold=0.05, topk_per_level=1000, nms_threshold=0.5,
                               max_detections=300, drop_empty=False)

#: COCO's category names by category id 0..90, as torchvision lists them (``_COCO_CATEGORIES``):
#: id 0 is the background and the 10 ids COCO never used are "N/A"; the other 80 are the classes.
COCO_CATEGORY_NAMES = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
    "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A", "dining table", "N/A", "N/A", "toilet",
    "N/A", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "N/A", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)


class ResNet50FPNRetinaNet(Module):
    """torchvision's ``retinanet_resnet50_fpn`` (module docstring), forward as ``RetinaNet``'s.

    Parameters
    ----------
    num_classes : K (91 for torchvision's COCO weights).
    bn_eps : the frozen batch norms' eps (torchvision: 1e-5; 0.0 with its COCO weights).
    dtype : float32 or float64.
    seed : seed of the random initialization (a converted checkpoint overwrites every parameter).
    """

    def __init__(self, num_classes=91, bn_eps=1e-5, dtype=np.float32, seed=0):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.bn_eps = check_real("bn_eps", bn_eps, 0)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.seed = int(seed)
        self.anchor_generator = TorchvisionAnchorGenerator()
        rng = np.random.default_rng(seed)
        A = self.anchor_generator.num_anchors_per_location
        self.backbone = ResNet50(self.bn_eps, rng=rng, dtype=self.dtype)
        self.fpn = FPN(self.backbone.out_channels, 256, "p5", rng=rng, dtype=self.dtype)
        head = dict(depth=4, channels=256, norm_groups=0, rng=rng, dtype=self.dtype)
        self.cls_head = RetinaHead(256, A, self.num_classes, bias_init=prior_bias(0.01), **head)
        self.box_head = RetinaHead(256, A, 4, bias_init=0.0, **head)

    def config(self) -> dict:
        """Everything needed to rebuild this model (a checkpoint's ``model``)."""
        return {"num_classes": self.num_classes, "preset": RESNET50_FPN, "dtype": self.dtype.name,
                "seed": self.seed, "overrides": {}, "bn_eps": self.bn_eps}

    def forward(self, images, keep_cache=True):
        """images (N, 3, H, W) -> logits (N, M, K), deltas (N, M, 4).

        ``keep_cache=False`` (inference) drops every part's caches as soon as it is done: one 800 x 1088
        picture then peaks at 1.5 GB instead of 4.9 GB (``/usr/bin/time`` of the whole ``detect`` command).
        """
        check_array("images", images, ("N", 3, "H", "W"), dtype=self.dtype, nonempty=True, finite=True)

        def done(part):
            if not keep_cache:
                part.clear_cache()

        features = self.fpn.forward(*self.backbone.forward(images, keep_cache))
        done(self.fpn)
        logits = self.cls_head.forward(features)
        done(self.cls_head)
        deltas = self.box_head.forward(features)
        done(self.box_head)
        return logits, deltas

    def head_outputs(self, images):
        """Per level, the heads' maps before flattening: [(logits (N, A*K, H_l, W_l), deltas (N, A*4, H_l, W_l))]
        for P3..P7, channel ``a*K + k`` (what torchvision's heads compute before their reshape)."""
        features = self.fpn.forward(*self.backbone.forward(images, keep_cache=False))
        outs = []
        for f in features:
            outs.append((self.cls_head.subnet.forward(f), self.box_head.subnet.forward(f)))
            self.clear_cache()
        return outs

    def backward(self, dlogits, ddeltas):
        """Gradients w.r.t. the outputs -> parameters' gradients added (frozen batch norms get none);
        returns the gradient w.r.t. the images."""
        dps = [a + b for a, b in zip(self.cls_head.backward(dlogits), self.box_head.backward(ddeltas))]
        return self.backbone.backward(*self.fpn.backward(dps))

    def level_sizes(self, height, width):
        """Anchors on each level P3..P7 for a (padded) image of this size."""
        return self.anchor_generator.level_sizes(height, width)

    def anchors(self, height, width, xp=np):
        """(M, 4) anchors of a padded image of this size, torchvision's convention, model dtype."""
        return xp.asarray(self.anchor_generator.anchors(height, width, dtype=self.dtype))


def check_resnet50_fpn_config(model_config):
    """A checkpoint's model config for this architecture: ValueError naming the first bad field."""
    unknown = sorted(set(model_config) - {"num_classes", "preset", "dtype", "seed", "overrides", "bn_eps"})
    if unknown or model_config.get("overrides", {}):
        raise ValueError(f"model settings of {RESNET50_FPN} must be num_classes, dtype, seed and bn_eps, "
                         f"got {sorted(model_config)} with overrides {model_config.get('overrides')}")
    check_real("bn_eps", model_config.get("bn_eps"), 0, 1)


def build_resnet50_fpn(model_config):
    """A ``ResNet50FPNRetinaNet`` from a checkpoint's model config (``model/retinanet.build_model``)."""
    check_resnet50_fpn_config(model_config)
    return ResNet50FPNRetinaNet(model_config["num_classes"], bn_eps=model_config["bn_eps"],
                                dtype=np.dtype(model_config["dtype"]), seed=model_config["seed"])
