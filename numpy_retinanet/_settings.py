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
import math
from dataclasses import field


def setting(default, help, *, choices=None, low=None, high=None, low_open=False, optional=False):
    """A dataclass field for a setting.

    Parameters
    ----------
    default : the value used when none is given (a tuple for a list of numbers).
    help : one line for ``--help``, without the default (the command line adds it).
    choices : the allowed values, or None.
    low, high : bounds for a number, or for every number of a tuple (None: unbounded).
    low_open : True when ``low`` itself is not allowed (a value must be > low).
    optional : True when None is allowed too (in Python; the command line has no None).
    """
    return field(default=default, metadata={"help": help, "choices": choices, "low": low, "high": high,
                                            "low_open": low_open, "optional": optional})


def setting_fields(config_class):
    """The fields of ``config_class`` made by ``setting``, in declaration order."""
    return [f for f in dataclasses.fields(config_class) if "help" in f.metadata]


def describe_range(f) -> str:
    """What values field ``f`` takes, in words: "one of 'a', 'b'", "an int >= 1", "a number in (0, 1]"."""
    m = f.metadata
    if m["choices"] is not None:
        return "one of " + ", ".join(repr(c) for c in m["choices"])
    kind = {bool: "true or false", int: "an int", float: "a number", str: "a string"}.get(type(f.default))
    if isinstance(f.default, tuple):
        kind = "numbers"
    if m["low"] is not None and m["high"] is not None:
        return f"{kind} in {'(' if m['low_open'] else '['}{m['low']}, {m['high']}]"
    if m["low"] is not None:
        return f"{kind} {'>' if m['low_open'] else '>='} {m['low']}"
    return kind


def _problem(f, value):
    """None when ``value`` suits field ``f``, else what is wrong, as "<name> must be ..., got ..."."""
    m = f.metadata
    wrong = f"{f.name} must be {describe_range(f)}{' or None' if m['optional'] else ''}, got {value!r}"
    if value is None and m["optional"]:
        return None
    if m["choices"] is not None:
        return None if value in m["choices"] else wrong
    if isinstance(f.default, bool):
        return None if isinstance(value, bool) else wrong
    if isinstance(f.default, str):
        return None if isinstance(value, str) else wrong
    numbers = value if isinstance(f.default, tuple) else (value,)
    if isinstance(f.default, tuple) and (not isinstance(value, (tuple, list)) or not value):
        return wrong
    for v in numbers:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return wrong
        if isinstance(f.default, int) and not isinstance(v, int):
            return wrong
        if not math.isfinite(v):
            return wrong
        if m["low"] is not None and (v <= m["low"] if m["low_open"] else v < m["low"]):
            return wrong
        if m["high"] is not None and v > m["high"]:
            return wrong
    return None


def check_settings(config, what="settings"):
    """Raise one ValueError naming every field of ``config`` whose value is out of its range.

    ``what`` names the kind of config in the message ("invalid training settings: ...").
    """
    problems = [p for f in setting_fields(type(config)) if (p := _problem(f, getattr(config, f.name)))]
    if problems:
        raise ValueError(f"invalid {what}: " + "; ".join(problems))
