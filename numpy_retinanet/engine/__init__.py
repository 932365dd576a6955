"""Running the detector: settings (``config.py``), the training step and loop, worker processes,
checkpoints and inference."""
