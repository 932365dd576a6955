"""What every backward-pass exercise (1-7) shares: its rows and how an answer is compared.

A gradient exercise gives the forward and asks for the backward. For every input of every case
``GradientExercise.check_case`` makes one ``GradientRow``:

* against central differences of the *package's* forward (the ``numerical`` column): the
  ground truth, so a learner who edits the given forward gains nothing;
* against the reference solution (``lessons/exercises/solutions/``) on every entry, to a tighter
  tolerance; a disagreement fails the row and is named in its note.

A gradient of the wrong shape or dtype, or a return value that is not the arrays asked for,
fails its row or case with a one-line note. The rows keep the arrays compared, so that
``diagnose`` can recognise what the answer did (``diagnose.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from numpy_retinanet.gradcheck import compare, numerical_gradient
from numpy_retinanet.teaching.exercises.base import Exercise, Row
from numpy_retinanet.teaching.exercises.watch import unwatched

# The reference and a correct answer compute the same numbers in a different order, so they
# agree to rounding (~1e-15 relative); 1e-7 leaves room for any sensible formula and still
# catches every real mistake, which is off by O(1).
REF_RTOL, REF_ATOL = 1e-7, 1e-12

NAN = float("nan")


@dataclass
class GradientRow(Row):
    """A ``Row`` of a gradient exercise: one input's gradient in one case, with its numbers.

    shape : the input's shape. checked : entries compared.
    max_rel, norm_rel : entry-wise and whole-array relative error against central differences.
    worst_index, yours, numerical : where max_rel is reached and the two values there.
    got : the answer's array (None when the answer returned none).
    expected : the right array: the reference solution's, or central differences without it.
    """

    shape: tuple = ()
    checked: int = 0
    max_rel: float = NAN
    norm_rel: float = NAN
    worst_index: tuple = ()
    yours: float = NAN
    numerical: float = NAN
    got: np.ndarray | None = field(default=None, repr=False, compare=False)
    expected: np.ndarray | None = field(default=None, repr=False, compare=False)


class WrongReturn(Exception):
    """The answer returned something that is not the arrays asked for."""


def returned_array(value, what):
    """``value`` when it is a NumPy array; else WrongReturn naming ``what`` was expected."""
    if not isinstance(value, np.ndarray):
        raise WrongReturn(f"{what} must be a NumPy array, got {type(value).__name__}")
    return value


def returned_tuple(value, names):
    """``value`` when it is a tuple (or list) of ``len(names)`` arrays; else WrongReturn."""
    what = f"({', '.join(names)})" if len(names) > 1 else names[0]
    if not (isinstance(value, (tuple, list)) and len(value) == len(names)):
        got = type(value).__name__ + (f" of length {len(value)}" if isinstance(value, (tuple, list)) else "")
        raise WrongReturn(f"must return the tuple {what}, got {got}")
    return tuple(returned_array(v, n) for v, n in zip(value, names))


def zero_one_targets(rng, shape):
    """0/1 targets with about a third positives, at least one of each."""
    size = int(np.prod(shape))
    t = np.zeros(size)
    t[rng.permutation(size)[: max(1, size // 3)]] = 1.0
    return t.reshape(shape)


class GradientExercise(Exercise):
    """A backward pass to write. Subclasses define, besides ``cases`` and ``describe``,

    answer(impl, case) -> {input name: gradient}, calling ``impl``'s answer (the learner's
        module or the reference) on copies of the case, so no answer can change the case;
    loss(case) -> (f, inputs): f() = sum(forward(...) * dout) with the package's forward,
        reading the arrays of ``inputs`` by name: the function whose gradient the answer is;
    typical_error : the max rel error a correct answer reaches, as the stub states it.
    """

    typical_error: str = "1e-8"

    def answer(self, impl, case: dict) -> dict:
        raise NotImplementedError

    def loss(self, case: dict):
        raise NotImplementedError

    def legend(self) -> str:
        return (f"Each row: your gradient of one input against central differences of the package's forward "
                f"(max rel, norm rel; yours and numerical at the worst entry) and against the reference "
                f"solution. A correct answer reaches a max rel around {self.typical_error}; a row passes below "
                f"about 1e-6; a mistake is usually off by 1e-2 or more.")

    def check_case(self, impl, reference, k, case):
        try:
            got = self.answer(impl, case)
        except WrongReturn as e:
            return [GradientRow(k, "", False, note=str(e))]
        f, inputs = self.loss(case)
        ref = self.answer(reference, case) if reference is not None else None
        return [self._row(k, name, x, got[name], f, ref[name] if ref is not None else None)
                for name, x in inputs.items()]

    def _row(self, k, name, x, g, f, ref):
        with unwatched():
            num = numerical_gradient(f, x)
        expected = num if ref is None else ref

        def failed(note):
            return GradientRow(k, name, False, note=note, shape=tuple(g.shape), got=g, expected=expected)

        if tuple(g.shape) != tuple(x.shape):
            return failed(f"returned shape {tuple(g.shape)}, expected {tuple(x.shape)}")
        if g.dtype != x.dtype:
            # float32 rounding (~6e-8 relative) hides under both tolerances, yet a float32 answer
            # breaks the package's rule that every op keeps its input's dtype.
            return failed(f"returned dtype {g.dtype}, expected {x.dtype} (the input's)")
        c = compare(name, g, num)
        row = GradientRow(k, name, c.passed, measure=f"max rel {c.max_rel_error:.1e} at {c.worst_index}",
                          shape=c.shape, checked=c.checked, max_rel=c.max_rel_error, norm_rel=c.norm_rel_error,
                          worst_index=c.worst_index, yours=c.analytic, numerical=c.numerical, got=g,
                          expected=expected)
        if ref is not None:
            r = compare(name, g, ref, rtol=REF_RTOL, atol=REF_ATOL)
            if not r.passed:
                row.passed = False
                row.note = (f"reference solution differs: max rel {r.max_rel_error:.1e} at {r.worst_index}, "
                            f"yours {r.analytic:.6e} vs {r.numerical:.6e}")
        return row
