"""``numpy-retinanet bench model``: forward, loss, backward and SGD of a preset's training step."""

from __future__ import annotations

import json
import statistics

import numpy as np

from numpy_retinanet.tools.bench.common import STEP_PARTS, host_peak_memory_mib, shapes_batch, step_timer


def bench_model(args):
    """Forward, loss, backward and SGD times of a preset's training step, and its peak memory.

    Medians over ``args.repeats`` steps after one warm-up step; every step uses the
    same batch of shapes images. Peak memory of one more step is measured with
    tracemalloc on the CPU, and with CuPy's memory pool on a GPU.
    """
    from numpy_retinanet.backend import get_module
    from numpy_retinanet.model.retinanet import RetinaNet

    xp = get_module(args.device)
    size, batch = args.image_size, args.batch_size
    model = RetinaNet(3, preset=args.preset).to(xp)
    images, targets = shapes_batch(batch, size)
    step = step_timer(model, xp.asarray(images), targets, model.anchors(size, size, xp=xp), xp)
    times = [step() for _ in range(args.repeats + 1)][1:]  # the first: page faults, BLAS thread start
    if xp is np:
        peak = host_peak_memory_mib(step)
    else:
        step()
        peak = xp.get_default_memory_pool().total_bytes() / 2**20
    parts = {name: [t[k] for t in times] for k, name in enumerate(STEP_PARTS)}
    med = {k: statistics.median(v) * 1e3 for k, v in parts.items()}
    step_ms = sum(med.values())
    result = {"preset": args.preset, "device": args.device, "batch": batch, "image_size": size,
              "parameters": model.num_parameters(), "repeats": args.repeats,
              "ms": {k: round(v, 2) for k, v in med.items()}, "step_ms": round(step_ms, 2),
              "images_per_s": round(batch / (step_ms / 1e3), 1),
              "peak_step_memory_mib": round(peak, 1)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"RetinaNet {args.preset!r} ({result['parameters']:,} parameters), {args.device}, "
              f"batch {batch} x {size}x{size} float32, median of {args.repeats} steps after a warm-up")
        for name, ms in med.items():
            print(f"  {name:<9} {ms:8.1f} ms")
        print(f"  {'step':<9} {step_ms:8.1f} ms   {result['images_per_s']:.1f} images/s")
        print(f"  peak memory of one step: {peak:.0f} MiB")
    return 0
