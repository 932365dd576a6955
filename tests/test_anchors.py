"""Tests for detection/anchors.py: anchors on P3-P7 (paper §4, "Anchors")."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpy_retinanet.detection.anchors import AnchorGenerator

# A small, lopsided configuration (3 ratios x 2 scales, 2 levels) so that a ratio-major
# order cannot be confused with a scale-major one, nor one level with another.
SMALL = dict(sizes=(16, 40), strides=(8, 32), aspect_ratios=(0.5, 1.0, 3.0), scales=(1.0, 1.5))


def conv_stride2_output(n):
    """Output length of a 3x3 convolution with stride 2 and padding 1 on n inputs."""
    return (n + 2 * 1 - 3) // 2 + 1


def reference_anchors(gen, level_shapes):
    """Anchors written out one by one in the order level, row, column, ratio, scale."""
    rows = []
    for size, stride, (h, w) in zip(gen.sizes, gen.strides, level_shapes):
        for i in range(h):
            for j in range(w):
                for r in gen.aspect_ratios:
                    for c in gen.scales:
                        aw, ah = size * c / math.sqrt(r), size * c * math.sqrt(r)
                        cx, cy = (j + 0.5) * stride, (i + 0.5) * stride
                        rows.append((cx - aw / 2, cy - ah / 2, cx + aw / 2, cy + ah / 2))
    return np.asarray(rows)


def test_paper_defaults():
    gen = AnchorGenerator()
    assert gen.num_anchors_per_location == 9
    assert gen.sizes == (32, 64, 128, 256, 512) and gen.strides == (8, 16, 32, 64, 128)
    cell = gen.cell_anchors(0)
    areas = (cell[:, 2] - cell[:, 0]) * (cell[:, 3] - cell[:, 1])
    # ratio-major: the first three anchors are ratio 0.5 at scales 1, 2^(1/3), 2^(2/3)
    np.testing.assert_allclose(areas, np.tile([32.0**2, 32.0**2 * 2 ** (2 / 3), 32.0**2 * 2 ** (4 / 3)], 3))


@given(st.integers(1, 300), st.integers(1, 300))
def test_level_shapes_are_ceil_and_match_stacked_stride2_convs(height, width):
    gen = AnchorGenerator()
    shapes = gen.level_shapes(height, width)
    assert shapes == [(math.ceil(height / s), math.ceil(width / s)) for s in (8, 16, 32, 64, 128)]
    for level, stride in enumerate(gen.strides):
        h, w = height, width
        for _ in range(round(math.log2(stride))):  # stride 8 = three stride-2 convolutions
            h, w = conv_stride2_output(h), conv_stride2_output(w)
        assert shapes[level] == (h, w)


@given(st.integers(1, 300), st.integers(1, 300))
def test_anchor_count(height, width):
    gen = AnchorGenerator()
    anchors = gen(height, width)
    expected = 9 * sum(math.ceil(height / s) * math.ceil(width / s) for s in (8, 16, 32, 64, 128))
    assert anchors.shape == (expected, 4)
    assert sum(gen.level_sizes(height, width)) == expected


@given(st.integers(1, 100), st.integers(1, 100))
def test_anchors_equal_the_written_out_reference(height, width):
    gen = AnchorGenerator(**SMALL)
    got = gen.anchors(height, width, dtype=np.float64)
    np.testing.assert_allclose(got, reference_anchors(gen, gen.level_shapes(height, width)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs", [SMALL, {}])
def test_area_ratio_and_center_of_every_anchor_from_its_index(kwargs):
    gen = AnchorGenerator(**kwargs)
    height, width = 90, 130
    anchors = gen(height, width).astype(np.float64)  # float32, as used in training
    assert gen(height, width).dtype == np.float32
    a_count = gen.num_anchors_per_location
    n_scales = len(gen.scales)
    row = 0
    for size, stride, (h, w) in zip(gen.sizes, gen.strides, gen.level_shapes(height, width)):
        block = anchors[row : row + h * w * a_count]
        row += h * w * a_count
        # index within the level = (i * W + j) * A + a, a = ratio_index * n_scales + scale_index
        i, j, a = np.unravel_index(np.arange(len(block)), (h, w, a_count))
        ratio = np.asarray(gen.aspect_ratios)[a // n_scales]
        scale = np.asarray(gen.scales)[a % n_scales]
        bw, bh = block[:, 2] - block[:, 0], block[:, 3] - block[:, 1]
        np.testing.assert_allclose(bw * bh, (size * scale) ** 2, rtol=1e-5)
        np.testing.assert_allclose(bh / bw, ratio, rtol=1e-5)
        np.testing.assert_allclose((block[:, 0] + block[:, 2]) / 2, (j + 0.5) * stride, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose((block[:, 1] + block[:, 3]) / 2, (i + 0.5) * stride, rtol=1e-5, atol=1e-4)
    assert row == len(anchors)


def test_grid_anchors_dtype_and_module():
    gen = AnchorGenerator(**SMALL)
    shapes = [(2, 3), (1, 1)]
    a64 = gen.grid_anchors(shapes, xp=np, dtype=np.float64)
    assert a64.dtype == np.float64 and a64.shape == ((2 * 3 + 1) * 6, 4)
    np.testing.assert_array_equal(gen.grid_anchors(shapes), a64.astype(np.float32))
    np.testing.assert_array_equal(gen.anchors(20, 20), gen(20, 20))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: AnchorGenerator(sizes=(32, 64), strides=(8,)), r"^sizes and strides"),
        (lambda: AnchorGenerator(sizes=(32, -1, 128, 256, 512)), r"^sizes\[1\] must be a finite real number > 0, got -1\.0$"),
        (lambda: AnchorGenerator(strides=(8, 16, 0, 64, 128)), r"^strides\[2\] must be an int >= 1, got 0$"),
        (lambda: AnchorGenerator(strides=(8, 16, 32.5, 64, 128)), r"^strides\[2\] must be an int >= 1, got 32\.5$"),
        (lambda: AnchorGenerator(aspect_ratios=()), r"^aspect_ratios must be a non-empty"),
        (lambda: AnchorGenerator(scales=(1.0, float("nan"))), r"^scales\[1\] must be a finite real number > 0, got nan$"),
        (lambda: AnchorGenerator().level_shapes(0, 10), r"^height must be an int >= 1, got 0$"),
        (lambda: AnchorGenerator().anchors(10, 2.5), r"^width must be an int >= 1, got 2\.5$"),
        (lambda: AnchorGenerator().grid_anchors([(1, 1)]), r"^level_shapes must be 5 pairs \(H, W\), one per level, got 1$"),
        (lambda: AnchorGenerator(**SMALL).grid_anchors([(1, 1), (0, 2)]), r"^level_shapes\[1\]\[0\] must be an int >= 1, got 0$"),
        (lambda: AnchorGenerator(**SMALL).grid_anchors([(1, 1), (1, 1)], dtype=np.int32), r"^dtype must be"),
        (lambda: AnchorGenerator().cell_anchors(5), r"^level must be an int in \[0, 4\], got 5$"),
    ],
)
def test_bad_arguments_raise_naming_them(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.gpu
def test_anchors_on_gpu_match_numpy(cupy):
    gen = AnchorGenerator()
    got = gen.anchors(70, 90, xp=cupy)
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(got), gen.anchors(70, 90))
