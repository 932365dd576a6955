"""The benchmarks behind ``numpy-retinanet bench conv``.

``bench conv`` times the 3x3 convolution of nn/functional.py (forward, and
backward for dx, dW and db) on the sizes a small detector's backbone sees,
and beside it, in the same run:

- the plain im2col reference (``conv2d_forward_reference`` and its
  backward): what the grid layout of the fast version buys;
- numpy's own matmul on the conv's three GEMM problems: the forward GEMM
  (M, K) @ (K, F), the dW GEMM (K, M) @ (M, F) and the dcol GEMM
  (M, F) @ (F, K), with M = N*OH*OW output pixels and K = C*3*3. A conv by
  im2col is those three GEMMs plus copies, so their rate is the ceiling; the
  ratio conv/matmul says how close the copies let us get;
- the "tap GEMMs" of the route that needs no column matrix (issue 17): the
  3*3 products (M, C) @ (C, F), one per kernel tap, each reading the padded
  input at the tap's offset and adding into one output (scipy's BLAS gemm
  with beta = 1, in place). They are that route's forward without any of its
  copies: when they alone take longer than our whole forward, the route
  cannot win here.

Every GEMM is timed with its operands in both memory layouts (pixels as rows
or as columns) and the faster is the reference, so the ceiling is not
flattered by a slow layout. OpenBLAS worker threads keep spinning for a
while after a call and steal time from whatever runs next, so all
measurements run in one process, interleaved round by round, the first round
is a warm-up, and medians are reported with their spread ((max - min) /
median over the rounds, the largest of a case's conv timings). The tap GEMMs
are timed apart, after those rounds: scipy's gemm runs on scipy's own
OpenBLAS (scipy_openblas32, not numpy's scipy_openblas64), whose threads
spinning after each call stole the cores from numpy's. Interleaved, they made
the grid conv 1.4x slower, so the bench ranked it behind the reference.
"""

from __future__ import annotations

import statistics

import numpy as np

from numpy_retinanet.nn.functional import (
    conv2d_backward,
    conv2d_backward_reference,
    conv2d_forward,
    conv2d_forward_reference,
    conv_output_size,
)
from numpy_retinanet.tools.bench.common import BATCH, timed

KERNEL = 3
PADDING = 1
# (channels in = channels out, input height = width, stride)
CONV_CASES = [(64, 64, 1), (64, 64, 2), (128, 32, 1), (128, 32, 2)]
CONV_JOBS = ("fast_fwd", "fast_bwd", "ref_fwd", "ref_bwd")


