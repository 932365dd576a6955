"""A mutation check of the tests: plant one known bug at a time and show that the tests fail on each.

    python tests/mutants.py               # each mutant against its test files (CORE_TESTS, FIGURE_TESTS), minutes
    python tests/mutants.py --full        # the whole default suite against each mutant (much longer)
    python tests/mutants.py --only nms_suppresses_ties matcher_bg_boundary

A mutant is one exact text replacement in one file of ``numpy_retinanet/``: a threshold off by one, a
dropped alpha_t, an assignment where a sum belongs, a transposed axis, NMS suppressing ties, a figure
that draws something plausible and wrong. Its text
must occur exactly once in the current source; if the line moved or changed, the script stops and names
the mutant, so the list is kept in step with the code (tests/test_mutants.py checks this in every test
run).

The working tree is never touched. For each mutant the repository's files (``git ls-files``: tracked,
and untracked but not ignored, as the working tree has them) are copied to a fresh temporary folder,
the mutant is applied there, and pytest runs there, with that copy first on ``sys.path`` (checked: the
copy's ``numpy_retinanet`` is the one imported) and without writing bytecode (a same-size edit within
one second could otherwise be read back from a stale ``.pyc``). First the unmutated copy must pass the
same tests, so that every failure is the mutant's. Hypothesis runs derandomized (``CI=true``: the
``ci`` profile of tests/conftest.py), so a table is reproducible.

Why some files by default: a mutant caught by some of the tests is caught by the suite, so a subset can
only under-report catches, never invent one. The core mutants run against CORE_TESTS, the unit tests of
the layers they live in (nn, detection, model; seconds); the figure mutants against the figures' tests
(about a minute each), leaving out the tests that compare a fresh PNG with the committed one: those fail
on any change to a figure, so without them a catch shows a check of what is drawn. The whole suite takes
many minutes per mutant.

Prints a table (mutant, file:line, the change, caught, the first tests that failed) and exits 1 when
any mutant survives or the baseline fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The unit tests of the layers the core mutants live in (see the module docstring for why a subset).
CORE_TESTS = ("tests/test_anchors.py", "tests/test_boxes.py", "tests/test_matcher.py", "tests/test_losses.py",
              "tests/test_criterion.py", "tests/test_functional.py", "tests/test_modules.py",
              "tests/test_model.py", "tests/test_postprocess.py")
#: The figures' tests: the figure mutants show that they check what is drawn, not only that it is drawn.
FIGURE_TESTS = ("tests/test_figures.py",)
#: Left out for the figure mutants: the tests that compare a fresh PNG with the committed one catch every
#: change to a figure, right or wrong; without them a catch is a content check's.
NOT_BYTE_IDENTITY = "not committed"
#: With --full: the default suite but this script's own tests, which fail on every mutant by design (the
#: mutated text no longer matches), so would count every mutant caught.
FULL_SUITE = ("--ignore=tests/test_mutants.py",)
#: Failed tests named in the table per mutant.
SHOWN = 3


@dataclass(frozen=True)
class Mutant:
    """One planted bug: ``old`` replaced by ``new`` in ``path`` (relative to the repository root)."""

    name: str
    path: str
    old: str
    new: str
    what: str  # the change, in words, for the table
    tests: tuple = CORE_TESTS  # the test files run against it (without --full)
    keyword: str = ""  # a pytest -k expression selecting among those files' tests (without --full)


MUTANTS = (
    Mutant("matcher_bg_boundary", "numpy_retinanet/detection/matcher.py",
           "xp.where(best_iou < bg_iou, BACKGROUND, IGNORED)", "xp.where(best_iou <= bg_iou, BACKGROUND, IGNORED)",
           "IoU exactly 0.4 becomes background (`<` -> `<=`)"),
    Mutant("matcher_fg_boundary", "numpy_retinanet/detection/matcher.py",
           "best_iou >= fg_iou, best_box", "best_iou > fg_iou, best_box",
           "IoU exactly 0.5 is no longer foreground (`>=` -> `>`)"),
    Mutant("focal_backward_no_alpha", "numpy_retinanet/nn/losses.py",
           "neg_log_pt - sigmoid(-x_t))\n    if alpha_t is not None:\n        g = alpha_t * g",
           "neg_log_pt - sigmoid(-x_t))\n    if alpha_t is not None:\n        g = g",
           "focal loss backward drops alpha_t"),
    Mutant("focal_backward_no_alpha_on_negatives", "numpy_retinanet/nn/losses.py",
           "neg_log_pt - sigmoid(-x_t))\n    if alpha_t is not None:\n        g = alpha_t * g",
           "neg_log_pt - sigmoid(-x_t))\n    if alpha_t is not None:\n        g = (alpha_t * (sign > 0) + (sign < 0)) * g",
           "focal loss backward drops alpha_t of the negatives only (issue 20's PyTorch blind spot)"),
    Mutant("conv_dx_assigns", "numpy_retinanet/nn/functional.py",
           "dcol[t0, :, L - k:] += dcol[t, :, :k]", "dcol[t0, :, L - k:] = dcol[t, :, :k]",
           "conv backward: col2im assigns a tap's dx instead of adding it"),
    Mutant("conv_grad_assigns", "numpy_retinanet/nn/modules.py",
           'self._own_grads["weight"] += dw', 'self._own_grads["weight"] = dw',
           "Conv2d.backward assigns dW (a shared head keeps one level's share)"),
    Mutant("anchor_levels_transposed", "numpy_retinanet/detection/anchors.py",
           "return [(-(-height // s), -(-width // s)) for s in self.strides]",
           "return [(-(-width // s), -(-height // s)) for s in self.strides]",
           "level shapes (H_l, W_l) from the wrong axes (width / stride rows)"),
    Mutant("anchor_centres_transposed", "numpy_retinanet/detection/anchors.py",
           "centers = xp.stack([cx, cy, cx, cy], axis=-1)", "centers = xp.stack([cy, cx, cy, cx], axis=-1)",
           "anchor centres with x and y swapped (row stride on x)"),
    Mutant("nms_suppresses_ties", "numpy_retinanet/detection/boxes.py",
           "ranked[start:]) > iou_threshold", "ranked[start:]) >= iou_threshold",
           "NMS also drops a box whose IoU equals the threshold (`>` -> `>=`)"),
    Mutant("max_pool_ties_to_the_last", "numpy_retinanet/nn/functional.py",
           "greater = window > y", "greater = window >= y",
           "max-pool: of equal maxima the last wins the gradient, not the first as in PyTorch"),
    Mutant("max_pool_dx_assigns", "numpy_retinanet/nn/functional.py",
           "dxpad[:, :, a:a + s * oh:s, b:b + s * ow:s] += xp.where(tap == t, dout, 0)",
           "dxpad[:, :, a:a + s * oh:s, b:b + s * ow:s] = xp.where(tap == t, dout, 0)",
           "max-pool backward: each tap overwrites the gradient of overlapping windows"),
    Mutant("frozen_bn_no_eps", "numpy_retinanet/nn/functional.py",
           "scale = weight * (1 / xp.sqrt(running_var + weight.dtype.type(eps)))",
           "scale = weight * (1 / xp.sqrt(running_var))",
           "frozen batch norm leaves eps out of the variance"),
    Mutant("torchvision_anchor_stride_power_of_two", "numpy_retinanet/detection/anchors_torchvision.py",
           "stride_h, stride_w = height // h, width // w", "stride_h, stride_w = 2 ** (level + 3), 2 ** (level + 3)",
           "torchvision's anchors centred at j * 2^l, not at j * (image side // map side)",
           ("tests/test_resnet50_fpn.py",)),
    # the figures: each draws something plausible, and wrong
    Mutant("figure_gradient_ignores_target", "numpy_retinanet/teaching/figures/focal_loss.py",
           "y = np.full_like(x, float(target))", "y = np.full_like(x, 1.0)",
           "gradient curves of a negative computed as a positive's", FIGURE_TESTS,
           NOT_BYTE_IDENTITY),
    Mutant("figure_anchor_colour_by_scale", "numpy_retinanet/teaching/figures/anchors.py",
           "r, c = divmod(k, len(gen.scales))", "c, r = divmod(k, len(gen.scales))",
           "anchors coloured by scale, not by the ratio the legend names", FIGURE_TESTS,
           NOT_BYTE_IDENTITY),
    Mutant("figure_low_quality_style_swapped", "numpy_retinanet/teaching/figures/anchors.py",
           'linestyle=":" if data["low_quality"][a] else "-"', 'linestyle="-" if data["low_quality"][a] else ":"',
           "matched anchors: low-quality positives solid, the others dotted", FIGURE_TESTS,
           NOT_BYTE_IDENTITY),
    Mutant("figure_detections_of_another_image", "numpy_retinanet/teaching/figures/detections.py",
           "for i, d in zip(indices, dets)]", "for i, d in zip(indices, dets[::-1])]",
           "each panel shows the detections of another image", FIGURE_TESTS,
           NOT_BYTE_IDENTITY),
    Mutant("figure_training_curve_labels_swapped", "numpy_retinanet/evaluation/visualize.py",
           '("classification", "focal loss"), ("box_regression", "smooth L1")',
           '("classification", "smooth L1"), ("box_regression", "focal loss")',
           "training curve: focal loss and smooth L1 labelled the other way round", FIGURE_TESTS,
           NOT_BYTE_IDENTITY),
)


def locate(mutant, source):
    """The 1-based line of ``source`` where ``mutant`` changes it; ValueError unless ``mutant.old``
    occurs in ``source`` exactly once."""
    count = source.count(mutant.old)
    if count != 1:
        raise ValueError(f"mutant {mutant.name!r} must match {mutant.path} exactly once, got {count} matches "
                         f"of {mutant.old!r} (the source moved or changed: update MUTANTS)")
    start = source.index(mutant.old) + len(os.path.commonprefix([mutant.old, mutant.new]))
    return source.count("\n", 0, start) + 1


def apply(mutant, source):
    """``source`` with the mutant planted (checked by ``locate`` to match exactly once)."""
    locate(mutant, source)
    return source.replace(mutant.old, mutant.new)


def repository_files(root=ROOT):
    """The working tree's files as git sees them: tracked, and untracked but not ignored."""
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         check=True, capture_output=True).stdout
    return [name for name in out.decode().split("\0") if name and (root / name).is_file()]


