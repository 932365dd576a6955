"""Sphinx configuration of the lessons as a book (myst-nb executes the percent-format lessons).

Build from the repository root; the source folder is the root so that each lesson runs as a notebook from
``lessons/``, where Jupyter, VS Code and nbconvert run it:

    NUMPY_RETINANET_FAST=1 sphinx-build -c docs . docs/_build/html   # fast: the check's build (minutes)
    sphinx-build -c docs . docs/_build/html                           # full: the lessons' real runs

``python docs/check_book.py`` builds the fast book and opens every page in headless Chromium.
"""

import os

project = "numpy-retinanet: the lessons"
author = "the numpy-retinanet contributors"
copyright = "the numpy-retinanet contributors (MIT)"

extensions = ["myst_nb", "sphinx-mathjax-offline"]  # MathJax 3 copied into _static: no network needed

# The source folder is the repository root (see the module docstring); only these files are pages.
root_doc = "docs/index"
include_patterns = ["docs/index.md", "lessons/[0-9][0-9]_*.py"]
exclude_patterns = ["docs/_build", "**/.ipynb_checkpoints"]

# A lesson is a percent-format script; jupytext reads it as a notebook with its cells' tags.
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
myst_enable_extensions = ["dollarmath", "amsmath"]

# Every lesson is executed on every build, from its own folder (lessons/). A failing lesson does not stop
# the build: myst-nb reports it as a warning and its traceback is shown on its page, which
# docs/check_book.py rejects. NUMPY_RETINANET_FAST comes from the environment of sphinx-build.
nb_execution_mode = os.environ.get("BOOK_EXECUTION_MODE", "force")
nb_execution_in_temp = False
nb_execution_timeout = int(os.environ.get("BOOK_CELL_TIMEOUT", "1800"))
nb_execution_raise_on_error = False
nb_execution_show_tb = True
nb_execution_allow_errors = False
nb_merge_streams = True
nb_code_prompt_show = "Show the checks"
nb_code_prompt_hide = "Hide the checks"

html_theme = "sphinx_book_theme"
html_title = "numpy-retinanet: RetinaNet and the focal loss, lesson by lesson"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
}
html_static_path = ["_static"]
html_css_files = ["book.css"]
html_last_updated_fmt = None
html_extra_path = ["_extra"]
