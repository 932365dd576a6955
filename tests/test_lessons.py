"""Every lesson runs to its end in fast mode, so every number its prose states holds (each is asserted).

A lesson runs as a learner runs it, ``python lessons/NN_name.py``, in a subprocess with a
non-interactive matplotlib backend and ``NUMPY_RETINANET_FAST=1``, from an empty working
folder, which must still be empty afterwards: a lesson writes its files to a temporary folder
or nowhere.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

LESSONS_DIR = Path(__file__).resolve().parent.parent / "lessons"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))


def test_the_ten_lessons_are_numbered_in_order():
    assert [int(p.name[:2]) for p in LESSONS] == list(range(1, 11))


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


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_runs_in_fast_mode_and_leaves_no_file(lesson, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "NUMPY_RETINANET_FAST": "1"}
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", str(lesson)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{lesson.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    assert list(tmp_path.iterdir()) == [], f"{lesson.name} wrote files into its working folder"
