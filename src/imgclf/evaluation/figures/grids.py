"""Figures made of images: top losses, sample predictions, Grad-CAM overlays, label issues.

All are one grid drawn by `image_grid`: tiles of CELL inches, up to COLS per
row, each with a short caption coloured green (right) or red (wrong).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imgclf.evaluation.figures.charts import save_fixed
from imgclf.evaluation.figures.curves import pyplot

CELL = 2.2  # inches per tile (220 px at the plots' DPI)
COLS = 6
RIGHT, WRONG = "#1a7f37", "#c62828"


def grid_size(n: int, cols: int = COLS) -> tuple[float, float]:
    """Figure size in inches of a grid of n tiles. Example: ``grid_size(8)`` is (13.2, 5.0)."""
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    return CELL * cols, CELL * rows + 0.6


def _show(ax, img):
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(img.astype(np.uint8))


def _short(path: str, width: int = 28) -> str:
    name = os.path.basename(str(path))
    return name if len(name) <= width else "..." + name[-(width - 3):]


def image_grid(images, captions: list[str], colors: list[str], title: str, path, heatmaps=None, cols: int = COLS) -> Path:
    """A grid of images with captions; with `heatmaps` (N, H, W in [0, 1]) each is overlaid in 'jet'.

    Example:
        >>> images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype("uint8")
        >>> image_grid(images, ["cat"] * len(images), ["black"] * len(images), "Some cats", "cats.png")
        PosixPath('cats.png')
    """
    plt = pyplot()
    n = len(images)
    w, h = grid_size(max(n, 1), cols)
    cols = max(1, min(cols, max(n, 1)))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(w, h), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.6 / h, wspace=0.05, hspace=0.35)
    for k, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if k >= n:
            continue
        _show(ax, images[k])
        if heatmaps is not None:
            ax.imshow(np.asarray(heatmaps[k], dtype=np.float32), cmap="jet", alpha=0.45, vmin=0, vmax=1,
                      extent=(-0.5, images[k].shape[1] - 0.5, images[k].shape[0] - 0.5, -0.5))
        ax.set_title(captions[k], fontsize=7.5, color=colors[k], pad=2)
    if n == 0:
        axes[0][0].text(0.5, 0.5, "nothing to show", ha="center", va="center")
    fig.suptitle(title, fontsize=11, y=1 - 0.12 / h, va="top")
    return save_fixed(fig, path)


def plot_top_losses(images, items: list[dict], path) -> Path:
    """The most confidently wrong images: file name, true and predicted class, probability.

    Example:
        >>> ev = imgclf.Evaluation([0, 1], [[0.9, 0.1], [0.8, 0.2]], ["cat", "dog"], ["a.png", "b.png"])
        >>> images = np.zeros((1, 16, 16, 3), "uint8")  # the items' images: plot_run decodes them for a real run
        >>> plot_top_losses(images, ev.top_losses(1), "top_losses.png")
        PosixPath('top_losses.png')
    """
    caps = [f"{_short(t['path'])}\ntrue {t['true']} / pred {t['predicted']}\np={t['probability']:.2f} loss {t['loss']:.2f}"
            for t in items]
    colors = [RIGHT if t["true"] == t["predicted"] else WRONG for t in items]
    return image_grid(images, caps, colors, "Top losses: the images the model is most confidently wrong about", path)


def plot_sample_predictions(images, y_true, y_pred, confidence, classes: list[str], path) -> Path:
    """A random sample of evaluation images with their true and predicted class.

    Example:
        >>> images = np.zeros((2, 16, 16, 3), "uint8")
        >>> plot_sample_predictions(images, [0, 1], [0, 0], [0.9, 0.6], ["cat", "dog"], "samples.png")
        PosixPath('samples.png')
    """
    caps = [f"true {classes[t]}\npred {classes[p]} ({c:.2f})" for t, p, c in zip(y_true, y_pred, confidence)]
    colors = [RIGHT if t == p else WRONG for t, p in zip(y_true, y_pred)]
    return image_grid(images, caps, colors, "Sample predictions (green right, red wrong)", path)


def plot_gradcam(images, heatmaps, y_true, y_pred, confidence, classes: list[str], path) -> Path:
    """Grad-CAM overlays for the predicted class: where the model looked, for right and wrong predictions.

    Example:
        >>> images, heatmaps = np.zeros((2, 16, 16, 3), "uint8"), np.linspace(0, 1, 512).reshape(2, 16, 16)
        >>> plot_gradcam(images, heatmaps, [0, 1], [0, 0], [0.9, 0.6], ["cat", "dog"], "gradcam.png")  # heatmaps: gradcam()
        PosixPath('gradcam.png')
    """
    caps = [f"{'right' if t == p else 'WRONG'}: pred {classes[p]} ({c:.2f})\ntrue {classes[t]}"
            for t, p, c in zip(y_true, y_pred, confidence)]
    colors = [RIGHT if t == p else WRONG for t, p in zip(y_true, y_pred)]
    return image_grid(images, caps, colors, "Grad-CAM: where the model looked for its predicted class", path, heatmaps=heatmaps)


def plot_label_issues(images, issues: list[dict], path) -> Path:
    """Images whose given label the model most confidently disputes, with the suggested label.

    Example:
        >>> issues = [{"path": "data/cat/03.png", "given": "cat", "suggested": "dog", "confidence": 0.93}]
        >>> plot_label_issues(np.zeros((1, 16, 16, 3), "uint8"), issues, "label_issues.png")
        PosixPath('label_issues.png')
    """
    caps = [f"{_short(i['path'])}\ngiven {i['given']} -> {i['suggested']}\nconf {i['confidence']:.2f}" for i in issues]
    return image_grid(images, caps, [WRONG] * len(issues), "Possible label errors (given label -> suggested label)", path)
