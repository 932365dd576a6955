"""``numpy-retinanet bench``: the training step of the default preset, op by op, beside PyTorch.

What is timed (batch 8 of 128x128 float32 shapes images unless told otherwise):

- every distinct conv of the preset (input shape, filters, stride), forward and
  backward (dx, dW, db), and the four benchmark convs of ``bench conv``;
- the backbone, the FPN and the two heads over the five levels, forward and backward;
- the loss (matching, focal loss, smooth L1, and their gradients w.r.t. the outputs);
- post-processing of one batch (score threshold, top-k, decoding, NMS);
- the whole training step (forward, loss, backward, SGD), images/s, and the
  peak memory of one step (tracemalloc; NumPy reports its allocations to it);
- the step as ``numpy-retinanet train`` takes it on the CPU: the batch split between
  the command line's worker processes, the SGD step in the main process
  (``engine/parallel.py``), steps of a training run timed a few in a row;
- for every conv, its three GEMMs alone (``_gemm_job``): the floor no conv made
  of these GEMMs can go under, beside PyTorch's whole conv, and their sum over
  the step's convs beside PyTorch's whole step.

When PyTorch is installed (the optional ``bench`` extra), the identical network
is built in PyTorch with the same weights (``torch_mirror``), its outputs and
gradients are checked against ours, and every op is timed in both libraries in
the same run: for each repeat, NumPy then PyTorch, with a pause after each,
because idle BLAS/OpenMP worker threads keep spinning for ~0.1 s after a call
and slow whatever runs next. Medians over the repeats (after a warm-up round)
and their ratio NumPy / PyTorch are printed. PyTorch has no NMS of its own
(torchvision's is not a dependency), so post-processing is timed for NumPy only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import statistics
import time

import numpy as np

from numpy_retinanet.detection.criterion import retinanet_loss
from numpy_retinanet.detection.postprocess import postprocess
from numpy_retinanet.engine.config import TrainConfig, cli_workers
from numpy_retinanet.model.retinanet import RetinaNet
from numpy_retinanet.nn import functional as F
from numpy_retinanet.nn import modules as nn_modules
from numpy_retinanet.tools.bench.common import BATCH, STEP_PARTS, host_peak_memory_mib, shapes_batch, step_timer
from numpy_retinanet.tools.bench.conv import CONV_CASES

# After each timed call when PyTorch is timed too, so one library's spinning threads do not slow the
# other. NumPy alone needs none: its next call runs on the very threads that spin.
PAUSE_S = 0.15


def _wakers(torch):
    """A small matmul in each library, run (untimed) right before each timed call.

    After the pause, cores and BLAS threads are asleep; waking them took ~10 ms
    on the virtual machine this was written on, which swamped the small ops.
    """
    a = np.ones((256, 256), np.float32)
    ta = torch.from_numpy(a) if torch is not None else None
    return (lambda: a @ a), ((lambda: ta @ ta) if torch is not None else None)


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def conv_shapes(model, images):
    """The distinct convs of one forward pass: [((x shape), (w shape), stride, padding, has bias, count)].

    Found by running the forward pass with ``Conv2d.forward`` wrapped to record its
    input; the wrapper is removed afterwards.
    """
    seen = {}
    original = nn_modules.Conv2d.forward

    def recording(self, x):
        w = self.params["weight"]
        key = (tuple(x.shape), tuple(w.shape), self.stride, self.padding, "bias" in self.params)
        seen[key] = seen.get(key, 0) + 1
        return original(self, x)

    nn_modules.Conv2d.forward = recording
    try:
        model.forward(images, keep_cache=False)
    finally:
        nn_modules.Conv2d.forward = original
    return [(*key, count) for key, count in seen.items()]


def _ms(seconds):
    return round(1e3 * seconds, 3)


class _Ops:
    """Named jobs (numpy job, torch job or None, and a numpy floor job or None), timed interleaved."""

    def __init__(self):
        self.jobs = {}

    def add(self, name, numpy_fn, torch_fn=None, count=1, floor_fn=None):
        self.jobs[name] = (numpy_fn, torch_fn, count, floor_fn)

    def run(self, repeats, wakers, pause):
        times = {name: ([], [], []) for name in self.jobs}
        for r in range(repeats + 1):
            for name, (np_fn, t_fn, _, floor_fn) in self.jobs.items():
                for fn, wake, out in ((np_fn, wakers[0], times[name][0]), (t_fn, wakers[1], times[name][1]),
                                      (floor_fn, wakers[0], times[name][2])):
                    if fn is None:
                        continue
                    wake()
                    t0 = time.perf_counter()
                    fn()
                    dt = time.perf_counter() - t0
                    if r:  # round 0 warms up caches, thread pools and the allocators
                        out.append(dt)
                    time.sleep(pause)
        rows = []
        for name, (np_t, t_t, floor_t) in times.items():
            row = {"op": name, "count": self.jobs[name][2], "numpy_ms": _ms(statistics.median(np_t))}
            if t_t:
                row["torch_ms"] = _ms(statistics.median(t_t))
                row["ratio"] = round(row["numpy_ms"] / row["torch_ms"], 3)
            if floor_t:
                row["gemm_ms"] = _ms(statistics.median(floor_t))
                if t_t:
                    row["gemm_ratio"] = round(row["gemm_ms"] / row["torch_ms"], 3)
            rows.append(row)
        return rows


def _conv_job(x_shape, w_shape, stride, padding, has_bias, rng, torch=None):
    """conv forward + backward on random data, as (numpy job, torch job or None)."""
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = (rng.standard_normal(w_shape, dtype=np.float32) / np.float32(np.sqrt(np.prod(w_shape[1:]))))
    b = np.zeros(w_shape[0], np.float32) if has_bias else None
    out = [F.conv_output_size(x_shape[k], w_shape[k], stride, padding) for k in (2, 3)]
    dy = rng.standard_normal((x_shape[0], w_shape[0], *out), dtype=np.float32)

    def numpy_job():
        _, cache = F.conv2d_forward(x, w, b, stride, padding)
        F.conv2d_backward(dy, cache)

    if torch is None:
        return numpy_job, None
    tx = torch.from_numpy(x).requires_grad_()
    tw = torch.from_numpy(w).requires_grad_()
    tb = torch.from_numpy(b).requires_grad_() if b is not None else None
    tdy = torch.from_numpy(dy)

    def torch_job():
        out = torch.nn.functional.conv2d(tx, tw, tb, stride, padding)
        out.backward(tdy)
        tx.grad = tw.grad = None  # fresh gradients each time, as ours are
        if tb is not None:
            tb.grad = None

    return numpy_job, torch_job


def _gemm_job(x_shape, w_shape, stride, padding, rng):
    """The three GEMMs of a conv's forward and backward, alone: a job for ``_Ops``.

    They are the products ``conv2d_forward`` and ``conv2d_backward`` make, in
    their layout (pixels as columns), on the M = N*OH*OW output pixels without
    the grid's margin and with no copy around them: y = W2 @ col, dW^T = col @ dY^T,
    dcol = W2^T @ dY, with W2 (F, K), col (K, M), dY (F, M), K = C*KH*KW. They
    write into outputs allocated once, so no fresh pages are faulted in (the conv
    allocates its col and dcol per call). Any convolution built of these GEMMs
    takes at least their time; ``bench conv`` times them in the other layout too
    (pixels as rows), which is not faster here.
    """
    n, c = x_shape[:2]
    f, _, kh, kw = w_shape
    m = n * F.conv_output_size(x_shape[2], kh, stride, padding) * F.conv_output_size(x_shape[3], kw, stride, padding)
    k = c * kh * kw
    w2 = rng.standard_normal((f, k), dtype=np.float32)
    col = rng.standard_normal((k, m), dtype=np.float32)
    dy = rng.standard_normal((f, m), dtype=np.float32)
    y, dw_t, dcol = (np.empty(shape, np.float32) for shape in ((f, m), (k, f), (k, m)))

    def gemms():
        np.matmul(w2, col, out=y)
        np.matmul(col, dy.T, out=dw_t)
        np.matmul(w2.T, dy, out=dcol)

    return gemms


def _module_jobs(model, tmodel, images, rng, torch):
    """Backbone, FPN and heads, forward + backward with random upstream gradients."""
    c3, c4, c5 = model.backbone.forward(images)
    feats = model.fpn.forward(c3, c4, c5)
    logits = model.cls_head.forward(feats)
    deltas = model.box_head.forward(feats)
    model.clear_cache()
    rand = lambda a: rng.standard_normal(a.shape, dtype=np.float32)  # noqa: E731
    dc = [rand(c) for c in (c3, c4, c5)]
    dps = [rand(p) for p in feats]
    dl, dd = rand(logits), rand(deltas)

    def np_backbone():
        model.backbone.forward(images)
        model.backbone.backward(*dc, image_grad=False)  # PyTorch's images need no gradient either

    def np_fpn():
        model.fpn.forward(c3, c4, c5)
        model.fpn.backward(dps)

    def np_heads():
        model.cls_head.forward(feats)
        model.box_head.forward(feats)
        model.cls_head.backward(dl)
        model.box_head.backward(dd)

    jobs = {"backbone": [np_backbone, None], "FPN": [np_fpn, None], "heads (cls + box, 5 levels)": [np_heads, None]}
    if torch is None:
        return jobs
    t = torch.from_numpy
    ti = t(images)
    tc = [t(np.ascontiguousarray(c)).requires_grad_() for c in (c3, c4, c5)]
    tf = [t(np.ascontiguousarray(p)).requires_grad_() for p in feats]
    stem, s1, s2, s3, s4 = tmodel.backbone

    def t_backbone():
        a3 = s2(s1(stem(ti)))
        a4 = s3(a3)
        torch.autograd.backward([a3, a4, s4(a4)], [t(g) for g in dc])

    def t_fpn():
        torch.autograd.backward(tmodel.fpn(*tc), [t(g) for g in dps])
        for x in tc:
            x.grad = None

    def t_heads():
        torch.autograd.backward([tmodel.cls_head(tf), tmodel.box_head(tf)], [t(dl), t(dd)])
        for x in tf:
            x.grad = None

    jobs["backbone"][1], jobs["FPN"][1], jobs["heads (cls + box, 5 levels)"][1] = t_backbone, t_fpn, t_heads
    return jobs


def _step_fns(model, tmodel, images, targets, anchors, torch):
    """One training step in each library; each returns its part times (``STEP_PARTS``) in seconds."""
    numpy_step = step_timer(model, images, targets, anchors)
    if torch is None:
        return numpy_step, None
    from numpy_retinanet.tools.torch_mirror import torch_retinanet_loss

    topt = torch.optim.SGD(tmodel.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    ti = torch.from_numpy(images)

    def torch_step():
        t = [time.perf_counter()]
        logits, deltas = tmodel(ti)
        t.append(time.perf_counter())
        loss, _, _ = torch_retinanet_loss(logits, deltas, anchors, targets)
        t.append(time.perf_counter())
        topt.zero_grad()
        loss.backward()
        t.append(time.perf_counter())
        topt.step()
        t.append(time.perf_counter())
        return np.diff(t)

    return numpy_step, torch_step


# Steps of the training run timed back to back, per round. Timed one at a time, between the pause
# and the other steps of the round, a default step took 119.9 ms (median of 5); five in a row, in
# the next run, 82.2 ms a step, as in training (~80 ms): alone, each step starts with the workers'
# caches emptied by the other steps of the round.
TRAIN_STEPS_IN_A_ROW = 5


@contextlib.contextmanager
def _train_step(preset, batch, size, workers):
    """The training step as ``numpy-retinanet train`` takes it on the CPU, as a function.

    ``workers`` processes (one BLAS thread each) compute the gradients of their parts of the
    batch and the main process combines them and takes the SGD step (``engine/parallel.py``).
    Each call runs the next TRAIN_STEPS_IN_A_ROW steps of a shapes training run from a fresh
    model (a new batch every step, drawn by the workers while they would wait, as in training)
    and returns their mean seconds. The bench's single-process step shows where the time goes;
    this one is what a user waits for per step.
    """
    from numpy_retinanet.engine.parallel import GradientWorkers
    from numpy_retinanet.engine.step import apply_gradients
    from numpy_retinanet.nn.optim import SGD

    config = TrainConfig(preset=preset, batch_size=batch, image_size=size, workers=workers, lr=1e-3)
    model = RetinaNet(config.num_classes, preset=preset, seed=config.seed)
    optimizer = SGD(model.params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    steps = itertools.count()
    with GradientWorkers(config, model.params) as pool:
        def steps_in_a_row():
            t0 = time.perf_counter()
            for _ in range(TRAIN_STEPS_IN_A_ROW):
                _, grads = pool.gradients(next(steps), model.params)
                apply_gradients(optimizer, grads, config.lr, config)
            return (time.perf_counter() - t0) / TRAIN_STEPS_IN_A_ROW

        yield steps_in_a_row


def check_agreement(model, tmodel, images, targets, anchors):
    """Every entry of the outputs, the loss and every gradient, ours against PyTorch in float64.

    Returns {"tensors", "worst", "ok"}: "worst" is the ``worst_entry`` row (tensor,
    index, ours, reference, used) using the most of its tolerance; ok if used <= 1.
    See ``tools/agreement.py`` (``LOSS_TOLERANCE``, ``NETWORK_TOLERANCE``).
    """
    from numpy_retinanet.tools.torch_mirror import compare, compare_loss

    logits, deltas = model.forward(images, keep_cache=False)
    losses, dlogits, ddeltas = retinanet_loss(logits, deltas, anchors, targets)
    rows = compare(model, tmodel, images, dlogits, ddeltas)
    rows += compare_loss(logits, deltas, anchors, targets, losses, dlogits, ddeltas)
    model.zero_grad()
    worst = max(rows, key=lambda r: r["used"])
    return {"tensors": len(rows), "worst": worst, "ok": worst["used"] <= 1}


def bench_all(preset="default", batch=8, size=128, repeats=5, use_torch=None):
    """Everything the module docstring lists, as a dict (``format_all`` prints it)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    torch = None
    if use_torch is None:
        use_torch = torch_available()
    if use_torch:
        import torch
    rng = np.random.default_rng(0)
    model = RetinaNet(3, preset=preset)
    images, targets = shapes_batch(batch, size)
    anchors = model.anchors(size, size)
    tmodel = None
    result = {"preset": preset, "batch": batch, "image_size": size, "repeats": repeats,
              "parameters": model.num_parameters(), "numpy": np.__version__}
    if torch is not None:
        from numpy_retinanet.tools.torch_mirror import mirror

        tmodel = mirror(model)
        result["torch"] = torch.__version__
        result["torch_threads"] = torch.get_num_threads()
        result["agreement"] = check_agreement(model, tmodel, images, targets, anchors)

    ops = _Ops()
    convs = [(f"conv {w_shape[1]}->{w_shape[0]} {w_shape[2]}x{w_shape[3]} s{stride} on {x_shape[2]}x{x_shape[3]}",
              x_shape, w_shape, stride, padding, has_bias, count)
             for x_shape, w_shape, stride, padding, has_bias, count in conv_shapes(model, images)]
    convs += [(f"bench conv {c}->{c} 3x3 s{st} on {s}x{s}, batch {BATCH}", (BATCH, c, s, s), (c, c, 3, 3), st, 1,
               False, 1) for c, s, st in CONV_CASES]
    step_convs = [name for name, *_ in convs[:-len(CONV_CASES)]]
    for name, x_shape, w_shape, stride, padding, has_bias, count in convs:
        ops.add(name, *_conv_job(x_shape, w_shape, stride, padding, has_bias, rng, torch), count=count,
                floor_fn=_gemm_job(x_shape, w_shape, stride, padding, rng))
    for name, (np_fn, t_fn) in _module_jobs(model, tmodel, images, rng, torch).items():
        ops.add(name, np_fn, t_fn)
    logits, deltas = model.forward(images, keep_cache=False)

    def np_loss():
        retinanet_loss(logits, deltas, anchors, targets)

    t_loss = None
    if torch is not None:
        from numpy_retinanet.tools.torch_mirror import torch_retinanet_loss

        tl = torch.from_numpy(np.ascontiguousarray(logits)).requires_grad_()
        td = torch.from_numpy(np.ascontiguousarray(deltas)).requires_grad_()

        def t_loss():
            torch_retinanet_loss(tl, td, anchors, targets)[0].backward()
            tl.grad = td.grad = None

    ops.add("loss (match, focal, smooth L1, gradients)", np_loss, t_loss)
    # Scores of an untrained model all sit near the prior 0.01, below the 0.05
    # threshold, which would make post-processing trivially cheap. Logits around
    # the prior with spread 1 put ~5% of the (anchor, class) pairs above it
    # (~460 candidates per image at 128 px), so NMS has real work.
    busy = (rng.standard_normal(logits.shape) - 4.6).astype(np.float32)
    ops.add("post-processing (threshold, top-k, decode, NMS)",
            lambda: postprocess(busy, deltas, anchors, (size, size), level_sizes=model.level_sizes(size, size)))
    wakers = _wakers(torch)
    pause = PAUSE_S if torch is not None else 0.0
    result["ops"] = ops.run(repeats, wakers, pause)

    np_step, t_step = _step_fns(model, tmodel, images, targets, anchors, torch)
    parts = {"numpy": [], "torch": [], "train": []}
    # With one worker (a batch of one image) train computes in its own process: the step above.
    workers = cli_workers("cpu", batch)
    with _train_step(preset, batch, size, workers) if workers > 1 else contextlib.nullcontext() as train_step:
        for r in range(repeats + 1):
            for lib, fn, wake in (("numpy", np_step, wakers[0]), ("torch", t_step, wakers[1]),
                                  ("train", train_step, wakers[0])):
                if fn is None:
                    continue
                wake()
                dt = fn()
                if r:
                    parts[lib].append(dt)
                time.sleep(pause)
    names = STEP_PARTS
    step = {}
    train = parts.pop("train")
    for lib, rows in parts.items():
        if rows:
            med = np.median(np.array(rows), axis=0)
            step[lib] = {n: _ms(v) for n, v in zip(names, med)}
            step[lib]["step"] = _ms(np.median(np.array(rows).sum(axis=1)))
            step[lib]["images_per_s"] = round(batch / (step[lib]["step"] / 1e3), 1)
    if train:
        step["train"] = {"workers": workers, "step": _ms(np.median(train))}
        step["train"]["images_per_s"] = round(batch / (step["train"]["step"] / 1e3), 1)
    if "torch" in step:
        step["ratio"] = {n: round(step["numpy"][n] / step["torch"][n], 3) for n in (*names, "step")}
        if "train" in step:
            step["ratio"]["train"] = round(step["train"]["step"] / step["torch"]["step"], 3)
    # The floor of the step's convs: each one's GEMMs alone, times its calls per step.
    gemm = {r["op"]: r["gemm_ms"] * r["count"] for r in result["ops"] if r["op"] in step_convs}
    step["numpy"]["conv_gemms"] = round(sum(gemm.values()), 3)
    if "torch" in step:
        step["ratio"]["conv_gemms"] = round(step["numpy"]["conv_gemms"] / step["torch"]["step"], 3)
    result["step"] = step
    result["peak_step_memory_mib"] = round(host_peak_memory_mib(np_step), 1)
    return result