def scratch_copy(dest, root=ROOT):
    """Copy the repository's files (``repository_files``) into ``dest``; never writes to ``root``."""
    for name in repository_files(root):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    return dest


def _env(copy):
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", CI="true", MPLBACKEND="Agg")
    env.pop("PYTEST_ADDOPTS", None)
    return env


def run_tests(copy, tests, timeout, keyword=""):
    """pytest in ``copy`` on the files ``tests`` (no files: the default suite; options may be among them), those
    matching ``keyword`` when given: (exit code, failed test ids in order, last lines of output)."""
    check = subprocess.run([sys.executable, "-c", "import numpy_retinanet; print(numpy_retinanet.__file__)"],
                           cwd=copy, env=_env(copy), capture_output=True, text=True, check=True)
    imported = Path(check.stdout.strip()).resolve()
    if Path(copy).resolve() not in imported.parents:
        raise RuntimeError(f"the scratch copy imports numpy_retinanet from {imported}, not from {copy}")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", *tests]
    if keyword:
        cmd += ["-k", keyword]
    try:
        done = subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, ["(timed out)"], ""
    failed = [line.split(" ", 1)[1].split(" - ")[0] for line in done.stdout.splitlines()
              if line.startswith(("FAILED ", "ERROR "))]
    return done.returncode, failed, "\n".join(done.stdout.splitlines()[-15:])


