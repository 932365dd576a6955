"""Datasets behind one seam (``build.build_dataset``): the synthetic shapes, transforms, batching,
image files."""
