"""The building blocks as pure forward/backward pairs (CS231n's ``layers.py`` style).

Every op is ``op_forward(inputs..., hyperparams) -> (out, cache)`` and
``op_backward(dout, cache) -> grads`` in input order. Nothing is stored
anywhere else, so a module may call the same op many times (a head shared
by five pyramid levels) and run the backward passes in reverse order.

Ops here: 2-D convolution (every layer of the backbone, FPN and heads of
RetinaNet, Lin et al. 2017 "Focal Loss for Dense Object Detection", §4),
ReLU, nearest-neighbour upsampling (the FPN's top-down path, Lin et al.
2017 "Feature Pyramid Networks", §3), and group normalization (Wu & He
2018), which the from-scratch backbone uses instead of batch norm because
our batches are small. For the ResNet-50 of torchvision's RetinaNet
(``model/resnet50.py``): max pooling (its stem) and the frozen batch norm, a
per-channel affine map whose coefficients come from the pretrained statistics.

Arrays are NCHW as in PyTorch. Outputs keep the input's float dtype. The
arrays returned may be non-contiguous views (the conv computes in a
channels-first, batch-second layout and hands back a transposed view rather
than pay for a copy); every op here accepts any memory layout.
"""

from __future__ import annotations

from numpy_retinanet._checks import check_array, check_dout, check_int, check_real
from numpy_retinanet.backend import array_module

# Every array argument is checked to be a non-empty float array free of NaN: one cheap
# max() pass per argument per call, a small fraction of what any op here costs.
_FLOAT = dict(kind="f", nonempty=True, no_nan=True)

