"""The checker behind ``numpy-retinanet check FILE [--hint N]``.

It loads the learner's file, finds which exercise it answers (a module-level ``EXERCISE = N``, or
else the function or class it defines), runs every case of that exercise (``Exercise.check_case``)
and prints the cases, a table of rows, a verdict and the likely mistakes (``Exercise.diagnose``),
each with the hint that helps.

The reference solutions live in the repository, ``lessons/exercises/solutions/exN_*.py``, next to
the package's folder, and are never installed; where they are absent (a wheel install) the checker
says so once and compares with the ground truth alone (central differences, the package).

An answer whose own code calls one of its exercise's ``package_answers`` is reported as such, not
passed (``watch.py``).

Exit status: 0 when every row passes, 1 when any fails (an untouched stub reports "not
implemented yet"), 2 when the file cannot be checked at all (missing, a syntax error, an error
while importing it, no exercise in it, a hint number out of range).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
import textwrap
import traceback
from pathlib import Path

import numpy_retinanet
from numpy_retinanet.teaching.exercises import EXERCISES
from numpy_retinanet.teaching.exercises.base import Row
from numpy_retinanet.teaching.exercises.watch import PackageCalls

__all__ = ["SOLUTIONS_DIR", "check_file", "check_module", "load_exercise_file", "load_solution", "show_hint"]

PACKAGE_DIR = os.path.realpath(os.path.dirname(numpy_retinanet.__file__))
# The repository's lessons/exercises/solutions, beside the package's folder; absent in a wheel install.
SOLUTIONS_DIR = Path(PACKAGE_DIR).parent / "lessons" / "exercises" / "solutions"
WIDTH = 99  # wrap long lines to fit a 100-column terminal
ERROR = "numpy-retinanet check: error:"


# ------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------


def load_exercise_file(path):
    """Import the file at ``path`` as a fresh module (not added to ``sys.modules``).

    Raises FileNotFoundError when there is no such file, SyntaxError for a file that does
    not parse, and whatever the file's own top-level code raises.
    """
    p = Path(path)
    if not p.is_file():
        what = "is a directory, not a file" if p.is_dir() else "does not exist"
        raise FileNotFoundError(f"exercise file {str(path)!r} {what}")
    p = p.resolve()
    name = "numpy_retinanet_exercise_" + re.sub(r"\W", "_", p.stem)
    # An explicit loader: spec_from_file_location finds none for a name not ending in .py.
    loader = importlib.machinery.SourceFileLoader(name, str(p))
    spec = importlib.util.spec_from_file_location(name, str(p), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def load_solution(number):
    """The reference solution of exercise ``number`` as a module, or None when the repository's are absent."""
    found = sorted(SOLUTIONS_DIR.glob(f"ex{number}_*.py"))
    return load_exercise_file(found[0]) if found else None


def _brief(exc, origins):
    """One line: the exception's type and first message line, and the line of the learner's file."""
    text = str(exc).strip()
    msg = text.splitlines()[0] if text else ""
    if len(msg) > 160:
        msg = msg[:157] + "..."
    lines = [fr.lineno for fr in traceback.extract_tb(exc.__traceback__)
             if os.path.realpath(fr.filename) in origins]
    where = f" at line {lines[-1]}" if lines else ""
    return f"raised {type(exc).__name__}{where}: {msg}" if msg else f"raised {type(exc).__name__}{where}"


def _learner_files(module):
    """The files the learner's code lives in: the module's file, or (a module built in memory)
    the files of the functions it holds, and of the methods of the classes it holds."""
    if getattr(module, "__file__", None):
        return {os.path.realpath(module.__file__)}
    files = set()
    for obj in vars(module).values():
        funcs = [obj] if inspect.isfunction(obj) else (
            [v for v in vars(obj).values() if inspect.isfunction(v)] if inspect.isclass(obj) else [])
        files.update(os.path.realpath(f.__code__.co_filename) for f in funcs)
    return files


# ------------------------------------------------------------------------------------------
# Running an exercise
# ------------------------------------------------------------------------------------------


def _run(ex, module, reference):
    """(cases, rows, not_implemented, package calls) of ``module``'s answer to ``ex``."""
    if not hasattr(module, ex.name):
        return [], [Row(1, "", False, note=f"missing: the file must define {ex.signature}")], False, []
    # An answer imported from the package as it is calls nothing from the learner's file, so the
    # watch below cannot see it; its module says where it came from.
    origin = getattr(getattr(module, ex.name), "__module__", None) or ""
    if origin.split(".")[0] == numpy_retinanet.__name__:
        found = [f"{ex.name} (imported from {origin})"]
        return [], [Row(1, "", False, note=_package_note(found))], False, found
    files = _learner_files(module)
    cases, rows = ex.cases(), []
    with PackageCalls(ex, files) as calls:
        for k, case in enumerate(cases, 1):
            try:
                rows.extend(ex.check_case(module, reference, k, case))
            except NotImplementedError as e:
                # The same stub would say the same thing for every case: one row is enough.
                note = f"not implemented yet ({e})" if str(e) else "not implemented yet"
                return cases, rows + [Row(k, "", False, note=note)], True, calls.found
            except Exception as e:  # noqa: BLE001 -- any mistake in the learner's code is a FAIL row
                rows.append(Row(k, "", False, note=_brief(e, files)))
    if calls.found:
        for r in rows:
            r.passed = False
            r.note = _package_note(calls.found)
    return cases, rows, False, calls.found


