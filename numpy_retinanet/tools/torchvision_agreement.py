"""Does the NumPy RetinaNet compute what torchvision's ``retinanet_resnet50_fpn`` computes?

Builds torchvision's model with random weights, converts its state dict
(``tools/torchvision_weights.py``), runs both on the same pictures and compares, stage by stage:
the transformed input (resized, normalized, padded), every pyramid level's head outputs, and the
final detections. Needs torch and torchvision (imported only here); ``tests/test_torchvision_retinanet.py``
asserts on these numbers, and ``python -m numpy_retinanet.tools.torchvision_agreement`` prints them
as a table with the time of one NumPy forward pass.

Random weights, made to behave like trained ones: with torchvision's initialization and unit batch
norms the activations grow through the 16 bottlenecks and every score saturates at 1, which would
test nothing after the sigmoid. So the batch norms get their statistics from one training-mode pass
over a random picture, then random perturbations (``randomize_batch_norms``), and the output layers
are drawn so that scores and box deltas spread over their useful ranges (``spread_outputs``).
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from numpy_retinanet.data.torchvision_transform import torchvision_transform
from numpy_retinanet.engine.checkpoint import load_checkpoint
from numpy_retinanet.engine.inference import detect_torchvision
from numpy_retinanet.tools.torchvision_weights import torchvision_to_checkpoint

#: Picture sizes (height, width) of the comparison: landscape, portrait, and a long thin one that the
#: 1333 px bound (not the 800 px short side) decides.
SIZES = ((480, 640), (600, 500), (333, 777))
TORCHVISION_BN_EPS = 1e-5  # the eps of the BatchNorm2d layers of a model built with weights=None


def random_picture(height, width, seed):
    """A uint8 picture of smooth colour blobs plus noise (not pure noise: resizing should matter)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 32 + 2, width // 32 + 2, 3)).astype(np.float64)
    rows = np.linspace(0, coarse.shape[0] - 1.001, height)
    cols = np.linspace(0, coarse.shape[1] - 1.001, width)
    r0, c0 = rows.astype(int), cols.astype(int)
    fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
    smooth = ((1 - fr) * (1 - fc) * coarse[r0][:, c0] + (1 - fr) * fc * coarse[r0][:, c0 + 1]
              + fr * (1 - fc) * coarse[r0 + 1][:, c0] + fr * fc * coarse[r0 + 1][:, c0 + 1])
    return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)


def randomize_batch_norms(model, seed):
    """Every BatchNorm2d of ``model``: statistics of one training-mode pass over a random picture,
    then running_mean shifted by N(0, 0.1 std), running_var scaled by U(0.5, 2), weight U(0.5, 1.5),
    bias N(0, 0.1). Leaves the model in eval mode."""
    import torch

    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: after one pass, that pass's statistics
    model.backbone.body.train()
    with torch.no_grad():
        model.backbone.body(torch.randn(2, 3, 224, 224, generator=g))
        for m in norms:
            c = m.num_features
            m.running_mean += 0.1 * m.running_var.sqrt() * torch.randn(c, generator=g)
            m.running_var *= 0.5 + 1.5 * torch.rand(c, generator=g)
            m.weight.copy_(0.5 + torch.rand(c, generator=g))
            m.bias.copy_(0.1 * torch.randn(c, generator=g))
    model.eval()


def spread_outputs(model, seed, logit_bias=-4.0):
    """The heads' output layers drawn so that, on the random pictures, logits spread over about
    ``logit_bias`` +- 6 (with -4: scores from 0 to 1, many near the 0.05 threshold) and deltas over
    about +-1."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        cls = model.head.classification_head.cls_logits
        cls.weight.copy_(0.02 * torch.randn(cls.weight.shape, generator=g))
        cls.bias.fill_(logit_bias)
        reg = model.head.regression_head.bbox_reg
        reg.weight.copy_(0.005 * torch.randn(reg.weight.shape, generator=g))


def random_torchvision_retinanet(seed=0, logit_bias=-4.0, **kwargs):
    """torchvision's ``retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)``
    with random weights that behave (module docstring), in eval mode. ``logit_bias``: see
    ``spread_outputs``; ``kwargs`` go to the builder (``min_size``, ``max_size`` for small pictures)."""
    import torch
    from torchvision.models.detection import retinanet_resnet50_fpn

    torch.manual_seed(seed)
    model = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, **kwargs)
    randomize_batch_norms(model, seed)
    spread_outputs(model, seed, logit_bias)
    return model.eval()


def convert(model, folder):
    """``model``'s state dict through a .pth file and ``numpy-retinanet convert`` into our model."""
    import torch

    pth, npz = os.path.join(folder, "torchvision.pth"), os.path.join(folder, "converted.npz")
    torch.save(model.state_dict(), pth)
    torchvision_to_checkpoint(pth, npz, bn_eps=TORCHVISION_BN_EPS)
    return load_checkpoint(npz)[0]


