"""The registry of figures: ``register_figure`` names a figure function, ``make_figures`` runs them.

A figure is a function ``out_dir -> path`` registered under a name with ``@register_figure``;
``FIGURES`` keeps them in registration order, which is the order the subject modules are
imported in ``teaching/figures/__init__.py``. Figures of a trained model receive one
(``figure_model.FigureModel``) from ``make_figures``. ``as_image`` shows a figure in a notebook
and, when a lesson runs as a script, saves it as a PNG (``lesson_outputs/NN/01.png``, ...).

Also here, below every subject: the two helpers more than one subject uses, ``_check_1d_grid``
(Figure 1 and Figure 4) and ``_rect`` (the anchor figures and the detections).
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

import matplotlib.style
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Rectangle
from matplotlib.patheffects import withStroke
from PIL import Image

from numpy_retinanet._checks import check_array
from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL
from numpy_retinanet.engine.run_folder import make_output_folder
from numpy_retinanet.teaching.figures.figure_model import load_figure_model

# name -> function(out_dir: Path) -> Path of the file written; in registration order.
FIGURES: dict = {}


def register_figure(name, needs_model=False):
    """Decorator: register ``fn(out_dir: Path) -> Path`` as the figure ``name``.

    With ``needs_model=True`` the function is ``fn(out_dir, trained: FigureModel) -> Path``:
    ``make_figures`` loads one model and hands it to every such figure.
    The registered function draws in matplotlib's default style, so a reader's matplotlibrc
    cannot change the committed bytes.
    """

    def decorate(fn):
        if name in FIGURES:
            raise ValueError(f"figure name {name!r} is already registered; pick another name")

        @functools.wraps(fn)
        def make(out_dir, trained=None):
            if needs_model and trained is None:
                raise ValueError(f"figure {name!r} needs a trained model (a FigureModel); make_figures makes one")
            with matplotlib.style.context("default"):
                return fn(Path(out_dir), trained) if needs_model else fn(Path(out_dir))

        make.needs_model = needs_model
        FIGURES[name] = make
        return make

    return decorate


def make_figures(out_dir="figures", only=None, checkpoint=None):
    """Make the registered figures (all, or the names in ``only``) in ``out_dir``.

    Parameters
    ----------
    out_dir : folder for the PNGs, created if missing.
    only : None for every figure, or an iterable of figure names.
    checkpoint : the model of the figures that need one: None for the shipped model
        (``engine.checkpoint.SHIPPED_MODEL``, the default recipe's run), or a run's
        ``checkpoint.npz``.

    Returns
    -------
    list of ``pathlib.Path``, one per figure made, in registration order.
    """
    if only is None:
        names = list(FIGURES)
    else:
        wanted = list(only)
        unknown = [n for n in wanted if n not in FIGURES]
        if unknown or not wanted:
            raise ValueError(
                f"only must name figures among {sorted(FIGURES)}, got {wanted if not unknown else unknown}"
            )
        names = [n for n in FIGURES if n in wanted]
    out = Path(make_output_folder(out_dir, "out_dir"))
    trained = None
    if any(FIGURES[n].needs_model for n in names):
        trained = load_figure_model(checkpoint if checkpoint is not None else SHIPPED_MODEL)
    return [FIGURES[n](out, trained) for n in names]


#: The environment variable that names the folder script runs save their figures in (instead of
#: ``lesson_outputs`` in the working folder); each lesson still gets its subfolder ``NN``.
LESSON_OUTPUTS_ENV = "NUMPY_RETINANET_LESSON_OUTPUTS"
DEFAULT_LESSON_OUTPUTS = "lesson_outputs"

# folder -> how many figures this process has saved there, so each run numbers from 01 again
_saved = {}


def _script_file(modules=None):
    """The file of the script this process runs (``python lessons/02_focal_loss.py``), or None when
    nothing should be saved: in IPython or Jupyter (an active shell), under pytest, or when
    ``__main__`` has no file (an interactive interpreter). ``modules`` defaults to ``sys.modules``."""
    modules = sys.modules if modules is None else modules
    ipython = modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is not None and get_ipython() is not None:
        return None
    if "_pytest" in modules:  # tests import the lessons' helpers; they run lessons as subprocesses
        return None
    path = getattr(modules.get("__main__"), "__file__", None)
    return Path(path) if path else None


def lesson_outputs_dir(script, environ=None):
    """The folder where a script run saves its figures: ``<root>/NN`` for a lesson file
    ``NN_topic.py``, ``<root>/script`` for any other script; ``<root>`` is the folder named by
    ``NUMPY_RETINANET_LESSON_OUTPUTS``, or ``lesson_outputs`` in the working folder."""
    environ = os.environ if environ is None else environ
    root = Path(environ.get(LESSON_OUTPUTS_ENV) or DEFAULT_LESSON_OUTPUTS)
    lesson = re.fullmatch(r"(\d\d)_\w+\.py", Path(script).name)
    return root / (lesson.group(1) if lesson else "script")


def as_image(fig, name=None):
    """``fig`` rendered to a PIL image, as the PNGs are. A notebook cell ending with it shows the
    figure inline (Jupyter and VS Code display PIL images), without pyplot or a GUI backend.

    Run as a script (``python lessons/02_focal_loss.py``), where nothing is displayed, the image is
    also saved, numbered in the order of the calls: ``lesson_outputs/02/01.png``, ``02.png``, ...
    (``01_<name>.png`` given a ``name``; the folder: ``lesson_outputs_dir``), and one line says
    where. Nothing is saved in IPython or Jupyter, nor under pytest.
    """
    if name is not None and not re.fullmatch(r"[\w.-]+", str(name)):
        raise ValueError(f"name must be letters, digits, '_', '.' or '-' (a file name), got {name!r}")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = Image.fromarray(np.asarray(canvas.buffer_rgba()))
    script = _script_file()
    if script is not None:
        folder = lesson_outputs_dir(script)
        folder.mkdir(parents=True, exist_ok=True)
        key = str(folder.resolve())
        _saved[key] = _saved.get(key, 0) + 1
        path = folder / (f"{_saved[key]:02d}" + (f"_{name}" if name else "") + ".png")
        image.save(path)
        print(f"saved figure to {path.as_posix()}")
    return image


def _check_1d_grid(name, a, low=None, high=None):
    """``a`` as a float64 1-D array, checked non-empty, finite and, given ``low`` and ``high``,
    inside the open interval (low, high); ``name`` goes in the error."""
    a = check_array(name, np.asarray(a, dtype=np.float64), ("n",), nonempty=True, finite=True)
    if low is not None and not (np.all(a > low) and np.all(a < high)):
        raise ValueError(f"{name} must lie in the open interval ({low}, {high}), got [{a.min()}, {a.max()}]")
    return a


def _rect(box, halo=None, **kw):
    """An unfilled rectangle; ``halo`` draws a wider outline of that colour under it, so the
    line stays visible over any picture."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if halo is not None:
        kw["path_effects"] = [withStroke(linewidth=kw.get("linewidth", 1.0) + 1.2, foreground=halo)]
    return Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **kw)