# --------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------
#
# Two versions compute the same numbers. conv2d_forward_reference and
# conv2d_backward_reference, at the end of this section, are textbook im2col:
# pad, copy the window each kernel tap sees into a column matrix, one GEMM;
# col2im adds the gradient back window by window. Read them first. The
# network runs conv2d_forward and conv2d_backward, which build the same
# column matrix with contiguous copies instead of strided ones (below); the
# tests hold the two versions, and a naive loop, equal.
#
# Layout. Internally the conv works on a "grid" per channel: all N images
# stacked, each image a block of rows of fixed length, flattened into one
# row of length L. A kernel tap (i, j) then reads the input shifted by a
# constant offset in that flattened row, so im2col is, per tap, ONE copy of
# C contiguous runs of length ~L (a memcpy), not C*N*OH runs of length OW.
# The price is that the output is computed on the whole grid, including a
# margin of positions that are no output pixel; they are cut off afterwards
# (for 3x3, padding 1: 3% extra GEMM work on 64x64 maps, 6% on 32x32 at
# stride 1; 6% and 13% at stride 2).
#
# Stride s: the padded input is split into its s*s phases (rows a::s, columns
# b::s), one per grid; tap (i, j) reads phase (i % s, j % s) shifted by
# (i // s, j // s), so strided convs keep the contiguous shifted copies.
# Phase (a, b) IS the column block of tap (a, b) (its shift is zero), so it
# is written there directly and the other taps copy from it.
#
# Zero padding is shared: row r's right padding is row r+1's left padding,
# and one image's bottom padding the next one's top padding. A shifted read
# that runs past a row end or an image end lands in those zeros, which is
# exactly what a zero-padded conv reads there. That is why the grid needs
# only H + p rows and W + p columns (rounded up to a multiple of s) rather
# than H + 2p and W + 2p, and also at least s*OH and s*OW so that every
# output pixel has a grid position.
#
# The column matrix is (KH*KW*C, L): one GEMM W2 (F, KH*KW*C) @ col gives
# the output as (F, N, grid rows, grid cols), i.e. channels first, batch
# second. Returning a transposed view of it costs nothing; the next conv
# reads such a view with contiguous rows. The backward is two GEMMs, dW on
# the cached col and dcol = W2^T @ dY, then col2im: one contiguous add per
# tap, the shifted copies run backwards.
#
# Why one big GEMM and these copies, and not the route that needs no column
# matrix (issue 17: pad once, each tap's operand an offset slice, KH*KW GEMMs
# with K = C adding into one output; scipy's gemm with beta = 1 adds in place).
# Timed in one process beside this version (OpenBLAS, 3x3, batch 8, the four
# sizes of `numpy-retinanet bench conv`, which times the tap GEMMs too):
# - The nine tap GEMMs of the forward took 0.9-1.1x the time of the one
#   K = KH*KW*C GEMM on one BLAS thread, and 1.5-11x on two threads while
#   other processes shared the cores (every call waits for a thread the OS
#   has parked). On one thread they would save the forward's copies. Timed
#   again on a quiet machine, apart from numpy's calls (scipy's gemm runs on
#   scipy's own OpenBLAS, whose spinning threads had slowed numpy's in the
#   interleaved bench; see tools/bench/conv.py), the nine took 0.8-1.0x the
#   one GEMM on two threads too: the forward's side deserves a new look.
# - But dW needs the column matrix: per-tap dW (nine (C, F) outputs, K = L)
#   ran 1.7-2.2x slower than the one tall GEMM on col even on one thread, so
#   the copies would only move to the backward. Per-tap dx (K = F, added at
#   the tap's offset: no dcol, no col2im) made the backward 1.1-2x slower on
#   one thread (5 of 6 shapes) and 1.8-7x on two.
# - One GEMM per kernel row (K = KW*C, three copies instead of nine), a
#   channels-last col (every tap copy and col2im add strided) and dx from
#   shifted copies of dY instead of col2im ran slower. Splitting the batch
#   into groups of smaller col ran faster on one thread only for the 74 MiB
#   col below, slower on two.
# - The grid's margin costs most on small maps (GEMM work x1.27 on 8x8, x1.56
#   on 4x4, x4 on 1x1; in all, 2.71 GFLOP for a worker's step of 4 images
#   against 2.26 without margins). Yet the plain reference on every map of at
#   most 8x8 (the heads on P4-P7) ran that step 0.94-1.03x (median 0.99x,
#   eight interleaved rounds, one BLAS thread, while two training processes
#   shared the cores): on such maps the calls cost more than the arithmetic,
#   so the network keeps one conv everywhere.
# - Rows of col ordered (c, i, j), the filters' own order, make W2 a view
#   of a C-contiguous w instead of a transposed copy per call: one worker's
#   step (4 images, one BLAS thread) took 0.957x and 0.966x the time (20
#   interleaved rounds each). But it reorders the GEMM's float32 sums, so the
#   default recipe would no longer reproduce the shipped model bit for bit
#   (its 4000-step run reached AP 0.685 / AP50 0.918 / AP75 0.789, under the
#   shipped model's bar of AP50 0.92). Conv2d gets the view instead by
#   storing its weight (F, KH, KW, C) in memory, which changes no sum.
# - dx at stride 1 as the forward conv of dY with the flipped, transposed
#   filters (nine copies of dY into a column matrix instead of col2im's eight
#   adds) took 0.95-1.09x the backward's time (64 channels, 8x8 to 32x32, one
#   BLAS thread, beside the same two training processes).
# - At stride 1, the eight tap copies as two calls (taps (0, j>0), then the
#   rows i>0: strided views of one grid whose channels run L + the largest
#   shift, zeros after L, the GEMM reading col with that row stride): the same
#   bits, 0.93-0.98x the forward's time on 64-channel maps of 4x4 and less,
#   1.00-1.03x on 8x8 to 32x32 and on 128 channels at 4x4 (batch 4, one BLAS
#   thread): on the maps that cost the most, nothing.
# - Winograd's F(2x2, 3x3) (Lavin & Gray 2016: 16 GEMMs with K = C on 4x4 input tiles, 2.25x fewer
#   multiplications, the tile transforms as strided adds) agreed with this forward to 5e-7 of its largest
#   output but took 1.1-2.3x its time (stride 1, 64 and 128 channels, 8x8 to 64x64, batch 8, two threads):
#   OpenBLAS ran its sixteen K = 64 products at 70 GFLOP/s against 120 for the one K = 576 GEMM, which
#   leaves them 0.77x the one GEMM's time, and the transforms cost more than that saves.
# What is left above the GEMMs is memory traffic: the tap copies and the
# col2im adds, and first touches of fresh pages (glibc hands arrays over
# 32 MiB, like the 74 MiB col and dcol of the 64-channel 64x64 bench case,
# back to the kernel on free, so every call faults them in anew; the default
# model's largest col is 5 MiB).


