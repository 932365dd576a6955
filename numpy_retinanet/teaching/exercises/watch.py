"""Catching an answer that calls the package's own function for its step, and pausing the watch.

While a case runs, a profile hook (``sys.setprofile``) watches for calls of the exercise's
``package_answers``. A call counts when the first frame above it outside the package is in one of
the learner's files (directly, or through other package code: ``GroupNorm.backward`` calls
``group_norm_backward``); a frame of the checker itself on the way up clears it (the checker
computes the ground truth with the package), and so does any other file (the reference solution,
which may use the package where the exercise allows it).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from contextlib import contextmanager

import numpy_retinanet

PACKAGE_DIR = os.path.realpath(os.path.dirname(numpy_retinanet.__file__))
CHECKER_DIR = os.path.realpath(os.path.dirname(__file__))


def _code_of(dotted):
    """The code object of the function (or method) named ``dotted``, and its short name."""
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        func = inspect.unwrap(obj)
        return func.__code__, func.__qualname__
    raise ValueError(f"package_answers must name functions of the package, got {dotted!r}")


class PackageCalls:
    """While active, records the package answers the learner's code calls (``found``).

    A call counts when the first frame above it that is outside the package is in one of the
    learner's files; a frame of the checker itself on the way up clears it (the checker may call
    the package to compute the ground truth), and so does any other file (the reference).
    """

    def __init__(self, ex, learner_files):
        self.codes = dict(_code_of(d) for d in ex.package_answers)
        self.learner_files = learner_files
        self.found = []
        self._real = {}

    def _path(self, code):
        f = code.co_filename
        if f not in self._real:
            self._real[f] = os.path.realpath(f)
        return self._real[f]

    def _hook(self, frame, event, arg):
        if event != "call" or frame.f_code not in self.codes:
            return
        f, path = frame.f_back, None
        while f is not None:
            path = self._path(f.f_code)
            # The checker's own call, or a package answer inside another (GroupNorm.backward calls
            # group_norm_backward): the outer one is the one to report.
            if path.startswith(CHECKER_DIR) or f.f_code in self.codes:
                return
            if not path.startswith(PACKAGE_DIR):
                break
            f = f.f_back
        name = self.codes[frame.f_code]
        if path in self.learner_files and name not in self.found:
            self.found.append(name)

    def __enter__(self):
        self._previous = sys.getprofile()
        if self.codes:
            sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._previous)
        return False


@contextmanager
def unwatched():
    """Pause the watch while the checker computes numbers of its own (central differences).

    Nothing the learner wrote runs inside, and a profile hook would slow those thousands of
    forward passes several times over.
    """
    hook = sys.getprofile()
    sys.setprofile(None)
    try:
        yield
    finally:
        sys.setprofile(hook)
