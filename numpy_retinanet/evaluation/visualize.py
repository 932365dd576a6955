"""Pictures of what the detector does: boxes drawn on images, training curves; and
``save_figure``, the one way every matplotlib figure of the package is written to a PNG.

Host-only: everything here takes NumPy arrays (call ``to_host`` first). matplotlib is imported
inside the functions that draw, so that importing this module (the trainer does) does not.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

#: One colour per class (RGB), cycled when there are more classes.
# The lowest score drawn and listed on a picture (drawings, ``numpy-retinanet detect``); AP is
# computed from every detection above postprocess's 0.05.
DRAW_SCORE_THRESHOLD = 0.3
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230)]

#: Dots per inch of every saved figure: a PNG is its figure's size in inches times DPI pixels.
DPI = 100


def save_figure(fig, path):
    """Write the matplotlib ``fig`` to ``path`` as a PNG whose bytes are reproducible; return ``path``.

    The figures in figures/ are committed, so regenerating them must not change a byte: they are
    drawn with the object-oriented API on an Agg canvas (no pyplot, no GUI backend, no global
    figure state), saved at the fixed ``DPI`` and without metadata (no "Software" version
    string, no timestamp). The bytes still depend on the matplotlib and FreeType versions that
    render the text; the style is the caller's (``teaching.figures.register_figure`` draws in
    matplotlib's default style, so that a reader's matplotlibrc is ignored).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def draw_detections(image, detections, class_names, score_threshold=DRAW_SCORE_THRESHOLD, scale=1):
    """Boxes, class names and scores drawn on a copy of ``image``.

    Parameters
    ----------
    image : (H, W, 3) uint8 picture.
    detections : {"boxes" (n, 4), "scores" (n,), "labels" (n,)} in that picture's pixels.
    class_names : names indexed by label.
    score_threshold : detections below it are not drawn.
    scale : integer magnification, so small images stay legible.

    Returns
    -------
    PIL.Image (RGB) of size (W * scale, H * scale).
    """
    img = Image.fromarray(np.asarray(image, dtype=np.uint8), "RGB")
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    boxes = np.asarray(detections["boxes"], dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(detections.get("scores", np.ones(len(boxes))), dtype=np.float64)
    labels = np.asarray(detections["labels"]).astype(np.int64)
    # Lowest score first, so the most confident boxes are drawn on top.
    for i in np.argsort(scores, kind="stable"):
        if scores[i] < score_threshold:
            continue
        colour = PALETTE[int(labels[i]) % len(PALETTE)]
        x1, y1, x2, y2 = (boxes[i] * scale).tolist()
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=colour, width=max(1, scale))
        name = class_names[int(labels[i])] if int(labels[i]) < len(class_names) else str(int(labels[i]))
        text = f"{name} {scores[i]:.2f}"
        tx, ty = x1 + 1, max(0.0, y1 - 11)
        tb = draw.textbbox((tx, ty), text)
        draw.rectangle(tb, fill=colour)
        draw.text((tx, ty), text, fill=(255, 255, 255))
    return img


def grid(pictures, columns=4, pad=4, background=(255, 255, 255)):
    """PIL images of one size laid out in a grid."""
    if not pictures:
        raise ValueError("grid needs at least one picture")
    w, h = pictures[0].size
    rows = -(-len(pictures) // columns)
    cols = min(columns, len(pictures))
    out = Image.new("RGB", (cols * w + (cols + 1) * pad, rows * h + (rows + 1) * pad), background)
    for k, p in enumerate(pictures):
        r, c = divmod(k, columns)
        out.paste(p, (pad + c * (w + pad), pad + r * (h + pad)))
    return out


def plot_training_curve(history, path, title="training loss"):
    """Loss parts against the step, log scale, written to ``path`` by ``save_figure``; returns ``path``."""
    from matplotlib.figure import Figure

    steps = np.asarray(history["step"])
    # the dpi that save_figure writes, so that tight_layout measures the text as it is drawn
    fig = Figure(figsize=(7, 4), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    for key, label in (("total", "total"), ("classification", "focal loss"), ("box_regression", "smooth L1")):
        values = np.asarray(history[key], dtype=np.float64)
        if len(values) == 0:
            continue
        ax.plot(steps, values, lw=0.6, alpha=0.35)
        k = max(1, len(values) // 50)  # moving average over ~2% of the run
        smooth = np.convolve(values, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, lw=1.8, label=label, color=ax.lines[-1].get_color())
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (per positive anchor)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
