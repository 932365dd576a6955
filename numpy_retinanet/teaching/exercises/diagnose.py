"""Recognising a mistake from the failing rows of a gradient exercise.

Two kinds of signature:

* generic ones, shared by every gradient exercise (``generic``): a flipped sign (your gradient
  is minus the right one: a relative error of exactly 2), a constant ratio c (yours = c * right),
  a gradient of zeros, the right numbers with their axes in another order;
* a pattern over the cases (``fails_exactly_where``): "fails only where gamma > 0", "fails only
  where windows overlap"; and a *model* of a mistake (``matches``): the arrays that mistake
  computes, compared with yours. Each exercise lists its own in its ``diagnose``.

Every comparison here is to a tight tolerance: a diagnosis names a mistake only when the
numbers say it, never a guess from a large error.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np

from numpy_retinanet.teaching.exercises.base import Diagnosis

# Yours and a model of a mistake compute the same numbers in a different order, so they agree
# to rounding; any other mistake is off by O(1).
RTOL, ATOL = 1e-7, 1e-10


def same(a, b) -> bool:
    """True when ``a`` and ``b`` are arrays of one shape with equal entries up to rounding."""
    if a is None or b is None or np.shape(a) != np.shape(b):
        return False
    return bool(np.allclose(a, b, rtol=RTOL, atol=ATOL))


def compared(rows):
    """The rows that hold both arrays (a row of a case that raised holds none)."""
    return [r for r in rows if getattr(r, "got", None) is not None and getattr(r, "expected", None) is not None]


def failing(rows):
    return [r for r in rows if not r.passed]


def ratio(got, expected):
    """c when got = c * expected entry by entry (up to rounding), else None."""
    if np.shape(got) != np.shape(expected):
        return None
    scale = float(np.vdot(expected, expected))
    if scale == 0.0:
        return None
    c = float(np.vdot(got, expected)) / scale
    return c if same(got, c * expected) else None


def transposition(got, expected):
    """The axis order p (not the identity) with got = expected.transpose(p), else None."""
    for p in permutations(range(np.ndim(expected))):
        if p != tuple(range(np.ndim(expected))):
            t = np.transpose(expected, p)
            if t.shape == np.shape(got) and same(got, t):
                return p
    return None


def fails_exactly_where(rows, cases, predicate, names=None) -> bool:
    """True when the failing rows are exactly those of the cases where ``predicate(case)`` holds.

    names : count only rows of these inputs (for example ``{"x"}``): the pattern is then "every
    other row passes, and these rows fail exactly where the predicate holds". Both sets of cases
    must be non-empty: a pattern needs a case that passes and one that fails.
    """
    where = {k for k, c in enumerate(cases, 1) if predicate(c)}
    if not where or len(where) == len(cases):
        return False
    bad = failing(rows)
    if any(r.name == "" for r in bad):  # a case that raised or returned the wrong things
        return False
    if names is not None:
        if any(r.name not in names for r in bad):
            return False
        rows = [r for r in rows if r.name in names]
    return {r.case for r in failing(rows)} == where and all(r.case in where for r in bad)


def matches(rows, model) -> bool:
    """True when every failing row's array equals what ``model(row)`` computes (None: no model).

    model : row -> the array that the mistake gives for that row's input and case. Passing rows
    are not asked: a mistake often leaves some of them right.
    """
    bad = failing(rows)
    if not bad:
        return False
    for r in bad:
        m = model(r) if getattr(r, "got", None) is not None else None
        if m is None or not same(r.got, m):
            return False
    return True


def _label(r):
    return f"case {r.case} {r.name}".rstrip()


def generic(rows, hint) -> list[Diagnosis]:
    """The signatures any gradient can show: flipped sign, constant ratio, zeros, axes swapped.

    hint : the number of the exercise's hint that states the chain rule (sign, ratio, zeros);
    the axis order's hint is the same.
    """
    bad = failing(rows)
    both = compared(bad)
    if not bad or len(both) != len(bad):  # a case raised, or returned something else than arrays
        return []
    if all(not np.any(r.got) for r in both):
        names = ", ".join(_label(r) for r in both)
        return [Diagnosis(f"your gradient is zero in every failing row ({names}): a path of the chain rule "
                          "is missing, or an array was never filled in", hint)]
    for r in both:  # checked first: a transposed array often fails on its shape, where no ratio exists
        p = transposition(r.got, r.expected)
        if p is not None:
            shape = "" if r.got.shape == r.expected.shape else (
                f": shape {tuple(r.got.shape)} instead of {tuple(r.expected.shape)}")
            return [Diagnosis(f"{_label(r)} has the right numbers with its axes in the order {p}{shape}", hint)]
    ratios = [ratio(r.got, r.expected) for r in both]
    if all(c is not None for c in ratios):
        if all(abs(c + 1) < 1e-6 for c in ratios):
            return [Diagnosis("the sign is flipped: your gradient is minus the right one everywhere, a relative "
                              "error of exactly 2", hint)]
        if max(ratios) - min(ratios) < 1e-6 * max(1.0, abs(max(ratios))):
            return [Diagnosis(f"your gradient is the right one times a constant c = {ratios[0]:.6g} in every "
                              "failing row: a factor is missing or extra", hint)]
        each = ", ".join(f"{_label(r)}: c = {c:.4g}" for r, c in zip(both, ratios))
        return [Diagnosis(f"each failing row is the right gradient times a constant ({each}): a factor that "
                          "depends on the case is missing or extra", hint)]
    return []
