"""Box pairs whose IoU is exactly p / q, for property tests that must land on a threshold (issue 20).

Random boxes almost never have an IoU of exactly 0.5 or 0.4, the values where a `<` written as `<=` changes
the answer. Here the two boxes of a pair share their extent on one axis; on the other they either nest
(IoU = short side / long side = p / q) or are shifted copies of one length L, s apart (IoU = (L - s) / (L + s)
= p / q for L = (q + p) m, s = (q - p) m). s = L gives two boxes that touch: IoU 0.

Every coordinate is a small integer times a power of two, so every area, the intersection and the union
are exact in float32 and float64: the only rounding in intersection / union is the division, which IEEE
rounds correctly, so the IoU computed is the float nearest p / q, which is what the literal 0.4 is.
``exact_iou`` checks this with fractions, independently of any float arithmetic.
"""

from fractions import Fraction

from hypothesis import strategies as st


def exact_iou(a, b):
    """IoU of two (x1, y1, x2, y2) boxes as an exact fraction (0 for no common area)."""
    a, b = [Fraction(v) for v in a], [Fraction(v) for v in b]
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter) if inter else Fraction(0)


def float_iou(a, b):
    """IoU of two boxes in plain float arithmetic, as every implementation computes it (0 for no common area)."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter) if inter else 0.0


@st.composite
def pair_at_iou(draw, p, q, x0=0.0):
    """Two boxes (tuples of floats) with IoU exactly p / q (0 <= p < q), the pair's left edge at ``x0``.

    p = 0 gives two boxes that touch along an edge. Which of the two comes first is drawn.
    """
    unit = 2.0 ** draw(st.integers(-2, 2))
    m = draw(st.integers(1, 3))
    if p > 0 and draw(st.booleans()):  # nested: a side of p m inside one of q m, at any offset
        offset = draw(st.integers(0, (q - p) * m)) * unit
        spans = [(0.0, q * m * unit), (offset, offset + p * m * unit)]
    else:  # shifted copies of length L = (q + p) m, (q - p) m apart
        length, shift = (q + p) * m * unit, (q - p) * m * unit
        spans = [(0.0, length), (shift, shift + length)]
    other = (0.0, draw(st.integers(1, 6)) * unit)  # the shared extent on the other axis
    y0 = draw(st.integers(0, 8)) * unit
    if draw(st.booleans()):  # nest or shift along x
        boxes = [(x0 + lo, y0 + other[0], x0 + hi, y0 + other[1]) for lo, hi in spans]
    else:  # along y
        boxes = [(x0 + other[0], y0 + lo, x0 + other[1], y0 + hi) for lo, hi in spans]
    return boxes if draw(st.booleans()) else boxes[::-1]
