"""Building blocks with hand-written backward passes: ops (``functional.py``), losses, modules, SGD."""
