"""Gradient checks: central differences against a hand-written backward pass.

The idea (CS231n, "Gradient checks"): for a scalar function f of an array x,

    df/dx[i] ~= (f(x + h e_i) - f(x - h e_i)) / (2 h)

with an error O(h^2) from truncation plus O(eps |f| / h) from rounding. In
float64 with h = 1e-5 both are about 1e-10 for f of order one, so a correct
backward agrees to about 1e-8 relative or better; a wrong one is off by O(1).
float32 (eps ~ 1e-7) cannot get below ~1e-2, so it is refused.

Usage: ``f`` takes no arguments and reads the arrays in ``inputs``, which are
perturbed *in place* one entry at a time and restored afterwards::

    x = rng.standard_normal((2, 3))
    dout = rng.standard_normal((2, 3))
    f = lambda: float(np.sum(relu_forward(x)[0] * dout))
    dx = relu_backward(dout, relu_forward(x)[1])
    rows = check_gradients(f, {"x": x}, {"x": dx})

Entry-wise relative error is ``|a - n| / max(|a|, |n|, atol / rtol)``: entries
smaller than ``atol / rtol`` are compared absolutely, because central
differences carry ~1e-10 absolute noise that would look "relatively" large on
a gradient entry of 1e-9. An entry passes when ``|a - n| <= atol + rtol *
max(|a|, |n|)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numpy_retinanet._checks import check_array, check_int, check_real
from numpy_retinanet.backend import array_module, to_host

# float32 central differences carry ~1e-3 relative noise and cannot reach the tolerances
# here, so every checked input must be float64 (x.astype(np.float64)).


def _entry_indices(shape, max_entries, rng):
    """All indices of ``shape`` in C order, or ``max_entries`` of them drawn without replacement."""
    size = int(np.prod(shape)) if len(shape) else 1
    if max_entries is None or max_entries >= size:
        flat = np.arange(size)
    else:
        flat = np.sort(rng.choice(size, size=max_entries, replace=False))
    return [np.unravel_index(int(i), shape) for i in flat]


def _check_step(h):
    """``h`` as a finite float > 0: the differences divide by ``2 h``."""
    return check_real("h", h, 0.0, low_open=True)


def _check_tolerances(rtol, atol):
    """``(rtol, atol)``: rtol > 0 (entries below ``atol / rtol`` are compared absolutely), atol >= 0."""
    return check_real("rtol", rtol, 0.0, low_open=True), check_real("atol", atol, 0.0)


def numerical_gradient(f, x, h=1e-5, indices=None):
    """Central-difference gradient of the scalar ``f()`` with respect to ``x``.

    Parameters
    ----------
    f : callable() -> float, reading ``x`` (perturbed in place, restored after each entry).
    x : float64 array of any shape.
    h : step, a finite float > 0.
    indices : optional list of index tuples; only those entries are computed.

    Returns
    -------
    An array shaped like ``x`` (``indices`` None) or a 1-D float64 host array
    with one value per index.
    """
    check_array("x", x, dtype=np.float64)
    h = _check_step(h)
    idx = _entry_indices(x.shape, None, None) if indices is None else list(indices)
    out = np.empty(len(idx), dtype=np.float64)
    for k, i in enumerate(idx):
        old = x[i].copy() if hasattr(x[i], "copy") else x[i]
        x[i] = old + h
        fp = float(f())
        x[i] = old - h
        fm = float(f())
        x[i] = old  # restore exactly: later entries and the caller see the original x
        out[k] = (fp - fm) / (2.0 * h)
    if indices is None:
        return array_module(x).asarray(out.reshape(x.shape))
    return out


@dataclass
class GradCheckRow:
    """One input's result: the numbers a learner needs to find a bug."""

    name: str
    shape: tuple
    checked: int  # entries compared
    max_rel_error: float
    norm_rel_error: float
    worst_index: tuple
    analytic: float  # at worst_index
    numerical: float  # at worst_index
    passed: bool
    note: str = ""

    def format(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        return (
            f"{self.name:<24} {str(self.shape):<18} {self.checked:>7} "
            f"{self.max_rel_error:>10.2e} {self.norm_rel_error:>10.2e} "
            f"{str(self.worst_index):<16} {self.analytic:>13.6e} {self.numerical:>13.6e}  {status}"
            + (f"  {self.note}" if self.note else "")
        )


HEADER = (
    f"{'input':<24} {'shape':<18} {'checked':>7} {'max rel':>10} {'norm rel':>10} "
    f"{'worst index':<16} {'analytic':>13} {'numerical':>13}  result"
)


def format_report(rows) -> str:
    """The rows as a table with a header line."""
    return "\n".join([HEADER] + [r.format() for r in rows])


def compare(name, analytic, numerical, rtol=1e-6, atol=1e-9, indices=None) -> GradCheckRow:
    """Compare an analytic gradient with numerical values (all entries or the ``indices`` given)."""
    rtol, atol = _check_tolerances(rtol, atol)
    a_full = to_host(analytic)
    if indices is None:
        a = np.asarray(a_full, dtype=np.float64).ravel()
        n = np.asarray(to_host(numerical), dtype=np.float64).ravel()
        idx = [np.unravel_index(i, a_full.shape) for i in range(a.size)]
    else:
        idx = list(indices)
        a = np.array([a_full[i] for i in idx], dtype=np.float64)
        n = np.asarray(numerical, dtype=np.float64)
    if a.size == 0:
        return GradCheckRow(name, tuple(a_full.shape), 0, 0.0, 0.0, (), 0.0, 0.0, True, "empty")
    diff = np.abs(a - n)
    scale = np.maximum(np.abs(a), np.abs(n))
    rel = diff / np.maximum(scale, atol / rtol)
    if not np.all(np.isfinite(rel)):
        rel = np.where(np.isfinite(rel), rel, np.inf)
    w = int(np.argmax(rel))
    norm_rel = float(np.linalg.norm(a - n) / max(np.linalg.norm(a), np.linalg.norm(n), atol / rtol))
    passed = bool(np.all(diff <= atol + rtol * scale))
    return GradCheckRow(
        name=name,
        shape=tuple(a_full.shape),
        checked=int(a.size),
        max_rel_error=float(rel[w]),
        norm_rel_error=norm_rel,
        worst_index=tuple(int(v) for v in idx[w]),
        analytic=float(a[w]),
        numerical=float(n[w]),
        passed=passed,
    )


def check_gradients(f, inputs, analytic, h=1e-5, rtol=1e-6, atol=1e-9, max_entries=None,
                    seed=0, verbose=True):
    """Check ``analytic[name]`` against central differences of ``f`` for every named input.

    Parameters
    ----------
    f : callable() -> float, reading the arrays of ``inputs``.
    inputs : dict name -> float64 array (perturbed in place, restored).
    analytic : dict name -> array of the same shape (the backward pass's gradient).
    max_entries : check only this many randomly drawn entries of each input (large tensors).
    verbose : print the report.

    Returns
    -------
    list of GradCheckRow, one per input, in the order of ``inputs``.
    """
    h, (rtol, atol) = _check_step(h), _check_tolerances(rtol, atol)
    if max_entries is not None:
        check_int("max_entries", max_entries, 1)
    rng = np.random.default_rng(seed)
    rows = []
    for name, x in inputs.items():
        check_array(name, x, dtype=np.float64)
        if name not in analytic or analytic[name] is None:
            raise ValueError(f"no analytic gradient given for input {name!r}")
        g = analytic[name]
        if tuple(g.shape) != tuple(x.shape):
            raise ValueError(
                f"analytic gradient for {name!r} has shape {tuple(g.shape)}, input has {tuple(x.shape)}"
            )
        idx = _entry_indices(x.shape, max_entries, rng)
        num = numerical_gradient(f, x, h=h, indices=idx)
        rows.append(compare(name, g, num, rtol=rtol, atol=atol, indices=idx))
    if verbose:
        print(format_report(rows))
    return rows


def directional_check(f, inputs, analytic, h=1e-5, rtol=1e-6, atol=1e-9, seed=0, verbose=True):
    """Random-direction check over all inputs at once (for inputs too large to check entry-wise).

    Draws a unit direction ``d`` over every entry of every input and compares
    ``sum(analytic * d)`` with ``(f(x + h d) - f(x - h d)) / (2 h)``: one pair of
    evaluations tests every entry's gradient together. Returns a GradCheckRow
    named ``"direction"``.
    """
    h, (rtol, atol) = _check_step(h), _check_tolerances(rtol, atol)
    rng = np.random.default_rng(seed)
    dirs = {}
    for name, x in inputs.items():
        check_array(name, x, dtype=np.float64)
        xp = array_module(x)
        dirs[name] = xp.asarray(rng.standard_normal(x.shape))
    norm = float(np.sqrt(sum(float((d * d).sum()) for d in dirs.values())))
    for name in dirs:
        dirs[name] = dirs[name] / norm
    analytic_dd = sum(float((to_host(analytic[n]) * to_host(dirs[n])).sum()) for n in inputs)
    originals = {n: x.copy() for n, x in inputs.items()}

    def shifted(sign):
        for n, x in inputs.items():
            x[...] = originals[n] + sign * h * dirs[n]
        return float(f())

    try:
        numerical_dd = (shifted(+1.0) - shifted(-1.0)) / (2.0 * h)
    finally:
        for n, x in inputs.items():
            x[...] = originals[n]
    row = compare("direction", np.array([analytic_dd]), np.array([numerical_dd]), rtol=rtol, atol=atol)
    row.shape = (sum(int(np.prod(x.shape)) for x in inputs.values()),)
    row.note = "random direction over all inputs"
    if verbose:
        print(format_report([row]))
    return row


def all_passed(rows) -> bool:
    """True when every row passed."""
    return all(r.passed for r in rows)