def format_all(result):
    """The result of ``bench_all`` as text."""
    has_torch = "torch" in result
    head = (f"RetinaNet {result['preset']!r} ({result['parameters']:,} parameters), batch {result['batch']} x "
            f"{result['image_size']}x{result['image_size']} float32, median of {result['repeats']} after a warm-up; "
            f"numpy {result['numpy']}")
    lines = [head + (f", torch {result['torch']} ({result['torch_threads']} threads)" if has_torch else
                     "; PyTorch not installed (python -m pip install -e '.[bench]' adds the comparison)")]
    if has_torch:
        a = result["agreement"]
        w = a["worst"]
        lines.append(f"agreement with PyTorch (float64), entry by entry over {a['tensors']} tensors (outputs, loss, "
                     f"every gradient): worst {w['tensor']}{list(w['index'])}: ours {w['ours']:.9g}, "
                     f"PyTorch {w['reference']:.9g}, {w['used']:.2f} of its tolerance: {'PASS' if a['ok'] else 'FAIL'}")
    lines.append("")
    lines.append(f"{'op (forward + backward)':<52} {'x/step':>6} {'numpy ms':>9}"
                 + (f" {'torch ms':>9} {'numpy/torch':>11}" if has_torch else "")
                 + f" {'GEMMs ms':>9}" + (f" {'GEMMs/torch':>11}" if has_torch else ""))
    for r in result["ops"]:
        line = f"{r['op']:<52} {r['count']:>6} {r['numpy_ms']:>9.2f}"
        if "torch_ms" in r:
            line += f" {r['torch_ms']:>9.2f} {r['ratio']:>11.2f}"
        elif has_torch:
            line += f" {'-':>9} {'-':>11}"
        if "gemm_ms" in r:
            line += f" {r['gemm_ms']:>9.2f}" + (f" {r['gemm_ratio']:>11.2f}" if "gemm_ratio" in r else "")
        lines.append(line)
    lines.append("")
    step = result["step"]
    lines.append(f"{'training step':<20} {'numpy ms':>9}"
                 + (f" {'torch ms':>9} {'numpy/torch':>11}" if has_torch else ""))
    for n in ("forward", "loss", "backward", "sgd", "step"):
        line = f"{n:<20} {step['numpy'][n]:>9.1f}"
        if has_torch:
            line += f" {step['torch'][n]:>9.1f} {step['ratio'][n]:>11.2f}"
        lines.append(line)
    line = f"{'images/s':<20} {step['numpy']['images_per_s']:>9.1f}"
    if has_torch:
        line += f" {step['torch']['images_per_s']:>9.1f}"
    lines.append(line)
    if "train" in step:
        train = step["train"]
        line = f"{'step in train':<20} {train['step']:>9.1f}"
        if has_torch:
            line += f" {step['torch']['step']:>9.1f} {step['ratio']['train']:>11.2f}"
        lines.append(line + f"   ({train['workers']} worker processes, {train['images_per_s']:.1f} images/s)")
    line = f"{'conv GEMMs alone':<20} {step['numpy']['conv_gemms']:>9.1f}"
    if has_torch:
        line += f" {'':>9} {step['ratio']['conv_gemms']:>11.2f}"
    lines.append(line)
    lines.append(f"peak memory of one NumPy step: {result['peak_step_memory_mib']:.0f} MiB")
    lines += [
        "GEMMs: a conv's three GEMMs alone (forward, dW, dx), in its layout, without a copy: no conv made of them",
        "is faster. conv GEMMs alone: their sum over the step's convs; its ratio is to PyTorch's whole step.",
        "step in train: the step as `numpy-retinanet train` takes it, the batch split between worker processes",
        f"(one core each), {TRAIN_STEPS_IN_A_ROW} steps of a run in a row; the rows above: one process, its matrix",
        "products on 2 threads.",
    ]
    return "\n".join(lines)


def run_all(args) -> int:
    result = bench_all(args.preset, args.batch_size, args.image_size, args.repeats,
                       use_torch=False if args.no_torch else None)
    print(json.dumps(result, indent=1) if args.json else format_all(result))
    if "agreement" in result and not result["agreement"]["ok"]:
        return 1
    return 0
