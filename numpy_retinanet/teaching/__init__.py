"""What the lessons use: the figures (``figures/``) and the exercise checker (``exercises.py``)."""
