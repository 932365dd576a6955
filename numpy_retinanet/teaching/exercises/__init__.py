"""The checker behind lessons/exercises: ``numpy-retinanet check FILE``.

Each exercise asks for one backward pass; its forward is given. The checker loads the
learner's file, finds which exercise it answers (a module-level ``EXERCISE = N``, or else
the function or class it defines), runs the answer on a few fixed random float64 cases
and, for every input of every case, prints one row of a gradient-check table
(``gradcheck.format_report``):

* against central differences of the *package's* forward (the ``numerical`` column):
  this is the ground truth, so a learner who edits the given forward gains nothing;
* against the reference solution (``exercise_solutions``) on every entry, to a tighter
  tolerance; a disagreement fails the row and is named in its note.

A gradient of the wrong shape or dtype, a return value that is not the arrays asked for, or
an exception in the learner's code fails its row or case with a one-line note, never a
traceback. Exit status: 0 when every row passes, 1 when any fails (an untouched stub reports
"not implemented yet"), 2 when the file cannot be checked at all (missing, a syntax error, an
error while importing it, no exercise in it).

The cases are drawn from fixed seeds, so a learner sees the same numbers on every run. They
keep away from the kinks (smooth L1 at |d| = beta and at d = 0), where a central difference
straddles two pieces and disagrees with any correct answer.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
import traceback
from pathlib import Path

import numpy as np

from numpy_retinanet.gradcheck import GradCheckRow, check_gradients, compare, format_report
from numpy_retinanet.nn.functional import conv2d_forward, conv_output_size, upsample_nearest_forward
from numpy_retinanet.nn.losses import sigmoid_focal_loss_forward, smooth_l1_forward
from numpy_retinanet.teaching import exercise_solutions

__all__ = ["EXERCISES", "check_file", "check_module", "load_exercise_file"]

# The reference and a correct answer compute the same numbers in a different order, so they
# agree to rounding (~1e-15 relative); 1e-7 leaves room for any sensible formula and still
# catches every real mistake, which is off by O(1).
REF_RTOL, REF_ATOL = 1e-7, 1e-12


class _WrongReturn(Exception):
    """The answer returned something that is not the arrays asked for."""


def _returned_array(value, what):
    if not isinstance(value, np.ndarray):
        raise _WrongReturn(f"{what} must be a NumPy array, got {type(value).__name__}")
    return value


def _targets(rng, shape):
    """0/1 targets with about a third positives, at least one of each."""
    size = int(np.prod(shape))
    t = np.zeros(size)
    t[rng.permutation(size)[: max(1, size // 3)]] = 1.0
    return t.reshape(shape)


# ----------------------------------------------------------------------------------------
# The exercises. Each knows its cases, how to call an answer (the learner's module or the
# reference), and the scalar f = sum(forward(inputs) * dout) whose gradient the answer is.
# ----------------------------------------------------------------------------------------


class _Exercise:
    """What the runner needs of an exercise; each subclass defines

    cases() -> list of dicts, drawn from a fixed seed;
    describe(case) -> one line naming the shapes and hyperparameters;
    answer(impl, case) -> {input name: gradient}, calling ``impl``'s answer (the learner's
        module or the reference) on copies of the case, so no answer can change the case;
    loss(case) -> (f, inputs): f() = sum(forward(...) * dout), reading the arrays of
        ``inputs`` by name, the function whose gradient the answer is.
    """

    number: int
    name: str  # the function or class the learner's file defines
    signature: str
    title: str
    typical_error: str  # the max rel error a correct answer reaches, as the stub states it


class _FocalLoss(_Exercise):
    number, name = 1, "focal_loss_backward"
    signature = "focal_loss_backward(dout, logits, targets, alpha, gamma) -> dlogits"
    title = "sigmoid focal loss backward (§3.2 eq. 5, Appendix B)"
    typical_error = "1e-8"

    def cases(self):
        rng = np.random.default_rng(1)
        # gamma = 0 is the alpha-balanced cross-entropy; 0.5 and 5 catch a hard-coded gamma = 2.
        specs = [((4, 6), 0.25, 2.0), ((2, 5, 3), 0.25, 0.0), ((3, 4), 0.75, 1.0),
                 ((7,), 0.5, 0.5), ((2, 3, 4), 0.25, 5.0)]
        return [dict(logits=rng.uniform(-5, 5, shape), targets=_targets(rng, shape),
                     dout=rng.standard_normal(shape), alpha=alpha, gamma=gamma)
                for shape, alpha, gamma in specs]

    def describe(self, c):
        extra = " (the alpha-balanced cross-entropy)" if c["gamma"] == 0 else ""
        return f"logits {c['logits'].shape}, alpha={c['alpha']}, gamma={c['gamma']}{extra}"

    def answer(self, impl, c):
        out = impl.focal_loss_backward(c["dout"].copy(), c["logits"].copy(), c["targets"].copy(),
                                       c["alpha"], c["gamma"])
        return {"logits": _returned_array(out, "dlogits")}

    def loss(self, c):
        logits = c["logits"]

        def f():
            loss, _ = sigmoid_focal_loss_forward(logits, c["targets"], c["alpha"], c["gamma"])
            return float(np.sum(loss * c["dout"]))

        return f, {"logits": logits}


class _SmoothL1(_Exercise):
    number, name = 2, "smooth_l1_backward"
    signature = "smooth_l1_backward(dout, pred, target, beta) -> dpred"
    title = "smooth L1 backward (§4.1 box regression)"
    typical_error = "1e-9"

    def cases(self):
        rng = np.random.default_rng(2)
        out = []
        for shape, beta in [((6, 4), 0.11), ((3, 4), 1.0), ((2, 5, 4), 0.5), ((8,), 0.0)]:
            size = int(np.prod(shape))
            if beta > 0:
                # Half the entries inside the quadratic zone, half outside, none within
                # 0.05 beta of the kink at |d| = beta or of 0.
                inside = rng.permutation(size) < size // 2
                mag = beta * np.where(inside, rng.uniform(0.05, 0.9, size), rng.uniform(1.1, 3.0, size))
            else:
                mag = rng.uniform(0.05, 2.0, size)
            d = (mag * rng.choice([-1.0, 1.0], size)).reshape(shape)
            target = rng.standard_normal(shape)
            out.append(dict(pred=target + d, target=target, dout=rng.standard_normal(shape), beta=beta))
        return out

    def describe(self, c):
        if c["beta"] == 0:
            return f"pred {c['pred'].shape}, beta=0.0 (the L1 loss)"
        n_in = int(np.sum(np.abs(c["pred"] - c["target"]) < c["beta"]))
        return f"pred {c['pred'].shape}, beta={c['beta']} ({n_in} of {c['pred'].size} entries have |d| < beta)"

    def answer(self, impl, c):
        out = impl.smooth_l1_backward(c["dout"].copy(), c["pred"].copy(), c["target"].copy(), c["beta"])
        return {"pred": _returned_array(out, "dpred")}

    def loss(self, c):
        pred = c["pred"]

        def f():
            return float(np.sum(smooth_l1_forward(pred, c["target"], c["beta"])[0] * c["dout"]))

        return f, {"pred": pred}


class _Conv2d(_Exercise):
    number, name = 3, "conv2d_backward"
    signature = "conv2d_backward(dout, x, w, b, stride, padding) -> (dx, dw, db)"
    title = "conv2d backward (every layer of the backbone, FPN and heads)"
    typical_error = "1e-8"

    def cases(self):
        rng = np.random.default_rng(3)
        # Non-square inputs and kernels; stride 2 with an input row or column that no
        # window reaches (case 3); a 1x1 kernel; a kernel of 2 with stride 2 and padding 1.
        specs = [((2, 3, 5, 7), (4, 3, 3, 3), 1, 1), ((1, 2, 7, 6), (3, 2, 3, 3), 2, 1),
                 ((2, 2, 6, 5), (2, 2, 3, 2), 2, 0), ((1, 3, 4, 5), (2, 3, 1, 1), 1, 0),
                 ((2, 2, 4, 6), (3, 2, 2, 2), 2, 1)]
        out = []
        for xs, ws, s, p in specs:
            oh = conv_output_size(xs[2], ws[2], s, p)
            ow = conv_output_size(xs[3], ws[3], s, p)
            out.append(dict(x=rng.standard_normal(xs), w=rng.standard_normal(ws),
                            b=rng.standard_normal(ws[0]),
                            dout=rng.standard_normal((xs[0], ws[0], oh, ow)), stride=s, padding=p))
        return out

    def describe(self, c):
        return (f"x {c['x'].shape}, w {c['w'].shape}, stride={c['stride']}, padding={c['padding']}"
                f" -> out {c['dout'].shape}")

    def answer(self, impl, c):
        out = impl.conv2d_backward(c["dout"].copy(), c["x"].copy(), c["w"].copy(), c["b"].copy(),
                                   c["stride"], c["padding"])
        if not (isinstance(out, (tuple, list)) and len(out) == 3):
            raise _WrongReturn(f"must return the tuple (dx, dw, db), got {type(out).__name__}"
                               + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))
        return {k: _returned_array(v, "d" + k) for k, v in zip(("x", "w", "b"), out)}

    def loss(self, c):
        x, w, b = c["x"], c["w"], c["b"]

        def f():
            y, _ = conv2d_forward(x, w, b, c["stride"], c["padding"])
            return float(np.sum(y * c["dout"]))

        return f, {"x": x, "w": w, "b": b}


class _Upsample(_Exercise):
    number, name = 4, "upsample_nearest_backward"
    signature = "upsample_nearest_backward(dout, factor) -> dx"
    title = "nearest-neighbour upsampling backward (the FPN's top-down path)"
    typical_error = "1e-8"

    def cases(self):
        rng = np.random.default_rng(4)
        out = []
        for shape, k in [((2, 3, 3, 5), 2), ((1, 2, 2, 4), 3), ((3, 1, 4, 2), 2), ((1, 2, 3, 2), 4)]:
            n, c, h, w = shape
            out.append(dict(x=rng.standard_normal(shape), dout=rng.standard_normal((n, c, h * k, w * k)),
                            factor=k))
        return out

    def describe(self, c):
        return f"x {c['x'].shape}, factor={c['factor']} -> out {c['dout'].shape}"

    def answer(self, impl, c):
        out = impl.upsample_nearest_backward(c["dout"].copy(), c["factor"])
        return {"x": _returned_array(out, "dx")}

    def loss(self, c):
        x = c["x"]

        def f():
            return float(np.sum(upsample_nearest_forward(x, c["factor"])[0] * c["dout"]))

        return f, {"x": x}


class _SharedHead(_Exercise):
    number, name = 5, "SharedHead"
    signature = "SharedHead.backward(self, douts) -> [dx per level], adding dw, db into self.grads"
    title = "a head shared over pyramid levels (§4): gradients accumulate"
    typical_error = "1e-7"

    def cases(self):
        rng = np.random.default_rng(5)
        # The last case has two levels of the same size, so walking them in the wrong
        # order raises no shape error and must be caught by the numbers.
        specs = [([(2, 3, 6, 5), (2, 3, 3, 3), (2, 3, 2, 2)], 4),
                 ([(1, 2, 8, 6), (1, 2, 4, 3), (1, 2, 2, 2), (1, 2, 1, 1)], 3),
                 ([(2, 2, 3, 3), (2, 2, 3, 3)], 2)]
        out = []
        for shapes, f in specs:
            c = shapes[0][1]
            w, b = rng.standard_normal((f, c, 3, 3)), rng.standard_normal(f)
            levels = [rng.standard_normal(s) for s in shapes]
            douts = [rng.standard_normal((s[0], f, s[2], s[3])) for s in shapes]
            # grads start nonzero, as after an earlier batch: backward must add to them.
            out.append(dict(w=w, b=b, levels=levels, douts=douts,
                            grads0={"w": rng.standard_normal(w.shape), "b": rng.standard_normal(b.shape)}))
        return out

    def describe(self, c):
        sizes = ", ".join(f"{x.shape[2]}x{x.shape[3]}" for x in c["levels"])
        return (f"{len(c['levels'])} levels ({sizes}) of N={c['levels'][0].shape[0]}, "
                f"C={c['levels'][0].shape[1]}; w {c['w'].shape}; grads start nonzero")

    def answer(self, impl, c):
        head = impl.SharedHead(c["w"].copy(), c["b"].copy())
        for k in ("w", "b"):
            head.grads[k][...] = c["grads0"][k]
        head.forward([x.copy() for x in c["levels"]])
        dlevels = head.backward([d.copy() for d in c["douts"]])
        n = len(c["levels"])
        if not (isinstance(dlevels, (list, tuple)) and len(dlevels) == n):
            raise _WrongReturn(f"backward must return a list of {n} gradients, one per level, got "
                               f"{type(dlevels).__name__}"
                               + (f" of length {len(dlevels)}" if isinstance(dlevels, (list, tuple)) else ""))
        if head._caches:
            raise _WrongReturn(f"backward left {len(head._caches)} of {n} caches on the stack; "
                               "pop one per level, last level first")
        # What backward added is the gradient; grads0 is what an earlier batch left there.
        got = {k: _returned_array(head.grads[k], f'grads["{k}"]') - c["grads0"][k] for k in ("w", "b")}
        for i, d in enumerate(dlevels):
            got[f"levels[{i}]"] = _returned_array(d, f"the gradient of level {i}")
        return got

    def loss(self, c):
        w, b = c["w"], c["b"]

        def f():
            return float(sum(np.sum(conv2d_forward(x, w, b, 1, 1)[0] * d)
                             for x, d in zip(c["levels"], c["douts"])))

        inputs = {"w": w, "b": b}
        inputs.update({f"levels[{i}]": x for i, x in enumerate(c["levels"])})
        return f, inputs


EXERCISES = {ex.number: ex for ex in (_FocalLoss(), _SmoothL1(), _Conv2d(), _Upsample(), _SharedHead())}


# ----------------------------------------------------------------------------------------
# Running an answer
# ----------------------------------------------------------------------------------------


def _failed(name, note, shape=()):
    nan = float("nan")
    return GradCheckRow(name, tuple(shape), 0, nan, nan, (), nan, nan, False, note)


def _brief(exc, origin):
    """One line: the exception's type and first message line, and the line of the learner's file."""
    text = str(exc).strip()
    msg = text.splitlines()[0] if text else ""
    if len(msg) > 160:
        msg = msg[:157] + "..."
    where = ""
    if origin is not None:
        lines = [fr.lineno for fr in traceback.extract_tb(exc.__traceback__) if fr.filename == origin]
        if lines:
            where = f" at line {lines[-1]}"
    return f"raised {type(exc).__name__}{where}: {msg}" if msg else f"raised {type(exc).__name__}{where}"


def _compare_case(label, f, inputs, got, ref):
    rows = []
    for name, x in inputs.items():
        g = got[name]
        if tuple(g.shape) != tuple(x.shape):
            rows.append(_failed(f"{label} {name}", f"returned shape {tuple(g.shape)}, expected {tuple(x.shape)}",
                                g.shape))
            continue
        if g.dtype != x.dtype:
            # float32 rounding (~6e-8 relative) hides under both tolerances, yet a float32 answer
            # breaks the package's rule that every op keeps its input's dtype.
            rows.append(_failed(f"{label} {name}", f"returned dtype {g.dtype}, expected {x.dtype} (the input's)",
                                g.shape))
            continue
        row = check_gradients(f, {name: x}, {name: g}, verbose=False)[0]
        row.name = f"{label} {name}"
        r = compare(name, g, ref[name], rtol=REF_RTOL, atol=REF_ATOL)
        if not r.passed:
            row.passed = False
            row.note = (f"reference solution differs: max rel {r.max_rel_error:.1e} at {r.worst_index}, "
                        f"yours {r.analytic:.6e} vs {r.numerical:.6e}")
        rows.append(row)
    return rows


def _run_exercise(ex, module, origin):
    """(rows, case descriptions, not_implemented) for one exercise."""
    if not hasattr(module, ex.name):
        return [_failed(ex.name, f"missing: the file must define {ex.signature}")], [], False
    rows, descriptions = [], []
    for k, case in enumerate(ex.cases(), 1):
        label = f"case {k}"
        descriptions.append(f"{label}: {ex.describe(case)}")
        try:
            got = ex.answer(module, case)
        except NotImplementedError as e:
            # The same stub would say the same thing for every case: one row is enough.
            note = f"not implemented yet ({e})" if str(e) else "not implemented yet"
            return rows + [_failed(label, note)], descriptions, True
        except _WrongReturn as e:
            rows.append(_failed(label, str(e)))
            continue
        except Exception as e:  # noqa: BLE001 -- any mistake in the learner's code is a FAIL row
            rows.append(_failed(label, _brief(e, origin)))
            continue
        f, inputs = ex.loss(case)
        rows.extend(_compare_case(label, f, inputs, got, ex.answer(exercise_solutions, case)))
    return rows, descriptions, False


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


def check_module(module, exercise=None, verbose=False):
    """Check the exercise answers in ``module`` (a loaded file or any namespace with the names).

    Parameters
    ----------
    module : has ``EXERCISE = N`` and that exercise's function (or class); without
        ``EXERCISE``, every exercise whose function or class the module defines is checked.
    exercise : overrides the module's ``EXERCISE``.
    verbose : print each exercise's cases, its table and a verdict.

    Returns
    -------
    (passed, rows): passed is True when every row passed; rows are GradCheckRow, one per
    input per case (or one FAIL row for a case that could not be compared), exercise by exercise.

    Raises ValueError when the module answers no exercise.
    """
    exercises = _exercises_of(module, exercise)
    origin = getattr(module, "__file__", None)
    all_rows, passed = [], True
    for ex in exercises:
        rows, descriptions, not_implemented = _run_exercise(ex, module, origin)
        ok = all(r.passed for r in rows)
        passed = passed and ok
        all_rows.extend(rows)
        if verbose:
            print(f"Exercise {ex.number}: {ex.title}")
            print(f"  you write: {ex.signature}")
            print("  each row compares your gradient with central differences (numerical) and with the")
            print(f"  reference solution; a correct answer reaches a max rel error around {ex.typical_error},")
            print("  a row passes below about 1e-6, and a mistake is usually off by 1e-2 or more")
            for d in descriptions:
                print(f"  {d}")
            print(format_report(rows))
            if not_implemented:
                verdict = f"not implemented yet: fill in {ex.signature.split('(')[0]} and run the check again"
            elif ok:
                verdict = f"PASS ({len(rows)} of {len(rows)} rows)"
            else:
                verdict = f"FAIL ({sum(not r.passed for r in rows)} of {len(rows)} rows failed)"
            print(f"Exercise {ex.number}: {verdict}\n")
    if verbose and len(exercises) > 1:
        print("all exercises passed" if passed else "some exercises failed")
    return passed, all_rows


# ----------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------


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


def check_file(path) -> int:
    """Check the exercise file at ``path`` and print the report.

    Returns the exit status: 0 when every row passes, 1 when any fails (or an answer is not
    implemented yet), 2 when the file cannot be checked (missing, a syntax error, an error
    while importing it, or no exercise in it); the reason goes to stderr.
    """
    prefix = "numpy-retinanet check: error:"
    try:
        module = load_exercise_file(path)
    except FileNotFoundError as e:
        print(f"{prefix} {e}", file=sys.stderr)
        return 2
    except SyntaxError as e:
        print(f"{prefix} {e.filename}, line {e.lineno}: {type(e).__name__}: {e.msg}", file=sys.stderr)
        if e.text:
            print(f"    {e.text.rstrip()}", file=sys.stderr)
            if e.offset:
                print("    " + " " * (e.offset - 1) + "^", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 -- the file's top-level code may raise anything
        print(f"{prefix} could not import {path}: {_brief(e, str(Path(path).resolve()))}", file=sys.stderr)
        return 2
    try:
        passed, _ = check_module(module, verbose=True)
    except ValueError as e:
        print(f"{prefix} {e}", file=sys.stderr)
        return 2
    return 0 if passed else 1
