"""Every lesson runs to its end in fast mode, so every number its prose states holds (each is asserted).

A lesson runs as a learner runs it, ``python lessons/NN_name.py``, in a subprocess with a
non-interactive matplotlib backend and ``NUMPY_RETINANET_FAST=1``, from an empty working
folder, which must still be empty afterwards: a lesson writes its files to a temporary folder
or nowhere. The figures it shows with ``as_image`` go to ``NUMPY_RETINANET_LESSON_OUTPUTS``
(here a folder of their own), one PNG per call, and nowhere else.
"""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

LESSONS_DIR = Path(__file__).resolve().parent.parent / "lessons"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))
REPO = LESSONS_DIR.parent
# caches that tools running beside the tests may write (pytest's own, hypothesis, ruff)
TOOL_CACHES = (".pytest_cache", ".hypothesis", ".ruff_cache", ".mypy_cache")


def _as_image_calls(lesson):
    """How many code lines of ``lesson`` call ``as_image(`` (markdown cells are comments)."""
    return len(re.findall(r"^[^#\n]*\bas_image\(", lesson.read_text(), re.M))


def _repository_files():
    """Every file in the repository that git does not track (ignored ones too, but not bytecode or the
    tools' caches), so a lesson that writes into the repository, even where .gitignore would hide it,
    is caught."""
    listed = subprocess.run(["git", "ls-files", "--others"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode == 0:
        paths = listed.stdout.splitlines()
    else:  # not a git checkout (an unpacked sdist): every file on disk
        paths = [p.relative_to(REPO).as_posix() for p in REPO.rglob("*") if p.is_file()]
    return {p for p in paths if "__pycache__" not in p.split("/") and p.split("/")[0] not in TOOL_CACHES}


def test_the_eleven_lessons_are_numbered_in_order():
    assert [int(p.name[:2]) for p in LESSONS] == list(range(1, 12))


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_is_a_percent_script_with_a_summary_and_exercises(lesson):
    text = lesson.read_text()
    assert text.startswith("# %% [markdown]\n# # Lesson "), "a lesson opens with a markdown title cell"
    assert re.search(r"^# %%$", text, re.M), "a lesson has code cells"
    assert "\n# ## Summary\n" in text and "\n# ## Exercises\n" in text
    assert text.index("## Summary") < text.index("## Exercises")
    # every markdown cell's lines are comments, or jupytext would turn them into code
    for cell in text.split("# %% [markdown]\n")[1:]:
        body = cell.split("\n# %%")[0]
        assert all(line.startswith("#") for line in body.splitlines() if line), body[:200]
    for exercise in re.findall(r"lessons/exercises/(\w+\.py)", text):
        assert (LESSONS_DIR / "exercises" / exercise).is_file(), exercise


def _code_cells(lesson):
    """The source of each code cell of a percent-format lesson (markdown cells left out)."""
    cells = re.split(r"^# %%.*$", lesson.read_text(), flags=re.M)
    headers = re.findall(r"^# %%.*$", lesson.read_text(), flags=re.M)
    return [src for header, src in zip(headers, cells[1:]) if "[markdown]" not in header]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_a_figure_is_the_last_expression_of_its_cell(lesson):
    # A notebook (and the book) shows only a cell's last expression: as_image(...) followed by more
    # code computes the figure and shows nothing.
    for src in _code_cells(lesson):
        if re.search(r"^[^#\n]*\bas_image\(", src, re.M):
            last = ast.parse(src).body[-1]
            assert (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
                    and getattr(last.value.func, "id", None) == "as_image"), (
                f"{lesson.name}: a cell calls as_image but ends with line {last.lineno} of the cell:\n{src}")


def test_the_readme_names_the_lessons_that_show_figures():
    said = re.search(r"^Lessons ([\d, and]+) show figures with `as_image", (LESSONS_DIR / "README.md").read_text(), re.M)
    assert said, "lessons/README.md says which lessons show figures"
    named = [int(n) for n in re.findall(r"\d+", said.group(1))]
    assert named == [int(p.name[:2]) for p in LESSONS if _as_image_calls(p)]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_runs_in_fast_mode_and_saves_only_its_figures(lesson, tmp_path):
    work, outputs = tmp_path / "work", tmp_path / "outputs"
    work.mkdir()
    before = _repository_files()
    env = {**os.environ, "MPLBACKEND": "Agg", "NUMPY_RETINANET_FAST": "1",
           "NUMPY_RETINANET_LESSON_OUTPUTS": str(outputs)}
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", str(lesson)], cwd=work, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{lesson.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    assert list(work.iterdir()) == [], f"{lesson.name} wrote files into its working folder"
    assert _repository_files() == before, f"{lesson.name} left files in the repository"
    calls = _as_image_calls(lesson)
    saved = sorted(p.relative_to(outputs).as_posix() for p in outputs.rglob("*") if p.is_file())
    if calls == 0:
        assert saved == [] and "saved figure to" not in result.stdout
    else:
        # one PNG per figure shown, numbered in order, in the lesson's own folder, each announced
        assert len(saved) >= calls, (lesson.name, saved)
        assert saved == [f"{lesson.name[:2]}/{k:02d}.png" for k in range(1, len(saved) + 1)]
        announced = re.findall(r"^saved figure to (.+)$", result.stdout, re.M)
        assert announced == [(outputs / name).as_posix() for name in saved]
        assert all((outputs / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in saved)
