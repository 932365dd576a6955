"""Do two computations of one tensor agree entry by entry? The rule the PyTorch comparison uses.

An entry passes if |ours - reference| <= atol max|reference| + rtol |reference|; ``worst_entry``
names the entry that uses the most of its tolerance. Kept apart from ``torch_mirror`` so that it
needs no torch (its tests run everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EPS32", "LOSS_TOLERANCE", "NETWORK_TOLERANCE", "Tolerance", "worst_entry"]

EPS32 = float(np.finfo(np.float32).eps)  # 2^-23 ~ 1.19e-7: one float32 ulp at 1


@dataclass(frozen=True)
class Tolerance:
    """An entry passes if |ours - reference| <= atol max|reference| + rtol |reference|.

    atol is in units of the reference tensor's largest |entry| (the tensors'
    scales differ by orders of magnitude); rtol is per entry.
    """

    atol: float
    rtol: float


# Fitted to float32 on the correct code against the float64 reference: the
# worst error measured, then a margin of about 10. Measured on 8 runs: the
# `tiny` preset on 2 images of 64 px (5 runs: the bench's images with model
# seed 0, then ShapesDataset and model seeds 1-4), the `default` preset on the
# bench's 8 images of 128 px and on 2 images of 64 px (seeds 1, 2).
#
# The loss and its gradients w.r.t. the outputs are computed entry by entry, a
# handful of float32 ops per entry (the loss itself: a sum of non-negative
# terms, which cannot cancel), so each entry is good to a few ulps of itself:
# measured worst 6.7 eps |ref| (dloss/dlogits), rtol = 64 eps (a margin of 9.6).
# The atol of 1 eps of the largest entry only covers entries below one ulp of
# it (underflowed ones included), where a relative error means nothing: a
# float32 sum that also holds the largest entry rounds such a change away. The
# easy negatives' entries, ~1e-5 of the largest, are well above it, so a bug
# in their gradient alone fails here (the dropped alpha_t of tests/test_bench_ops.py).
LOSS_TOLERANCE = Tolerance(atol=EPS32, rtol=64 * EPS32)
# The outputs and parameter gradients are sums over thousands of terms (a
# weight's gradient sums over batch x height x width, through every layer
# above it). The round-off of a float32 sum is ~eps times the size of its
# terms, not of its result: an entry whose terms cancel to ~0 keeps that
# absolute error, so its relative error has no bound, and rtol alone would
# fail correct code. The tensor's largest entry stands in for the size of the
# terms: measured worst 43 eps max|ref| (a GroupNorm weight of 4 entries in
# `tiny`; 12 in `default`), atol = 512 eps ~ 6.1e-5 (a margin of 12).
NETWORK_TOLERANCE = Tolerance(atol=512 * EPS32, rtol=LOSS_TOLERANCE.rtol)


def worst_entry(name, ours, reference, tolerance):
    """The entry of ``ours`` that uses the most of its tolerance.

    ours, reference: arrays of one shape (or scalars). Returns {"tensor", "index",
    "ours", "reference", "used"}, where used = |ours - reference| / (atol max|reference|
    + rtol |reference|) at that entry: <= 1 passes.
    """
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if ours.shape != reference.shape:
        raise ValueError(f"{name} must have the reference's shape {reference.shape}, got {ours.shape}")
    diff = np.abs(ours - reference)
    allowed = tolerance.atol * np.abs(reference).max() + tolerance.rtol * np.abs(reference)
    # A zero tolerance (an all-zero reference) allows only an exact match.
    used = np.divide(diff, allowed, out=np.where(diff > 0, np.inf, 0.0), where=allowed > 0)
    i = np.unravel_index(np.argmax(used), used.shape)
    return {"tensor": name, "index": tuple(int(k) for k in i), "ours": float(ours[i]),
            "reference": float(reference[i]), "used": float(used[i])}
