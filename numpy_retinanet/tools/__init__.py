"""Commands for the people who keep the project honest: ``ablate`` (Table 1 in miniature), ``bench``
(timings beside PyTorch) and the PyTorch mirror of the network (``torch_mirror``, torch optional)."""