def check_mutant(mutant, timeout, full=False):
    """Plant ``mutant`` in a fresh scratch copy and run its tests there (``full``: the default suite): a row."""
    source = (ROOT / mutant.path).read_text()
    line = locate(mutant, source)
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        copy = scratch_copy(Path(tmp))
        (copy / mutant.path).write_text(apply(mutant, source))
        if full:
            code, failed, _ = run_tests(copy, list(FULL_SUITE), timeout)
        else:
            code, failed, _ = run_tests(copy, mutant.tests, timeout, mutant.keyword)
    # caught: tests failed (1) or could not even be collected (2), or the run hung; any other exit code
    # (no tests collected, a usage error) says the check itself is broken, not the code
    caught = code in (1, 2, None)
    return {"mutant": mutant.name, "where": f"{mutant.path}:{line}", "what": mutant.what,
            "caught": caught, "failed": failed}


def table(rows):
    """The rows as a Markdown table."""
    lines = ["| mutant | file:line | change | caught | tests that failed (first few) |", "|---|---|---|---|---|"]
    for r in rows:
        names = ", ".join(f"`{n.removeprefix('tests/')}`" for n in r["failed"][:SHOWN])
        more = f" and {len(r['failed']) - SHOWN} more" if len(r["failed"]) > SHOWN else ""
        lines.append(f"| {r['mutant']} | {r['where']} | {r['what']} | {'yes' if r['caught'] else 'NO'} | "
                     f"{names or '-'}{more} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="run the whole default suite against each mutant")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="check only these mutants")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per pytest run")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    if args.only and set(args.only) - set(known):
        parser.error(f"--only must name mutants among {sorted(known)}, got {sorted(set(args.only) - set(known))}")
    mutants = [known[n] for n in args.only] if args.only else list(MUTANTS)
    for m in mutants:  # every patch must apply before anything runs
        locate(m, (ROOT / m.path).read_text())
    # the baseline: the default suite (no files: pyproject's testpaths), or every test of every mutant's files
    # (a superset of what each mutant runs, so each mutant's failures are its own)
    baseline = list(FULL_SUITE) if args.full else sorted({f for m in mutants for f in m.tests})
    print(f"tests: {'the default suite ' if args.full else ''}{' '.join(baseline)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mutant-baseline-") as tmp:
        code, failed, tail = run_tests(scratch_copy(Path(tmp)), baseline, args.timeout)
    if code != 0:
        print(f"the unmutated copy fails its tests ({', '.join(failed[:SHOWN]) or tail}); fix that first")
        return 1
    print("baseline: the unmutated copy passes", flush=True)
    rows = []
    for m in mutants:
        rows.append(check_mutant(m, args.timeout, args.full))
        print(f"  {m.name}: {'caught' if rows[-1]['caught'] else 'SURVIVED'}", flush=True)
    print(table(rows))
    survivors = [r["mutant"] for r in rows if not r["caught"]]
    print(f"{len(rows) - len(survivors)} of {len(rows)} mutants caught"
          + (f"; survived: {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
