"""What the lessons use: the figures (``figures/``) and the exercises and their checker (``exercises/``)."""
