"""``numpy-retinanet convert``: torchvision's RetinaNet weights in and out.

    torchvision state dict (.pth)  ->  checkpoint (.npz) of ``model/resnet50_fpn.py``
    checkpoint (.npz)              ->  state dict that ``retinanet_resnet50_fpn(weights=None,
                                       weights_backbone=None, num_classes=K)`` loads with strict=True

torch is imported only here, and a .pth is read with ``torch.load(..., weights_only=True)``:
tensors and plain containers, nothing else is unpickled. A state dict's names map one to one
(``to_torchvision_name``); the heads' older names (``conv.0``, ``conv.2``, ... before torchvision
0.13) are read too, as torchvision's own loader reads them.

Batch norm. ``retinanet_resnet50_fpn`` builds FrozenBatchNorm2d when it loads pretrained weights
and BatchNorm2d (eps 1e-5, with a ``num_batches_tracked`` counter) when it does not; with its COCO
weights it sets every eps to 0.0 (``overwrite_eps``). Only ``running_var + eps`` matters in
inference, so ``bn_eps`` is stored in the checkpoint (default 0.0: the COCO weights as torchvision
runs them) and the reverse direction writes ``running_var + bn_eps - 1e-5``, the variance that
gives the same ``running_var + eps`` under BatchNorm2d's eps of 1e-5.
"""

from __future__ import annotations

import os
import re

import numpy as np

from numpy_retinanet.engine.checkpoint import load_checkpoint, save_checkpoint
from numpy_retinanet.model.resnet50_fpn import COCO_CATEGORY_NAMES, ResNet50FPNRetinaNet

TORCHVISION_BN_EPS = 1e-5  # BatchNorm2d's eps in the model a reverse conversion targets
_HEADS = {"cls_head": ("classification_head", "cls_logits"), "box_head": ("regression_head", "bbox_reg")}
_FPN_LEVELS = {"3": "0", "4": "1", "5": "2"}


def to_torchvision_name(name):
    """A parameter's name in ``ResNet50FPNRetinaNet`` -> its name in torchvision's state dict.

    ``backbone.layer1.0.conv1.weight`` -> ``backbone.body.layer1.0.conv1.weight``;
    ``fpn.lateral3.weight`` -> ``backbone.fpn.inner_blocks.0.0.weight`` (output: ``layer_blocks``;
    ``p6``, ``p7``: ``extra_blocks``); ``cls_head.subnet.2.bias`` -> ``head.classification_head.conv.1.0.bias``
    (subnet layers 0, 2, 4, 6 are the convs, 1, 3, 5, 7 their ReLUs, 8 the output conv).
    """
    first, rest = name.split(".", 1)
    if first == "backbone":
        return f"backbone.body.{rest}"
    if first == "fpn":
        m = re.fullmatch(r"(lateral|output)([345])\.(\w+)", rest)
        if m:
            blocks = "inner_blocks" if m[1] == "lateral" else "layer_blocks"
            return f"backbone.fpn.{blocks}.{_FPN_LEVELS[m[2]]}.0.{m[3]}"
        return f"backbone.fpn.extra_blocks.{rest}"
    head, last = _HEADS[first]
    layer, param = re.fullmatch(r"subnet\.(\d)\.(\w+)", rest).groups()
    return f"head.{head}.{last}.{param}" if layer == "8" else f"head.{head}.conv.{int(layer) // 2}.0.{param}"


def _refuse(path, why):
    raise ValueError(f"{path!r} is not a state dict of torchvision's retinanet_resnet50_fpn: {why}")


def _read_state_dict(path):
    """The tensors of a .pth as float32 NumPy arrays, by torchvision's current names; ValueError naming
    the file for anything else (no tensor dict, a missing or unexpected name, a wrong shape)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a foreign file; each gets the one-line refusal
        # torch's own message is left out: it advises loading with weights_only=False, i.e. unpickling
        # whatever the file holds, which is the wrong advice for a file that is not a state dict.
        _refuse(path, f"torch.load(weights_only=True) cannot read it as tensors ({type(e).__name__})")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # torchvision's reference scripts save {"model": state_dict, ...}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        _refuse(path, f"expected a dict of tensors, got {type(state).__name__}")
    arrays = {}
    for key, tensor in state.items():
        if key.endswith(".num_batches_tracked"):
            continue  # BatchNorm2d's counter of training steps: no part of the function
        # The heads' names before torchvision 0.13 (conv.0, conv.2, ... in one Sequential with the ReLUs).
        m = re.fullmatch(r"(head\.\w+\.conv)\.(\d)\.(weight|bias)", key)
        if m and int(m[2]) % 2 == 0:
            key = f"{m[1]}.{int(m[2]) // 2}.0.{m[3]}"
        arrays[key] = tensor.detach().to(torch.float32).numpy()
    return arrays


def torchvision_to_checkpoint(pth, out, bn_eps=0.0):
    """Convert a torchvision ``retinanet_resnet50_fpn`` state dict (``pth``) to a checkpoint ``out``.

    The number of classes K is read from the classification layer; for K = 91 (COCO) the class names
    are ``COCO_CATEGORY_NAMES`` and the category ids 0..90 (torchvision's labels are COCO's ids), else
    ``"class <k>"`` and 0..K-1. ``bn_eps``: see the module docstring. Returns ``(out, K)``.
    """
    pth = os.fspath(pth)
    arrays = _read_state_dict(pth)
    logits = arrays.get("head.classification_head.cls_logits.bias")
    if logits is None or logits.ndim != 1 or logits.size % 9:
        _refuse(pth, "no classification layer head.classification_head.cls_logits of 9 anchors x K classes")
    num_classes = logits.size // 9
    model = ResNet50FPNRetinaNet(num_classes, bn_eps=bn_eps)
    names = {to_torchvision_name(k): k for k in model.params}
    missing, unexpected = sorted(set(names) - set(arrays)), sorted(set(arrays) - set(names))
    if missing or unexpected:
        _refuse(pth, f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}, "
                     f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
    try:
        model.load_state_dict({k: arrays[t] for t, k in names.items()})
    except ValueError as e:
        _refuse(pth, str(e))
    if num_classes == len(COCO_CATEGORY_NAMES):
        class_names = list(COCO_CATEGORY_NAMES)
    else:
        class_names = [f"class {k}" for k in range(num_classes)]
    return save_checkpoint(out, model, class_names=class_names, category_ids=list(range(num_classes))), num_classes


def checkpoint_to_torchvision(checkpoint, out):
    """Write the state dict of a ``ResNet50FPNRetinaNet`` checkpoint to ``out`` (.pth) for
    torchvision's BatchNorm2d model (module docstring); returns ``out``."""
    import torch

    model, _ = load_checkpoint(checkpoint)
    if not isinstance(model, ResNet50FPNRetinaNet):
        raise ValueError(f"checkpoint {os.fspath(checkpoint)!r} must hold torchvision's architecture "
                         f"(model/resnet50_fpn.py) to be written as its state dict, got preset {model.preset!r}")
    state = {}
    for name, value in model.state_dict().items():
        value = value.astype(np.float32)
        if name.endswith(".running_var"):
            value = value + np.float32(model.bn_eps - TORCHVISION_BN_EPS)
        state[to_torchvision_name(name)] = torch.from_numpy(value)
        if name.endswith(".running_var"):
            state[to_torchvision_name(name[:-len("running_var")] + "num_batches_tracked")] = torch.tensor(0)
    torch.save(state, out)
    return out
