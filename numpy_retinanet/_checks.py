"""The one set of argument checks: each names the argument, what was expected and what came.

Every public function checks what a learner can get wrong and raises ``ValueError`` in
one shape: ``"<name> must be <expected>, got <what came>"``. The checks work on NumPy and
CuPy arrays alike; each returns the checked value so that a caller can write
``x = check_...(name, x, ...)``.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from numpy_retinanet.backend import array_module

# What each dtype-kind set is called in a message.
_KINDS = {
    "f": "floating dtype (float32 to train, float64 to check gradients)",
    "fiu": "real numbers (a float or int dtype)",
    "iu": "integers (an int dtype)",
}


# False inside ``nan_scans_skipped()``: check_array's ``no_nan`` pass is then not made.
_SCAN_FOR_NAN = ContextVar("scan_for_nan", default=True)


@contextmanager
def nan_scans_skipped():
    """Inside this block ``check_array`` skips its ``no_nan`` pass; every other check stays.

    For a caller that finds NaN itself, once, instead of at every op: the training step
    (``engine.step``) checks that the images entering the network are finite and that the
    outputs entering the loss are, has NumPy raise on any invalid operation, and checks the
    gradient norm before any update, so the ops' own scans inside it find nothing those
    checks would miss. They cost 5 % of a training step's time (one ``max()`` pass per
    array argument of every op, about 400 per step).
    """
    token = _SCAN_FOR_NAN.set(False)
    try:
        yield
    finally:
        _SCAN_FOR_NAN.reset(token)


def is_int(value):
    """True for a Python or NumPy integer; False for a bool, which is an int only by accident."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_int(name, value, low, high=None):
    """``value`` as an int in [low, high] (``high`` None: no upper bound); bools are refused."""
    if not is_int(value) or value < low or (high is not None and value > high):
        expected = f"an int >= {low}" if high is None else f"an int in [{low}, {high}]"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_real(name, value, low=None, high=None, *, low_open=False, high_open=False):
    """``value`` as a finite Python float in the stated range (open ends with ``*_open``).

    A bool, a string or an array of several numbers is refused: a hyperparameter is one
    real number, and ``float(True)`` or ``float("2")`` would hide a mistake.
    """
    if low is not None and high is not None:
        rng = f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        rng = f" {'>' if low_open else '>='} {low}"
    elif high is not None:
        rng = f" {'<' if high_open else '<='} {high}"
    else:
        rng = ""
    expected = f"a finite real number{rng}"
    # A size-1 array has __float__ too; asking ndim keeps arrays of any size out.
    if isinstance(value, bool) or not hasattr(value, "__float__") or getattr(value, "ndim", 0) != 0:
        raise ValueError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    v = float(value)
    if (
        not math.isfinite(v)
        or (low is not None and (v <= low if low_open else v < low))
        or (high is not None and (v >= high if high_open else v > high))
    ):
        raise ValueError(f"{name} must be {expected}, got {v}")
    return v


def check_probability(name, value):
    """``value`` as a float in [0, 1] (a probability, an IoU or a score threshold)."""
    return check_real(name, value, 0, 1)


def _shape_text(dims):
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def check_array(name, a, dims=None, kind=None, dtype=None, nonempty=False, no_nan=False, finite=False):
    """Check that ``a`` is a NumPy or CuPy array with the stated properties; return it.

    Parameters
    ----------
    dims : sequence of str or int, optional
        One entry per axis: an int fixes that axis's size, a str only names it
        (``("N", 4)``: any number of rows of 4).
    kind : "f", "fiu" or "iu", optional
        The allowed dtype kinds: float; real (float or int); int.
    dtype : exact dtype required, optional.
    nonempty : refuse an array with no entries.
    no_nan : refuse NaN with one ``max()`` pass (no temporary array): the cheap check of
        the hot ops, which let inf through. Not made inside ``nan_scans_skipped()``.
    finite : refuse NaN and inf (one ``isfinite`` pass).
    """
    if not (hasattr(a, "dtype") and hasattr(a, "shape") and hasattr(a, "ndim")):
        raise ValueError(f"{name} must be an array, got {type(a).__name__}")
    shape = tuple(a.shape)
    if dims is not None and (
        len(shape) != len(dims) or any(isinstance(d, int) and d != s for d, s in zip(dims, shape))
    ):
        raise ValueError(f"{name} must be an array of shape {_shape_text(dims)}, got shape {shape}")
    if kind is not None and a.dtype.kind not in kind:
        raise ValueError(f"{name} must be an array of {_KINDS[kind]}, got dtype {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise ValueError(f"{name} must be an array of dtype {np.dtype(dtype)}, got dtype {a.dtype}")
    if nonempty and a.size == 0:
        raise ValueError(f"{name} must be a non-empty array, got shape {shape}")
    if ((no_nan and _SCAN_FOR_NAN.get()) or finite) and a.size:
        xp = array_module(a)
        # max() propagates NaN, needs no temporary and cannot overflow: the cheapest full
        # pass that finds a NaN. isfinite() also finds inf, at the price of a bool array.
        if bool(xp.isnan(a.max())):
            raise ValueError(f"{name} must be {'finite' if finite else 'free of NaN'}, got NaN values")
        if finite and not bool(xp.all(xp.isfinite(a))):
            raise ValueError(f"{name} must be finite, got inf values")
    return a


def check_same_shape(name, a, ref_name, ref):
    """Check that ``a`` is an array of ``ref``'s shape."""
    if not (hasattr(a, "shape") and hasattr(a, "dtype")) or tuple(a.shape) != tuple(ref.shape):
        got = f"shape {tuple(a.shape)}" if hasattr(a, "shape") else type(a).__name__
        raise ValueError(f"{name} must be an array of the shape of {ref_name} {tuple(ref.shape)}, got {got}")
    return a


def check_dout(name, dout, shape, dtype=None):
    """Check an upstream gradient against the forward output it belongs to.

    ``dout`` must be a float array without NaN of the output's ``shape``; with ``dtype``
    given, also of the forward pass's dtype (an op that would otherwise compute in a
    different precision than its forward pass). ``dtype`` None: the caller casts.
    """
    check_array(name, dout, kind="f", no_nan=True)
    if tuple(dout.shape) != tuple(shape):
        raise ValueError(
            f"{name} must be an array of the forward output's shape {tuple(shape)}, "
            f"got shape {tuple(dout.shape)}"
        )
    if dtype is not None and dout.dtype != dtype:
        raise ValueError(
            f"{name} must be an array of the forward pass's dtype {np.dtype(dtype)}, got dtype {dout.dtype}"
        )
    return dout


def check_file(name, path, kind="a file"):
    """``path`` as a str, checked to name an existing file (not a folder); ``name`` and ``kind``
    go in the errors: "<name> '<path>' is a directory, not <kind>" or "... does not exist"."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{name} {path!r} is a directory, not {kind}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name} {path!r} does not exist")
    return path
