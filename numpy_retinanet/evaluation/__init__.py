"""Judging a detector: COCO-style AP (``coco.py``) and pictures of its results (``visualize.py``)."""
