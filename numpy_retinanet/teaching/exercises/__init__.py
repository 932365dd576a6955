"""The exercises of lessons/exercises, by number: ``EXERCISES``, the table ``numpy-retinanet check`` reads.

1-7 are backward passes (``losses.py``: focal loss, smooth L1; ``convolution.py``: conv2d,
upsampling, a shared head; ``blocks.py``: GroupNorm, the residual block), built on
``gradients.py`` and recognising mistakes with ``diagnose.py``; 8-10 are detection steps
(``matching.py``: IoU and the matcher; ``nms.py``; ``average_precision.py``), built on
``forward.py``. Every exercise is an ``Exercise`` (``base.py``); ``runner.py`` checks a learner's
file against one and prints the report.
"""

from __future__ import annotations

from numpy_retinanet.teaching.exercises.average_precision import AveragePrecisionExercise
from numpy_retinanet.teaching.exercises.blocks import GroupNormBackward, ResidualBlockBackward
from numpy_retinanet.teaching.exercises.convolution import Conv2dBackward, SharedHeadBackward, UpsampleBackward
from numpy_retinanet.teaching.exercises.losses import FocalLossBackward, SmoothL1Backward
from numpy_retinanet.teaching.exercises.matching import MatcherExercise
from numpy_retinanet.teaching.exercises.nms import NmsExercise

__all__ = ["EXERCISES"]

EXERCISES = {ex.number: ex for ex in (
    FocalLossBackward(), SmoothL1Backward(), Conv2dBackward(), UpsampleBackward(), SharedHeadBackward(),
    GroupNormBackward(), ResidualBlockBackward(), MatcherExercise(), NmsExercise(), AveragePrecisionExercise())}
