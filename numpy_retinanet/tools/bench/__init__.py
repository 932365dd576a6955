"""The benchmarks behind ``numpy-retinanet bench`` (never part of the tests' timing).

- ``bench all`` (``ops.py``): every op of the default preset's training step, beside PyTorch;
- ``bench conv`` (``conv.py``): 3x3 convolutions against the rate of their GEMMs;
- ``bench model`` (``model.py``): forward, loss, backward and SGD of a preset's step;
- ``common.py``: the timers and the peak-memory probe they share.
"""

from __future__ import annotations

import json


def run_bench(args) -> int:
    """Entry point of ``numpy-retinanet bench``: ``args.what`` in {"all", "conv", "model"}."""
    if args.what == "all":
        from numpy_retinanet.tools.bench.ops import run_all

        return run_all(args)
    if args.what == "conv":
        from numpy_retinanet.tools.bench.conv import bench_conv, format_conv_table

        result = bench_conv(args.repeats)
        print(json.dumps(result, indent=2) if args.json else format_conv_table(result))
        return 0
    if args.what == "model":
        from numpy_retinanet.tools.bench.model import bench_model

        return bench_model(args)
    raise ValueError(f"what must be 'all', 'conv' or 'model', got {args.what!r}")
