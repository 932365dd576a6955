"""Detection pieces of §4: anchors, box geometry (IoU, coder, NMS), the matcher, the training loss
and post-processing."""
