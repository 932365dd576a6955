"""``as_image`` (teaching/figures/registry.py): a notebook shows its image; a script run also saves it.

Saved only when a script runs (not in IPython or Jupyter, not under pytest), into
``lesson_outputs/NN/`` (or the folder ``NUMPY_RETINANET_LESSON_OUTPUTS`` names), numbered in order.
"""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from numpy_retinanet.teaching.figures import as_image, registry
from numpy_retinanet.teaching.figures.registry import LESSON_OUTPUTS_ENV, _script_file, lesson_outputs_dir


def _figure():
    fig = Figure(figsize=(2, 1.5))
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    return fig


def _shell(active):
    return SimpleNamespace(get_ipython=lambda: object() if active else None)


def test_a_script_is_a_main_module_with_a_file_outside_ipython_and_pytest():
    lesson = SimpleNamespace(__file__="/somewhere/lessons/02_focal_loss.py")
    assert _script_file({"__main__": lesson}) == Path("/somewhere/lessons/02_focal_loss.py")
    # IPython imported but no shell running (a script that imports it) is still a script
    assert _script_file({"__main__": lesson, "IPython": _shell(active=False)}) == Path(lesson.__file__)
    assert _script_file({"__main__": lesson, "IPython": _shell(active=True)}) is None  # Jupyter, IPython
    assert _script_file({"__main__": SimpleNamespace()}) is None  # python -c, the interactive interpreter
    assert _script_file({"__main__": lesson, "_pytest": object()}) is None  # tests
    assert _script_file({}) is None
    assert _script_file() is None  # these tests themselves


def test_the_folder_is_the_lessons_number_under_the_default_or_the_environment_variable(tmp_path):
    assert lesson_outputs_dir("lessons/02_focal_loss.py", environ={}) == Path("lesson_outputs/02")
    assert lesson_outputs_dir("/a/b/10_paper_analyses_in_miniature.py", environ={}) == Path("lesson_outputs/10")
    for other in ("my_experiment.py", "2_short.py", "02_focal_loss.txt"):
        assert lesson_outputs_dir(other, environ={}) == Path("lesson_outputs/script"), other
    assert lesson_outputs_dir("05_anchors.py", environ={LESSON_OUTPUTS_ENV: str(tmp_path)}) == tmp_path / "05"
    assert lesson_outputs_dir("05_anchors.py", environ={LESSON_OUTPUTS_ENV: ""}) == Path("lesson_outputs/05")


def test_a_script_run_saves_each_figure_numbered_in_order_and_says_where(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(registry, "_script_file", lambda: Path("lessons/05_anchors.py"))
    monkeypatch.setattr(registry, "_saved", {})
    monkeypatch.setenv(LESSON_OUTPUTS_ENV, str(tmp_path / "out"))
    images = [as_image(_figure()), as_image(_figure(), name="focal_loss_vs_pt"), as_image(_figure())]
    folder = tmp_path / "out" / "05"
    assert sorted(p.name for p in folder.iterdir()) == ["01.png", "02_focal_loss_vs_pt.png", "03.png"]
    assert capsys.readouterr().out.splitlines() == [
        f"saved figure to {(folder / name).as_posix()}" for name in ("01.png", "02_focal_loss_vs_pt.png", "03.png")]
    for image, name in zip(images, ("01.png", "02_focal_loss_vs_pt.png", "03.png")):
        np.testing.assert_array_equal(np.asarray(Image.open(folder / name)), np.asarray(image))  # what a notebook shows
    # the next run of the lesson (a new process) numbers from 01 again, over its old files
    monkeypatch.setattr(registry, "_saved", {})
    as_image(_figure())
    assert sorted(p.name for p in folder.iterdir()) == ["01.png", "02_focal_loss_vs_pt.png", "03.png"]
    assert capsys.readouterr().out == f"saved figure to {(folder / '01.png').as_posix()}\n"


def test_nothing_is_saved_or_printed_when_not_a_script(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(LESSON_OUTPUTS_ENV, str(tmp_path / "out"))
    image = as_image(_figure(), name="x")
    assert image.size == (200, 150) and image.mode == "RGBA"  # the figure at its 100 dpi
    assert list(tmp_path.iterdir()) == [] and capsys.readouterr().out == ""


@pytest.mark.parametrize("name", ["../escape", "a b", "", "x/y"])
def test_a_name_must_be_a_plain_file_name(name):
    with pytest.raises(ValueError, match="name must be"):
        as_image(_figure(), name=name)


def test_a_script_that_is_not_a_lesson_saves_under_lesson_outputs_script(tmp_path):
    script = tmp_path / "my_plot.py"
    script.write_text("from matplotlib.figure import Figure\n"
                      "from numpy_retinanet.teaching.figures import as_image\n"
                      "as_image(Figure(figsize=(1, 1)))\n")
    env = {k: v for k, v in os.environ.items() if k != LESSON_OUTPUTS_ENV}
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env={**env, "MPLBACKEND": "Agg"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "saved figure to lesson_outputs/script/01.png\n"
    assert (tmp_path / "lesson_outputs" / "script" / "01.png").read_bytes()[:4] == b"\x89PNG"
