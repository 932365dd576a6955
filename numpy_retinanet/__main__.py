"""``python -m numpy_retinanet`` is the same as the ``numpy-retinanet`` command."""

import sys

from numpy_retinanet.cli import main

sys.exit(main())
