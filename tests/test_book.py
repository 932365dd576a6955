"""The book (docs/): its index lists every lesson, each lesson converts to a notebook that keeps its cells' tags
and alt text, and each executes as a notebook from lessons/ (where Jupyter, VS Code and nbconvert run it).

The browser check of the built book is docs/check_book.py (it needs Chromium; .ci/run runs it).
"""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))
jupytext = pytest.importorskip("jupytext", reason="the book's tests need the docs extra: pip install -e '.[docs]'")


def test_the_index_lists_every_lesson_in_its_toctree_and_the_config_reads_them():
    index = (ROOT / "docs" / "index.md").read_text()
    toctree = re.search(r"```\{toctree\}\n(.*?)```", index, re.S).group(1)
    entries = [line.strip() for line in toctree.splitlines() if line.strip().startswith("/lessons/")]
    assert entries == [f"/lessons/{p.stem}" for p in LESSONS]
    for p in LESSONS:
        assert f"{{doc}}`/lessons/{p.stem}`" in index, f"{p.stem} is missing from the lesson list"
    conf = (ROOT / "docs" / "conf.py").read_text()
    assert '"lessons/[0-9][0-9]_*.py"' in conf and '"fmt": "py:percent"' in conf


def test_the_gallery_shows_every_figure_with_alt_text():
    index = (ROOT / "docs" / "index.md").read_text()
    shown = {png: alt for alt, png in re.findall(r"!\[([^\]]+)\]\(\.\./figures/([\w.]+\.png)\)", index)}
    assert sorted(shown) == sorted(p.name for p in (ROOT / "figures").glob("*.png"))
    assert all(len(alt) > 30 for alt in shown.values())


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_converts_to_a_notebook_that_keeps_its_tags(lesson):
    text = lesson.read_text()
    nb = jupytext.read(lesson, fmt="py:percent")
    tagged = [c for c in nb.cells if "hide-input" in c.metadata.get("tags", [])]
    assert len(tagged) == len(re.findall(r'^# %% tags=\["hide-input"\]$', text, re.M))
    assert all(c.cell_type == "code" for c in tagged)
    assert all(line.lstrip().startswith(("assert", "np.testing.", "#")) or not line.strip() or line.startswith(" ")
               for c in tagged for line in c.source.splitlines()), "a check cell holds only checks"
    alts = [c.metadata["mystnb"]["image"]["alt"] for c in nb.cells if "mystnb" in c.metadata]
    assert len(alts) == text.count("# %% mystnb=") and all(alts)
    # the cells still make up the script: code in the same order
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert code.count("assert") == sum(line.count("assert") for line in text.splitlines() if not line.startswith("# "))


@pytest.mark.parametrize("lesson", LESSONS[:7], ids=lambda p: p.stem)
def test_lessons_1_to_7_fold_their_checks_and_have_math(lesson):
    text = lesson.read_text()
    assert '# %% tags=["hide-input"]' in text
    assert "$" in text


@pytest.mark.slow  # 77 s for lessons 1-10 on a 2-core machine; lesson 11 adds about 12 s
@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_executes_as_a_notebook_from_lessons(lesson, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("NUMPY_RETINANET_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = jupytext.read(lesson, fmt="py:percent")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(lesson.parent)}})
    client.execute(env={**os.environ})