def _tap_gemms(channels, size, stride, rng):
    """The 3*3 tap GEMMs of the no-column-matrix forward on one case's sizes, as one call.

    The input is a padded grid with pixels as rows, (L + margin, C): every tap's
    operand is then the contiguous block of L rows at its offset. The grid is
    the one the conv itself uses (one phase of it at stride 2, where each
    phase's taps are fewer but the nine products together are the same work).
    """
    from scipy.linalg.blas import sgemm

    out_size = conv_output_size(size, KERNEL, stride, PADDING)
    g = -(-max(size + PADDING, stride * out_size) // stride)  # grid rows = columns, as in conv2d_forward
    L = BATCH * g * g
    offsets = [(i // stride) * g + j // stride for i in range(KERNEL) for j in range(KERNEL)]
    x = rng.standard_normal((L + max(offsets), channels), dtype=np.float32)
    w = rng.standard_normal((KERNEL * KERNEL, channels, channels), dtype=np.float32)  # (tap, C, F)
    out = np.empty((L, channels), dtype=np.float32)

    def run():
        # BLAS is column-major: out (L, F) row-major is out.T column-major, so
        # out.T (F, L) += w_t.T (F, C) @ x_t.T (C, L), every operand a .T view
        # of a C-contiguous array, which BLAS takes without a copy.
        for t, off in enumerate(offsets):
            sgemm(1.0, w[t].T, x[off:off + L].T, beta=1.0 if t else 0.0, c=out.T, overwrite_c=True)

    return run


def _conv_jobs(channels, size, stride, rng):
    """The timed calls of one case: both convs forward/backward and the six GEMMs."""
    dtype = np.float32
    x = rng.standard_normal((BATCH, channels, size, size), dtype=dtype)
    w = (rng.standard_normal((channels, channels, KERNEL, KERNEL), dtype=dtype)
         / np.float32(np.sqrt(channels * KERNEL * KERNEL)))
    b = np.zeros(channels, dtype)
    out = conv_output_size(size, KERNEL, stride, PADDING)
    dy = rng.standard_normal((BATCH, channels, out, out), dtype=dtype)
    m, k, f = BATCH * out * out, channels * KERNEL * KERNEL, channels

    state = {}

    def forward(fn, key):
        return lambda: state.__setitem__(key, fn(x, w, b, stride, PADDING)[1])

    def backward(fn, key):
        return lambda: fn(dy, state.pop(key))

    # "rows": pixels as rows, col (M, K); "cols": pixels as columns, col (K, M).
    col_r = rng.standard_normal((m, k), dtype=dtype)
    col_c = np.ascontiguousarray(col_r.T)
    dy_r = rng.standard_normal((m, f), dtype=dtype)
    dy_c = np.ascontiguousarray(dy_r.T)
    w_r = rng.standard_normal((k, f), dtype=dtype)
    w_c = np.ascontiguousarray(w_r.T)
    jobs = {
        "fast_fwd": forward(conv2d_forward, "fast"),
        "fast_bwd": backward(conv2d_backward, "fast"),
        "ref_fwd": forward(conv2d_forward_reference, "ref"),
        "ref_bwd": backward(conv2d_backward_reference, "ref"),
        "fwd_rows": lambda: col_r @ w_r,
        "fwd_cols": lambda: w_c @ col_c,
        "dw_rows": lambda: col_r.T @ dy_r,
        "dw_cols": lambda: dy_c @ col_c.T,
        "dcol_rows": lambda: dy_r @ w_r.T,
        "dcol_cols": lambda: w_c.T @ dy_c,
    }
    return jobs, 2 * m * k * f


def bench_conv(repeats):
    """Median times (ms) and GFLOP/s of both convs' forward/backward, the tap GEMMs and the matching GEMMs.

    Returns a dict with the settings and one entry per case of ``CONV_CASES``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rng = np.random.default_rng(0)
    cases = [(c, s, st, *_conv_jobs(c, s, st, rng)) for c, s, st in CONV_CASES]
    times = [{name: [] for name in jobs} for *_, jobs, _ in cases]
    for r in range(repeats + 1):
        for (*_, jobs, _), t in zip(cases, times):
            for name, fn in jobs.items():
                dt = timed(fn)
                if r:  # round 0 warms up caches, BLAS threads and the allocator
                    t[name].append(dt)
    # The tap GEMMs last, after every other timing: scipy's BLAS threads, spinning after each of their calls,
    # would slow the numpy calls timed after them (module docstring).
    for (channels, size, stride, *_), t in zip(cases, times):
        taps = _tap_gemms(channels, size, stride, rng)
        t["taps_fwd"] = [timed(taps) for _ in range(repeats + 1)][1:]

    rows = []
    for (channels, size, stride, _, flops), t in zip(cases, times):
        med = {name: statistics.median(v) for name, v in t.items()}
        gemm = {g: min(med[g + "_rows"], med[g + "_cols"]) for g in ("fwd", "dw", "dcol")}
        conv_total = med["fast_fwd"] + med["fast_bwd"]
        gemm_total = sum(gemm.values())
        rows.append({
            "channels": channels, "size": size, "stride": stride,
            "gflop_fwd": flops / 1e9,
            "conv_fwd_ms": 1e3 * med["fast_fwd"],
            "conv_bwd_ms": 1e3 * med["fast_bwd"],
            "reference_fwd_ms": 1e3 * med["ref_fwd"],
            "reference_bwd_ms": 1e3 * med["ref_bwd"],
            "fast_over_reference": conv_total / (med["ref_fwd"] + med["ref_bwd"]),
            "tap_gemms_ms": 1e3 * med["taps_fwd"],
            "conv_fwd_gflops": flops / med["fast_fwd"] / 1e9,
            "conv_bwd_gflops": 2 * flops / med["fast_bwd"] / 1e9,
            "conv_gflops": 3 * flops / conv_total / 1e9,
            "matmul_ms": {g: 1e3 * v for g, v in gemm.items()},
            "matmul_gflops": {g: flops / v / 1e9 for g, v in gemm.items()},
            "matmul_all_gflops": 3 * flops / gemm_total / 1e9,
            "ratio": gemm_total / conv_total,
            "spread": max((max(t[j]) - min(t[j])) / med[j] for j in CONV_JOBS),
        })
    total_flops = sum(3 * r["gflop_fwd"] for r in rows)
    conv_s = sum(r["conv_fwd_ms"] + r["conv_bwd_ms"] for r in rows) / 1e3
    ref_s = sum(r["reference_fwd_ms"] + r["reference_bwd_ms"] for r in rows) / 1e3
    gemm_s = sum(sum(r["matmul_ms"].values()) for r in rows) / 1e3
    return {
        "what": "conv", "dtype": "float32", "batch": BATCH, "kernel": KERNEL,
        "padding": PADDING, "repeats": repeats, "numpy": np.__version__,
        "cases": rows,
        "all": {"conv_gflops": total_flops / conv_s, "matmul_gflops": total_flops / gemm_s,
                "ratio": gemm_s / conv_s, "fast_over_reference": conv_s / ref_s},
    }


def format_conv_table(result):
    """The result of ``bench_conv`` as a text table."""
    lines = [
        f"conv {result['kernel']}x{result['kernel']}, padding {result['padding']}, "
        f"batch {result['batch']}, {result['dtype']}, C in = C out; "
        f"median of {result['repeats']} after a warm-up (numpy {result['numpy']})",
        f"{'C':>4} {'HxW':>6} {'s':>2} | {'conv ms: fwd':>12} {'bwd':>6} | {'reference: fwd':>14} {'bwd':>6} "
        f"{'conv/ref':>8} | {'tap GEMMs':>9} | {'GEMM ms: fwd':>12} {'dW':>5} {'dcol':>5} | "
        f"{'GFLOP/s: conv':>13} {'matmul':>6} | {'conv/matmul':>11} | {'spread':>6}",
    ]
    for r in result["cases"]:
        mm = r["matmul_ms"]
        lines.append(
            f"{r['channels']:>4} {str(r['size']) + 'x' + str(r['size']):>6} {r['stride']:>2} | "
            f"{r['conv_fwd_ms']:>12.1f} {r['conv_bwd_ms']:>6.1f} | "
            f"{r['reference_fwd_ms']:>14.1f} {r['reference_bwd_ms']:>6.1f} {r['fast_over_reference']:>8.2f} | "
            f"{r['tap_gemms_ms']:>9.1f} | {mm['fwd']:>12.1f} {mm['dw']:>5.1f} {mm['dcol']:>5.1f} | "
            f"{r['conv_gflops']:>13.1f} {r['matmul_all_gflops']:>6.1f} | {100 * r['ratio']:>10.0f}% | "
            f"{100 * r['spread']:>5.0f}%"
        )
    a = result["all"]
    lines.append(
        f"{'all':>14} | {'':>19} | {'':>21} {a['fast_over_reference']:>8.2f} | {'':>9} | {'':>24} | "
        f"{a['conv_gflops']:>13.1f} {a['matmul_gflops']:>6.1f} | {100 * a['ratio']:>10.0f}% |"
    )
    lines += [
        "conv/ref: fast (fwd + bwd) over the im2col reference's time; tap GEMMs: the forward's 9 products of the",
        "route without a column matrix, alone (beat by conv fwd: that route cannot win); conv/matmul: the three",
        "GEMMs' time over conv fwd + bwd (goal >= 85%); spread: (max - min) / median of the conv timings",
    ]
    return "\n".join(lines)