def _package_note(found):
    return f"calls the package's {' and '.join(found)}: write it yourself"


def _exercises_of(module, exercise):
    if exercise is None:
        exercise = getattr(module, "EXERCISE", None)
    if exercise is not None:
        if isinstance(exercise, bool) or not isinstance(exercise, int) or exercise not in EXERCISES:
            raise ValueError(f"EXERCISE must be one of {sorted(EXERCISES)}, got {exercise!r}")
        return [EXERCISES[exercise]]
    # Only what the file itself defines counts: a stub that imports the package's
    # conv2d_backward (exercise 5) is not an answer to exercise 3.
    found = [ex for ex in EXERCISES.values()
             if getattr(getattr(module, ex.name, None), "__module__", None) == module.__name__]
    if not found:
        names = ", ".join(ex.name for ex in EXERCISES.values())
        raise ValueError(f"{getattr(module, '__file__', module.__name__)} answers no exercise: it sets no "
                         f"EXERCISE = N and defines none of {names}")
    return found


# ------------------------------------------------------------------------------------------
# Printing
# ------------------------------------------------------------------------------------------


def _wrap(text, indent="", first=None):
    """``text`` filled to WIDTH; later lines indented by ``indent``, the first by ``first`` (default: the same)."""
    return textwrap.fill(text, WIDTH, initial_indent=indent if first is None else first, subsequent_indent=indent)


def _is_number(v):
    return isinstance(v, float) and v == v


def _gradient_line(r, status):
    """One row of a gradient exercise; a row that failed before any comparison leaves the numbers blank."""
    shape = str(r.shape) if getattr(r, "shape", ()) else ""
    if _is_number(getattr(r, "max_rel", None)):
        numbers = (f"{r.max_rel:>8.1e}  {r.norm_rel:>8.1e}  {str(r.worst_index):<13} "
                   f"{r.yours:>13.6e} {r.numerical:>13.6e}")
    else:
        numbers = f"{'':>8}  {'':>8}  {'':<13} {'':>13} {'':>13}"
    return f"{r.case:>4} {r.name or '-':<10} {shape:<13} {numbers}  {status}"


def format_table(rows) -> str:
    """The rows as a table; a gradient exercise's rows (with numbers) get the gradient columns.

    A failing row's note goes on the line below it, so that the table keeps to 100 columns.
    """
    gradient = any(hasattr(r, "max_rel") for r in rows)
    if gradient:
        lines = [f"{'case':>4} {'input':<10} {'shape':<13} {'max rel':>8}  {'norm rel':>8}  {'worst at':<13} "
                 f"{'yours':>13} {'numerical':>13}  result"]
    else:
        lines = [f"{'case':>4} {'what':<16} result  measure"]
    for r in rows:
        status = "PASS" if r.passed else "FAIL"
        if gradient:
            lines.append(_gradient_line(r, status))
        else:
            head = f"{r.case:>4} {r.name or '-':<16} {status:<6}  "
            lines.append(_wrap(r.measure, " " * len(head), head) if r.measure else head.rstrip())
        if r.note:
            lines.append(_wrap(r.note, " " * 7))
    return "\n".join(lines)


def _hint_command(path, n):
    return f"numpy-retinanet check {path} --hint {n}"


def _report(ex, cases, rows, not_implemented, found, path, reference):
    print(_wrap(f"Exercise {ex.number}: {ex.title}"))
    print(_wrap(ex.signature, " " * 13, "  you write: "))
    for k, case in enumerate(cases, 1):
        print(_wrap(ex.describe(case), " " * 10, f"  case {k}: "))
    if not_implemented:
        # One row says it all; the table's columns would stay empty.
        print(_wrap(rows[-1].note, "  "))
        print(f"Exercise {ex.number}: not implemented yet: fill in {ex.signature.split('(')[0]} and run the "
              "check again")
        if ex.hints:
            print(f"  stuck? hints, gentlest first:\n    {_hint_command(path, 1)} (of {len(ex.hints)})")
        return
    legend = ex.legend()
    if legend:
        print(_wrap(legend))
    print(format_table(rows))
    bad = sum(not r.passed for r in rows)
    if found:
        print(_wrap(f"Exercise {ex.number}: FAIL: your answer {_package_note(found)}"))
        return
    if not bad:
        print(f"Exercise {ex.number}: PASS ({len(rows)} of {len(rows)} rows)")
        return
    print(f"Exercise {ex.number}: FAIL ({bad} of {len(rows)} rows failed)")
    diagnoses = ex.diagnose(cases, rows)
    for d in diagnoses:
        print(_wrap(d.mistake, "  ", "Likely mistake: "))
        print(f"  hint {d.hint} helps: {_hint_command(path, d.hint)}")
    if not diagnoses and ex.hints:
        print(f"No known mistake matches these rows; {len(ex.hints)} hints, gentlest first:")
        print(f"  {_hint_command(path, 1)}")


