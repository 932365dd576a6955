"""Settings as dataclass fields that carry their own help text and valid range.

Each setting is written once, as a field made by ``setting``: its default, one line of help,
and what values it may take (a range, or a list of choices). From that one place

- ``check_settings`` validates a config (every bad field named in one ``ValueError``),
- the command line builds its flags (``cli.py``), so a flag, its default in ``--help`` and
  the check can never disagree with the config.

The configs live in the layer that uses them and are combined by inheritance:
``detection.criterion.LossConfig`` and ``data.build.DataConfig`` are bases of
``engine.config.TrainConfig``, so the loss and the dataset read their settings from a
``TrainConfig`` without importing the engine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field

from numpy_retinanet._checks import check_int, check_real


def setting_metadata(help, *, choices=None, low=None, high=None, low_open=False, high_open=False,
                     optional=False) -> dict:
    """What a setting is and which values it takes (a field's metadata; also used alone for the
    model presets' settings, which are dict entries, not fields).

    Parameters
    ----------
    help : one line for ``--help``, without the default (the command line adds it).
    choices : the allowed values, or None.
    low, high : bounds for a number, or for every number of a tuple (None: unbounded).
    low_open, high_open : True when ``low`` (``high``) itself is not allowed.
    optional : True when None is allowed too (in Python; the command line has no None).
    """
    return {"help": help, "choices": choices, "low": low, "high": high, "low_open": low_open,
            "high_open": high_open, "optional": optional}


def setting(default, help, **limits):
    """A dataclass field for a setting: its default (a tuple for a list of numbers), its help,
    and the ``limits`` of ``setting_metadata``."""
    return field(default=default, metadata=setting_metadata(help, **limits))


def setting_fields(config_class):
    """The fields of ``config_class`` made by ``setting``, in declaration order."""
    return [f for f in dataclasses.fields(config_class) if "help" in f.metadata]


def value_problem(name, value, default, metadata):
    """None when ``value`` suits a setting whose default is ``default`` and whose range is
    ``metadata`` (``setting_metadata``), else what is wrong: "<name> must be <range>, got <value>".

    Numbers are checked by ``_checks`` (one message shape for every argument of the package);
    a list of numbers entry by entry, as ``name[i]``.
    """
    m = metadata
    if value is None and m["optional"]:
        return None
    if m["choices"] is not None:
        choices = ", ".join(repr(c) for c in m["choices"])
        return None if value in m["choices"] else f"{name} must be one of {choices}, got {value!r}"
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"{name} must be true or false, got {value!r}"
    if isinstance(default, str):
        return None if isinstance(value, str) else f"{name} must be a string, got {value!r}"
    if isinstance(default, tuple):
        if not isinstance(value, (tuple, list)) or not value:
            return f"{name} must be a non-empty list of numbers, got {value!r}"
        entries, example = [(f"{name}[{i}]", v) for i, v in enumerate(value)], default[0]
    else:
        entries, example = [(name, value)], default
    try:
        for entry, v in entries:
            if isinstance(example, int):  # every int setting has a lower bound
                check_int(entry, v, m["low"], m["high"])
            else:
                check_real(entry, v, m["low"], m["high"], low_open=m["low_open"], high_open=m["high_open"])
    except ValueError as e:
        return str(e)
    return None


def check_settings(config, what="settings"):
    """Raise one ValueError naming every field of ``config`` whose value is out of its range.

    ``what`` names the kind of config in the message ("invalid training settings: ...").
    """
    problems = [p for f in setting_fields(type(config))
                if (p := value_problem(f.name, getattr(config, f.name), f.default, f.metadata))]
    if problems:
        raise ValueError(f"invalid {what}: " + "; ".join(problems))
