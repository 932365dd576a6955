"""The benchmarks behind ``numpy-retinanet bench``.

``bench conv`` times the 3x3 convolution of nn/functional.py (forward, and
backward for dx, dW and db) on the sizes a small detector's backbone sees,
and next to it numpy's own matmul on the same GEMM problems: the forward
GEMM (M, K) @ (K, F), the dW GEMM (K, M) @ (M, F) and the dcol GEMM
(M, F) @ (F, K), with M = N*OH*OW output pixels and K = C*3*3. A conv by
im2col is those three GEMMs plus copies, so their rate is the ceiling; the
ratio says how close the copies let us get.

Every GEMM is timed with its operands in both memory layouts (pixels as rows
or as columns) and the faster is the reference, so the ceiling is not
flattered by a slow layout. OpenBLAS worker threads keep spinning for a
while after a call and steal time from whatever runs next, so all
measurements run in one process, interleaved round by round, the first round
is a warm-up, and medians are reported.
"""

from __future__ import annotations

import statistics

import numpy as np

from numpy_retinanet.nn.functional import conv2d_backward, conv2d_forward, conv_output_size
from numpy_retinanet.tools.bench.common import BATCH, timed

KERNEL = 3
PADDING = 1
# (channels in = channels out, input height = width, stride)
CONV_CASES = [(64, 64, 1), (64, 64, 2), (128, 32, 1), (128, 32, 2)]


def _conv_jobs(channels, size, stride, rng):
    """The timed calls of one case: conv forward/backward and the six GEMMs."""
    dtype = np.float32
    x = rng.standard_normal((BATCH, channels, size, size), dtype=dtype)
    w = (rng.standard_normal((channels, channels, KERNEL, KERNEL), dtype=dtype)
         / np.float32(np.sqrt(channels * KERNEL * KERNEL)))
    b = np.zeros(channels, dtype)
    out = conv_output_size(size, KERNEL, stride, PADDING)
    dy = rng.standard_normal((BATCH, channels, out, out), dtype=dtype)
    m, k, f = BATCH * out * out, channels * KERNEL * KERNEL, channels

    state = {}

    def conv_fwd():
        state["cache"] = conv2d_forward(x, w, b, stride, PADDING)[1]

    def conv_bwd():
        conv2d_backward(dy, state.pop("cache"))

    # "rows": pixels as rows, col (M, K); "cols": pixels as columns, col (K, M).
    col_r = rng.standard_normal((m, k), dtype=dtype)
    col_c = np.ascontiguousarray(col_r.T)
    dy_r = rng.standard_normal((m, f), dtype=dtype)
    dy_c = np.ascontiguousarray(dy_r.T)
    w_r = rng.standard_normal((k, f), dtype=dtype)
    w_c = np.ascontiguousarray(w_r.T)
    jobs = {
        "conv_fwd": conv_fwd,
        "conv_bwd": conv_bwd,
        "fwd_rows": lambda: col_r @ w_r,
        "fwd_cols": lambda: w_c @ col_c,
        "dw_rows": lambda: col_r.T @ dy_r,
        "dw_cols": lambda: dy_c @ col_c.T,
        "dcol_rows": lambda: dy_r @ w_r.T,
        "dcol_cols": lambda: w_c.T @ dy_c,
    }
    return jobs, 2 * m * k * f


def bench_conv(repeats):
    """Median times (ms) and GFLOP/s of conv forward/backward and of the matching GEMMs.

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

    rows = []
    for (channels, size, stride, _, flops), t in zip(cases, times):
        med = {name: statistics.median(v) for name, v in t.items()}
        gemm = {g: min(med[g + "_rows"], med[g + "_cols"]) for g in ("fwd", "dw", "dcol")}
        conv_total = med["conv_fwd"] + med["conv_bwd"]
        gemm_total = sum(gemm.values())
        rows.append({
            "channels": channels, "size": size, "stride": stride,
            "gflop_fwd": flops / 1e9,
            "conv_fwd_ms": 1e3 * med["conv_fwd"],
            "conv_bwd_ms": 1e3 * med["conv_bwd"],
            "conv_fwd_gflops": flops / med["conv_fwd"] / 1e9,
            "conv_bwd_gflops": 2 * flops / med["conv_bwd"] / 1e9,
            "conv_gflops": 3 * flops / conv_total / 1e9,
            "matmul_ms": {g: 1e3 * v for g, v in gemm.items()},
            "matmul_gflops": {g: flops / v / 1e9 for g, v in gemm.items()},
            "matmul_all_gflops": 3 * flops / gemm_total / 1e9,
            "ratio": gemm_total / conv_total,
        })
    total_flops = sum(3 * r["gflop_fwd"] for r in rows)
    conv_s = sum(r["conv_fwd_ms"] + r["conv_bwd_ms"] for r in rows) / 1e3
    gemm_s = sum(sum(r["matmul_ms"].values()) for r in rows) / 1e3
    return {
        "what": "conv", "dtype": "float32", "batch": BATCH, "kernel": KERNEL,
        "padding": PADDING, "repeats": repeats, "numpy": np.__version__,
        "cases": rows,
        "all": {"conv_gflops": total_flops / conv_s, "matmul_gflops": total_flops / gemm_s,
                "ratio": gemm_s / conv_s},
    }


def format_conv_table(result):
    """The result of ``bench_conv`` as a text table."""
    lines = [
        f"conv {result['kernel']}x{result['kernel']}, padding {result['padding']}, "
        f"batch {result['batch']}, {result['dtype']}, C in = C out; "
        f"median of {result['repeats']} after a warm-up (numpy {result['numpy']})",
        f"{'C':>4} {'HxW':>6} {'s':>2} | {'fwd ms':>7} {'bwd ms':>7} | "
        f"{'conv GFLOP/s: fwd':>17} {'bwd':>5} {'all':>5} | "
        f"{'matmul GFLOP/s: fwd':>19} {'dW':>5} {'dcol':>5} {'all':>5} | {'conv/matmul':>11}",
    ]
    for r in result["cases"]:
        mg = r["matmul_gflops"]
        lines.append(
            f"{r['channels']:>4} {str(r['size']) + 'x' + str(r['size']):>6} {r['stride']:>2} | "
            f"{r['conv_fwd_ms']:>7.1f} {r['conv_bwd_ms']:>7.1f} | "
            f"{r['conv_fwd_gflops']:>17.1f} {r['conv_bwd_gflops']:>5.1f} {r['conv_gflops']:>5.1f} | "
            f"{mg['fwd']:>19.1f} {mg['dw']:>5.1f} {mg['dcol']:>5.1f} {r['matmul_all_gflops']:>5.1f} | "
            f"{100 * r['ratio']:>10.0f}%"
        )
    a = result["all"]
    lines.append(
        f"{'all':>14} | {'':>15} | {'':>17} {'':>5} {a['conv_gflops']:>5.1f} | "
        f"{'':>19} {'':>5} {'':>5} {a['matmul_gflops']:>5.1f} | {100 * a['ratio']:>10.0f}%"
    )
    lines.append("conv/matmul: the three GEMMs' time over conv forward + backward time (goal >= 50%)")
    return "\n".join(lines)
