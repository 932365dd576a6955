"""What the checker needs of an exercise: ``Exercise``, the rows it reports and the mistakes it names.

Every exercise, a backward pass (1-7) or a detection step (8-10), is a subclass of ``Exercise``
in its own module. The runner (``runner.py``) loads the learner's file and the reference solution
(``lessons/exercises/solutions/``, read from the repository, never installed), calls
``check_case`` on each case, prints the rows, then prints what ``diagnose`` recognises in them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    """One line of the checker's table: one compared array (or value) of one case.

    case : 1-based number of the case.
    name : what was compared: an input's gradient ("dx"), an output ("keep", "labels", "AP").
    passed : whether it matches.
    measure : the numbers, one short line ("max rel 2.0e+00 at (1, 2): yours -1.2 vs 1.2").
    note : why it failed, one line; empty when it passed.
    """

    case: int
    name: str
    passed: bool
    measure: str = ""
    note: str = ""


@dataclass
class Diagnosis:
    """A likely mistake, recognised from the pattern of the failing rows.

    mistake : one sentence a learner understands ("the sign is flipped: your gradient is minus
        the right one everywhere, a relative error of exactly 2").
    hint : the number of the hint that helps (``numpy-retinanet check FILE --hint N``).
    """

    mistake: str
    hint: int


class Exercise:
    """One exercise. Subclasses set the class attributes and define the four methods.

    number : the exercise's number, as in ``EXERCISE = N``.
    name : the function or class the learner's file defines.
    signature : what the learner writes, one line with the shapes' names.
    title : one line, with where it sits in the paper.
    hints : opened on purpose with ``--hint N`` (1-based), gentlest first; they state ideas and
        formulas, never code.
    package_answers : dotted names of the package's functions that *are* the answer (for
        example ``"numpy_retinanet.nn.functional.conv2d_backward"``); an answer whose own code
        calls one of them is reported as such, not passed.
    """

    number: int
    name: str
    signature: str
    title: str
    hints: tuple[str, ...] = ()
    package_answers: tuple[str, ...] = ()

    def cases(self) -> list[dict]:
        """The cases, drawn from fixed seeds or written out: the same on every run."""
        raise NotImplementedError

    def describe(self, case: dict) -> str:
        """One line naming the case's shapes, settings and what makes it special (a tie, an empty set)."""
        raise NotImplementedError

    def check_case(self, impl, reference, k: int, case: dict) -> list[Row]:
        """Run ``impl``'s answer on copies of case ``k`` and compare it; return its rows.

        ``impl`` is the learner's module, ``reference`` the solution module (or None when the
        repository's solutions are not there: compare with the ground truth alone). May raise
        NotImplementedError (the untouched stub); the runner turns any other exception into a
        FAIL row naming it and the learner's line.
        """
        raise NotImplementedError

    def diagnose(self, cases: list[dict], rows: list[Row]) -> list[Diagnosis]:
        """The likely mistakes the failing rows show, each with the hint that helps; [] when none is known."""
        return []

    def legend(self) -> str:
        """Optional: a few lines printed above the table, saying what a row compares ("" for none)."""
        return ""
