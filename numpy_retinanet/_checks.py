"""The one set of argument checks: each names the argument, what was expected and what came.

Every public function checks what a learner can get wrong and raises ``ValueError`` in
one shape: ``"<name> must be <expected>, got <what came>"``.
"""

from __future__ import annotations

import numpy as np


def check_int(name, value, low, high=None):
    """``value`` as an int in [low, high] (``high`` None: no upper bound); bools are refused."""
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not is_int or value < low or (high is not None and value > high):
        expected = f"an int >= {low}" if high is None else f"an int in [{low}, {high}]"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)