# ------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------


def check_module(module, exercise=None, verbose=False, path=None):
    """Check the exercise answers in ``module`` (a loaded file or any namespace with the names).

    Parameters
    ----------
    module : has ``EXERCISE = N`` and that exercise's function (or class); without
        ``EXERCISE``, every exercise whose function or class the module defines is checked.
    exercise : overrides the module's ``EXERCISE``.
    verbose : print each exercise's cases, its table, a verdict and the likely mistake.
    path : the file's name as the learner typed it, for the ``--hint`` commands printed
        (default: the module's file).

    Returns
    -------
    (passed, rows): passed is True when every row passed; rows are ``Row`` (``GradientRow`` for a
    gradient exercise), one per compared array per case, or one FAIL row for a case that could not
    be compared, exercise by exercise.

    Raises ValueError when the module answers no exercise.
    """
    exercises = _exercises_of(module, exercise)
    path = path or getattr(module, "__file__", None) or "FILE"
    all_rows, passed, said_absent = [], True, False
    for ex in exercises:
        reference = load_solution(ex.number)
        if reference is None and verbose and not said_absent:
            said_absent = True
            print(_wrap(f"note: the reference solutions are not here ({SOLUTIONS_DIR} is missing: they live in "
                        "the repository, not in the installed package); comparing with central differences "
                        "and the package only", "  "))
        cases, rows, not_implemented, found = _run(ex, module, reference)
        ok = bool(rows) and all(r.passed for r in rows)
        passed = passed and ok
        all_rows.extend(rows)
        if verbose:
            _report(ex, cases, rows, not_implemented, found, path, reference)
            print()
    if verbose and len(exercises) > 1:
        print("all exercises passed" if passed else "some exercises failed")
    return passed, all_rows


def _load_or_say(path):
    """(module, None) or (None, exit status 2) after printing why the file cannot be loaded."""
    try:
        return load_exercise_file(path), None
    except FileNotFoundError as e:
        print(f"{ERROR} {e}", file=sys.stderr)
    except SyntaxError as e:
        print(f"{ERROR} {e.filename}, line {e.lineno}: {type(e).__name__}: {e.msg}", file=sys.stderr)
        if e.text:
            print(f"    {e.text.rstrip()}", file=sys.stderr)
            if e.offset:
                print("    " + " " * (e.offset - 1) + "^", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 -- the file's top-level code may raise anything
        print(f"{ERROR} could not import {path}: {_brief(e, {str(Path(path).resolve())})}", file=sys.stderr)
    return None, 2


def check_file(path) -> int:
    """Check the exercise file at ``path`` and print the report.

    Returns the exit status: 0 when every row passes, 1 when any fails (or an answer is not
    implemented yet, or calls the package's own answer), 2 when the file cannot be checked
    (missing, a syntax error, an error while importing it, or no exercise in it); the reason goes
    to stderr.
    """
    module, status = _load_or_say(path)
    if module is None:
        return status
    try:
        passed, _ = check_module(module, verbose=True, path=path)
    except ValueError as e:
        print(f"{ERROR} {e}", file=sys.stderr)
        return 2
    return 0 if passed else 1


def show_hint(path, n) -> int:
    """Print hint ``n`` (1-based) of the exercise the file at ``path`` answers; return the exit status.

    0 when printed; 2 when the file cannot be loaded, answers no exercise or several, or has no
    hint ``n`` (the reason goes to stderr).
    """
    module, status = _load_or_say(path)
    if module is None:
        return status
    try:
        exercises = _exercises_of(module, None)
    except ValueError as e:
        print(f"{ERROR} {e}", file=sys.stderr)
        return 2
    if len(exercises) != 1:
        print(f"{ERROR} --hint needs a file that answers one exercise; {path} answers "
              f"{', '.join(str(ex.number) for ex in exercises)}: set EXERCISE = N in it", file=sys.stderr)
        return 2
    ex = exercises[0]
    count = len(ex.hints)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= count:
        print(f"{ERROR} --hint must be an int in [1, {count}] (exercise {ex.number} has {count} hints), got {n!r}",
              file=sys.stderr)
        return 2
    print(f"Exercise {ex.number}, hint {n} of {count} ({ex.title}):")
    print(textwrap.indent(ex.hints[n - 1], "  "))
    if n < count:
        print(f"(the next: {_hint_command(path, n + 1)})")
    return 0
