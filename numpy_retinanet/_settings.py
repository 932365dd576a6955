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
import numbers
from dataclasses import field


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


def describe_range(f) -> str:
    """What values field ``f`` takes, in words: "one of 'a', 'b'", "an int >= 1", "a number in (0, 1]"."""
    return _describe(f.default, f.metadata)


def _describe(default, m):
    if m["choices"] is not None:
        return "one of " + ", ".join(repr(c) for c in m["choices"])
    kind = {bool: "true or false", int: "an int", float: "a number", str: "a string"}.get(type(default))
    if isinstance(default, tuple):
        kind = "ints" if isinstance(default[0], int) else "numbers"
    if m["low"] is not None and m["high"] is not None:
        return f"{kind} in {'(' if m['low_open'] else '['}{m['low']}, {m['high']}{')' if m['high_open'] else ']'}"
    if m["low"] is not None:
        return f"{kind} {'>' if m['low_open'] else '>='} {m['low']}"
    return kind


def value_problem(name, value, default, metadata):
    """None when ``value`` suits a setting whose default is ``default`` and whose range is
    ``metadata`` (as ``setting`` stores it), else "<name> must be <range>, got <value>"."""
    m = metadata
    wrong = f"{name} must be {_describe(default, m)}{' or None' if m['optional'] else ''}, got {value!r}"
    if value is None and m["optional"]:
        return None
    if m["choices"] is not None:
        return None if value in m["choices"] else wrong
    if isinstance(default, bool):
        return None if isinstance(value, bool) else wrong
    if isinstance(default, str):
        return None if isinstance(value, str) else wrong
    values = value if isinstance(default, tuple) else (value,)
    if isinstance(default, tuple) and (not isinstance(value, (tuple, list)) or not value):
        return wrong
    example = default[0] if isinstance(default, tuple) else default
    for v in values:
        # numpy's scalars count: np.int64 is an Integral, np.float32 a Real
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return wrong
        if isinstance(example, int) and not isinstance(v, numbers.Integral):
            return wrong
        if not math.isfinite(v):
            return wrong
        if m["low"] is not None and (v <= m["low"] if m["low_open"] else v < m["low"]):
            return wrong
        if m["high"] is not None and (v >= m["high"] if m["high_open"] else v > m["high"]):
            return wrong
    return None


def check_settings(config, what="settings"):
    """Raise one ValueError naming every field of ``config`` whose value is out of its range.

    ``what`` names the kind of config in the message ("invalid training settings: ...").
    """
    problems = [p for f in setting_fields(type(config))
                if (p := value_problem(f.name, getattr(config, f.name), f.default, f.metadata))]
    if problems:
        raise ValueError(f"invalid {what}: " + "; ".join(problems))
