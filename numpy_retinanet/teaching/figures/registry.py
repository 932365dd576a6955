"""The registry of figures: ``register_figure`` names a figure function, ``make_figures`` runs them.

A figure is a function ``out_dir -> path`` registered under a name with ``@register_figure``;
``FIGURES`` keeps them in registration order, which is the order the subject modules are
imported in ``teaching/figures/__init__.py``. Figures of a trained model receive one
(``figure_model.FigureModel``) from ``make_figures``. ``as_image`` shows a figure in a notebook.

Also here, below every subject: the two helpers more than one subject uses, ``_check_1d_grid``
(Figure 1 and Figure 4) and ``_rect`` (the anchor figures and the detections).
"""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.style
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Rectangle
from matplotlib.patheffects import withStroke
from PIL import Image

from numpy_retinanet._checks import check_array
from numpy_retinanet.teaching.figures.figure_model import load_figure_model, train_figure_model

# name -> function(out_dir: Path) -> Path of the file written; in registration order.
FIGURES: dict = {}


def register_figure(name, needs_model=False):
    """Decorator: register ``fn(out_dir: Path) -> Path`` as the figure ``name``.

    With ``needs_model=True`` the function is ``fn(out_dir, trained: FigureModel) -> Path``:
    ``make_figures`` trains (or loads) one model and hands it to every such figure.
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


def make_figures(out_dir="figures", only=None, checkpoint=None, log=print):
    """Make the registered figures (all, or the names in ``only``) in ``out_dir``.

    Parameters
    ----------
    out_dir : folder for the PNGs, created if missing.
    only : None for every figure, or an iterable of figure names.
    checkpoint : None to train the figures' model (``train_figure_model``, minutes on a
        CPU) when a selected figure needs one, or a ``checkpoint.npz`` to load instead.
    log : receives the training progress lines.

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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trained = None
    if any(FIGURES[n].needs_model for n in names):
        trained = load_figure_model(checkpoint) if checkpoint else train_figure_model(log=log)
    return [FIGURES[n](out, trained) for n in names]


def as_image(fig):
    """``fig`` rendered to a PIL image, as the PNGs are. A notebook cell ending with it shows the
    figure inline (Jupyter and VS Code display PIL images), without pyplot or a GUI backend."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba()))


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
