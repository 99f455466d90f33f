"""Every Matplotlib figure imgclf draws, written as PNG files (Agg backend, no display needed)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from imgclf.core.fs import atomic_write_bytes


def pyplot():
    """Matplotlib's pyplot on the file-only Agg backend (no window, works on servers and in CI).

    Example:
        >>> pyplot().figure().savefig("empty.png")
    """
    # lazy: Matplotlib loads only when a figure is drawn
    import matplotlib

    matplotlib.use("Agg")  # before pyplot is imported: no GUI backend is ever loaded
    import matplotlib.pyplot as plt  # lazy: as above

    return plt


def printable_labels(fig) -> None:
    r"""Rewrite the figure's texts that hold a non-UTF-8 file or class name (surrogates) with ``\xe9`` escapes.

    Matplotlib's font renderer refuses surrogates; every figure passes here before it is saved.

    Example:
        >>> import os
        >>> fig = pyplot().figure()
        >>> title = fig.suptitle(os.fsdecode(b"caf\xe9.png"))
        >>> printable_labels(fig); print(title.get_text())
        caf\xe9.png
    """
    # lazy: Matplotlib loads only when a figure is drawn
    from matplotlib.text import Text

    def printable(s: str) -> str:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

    for text in fig.findobj(Text):
        if any("\udc80" <= ch <= "\udcff" for ch in text.get_text()):
            text.set_text(printable(text.get_text()))
    for ax in fig.axes:  # tick labels (class names) are made again from their formatter at each draw
        for axis in (ax.xaxis, ax.yaxis):
            for formatter in (axis.get_major_formatter(), axis.get_minor_formatter()):
                made = formatter.format_ticks
                formatter.format_ticks = lambda values, made=made: [printable(str(s)) for s in made(values)]


def _save(fig, path) -> Path:
    printable_labels(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_confusion_matrix(cm, classes: list[str], path) -> Path:
    """Confusion matrix with counts and row percentages. Example: ``plot_confusion_matrix(cm, names, "cm.png")``."""
    plt = pyplot()
    cm = np.asarray(cm)
    n = len(classes)
    rows = cm.sum(axis=1, keepdims=True)
    pct = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    side = min(max(4.0, 0.55 * n + 2), 24)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(pct, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(n), classes, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center", fontsize=max(6, 11 - n // 8))
    ax.set_yticks(range(n), classes, fontsize=max(6, 11 - n // 8))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix ({int(cm.sum())} images)")
    if n <= 50:
        # Up to 20 classes a cell holds its count and row share; up to 50, its count alone (the colour is the share).
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    color = "white" if pct[i, j] > 0.5 else "black"
                    text = f"{cm[i, j]}\n{100 * pct[i, j]:.0f}%" if n <= 20 else f"{cm[i, j]}"
                    ax.text(j, i, text, ha="center", va="center", color=color, fontsize=max(6, 10 - n // 4) if n <= 20 else 6)
    return _save(fig, path)


def read_history(path) -> list[dict]:
    """Rows of history.csv with numbers parsed. Example: ``read_history("runs/x/history.csv")[0]["loss"]``."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k != "phase":
                try:
                    r[k] = float(v)
                except (TypeError, ValueError):
                    r[k] = float("nan")
    return rows


def plot_training_curves(history_path, path, kept_epoch: int | None = None) -> Path:
    """Loss, accuracy and learning rate per epoch, train vs validation; phases (dashed) and the kept epoch (dotted) marked.

    Example:
        >>> plot_training_curves("runs/leaves/history.csv", "curves.png")
        PosixPath('curves.png')
    """
    plt = pyplot()
    rows = read_history(history_path)
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, title in ((axes[0], "loss", "Loss"), (axes[1], "accuracy", "Accuracy")):
        ax.plot(epochs, [r.get(key, np.nan) for r in rows], "o-", label="train", ms=3)
        ax.plot(epochs, [r.get(f"val_{key}", np.nan) for r in rows], "o-", label="validation", ms=3)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[2].plot(epochs, [r.get("lr", np.nan) for r in rows], "o-", color="tab:green", ms=3)
    axes[2].set_title("Learning rate (end of epoch)")
    axes[2].set_xlabel("epoch")
    # lazy: Matplotlib loads only when a figure is drawn
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    axes[2].grid(alpha=0.3)
    for i in range(1, len(rows)):
        if rows[i]["phase"] != rows[i - 1]["phase"]:
            for ax in axes:
                ax.axvline(epochs[i] - 0.5, color="grey", ls="--", lw=1)
                ax.text(epochs[i] - 0.45, ax.get_ylim()[1], rows[i]["phase"], va="top", fontsize=8, color="grey")
    if kept_epoch:  # the epoch model.keras holds: the best by the monitored metric
        for ax in axes:
            ax.axvline(kept_epoch, color="tab:red", ls=":", lw=1.5)
        axes[0].text(kept_epoch, axes[0].get_ylim()[1], f" kept: epoch {kept_epoch}", va="top", fontsize=8, color="tab:red")
    return _save(fig, path)


def plot_augmentation_grid(images, labels: list[str], preset: str, path) -> Path:
    """Rows of (original, augmented, augmented, ...) images. Example: see `imgclf augment-preview`."""
    plt = pyplot()
    images = np.clip(np.asarray(images), 0, 255).astype(np.uint8)  # (rows, cols, H, W, C)
    rows, cols = images.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows), squeeze=False)
    for i in range(rows):
        for j in range(cols):
            ax = axes[i][j]
            img = images[i, j]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(labels[i], fontsize=8)
            if i == 0:
                ax.set_title("original" if j == 0 else f"{preset} #{j}", fontsize=8)
    return _save(fig, path)


def plot_lr_find(lrs, losses, smooth, suggested: float, path) -> Path:
    """Loss against learning rate (log scale) with the suggestion marked. Example: see `imgclf lr-find`."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(lrs, losses, color="lightgray", lw=1, label="loss per step")
    ax.plot(lrs, smooth, color="tab:blue", lw=2, label="smoothed")
    ax.axvline(suggested, color="tab:red", ls="--", label=f"suggested {suggested:.1e}")
    ax.set_xscale("log")
    finite = np.asarray(smooth)[np.isfinite(smooth)]
    if finite.size:
        ax.set_ylim(finite.min() - 0.1 * abs(finite.min()), min(finite.max(), 3 * finite[0]) * 1.05)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("Learning-rate range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, path)