def torchvision_stages(model, picture):
    """torchvision's transformed input, per-level head outputs, anchors (M, 4), detections, and the
    seconds of its whole call (transform, network, post-processing) for one uint8 picture."""
    import torch

    x = torch.from_numpy(picture).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        images, _ = model.transform([x])
        features = list(model.backbone(images.tensors).values())
        levels = []
        for f in features:
            outs = []
            for head, last in ((model.head.classification_head, "cls_logits"),
                               (model.head.regression_head, "bbox_reg")):
                y = f
                for layer in head.conv:
                    y = layer(y)
                outs.append(getattr(head, last)(y).numpy())
            levels.append(tuple(outs))
        anchors = model.anchor_generator(images, features)[0].numpy()
        start = time.perf_counter()
        detections = {k: v.numpy() for k, v in model([x])[0].items()}
        seconds = time.perf_counter() - start
    return images.tensors.numpy(), levels, anchors, detections, seconds


def match_detections(ours, reference, box_tol=1e-2, score_tol=1e-4):
    """Pairs (i, j): our detection i and the reference's j of the same label, scores within
    ``score_tol`` and every box coordinate within ``box_tol`` pixels, each used once (greedy by the
    reference's order). Returns the list of pairs."""
    used, pairs = np.zeros(len(ours["scores"]), dtype=bool), []
    for j in range(len(reference["scores"])):
        close = (~used & (ours["labels"] == reference["labels"][j])
                 & (np.abs(ours["scores"] - reference["scores"][j]) <= score_tol)
                 & (np.abs(ours["boxes"] - reference["boxes"][j]).max(axis=1, initial=0) <= box_tol))
        if close.any():
            i = int(np.flatnonzero(close)[0])
            used[i] = True
            pairs.append((i, j))
    return pairs


def compare(reference_model, ours, picture, **transform):
    """Every stage of both models on ``picture``: a dict with ``input_error`` (max |difference| of the
    transformed batch), ``anchor_error`` (max |difference| of the anchors, in pixels), ``level_errors``
    (per level P3..P7, the max |difference| of the logits and deltas each relative to that output's
    largest |entry|), ``matched``, ``ours``, ``reference`` (detections), ``box_error`` and
    ``score_error`` (max over the matched pairs), ``seconds`` (our forward pass) and
    ``reference_seconds`` (torchvision's whole call). ``transform``: ``min_size`` and ``max_size``,
    as the reference model was built."""
    ref_input, ref_levels, ref_anchors, ref_det, ref_seconds = torchvision_stages(reference_model, picture)
    batch, _ = torchvision_transform([picture], **transform)
    start = time.perf_counter()
    levels = ours.head_outputs(batch)
    seconds = time.perf_counter() - start
    level_errors = [max(float(np.abs(o - r).max() / np.abs(r).max()) for o, r in zip(ours_l, ref_l))
                    for ours_l, ref_l in zip(levels, ref_levels)]
    anchors = ours.anchors(*batch.shape[2:])
    det = detect_torchvision(ours, [picture], **transform)[0]
    pairs = match_detections(det, ref_det)
    i, j = (np.array(k, dtype=np.int64) for k in zip(*pairs)) if pairs else (np.zeros(0, np.int64),) * 2
    return {"input_shape": batch.shape, "input_error": float(np.abs(batch - ref_input).max())
            if batch.shape == ref_input.shape else float("inf"),
            "anchor_error": float(np.abs(anchors - ref_anchors).max()) if anchors.shape == ref_anchors.shape
            else float("inf"),
            "level_errors": level_errors, "matched": len(pairs), "ours": det, "reference": ref_det,
            "box_error": float(np.abs(det["boxes"][i] - ref_det["boxes"][j]).max(initial=0)),
            "score_error": float(np.abs(det["scores"][i] - ref_det["scores"][j]).max(initial=0)),
            "seconds": seconds, "reference_seconds": ref_seconds}


def main():
    """Print the comparison table on ``SIZES`` (one picture each)."""
    reference = random_torchvision_retinanet(seed=0)
    with tempfile.TemporaryDirectory() as folder:
        ours = convert(reference, folder)
    print("| picture | input | anchors | max rel. error P3 / P4 / P5 / P6 / P7 | detections matched | box err px "
          "| score err | lowest score kept | NumPy forward s | torchvision call s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k, (h, w) in enumerate(SIZES):
        r = compare(reference, ours, random_picture(h, w, seed=k))
        levels = " / ".join(f"{e:.1e}" for e in r["level_errors"])
        print(f"| {h}x{w} | {r['input_shape'][2]}x{r['input_shape'][3]}, err {r['input_error']:.1e} "
              f"| err {r['anchor_error']:g} | {levels} "
              f"| {r['matched']} of {len(r['reference']['scores'])} (ours {len(r['ours']['scores'])}) "
              f"| {r['box_error']:.1e} | {r['score_error']:.1e} | {r['reference']['scores'].min():.3f} "
              f"| {r['seconds']:.1f} | {r['reference_seconds']:.1f} |")


if __name__ == "__main__":
    main()
