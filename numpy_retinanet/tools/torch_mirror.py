"""The same RetinaNet in PyTorch, for ``numpy-retinanet bench`` to check and time against.

PyTorch is never a runtime dependency: it comes with the optional ``bench``
extra (``python -m pip install -e '.[bench]'``) and this module is imported only
when it is installed. ``mirror(model)`` walks a NumPy ``RetinaNet`` and builds
the identical network from ``torch.nn`` layers, copying every parameter, so the
two can be compared output for output and gradient for gradient, and timed on
the same inputs. The loss is the paper's (focal loss over the non-ignored
anchors plus smooth L1 over the positives, both divided by the number of
positives), written with torch ops and differentiated by autograd; the targets
come from our own matcher, so both libraries learn from the same assignment.
``compare`` and ``compare_loss`` check every entry against a float64 copy, with
tolerances fitted to float32 (``tools/agreement.py``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as TF
from torch import nn

from numpy_retinanet.model.backbone import BasicBlock
from numpy_retinanet.nn import modules as M
from numpy_retinanet.nn.losses import ALPHA, GAMMA, SMOOTH_L1_BETA
from numpy_retinanet.tools.agreement import LOSS_TOLERANCE, NETWORK_TOLERANCE, worst_entry


def _tensor(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def _conv(c: M.Conv2d) -> nn.Conv2d:
    w = c.params["weight"]
    f, cin, kh, kw = w.shape
    t = nn.Conv2d(cin, f, (kh, kw), stride=c.stride, padding=c.padding, bias="bias" in c.params)
    with torch.no_grad():
        t.weight.copy_(_tensor(w))
        if t.bias is not None:
            t.bias.copy_(_tensor(c.params["bias"]))
    return t


def _group_norm(g: M.GroupNorm) -> nn.GroupNorm:
    t = nn.GroupNorm(g.num_groups, g.params["weight"].shape[0], eps=g.eps)
    with torch.no_grad():
        t.weight.copy_(_tensor(g.params["weight"]))
        t.bias.copy_(_tensor(g.params["bias"]))
    return t


def _layer(m):
    """A NumPy module -> the torch module computing the same function."""
    if isinstance(m, M.Conv2d):
        return _conv(m)
    if isinstance(m, M.GroupNorm):
        return _group_norm(m)
    if isinstance(m, M.ReLU):
        return nn.ReLU()
    if isinstance(m, M.Sequential):
        return nn.Sequential(*[_layer(x) for x in m.layers])
    if isinstance(m, BasicBlock):
        return TorchBasicBlock(m)
    raise TypeError(f"no PyTorch counterpart for {type(m).__name__}")


class TorchBasicBlock(nn.Module):
    def __init__(self, block: BasicBlock):
        super().__init__()
        self.branch = _layer(block.branch)
        self.shortcut = _layer(block.shortcut) if block.shortcut is not None else None

    def forward(self, x):
        s = self.shortcut(x) if self.shortcut is not None else x
        return TF.relu(self.branch(x) + s)


class TorchFPN(nn.Module):
    def __init__(self, fpn):
        super().__init__()
        self.p6_from = fpn.p6_from
        for name in ("lateral3", "lateral4", "lateral5", "output3", "output4", "output5", "p6", "p7"):
            setattr(self, name, _conv(getattr(fpn, name)))

    @staticmethod
    def _up_add(lateral, coarser):
        up = TF.interpolate(coarser, scale_factor=2, mode="nearest")
        return lateral + up[:, :, :lateral.shape[2], :lateral.shape[3]]

    def forward(self, c3, c4, c5):
        m5 = self.lateral5(c5)
        m4 = self._up_add(self.lateral4(c4), m5)
        m3 = self._up_add(self.lateral3(c3), m4)
        p3, p4, p5 = self.output3(m3), self.output4(m4), self.output5(m5)
        p6 = self.p6(c5 if self.p6_from == "c5" else p5)
        return [p3, p4, p5, p6, self.p7(TF.relu(p6))]


class TorchHead(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.subnet = _layer(head.subnet)
        self.out_per_anchor = head.out_per_anchor

    def forward(self, features):
        outs = []
        for f in features:
            y = self.subnet(f)
            outs.append(y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, self.out_per_anchor))
        return torch.cat(outs, dim=1)


class TorchRetinaNet(nn.Module):
    """``RetinaNet`` in torch.nn, parameter for parameter (build it with ``mirror``)."""

    def __init__(self, model):
        super().__init__()
        bb = model.backbone
        self.backbone = nn.ModuleList([_layer(bb.stem), _layer(bb.stage1), _layer(bb.stage2),
                                       _layer(bb.stage3), _layer(bb.stage4)])
        self.fpn = TorchFPN(model.fpn)
        self.cls_head = TorchHead(model.cls_head)
        self.box_head = TorchHead(model.box_head)

    def forward(self, images):
        stem, s1, s2, s3, s4 = self.backbone
        c3 = s2(s1(stem(images)))
        c4 = s3(c3)
        c5 = s4(c4)
        features = self.fpn(c3, c4, c5)
        return self.cls_head(features), self.box_head(features)


def mirror(model) -> TorchRetinaNet:
    """A float32 PyTorch copy of the NumPy ``model`` (same layers, same weights)."""
    if model.dtype != np.float32:
        raise ValueError(f"the PyTorch mirror is float32; the model is {model.dtype}")
    return TorchRetinaNet(model)


def torch_loss(logits, deltas, cls_t, box_t, positive, valid, alpha=ALPHA, gamma=GAMMA, beta=SMOOTH_L1_BETA):
    """The loss of ``retinanet_loss`` in torch ops, on targets from ``assign_targets``.

    logits (N, M, K), deltas (N, M, 4) tensors; the targets are torch tensors of
    the shapes ``assign_targets`` returns. Returns (total, classification, box_regression).
    """
    norm = max(1.0, float(positive.sum()))
    p = torch.sigmoid(logits)
    ce = TF.binary_cross_entropy_with_logits(logits, cls_t, reduction="none")
    p_t = p * cls_t + (1 - p) * (1 - cls_t)
    alpha_t = alpha * cls_t + (1 - alpha) * (1 - cls_t)
    fl = alpha_t * (1 - p_t) ** gamma * ce
    loss_cls = (fl * valid[..., None]).sum() / norm
    sl1 = TF.smooth_l1_loss(deltas, box_t, reduction="none", beta=beta)
    loss_box = (sl1 * positive[..., None]).sum() / norm
    return loss_cls + loss_box, loss_cls, loss_box


def torch_retinanet_loss(logits, deltas, anchors, targets):
    """``torch_loss`` on the targets our matcher assigns (``assign_targets``, in NumPy).

    The targets are data, not something to compare, so both libraries learn from
    the same assignment. Returns (total, classification, box_regression) tensors.
    """
    from numpy_retinanet.detection.criterion import assign_targets

    cls_t, box_t, positive, valid = (torch.from_numpy(a) for a in
                                     assign_targets(anchors, targets, logits.shape[2]))
    return torch_loss(logits, deltas, cls_t, box_t, positive, valid)


def compare(model, tmodel, images, dlogits, ddeltas):
    """Outputs and every parameter gradient, ours (float32) against ``tmodel`` run in float64.

    The reference is a float64 copy of ``tmodel``: then every difference is our
    round-off (or a bug), not PyTorch's. PyTorch's own float32 CPU gradients
    differ from float64 by up to ~2000 eps of the largest entry (the heads'
    GroupNorm in the `default` preset), ours by at most 12 there.
    Runs ``model.forward``/``backward`` (zeroing its grads first) and torch
    autograd on the same images and upstream gradients. Returns one
    ``worst_entry`` row (``NETWORK_TOLERANCE``) each for "logits", "deltas" and every parameter.
    """
    model.zero_grad()
    logits, deltas = model.forward(images)
    model.backward(dlogits, ddeltas)
    reference = copy.deepcopy(tmodel).double()
    tl, td = reference(_tensor(images).double())
    torch.autograd.backward([tl, td], [_tensor(dlogits).double(), _tensor(ddeltas).double()])
    rows = [worst_entry("logits", logits, tl.detach().numpy(), NETWORK_TOLERANCE),
            worst_entry("deltas", deltas, td.detach().numpy(), NETWORK_TOLERANCE)]
    tgrads = _torch_grads_by_numpy_name(model, reference)
    for name, g in model.grads.items():
        rows.append(worst_entry(name, g, tgrads[name], NETWORK_TOLERANCE))
    return rows


def compare_loss(logits, deltas, anchors, targets, losses, dlogits, ddeltas):
    """Our loss and its gradients (``retinanet_loss``'s results) against ``torch_retinanet_loss`` in float64.

    logits (N, M, K), deltas (N, M, 4): the outputs the loss was computed on.
    Returns ``worst_entry`` rows (``LOSS_TOLERANCE``) for "loss", "dloss/dlogits", "dloss/ddeltas".
    """
    tl = _tensor(logits).double().requires_grad_()
    td = _tensor(deltas).double().requires_grad_()
    loss, _, _ = torch_retinanet_loss(tl, td, anchors, targets)
    loss.backward()
    return [worst_entry("loss", losses["total"], loss.item(), LOSS_TOLERANCE),
            worst_entry("dloss/dlogits", dlogits, tl.grad.numpy(), LOSS_TOLERANCE),
            worst_entry("dloss/ddeltas", ddeltas, td.grad.numpy(), LOSS_TOLERANCE)]


def _torch_grads_by_numpy_name(model, tmodel):
    """Each NumPy parameter name -> the gradient of the torch parameter it was copied to.

    Parameters are created in the same order by both builders (layer by layer,
    weight before bias), so the two orders pair up; the shapes are checked.
    """
    ours = list(model.params.items())
    theirs = list(tmodel.parameters())
    if len(ours) != len(theirs):
        raise RuntimeError(f"the mirror has {len(theirs)} parameters, the model {len(ours)}")
    out = {}
    for (name, a), t in zip(ours, theirs):
        if tuple(a.shape) != tuple(t.shape):
            raise RuntimeError(f"parameter order differs at {name}: {a.shape} vs {tuple(t.shape)}")
        out[name] = t.grad.numpy()
    return out
