"""``python -m numpy_retinanet`` is the same as the ``numpy-retinanet`` command."""

import sys

from numpy_retinanet.cli import main

if __name__ == "__main__":  # not when a worker process (engine.parallel) imports this module
    sys.exit(main())
