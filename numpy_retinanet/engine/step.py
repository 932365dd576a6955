"""One training step, in two halves: the gradient of a batch, then the update.

    losses, grads = compute_gradients(model, images, targets, anchors, config)  # forward, loss, backward
    grad_norm = apply_gradients(optimizer, grads, lr, config)                   # clip, SGD

The trainer runs both in one process, or (``engine.parallel``) the first half in
worker processes, one part of the batch each, and the second in the main process.

Floating-point overflow or an invalid operation anywhere in a step means the run has
diverged: numpy is told to raise on them, and ``NonFiniteStep`` says where it happened.
A NaN or infinite loss or gradient is caught before any parameter is updated. These
checks, with the network's own check that the images are finite, are why the ops'
NaN scans are skipped inside a step (``_checks.nan_scans_skipped``): a NaN cannot
appear in it without one of them seeing it.
"""

from __future__ import annotations

import math

import numpy as np

from numpy_retinanet._checks import nan_scans_skipped
from numpy_retinanet.detection.criterion import retinanet_loss


class NonFiniteStep(ArithmeticError):
    """The loss, a gradient or the update became NaN or infinite; the message says which."""


def global_grad_norm(grads) -> float:
    """sqrt of the sum of squares of every gradient entry, accumulated in float64."""
    # Each gradient is summed in C order whatever its memory layout (a Conv2d weight's is
    # not C-contiguous), so that the norm, and the clipping it decides, keep their bits.
    return math.sqrt(sum(float((g.astype(np.float64, order="C") ** 2).sum()) for g in grads.values()))


def compute_gradients(model, images, targets, anchors, config):
    """forward -> ``retinanet_loss`` -> backward for one batch.

    Parameters
    ----------
    model : RetinaNet.
    images : (N, 3, H, W) on the model's device.
    targets : list of N dicts {"boxes", "labels"}.
    anchors : (M, 4), the model's anchors for H x W.
    config : TrainConfig (its loss settings: ``detection.criterion.LossConfig``).

    Returns
    -------
    losses : retinanet_loss's dict (classification, box_regression, total, num_positive).
    grads : ``model.grads``, the live arrays (the next call overwrites them).
    """
    with np.errstate(over="raise", invalid="raise", divide="raise"), nan_scans_skipped():
        try:
            logits, deltas = model.forward(images)
            losses, dlogits, ddeltas = retinanet_loss(logits, deltas, anchors, targets, config)
        except (FloatingPointError, ValueError) as e:
            if isinstance(e, ValueError) and "NaN" not in str(e):
                raise
            model.clear_cache()
            raise NonFiniteStep(f"the forward pass or loss overflowed ({e})") from e
        for part in ("classification", "box_regression"):
            if not math.isfinite(losses[part]):
                model.clear_cache()
                raise NonFiniteStep(f"the {part} loss is {losses[part]}")
        try:
            model.zero_grad()
            model.backward(dlogits, ddeltas, image_grad=False)  # the parameters' gradients only
        except FloatingPointError as e:
            model.clear_cache()
            raise NonFiniteStep(f"the backward pass overflowed ({e})") from e
    return losses, model.grads


def apply_gradients(optimizer, grads, lr, config) -> float:
    """Clip ``grads`` (in place) to ``config.clip_grad_norm`` and take an SGD step at ``lr``.

    Returns the gradient norm before clipping. Raises NonFiniteStep, before anything
    is updated, when the norm is NaN or infinite.
    """
    norm = global_grad_norm(grads)
    if not math.isfinite(norm):
        raise NonFiniteStep(f"the gradient norm is {norm}")
    if config.clip_grad_norm > 0 and norm > config.clip_grad_norm:
        for g in grads.values():
            g *= config.clip_grad_norm / norm
    with np.errstate(over="raise", invalid="raise"):
        try:
            optimizer.step(grads, lr=lr)
        except FloatingPointError as e:  # momentum or weight decay overflowed: a part may be updated
            raise NonFiniteStep(f"the SGD update overflowed ({e})") from e
    return norm