def _phase_rows(size, pad, stride):
    """For each phase a < stride: (first input index, first grid index, count).

    Input rows ``first::stride`` (``count`` of them) sit at grid rows
    ``grid0 : grid0 + count`` of phase ``a``, given that input row ``h`` sits
    at padded row ``h + pad`` and padded row ``stride * r + a`` is grid row
    ``r`` of phase ``a``.
    """
    out = []
    for a in range(stride):
        first = (a - pad) % stride
        out.append((first, (first + pad - a) // stride, len(range(first, size, stride))))
    return out


def conv_output_size(size, kernel, stride, padding):
    """Output length of a convolution: floor((size + 2 padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def _check_conv(x, w, b, stride, padding):
    """The checks both conv versions make; returns (xp, stride, padding, OH, OW)."""
    xp = array_module(x, w, b)
    check_array("x", x, ("N", "C", "H", "W"), **_FLOAT)
    _, c, h, wd = x.shape
    # The dtype must be x's: mixing them would silently change the output's precision.
    check_array("w", w, ("F", c, "KH", "KW"), dtype=x.dtype, **_FLOAT)
    f, _, kh, kw = w.shape
    if b is not None:
        check_array("b", b, (f,), dtype=x.dtype, **_FLOAT)
    s = check_int("stride", stride, 1)
    p = check_int("padding", padding, 0)
    if kh > h + 2 * p or kw > wd + 2 * p:
        raise ValueError(
            f"w must be a kernel no larger than the padded input {h + 2 * p}x{wd + 2 * p} "
            f"(H + 2*padding by W + 2*padding), got a {kh}x{kw} kernel"
        )
    return xp, s, p, conv_output_size(h, kh, s, p), conv_output_size(wd, kw, s, p)


def conv2d_forward(x, w, b, stride=1, padding=0):
    """2-D convolution (cross-correlation, as in every deep-learning library).

    y[n, f, oh, ow] = b[f] + sum_{c, i, j} w[f, c, i, j] * xpad[n, c, s*oh + i, s*ow + j]

    where xpad is x with ``padding`` zeros on every side and s is ``stride``.

    Parameters
    ----------
    x : (N, C, H, W) float array.
    w : (F, C, KH, KW) filters, same dtype as x.
    b : (F,) bias, or None for no bias.
    stride : int >= 1, the same along H and W.
    padding : int >= 0 zeros added on each side of H and W.

    Returns
    -------
    y : (N, F, OH, OW) with OH = floor((H + 2 padding - KH) / stride) + 1
        (OW likewise); x's dtype. A non-contiguous view (see the layout note above).
    cache : for ``conv2d_backward``; it holds the column matrix, about KH*KW
        times the size of x.
    """
    xp, s, p, oh, ow = _check_conv(x, w, b, stride, padding)
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    gh = -(-max(h + p, s * oh) // s)  # grid rows per image and phase
    gw = -(-max(wd + p, s * ow) // s)  # grid columns per row
    L = n * gh * gw
    taps = kh * kw
    xt = x.transpose(1, 0, 2, 3)  # (C, N, H, W), a view
    if kh == kw == 1 and s == 1 and p == 0:
        # 1x1 conv: the grid is the input itself, so col is a free view when x
        # is compact channels-first, batch-second (a ReLU or GroupNorm of a
        # conv output: elementwise ops keep the layout) and one copy otherwise.
        col = xt.reshape(c, L)
    else:
        col = xp.empty((taps, c, L), dtype=x.dtype)
        rows, cols = _phase_rows(h, p, s), _phase_rows(wd, p, s)
        for a in range(min(s, kh)):
            h0, r0, nh = rows[a]
            for bb in range(min(s, kw)):
                w0, c0, nw = cols[bb]
                g = col[a * kw + bb].reshape(c, n, gh, gw)
                g[:, :, :r0] = 0
                g[:, :, r0 + nh:] = 0
                g[:, :, r0:r0 + nh, :c0] = 0
                g[:, :, r0:r0 + nh, c0 + nw:] = 0
                g[:, :, r0:r0 + nh, c0:c0 + nw] = xt[:, :, h0::s, w0::s]
        for i in range(kh):
            for j in range(kw):
                off = (i // s) * gw + j // s
                if off == 0:  # a phase, written above
                    continue
                t, t0 = i * kw + j, (i % s) * kw + j % s
                k = max(L - off, 0)  # 0 when the tap sees only padding
                col[t, :, :k] = col[t0, :, L - k:]
                col[t, :, k:] = 0  # reads past the last image: padding
        col = col.reshape(taps * c, L)

    # Columns ordered (i, j, c) like col's rows: a view of w when w is stored (F, KH, KW, C)
    # in memory, as nn.modules.Conv2d stores its weight, and a copy otherwise. As a view,
    # the backward's dcol reads the weight as it is then (nothing updates it in between).
    w2 = w.transpose(0, 2, 3, 1).reshape(f, taps * c)
    y = w2 @ col
    if b is not None:
        y += b[:, None]
    out = y.reshape(f, n, gh, gw)[:, :, :oh, :ow].transpose(1, 0, 2, 3)
    cache = (col, w2, tuple(x.shape), tuple(w.shape), b is not None, s, p, gh, gw)
    return out, cache


def conv2d_backward(dout, cache, need_dx=True):
    """Gradients of ``conv2d_forward``.

    dW = dY @ col^T and dcol = W^T @ dY are one GEMM each; col2im then adds
    each tap's block of dcol into its phase at the tap's shift, one tap at a
    time (exact, no scatter-add).

    Parameters
    ----------
    dout : (N, F, OH, OW) gradient of the loss w.r.t. the conv output, its dtype.
    cache : from ``conv2d_forward``; not modified, so backward may be repeated.
    need_dx : False skips dx, for an input that needs no gradient (the images, under
        the first conv of a network): no dcol GEMM and no col2im; dw and db are the same.

    Returns
    -------
    dx : (N, C, H, W), a non-contiguous view; None when ``need_dx`` is False.
    dw : (F, C, KH, KW), a non-contiguous view.
    db : (F,), or None when the forward pass had no bias.
    """
    col, w2, xshape, wshape, has_bias, s, p, gh, gw = cache
    n, c, h, wd = xshape
    f, _, kh, kw = wshape
    oh, ow = conv_output_size(h, kh, s, p), conv_output_size(wd, kw, s, p)
    check_dout("dout", dout, (n, f, oh, ow), col.dtype)
    xp = array_module(dout, col)
    L = n * gh * gw
    taps = kh * kw

    dout_t = dout.transpose(1, 0, 2, 3)
    if (oh, ow) == (gh, gw):
        dout_g = dout_t.reshape(f, L)  # a view when dout is channels-first, batch-second
    else:
        # The margin of the grid is no output pixel: a zero gradient there
        # keeps it out of dW and dx.
        dout_g = xp.empty((f, n, gh, gw), dtype=dout.dtype)
        dout_g[:, :, :oh, :ow] = dout_t
        dout_g[:, :, oh:] = 0
        dout_g[:, :, :oh, ow:] = 0
        dout_g = dout_g.reshape(f, L)

    db = dout_g.sum(axis=1) if has_bias else None
    # dW^T = col @ dY^T, not dW = dY @ col^T: the same product, but OpenBLAS
    # splits this tall (KH*KW*C, F) output between its threads without a
    # barrier per block of the long L axis. The other order ran 20x slower
    # whenever another process shared the two cores, and 1.06-1.53x slower on
    # one thread too (the shapes of a default step; the same bits either way).
    # dw is a transposed view of the product: Conv2d adds it into a gradient stored (F, KH,
    # KW, C), which reads it in one pass; a contiguous copy first would be a second pass.
    # (dW = dY @ col^T could be written straight into that gradient, saving the add,
    # ~45 us for 64x64x3x3, but costs 150 us more in the GEMM on 16x16 maps.)
    # That pass walks down the product's columns, F floats apart. F = 64 or 128 makes the
    # step a power of two, so the reads all fall in a few sets of the cache and evict each
    # other: the product's rows are made an odd number of floats long instead (the GEMM
    # writes into a view that leaves out the extra column; the same numbers). Adding the
    # view of a 64x64x3x3 product took 15.6 instead of 40.5 us, of a 128x128x3x3 one 85
    # instead of 169 us; in a worker's step (4 images) all the adds took 1.47-1.54 instead
    # of 2.22-2.32 ms, and these GEMMs 0.14-0.26 ms longer (three runs).
    dwt = xp.empty((taps * c, f | 1), dtype=col.dtype)[:, :f]
    xp.matmul(col, dout_g.T, out=dwt)
    dw = dwt.reshape(kh, kw, c, f).transpose(3, 2, 0, 1)
    if not need_dx:
        return None, dw, db
    # dcol is a fresh array, so col2im may accumulate into its phase blocks
    # in place: phase (a, b) is tap (a, b)'s block, at shift zero.
    dcol = (w2.T @ dout_g).reshape(taps, c, L)
    for i in range(kh):
        for j in range(kw):
            off = (i // s) * gw + j // s
            if off == 0:
                continue
            t, t0 = i * kw + j, (i % s) * kw + j % s
            k = max(L - off, 0)
            dcol[t0, :, L - k:] += dcol[t, :, :k]

    if s == 1:
        # One phase: dx is its interior, a view (no copy; dcol is freed with
        # dx). The padding's gradient is dropped.
        dx = dcol[0].reshape(c, n, gh, gw)[:, :, p:p + h, p:p + wd]
    else:
        dx = xp.empty((c, n, h, wd), dtype=dout.dtype)
        rows, cols = _phase_rows(h, p, s), _phase_rows(wd, p, s)
        for a in range(s):
            h0, r0, nh = rows[a]
            for bb in range(s):
                w0, c0, nw = cols[bb]
                if a < kh and bb < kw:
                    g = dcol[a * kw + bb].reshape(c, n, gh, gw)
                    dx[:, :, h0::s, w0::s] = g[:, :, r0:r0 + nh, c0:c0 + nw]
                else:  # a phase no tap reads (kernel smaller than the stride)
                    dx[:, :, h0::s, w0::s] = 0
    return dx.transpose(1, 0, 2, 3), dw, db


def conv2d_forward_reference(x, w, b, stride=1, padding=0):
    """The convolution of ``conv2d_forward`` by textbook im2col: plainer and slower.

    Zero-pad x; copy the window that kernel tap (i, j) sees at every output
    pixel, xpad[:, :, i + s*oh, j + s*ow], into row block (i, j) of a column
    matrix col (KH*KW*C, N*OH*OW); then one GEMM with the filters as a
    (F, KH*KW*C) matrix. The tests hold ``conv2d_forward`` to this.
    Arguments and returns as ``conv2d_forward``.
    """
    xp, s, p, oh, ow = _check_conv(x, w, b, stride, padding)
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xpad = xp.zeros((c, n, h + 2 * p, wd + 2 * p), dtype=x.dtype)
    xpad[:, :, p:p + h, p:p + wd] = x.transpose(1, 0, 2, 3)
    col = xp.empty((kh, kw, c, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            col[i, j] = xpad[:, :, i:i + s * oh:s, j:j + s * ow:s]
    col = col.reshape(kh * kw * c, n * oh * ow)
    w2 = w.transpose(0, 2, 3, 1).reshape(f, kh * kw * c)  # columns ordered (i, j, c) like col's rows
    y = w2 @ col
    if b is not None:
        y += b[:, None]
    out = y.reshape(f, n, oh, ow).transpose(1, 0, 2, 3)
    return out, (col, w2, tuple(x.shape), tuple(w.shape), b is not None, s, p)


def conv2d_backward_reference(dout, cache):
    """Gradients of ``conv2d_forward_reference``: db = sum of dY, dW = dY @ col^T,
    dcol = W2^T @ dY, and col2im adds each tap's block of dcol onto the padded
    window it was copied from. Arguments and returns as ``conv2d_backward``.
    """
    col, w2, (n, c, h, wd), (f, _, kh, kw), has_bias, s, p = cache
    oh, ow = conv_output_size(h, kh, s, p), conv_output_size(wd, kw, s, p)
    check_dout("dout", dout, (n, f, oh, ow), col.dtype)
    xp = array_module(dout, col)
    dy = dout.transpose(1, 0, 2, 3).reshape(f, n * oh * ow)
    db = dy.sum(axis=1) if has_bias else None
    # dW = dY @ col^T, computed as (col @ dY^T)^T for OpenBLAS's threads (see conv2d_backward).
    dw = xp.ascontiguousarray((col @ dy.T).T.reshape(f, kh, kw, c).transpose(0, 3, 1, 2))
    dcol = (w2.T @ dy).reshape(kh, kw, c, n, oh, ow)
    dxpad = xp.zeros((c, n, h + 2 * p, wd + 2 * p), dtype=dout.dtype)
    for i in range(kh):
        for j in range(kw):
            dxpad[:, :, i:i + s * oh:s, j:j + s * ow:s] += dcol[i, j]
    return dxpad[:, :, p:p + h, p:p + wd].transpose(1, 0, 2, 3), dw, db


# --------------------------------------------------------------------------
# ReLU
# --------------------------------------------------------------------------


def relu_forward(x):
    """ReLU, y = max(x, 0), elementwise.

    Parameters
    ----------
    x : float array of any shape.

    Returns
    -------
    y : like x.
    cache : the mask x > 0 (one byte per entry rather than x itself).
    """
    check_array("x", x, **_FLOAT)
    xp = array_module(x)
    mask = x > 0
    return xp.maximum(x, 0), (mask, x.dtype)


def relu_backward(dout, cache):
    """dx = dout where x > 0, else 0 (the subgradient at x = 0 is taken as 0).

    Parameters
    ----------
    dout : like the forward output.

    Returns
    -------
    dx : like x.
    """
    mask, dtype = cache
    check_dout("dout", dout, mask.shape, dtype)
    return dout * mask


# --------------------------------------------------------------------------
# Nearest-neighbour upsampling (the FPN's top-down pathway)
# --------------------------------------------------------------------------


def upsample_nearest_forward(x, factor=2):
    """Nearest-neighbour upsampling: y[n, c, i, j] = x[n, c, i // factor, j // factor].

    Parameters
    ----------
    x : (N, C, H, W) float array.
    factor : int >= 1.

    Returns
    -------
    y : (N, C, H*factor, W*factor), x's dtype, a new array.
    cache : for ``upsample_nearest_backward``.
    """
    check_array("x", x, ("N", "C", "H", "W"), **_FLOAT)
    k = check_int("factor", factor, 1)
    xp = array_module(x)
    n, c, h, w = x.shape
    # One strided copy per offset (a, b) inside the block, like the conv's
    # taps: a broadcast copy x[..., None] would run an inner loop of length
    # factor and is ~5x slower.
    y = xp.empty((n, c, h * k, w * k), dtype=x.dtype)
    for a in range(k):
        for b in range(k):
            y[:, :, a::k, b::k] = x
    return y, (tuple(x.shape), k, x.dtype)


def upsample_nearest_backward(dout, cache):
    """dx[n, c, i, j] = sum of dout over the factor x factor block that copied x[n, c, i, j].

    Parameters
    ----------
    dout : (N, C, H*factor, W*factor).

    Returns
    -------
    dx : (N, C, H, W).
    """
    (n, c, h, w), k, dtype = cache
    check_dout("dout", dout, (n, c, h * k, w * k), dtype)
    # Strided adds, one offset at a time: reshape(...).sum(axis=(3, 5))
    # reduces runs of length factor and is ~20x slower.
    dx = dout[:, :, ::k, ::k].copy()
    for a in range(k):
        for b in range(k):
            if a or b:
                dx += dout[:, :, a::k, b::k]
    return dx


# --------------------------------------------------------------------------
# Group normalization (Wu & He 2018)
# --------------------------------------------------------------------------


def group_norm_forward(x, gamma, beta, num_groups, eps=1e-5):
    """Group normalization (Wu & He 2018, §3.1).

    The C channels are split into ``num_groups`` groups of C/G consecutive
    channels; each (sample, group) is normalized by its own mean and variance
    over its C/G * H * W entries, then scaled and shifted per channel:

        xhat = (x - mu_{n,g}) / sqrt(var_{n,g} + eps),   y = gamma[c] * xhat + beta[c]

    Unlike batch norm nothing is averaged over the batch, so it behaves the
    same at batch 1 and in training and inference.

    Parameters
    ----------
    x : (N, C, H, W) float array.
    gamma, beta : (C,) scale and shift, x's dtype.
    num_groups : int G >= 1 dividing C.
    eps : float > 0 added to the variance.

    Returns
    -------
    y : (N, C, H, W), x's dtype.
    cache : for ``group_norm_backward``.
    """
    check_array("x", x, ("N", "C", "H", "W"), **_FLOAT)
    n, c, h, w = x.shape
    for name, a in (("gamma", gamma), ("beta", beta)):
        check_array(name, a, (c,), dtype=x.dtype, **_FLOAT)
    g = check_int("num_groups", num_groups, 1)
    if c % g:
        raise ValueError(f"num_groups must be a divisor of x's {c} channels, got {g}")
    eps = check_real("eps", eps, 0, low_open=True)
    xp = array_module(x, gamma, beta)
    per = c // g
    # Splitting the channel axis is a view for any memory layout of x.
    xg = x.reshape(n, g, per, h, w)
    mu = xg.mean(axis=(2, 3, 4), keepdims=True)
    # Two passes (centre, then square) rather than E[x^2] - E[x]^2, which
    # cancels catastrophically in float32 when |mean| >> std. The einsum sums
    # the squares without a temporary array; xc then becomes xhat in place.
    xc = xg - mu
    var = xp.einsum("ngchw,ngchw->ng", xc, xc) / (per * h * w)
    inv_std = 1 / xp.sqrt(var + eps)  # (N, G)
    xc *= inv_std[:, :, None, None, None]
    xhat = xc.reshape(n, c, h, w)
    y = xhat * gamma[:, None, None]
    y += beta[:, None, None]
    return y, (xhat, inv_std, gamma, g)


def group_norm_backward(dout, cache):
    """Gradients of ``group_norm_forward``.

        dxhat  = dout * gamma
        dx     = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
        dgamma = sum_{n,h,w} dout * xhat,   dbeta = sum_{n,h,w} dout

    where mean is over the M = C/G * H * W entries of each (sample, group).

    Parameters
    ----------
    dout : (N, C, H, W).

    Returns
    -------
    dx : (N, C, H, W); dgamma, dbeta : (C,).
    """
    xhat, inv_std, gamma, g = cache
    check_dout("dout", dout, xhat.shape, xhat.dtype)
    xp = array_module(dout, xhat)
    n, c, h, w = xhat.shape
    per = c // g
    # Per-(sample, channel) sums first: the formula needs the full-size
    # arrays only in the last line, which keeps big temporaries to two.
    s_dout = dout.sum(axis=(2, 3))  # (N, C)
    s_dout_xhat = xp.einsum("nchw,nchw->nc", dout, xhat)  # (N, C), no temporary
    dbeta = s_dout.sum(axis=0)
    dgamma = s_dout_xhat.sum(axis=0)
    m = per * h * w
    mean_d = (s_dout * gamma).reshape(n, g, per).sum(axis=2) / m  # mean(dxhat), (N, G)
    mean_dx = (s_dout_xhat * gamma).reshape(n, g, per).sum(axis=2) / m  # mean(dxhat * xhat)

    def per_channel(v):  # (N, G) -> (N, C, 1, 1), each group's value on its channels
        return xp.repeat(v, per, axis=1)[:, :, None, None]

    dx = dout * (per_channel(inv_std) * gamma[:, None, None])
    dx -= xhat * per_channel(inv_std * mean_dx)
    dx -= per_channel(inv_std * mean_d)
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------
# Max pooling (the stem of a ResNet: 3x3, stride 2, padding 1)
# --------------------------------------------------------------------------


def max_pool2d_forward(x, kernel_size=3, stride=2, padding=1):
    """Max pooling over ``kernel_size`` x ``kernel_size`` windows, NCHW.

        y[n, c, i, j] = max over (a, b) in the window of xpad[n, c, s*i + a, s*j + b]

    where ``xpad`` is x padded with -inf, so a padded entry is never the maximum (as in PyTorch).
    Output size ``(H + 2p - k) // s + 1``.

    Ties: the first maximum in the window's row-major order wins, the entry PyTorch's CPU kernel
    returns as its index (it replaces the running maximum only on a strictly greater value), so
    the gradient goes to the same input entry as in PyTorch.

    Parameters
    ----------
    x : (N, C, H, W) float array.
    kernel_size, stride : ints >= 1; padding : int in [0, kernel_size // 2].

    Returns
    -------
    y : (N, C, OH, OW), x's dtype.
    cache : for ``max_pool2d_backward``: the window offset of each maximum (one byte per output).
    """
    check_array("x", x, ("N", "C", "H", "W"), **_FLOAT)
    k = check_int("kernel_size", kernel_size, 1)
    s = check_int("stride", stride, 1)
    p = check_int("padding", padding, 0, k // 2)
    xp = array_module(x)
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, k, s, p), conv_output_size(w, k, s, p)
    xpad = xp.full((n, c, h + 2 * p, w + 2 * p), -xp.inf, dtype=x.dtype)
    xpad[:, :, p:p + h, p:p + w] = x
    # One strided slice per window offset (tap), as the conv's taps: tap t = a*k + b reads
    # xpad[s*i + a, s*j + b] for every output (i, j) at once.
    y = xpad[:, :, 0:s * oh:s, 0:s * ow:s].copy()
    tap = xp.zeros(y.shape, dtype=xp.uint8)
    for t in range(1, k * k):
        a, b = divmod(t, k)
        window = xpad[:, :, a:a + s * oh:s, b:b + s * ow:s]
        greater = window > y  # strictly: an equal later entry does not take the place (ties above)
        y = xp.where(greater, window, y)
        tap[greater] = t
    return y, (tap, tuple(x.shape), k, s, p, x.dtype)


def max_pool2d_backward(dout, cache):
    """dx: each output's gradient goes to the input entry that was its maximum; an entry that is
    the maximum of several overlapping windows receives the sum of their gradients.

    Parameters
    ----------
    dout : (N, C, OH, OW).

    Returns
    -------
    dx : (N, C, H, W).
    """
    tap, (n, c, h, w), k, s, p, dtype = cache
    check_dout("dout", dout, tap.shape, dtype)
    xp = array_module(dout)
    oh, ow = tap.shape[2:]
    dxpad = xp.zeros((n, c, h + 2 * p, w + 2 * p), dtype=dtype)
    # Per tap, the strided slice touches each input entry at most once, so += is exact (no
    # np.add.at); overlapping windows meet across taps.
    for t in range(k * k):
        a, b = divmod(t, k)
        dxpad[:, :, a:a + s * oh:s, b:b + s * ow:s] += xp.where(tap == t, dout, 0)
    return dxpad[:, :, p:p + h, p:p + w]


# --------------------------------------------------------------------------
# Per-channel affine: frozen batch norm
# --------------------------------------------------------------------------


def frozen_batch_norm_coefficients(weight, bias, running_mean, running_var, eps=1e-5):
    """The per-channel ``(scale, shift)`` of a frozen batch norm, as torchvision's FrozenBatchNorm2d.

        scale = weight / sqrt(running_var + eps),   shift = bias - running_mean * scale

    so that ``batch_norm(x) = (x - mean) / sqrt(var + eps) * weight + bias = x * scale + shift``.
    A pretrained ResNet's batch norms are used this way: their statistics are fixed numbers.

    Parameters
    ----------
    weight, bias, running_mean, running_var : (C,) float arrays of one dtype; running_var + eps > 0.
    eps : float >= 0 (torchvision: 1e-5; 0.0 for its COCO RetinaNet weights, see model/resnet50.py).

    Returns
    -------
    scale, shift : (C,), the inputs' dtype.
    """
    check_array("weight", weight, ("C",), **_FLOAT)
    c = weight.shape[0]
    for name, a in (("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        check_array(name, a, (c,), dtype=weight.dtype, **_FLOAT)
    eps = check_real("eps", eps, 0)
    xp = array_module(weight)
    if not bool(xp.all(running_var + eps > 0)):
        raise ValueError(f"running_var + eps must be > 0 for every channel, got minimum "
                         f"{float(xp.min(running_var + eps))}")
    # eps cast to the arrays' dtype first: torchvision adds a float32 eps to float32 statistics.
    scale = weight * (1 / xp.sqrt(running_var + weight.dtype.type(eps)))
    return scale, bias - running_mean * scale


def channel_affine_forward(x, scale, shift):
    """y[n, c, i, j] = x[n, c, i, j] * scale[c] + shift[c]: a frozen batch norm (see
    ``frozen_batch_norm_coefficients``).

    Parameters
    ----------
    x : (N, C, H, W) float array; scale, shift : (C,), x's dtype.

    Returns
    -------
    y : (N, C, H, W), x's dtype.
    cache : for ``channel_affine_backward``.
    """
    check_array("x", x, ("N", "C", "H", "W"), **_FLOAT)
    c = x.shape[1]
    for name, a in (("scale", scale), ("shift", shift)):
        check_array(name, a, (c,), dtype=x.dtype, **_FLOAT)
    y = x * scale[:, None, None]
    y += shift[:, None, None]
    return y, (x, scale)


def channel_affine_backward(dout, cache):
    """Gradients of ``channel_affine_forward``:

        dx = dout * scale[c],   dscale[c] = sum_{n,i,j} dout * x,   dshift[c] = sum_{n,i,j} dout

    A frozen batch norm uses only dx (its statistics are not trained).

    Parameters
    ----------
    dout : (N, C, H, W).

    Returns
    -------
    dx : (N, C, H, W); dscale, dshift : (C,).
    """
    x, scale = cache
    check_dout("dout", dout, x.shape, x.dtype)
    xp = array_module(dout, x)
    return dout * scale[:, None, None], xp.einsum("nchw,nchw->c", dout, x), dout.sum(axis=(0, 2, 3))
