"""Evaluation figures drawn from numbers: per-class bars, ROC/PR curves, reliability, embeddings, big confusion matrices.

Each figure has a fixed pixel size (figure inches x `DPI`, stated in its
docstring) so that the report lays out predictably and tests can check it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from imgclf.core.fs import atomic_write_bytes
from imgclf.evaluation.figures.curves import printable_labels, pyplot
from imgclf.evaluation.metrics import average_precision, roc_auc, row_normalize

DPI = 100


def save_fixed(fig, path) -> Path:
    """Save a figure at exactly its size in inches x DPI (no tight cropping) and close it.

    Example:
        >>> fig = pyplot().figure(figsize=(2, 1))
        >>> save_fixed(fig, "x.png")
        PosixPath('x.png')
    """
    printable_labels(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _class_colors(n: int):
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "nipy_spectral")
    return [cmap(i if n <= 20 else i / max(n - 1, 1)) for i in range(n)]


def per_class_height(n_classes: int) -> float:
    """Height in inches of the per-class bar chart for n classes. Example: ``per_class_height(3)``."""
    return float(min(max(3.0, 0.32 * n_classes + 1.5), 40.0))


def plot_per_class(metrics: dict, path) -> Path:
    """Horizontal precision / recall / F1 bars per class, support in the labels; 10 in wide (1000 px).

    Example:
        >>> import json
        >>> plot_per_class(json.load(open("runs/leaves/metrics.json")), "per_class.png")
        PosixPath('per_class.png')
    """
    plt = pyplot()
    per = metrics["per_class"]
    names = list(per)
    n = len(names)
    fig, ax = plt.subplots(figsize=(10, per_class_height(n)), layout="constrained")
    y = np.arange(n)
    h = 0.27
    for k, (key, color) in enumerate((("precision", "tab:blue"), ("recall", "tab:orange"), ("f1", "tab:green"))):
        ax.barh(y + (k - 1) * h, [per[c][key] for c in names], height=h, color=color, label=key if key != "f1" else "F1")
    ax.set_yticks(y, [f"{c} ({per[c]['support']})" for c in names], fontsize=9 if n <= 40 else 7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.axvline(metrics["macro_avg"]["f1"], color="tab:green", ls="--", lw=1)
    ax.set_xlabel("score (dashed line: macro F1)")
    ax.set_title("Per-class precision, recall and F1 (support in brackets)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    return save_fixed(fig, path)


def plot_roc_pr(y_true, probs, classes: list[str], path) -> Path:
    """ROC and precision-recall curves, one-vs-rest per class; 12 x 5 in (1200 x 500 px).

    Up to 10 classes each has its own labelled curve; beyond that the classes
    are thin grey lines under the bold macro-average curve.

    Example:
        >>> plot_roc_pr(np.array([0, 1, 1]), np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]]), ["cat", "dog"], "roc_pr.png")
        PosixPath('roc_pr.png')
    """
    # lazy: scikit-learn loads only when these metrics are computed
    from sklearn.metrics import precision_recall_curve, roc_curve


    plt = pyplot()
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    n = len(classes)
    binary = n == 2
    colors = _class_colors(n)
    grid = np.linspace(0, 1, 201)
    tpr_all, prec_all = [], []
    for i, c in enumerate(classes):
        if binary and i == 0:
            continue  # one curve says it all for two classes: the second class against the first
        yb = y_true == i
        if not yb.any() or yb.all():
            continue
        fpr, tpr, _ = roc_curve(yb, probs[:, i])
        prec, rec, _ = precision_recall_curve(yb, probs[:, i])
        tpr_all.append(np.interp(grid, fpr, tpr))
        prec_all.append(np.interp(grid, rec[::-1], prec[::-1]))
        if n <= 10:
            ax_roc.plot(fpr, tpr, color=colors[i], lw=1.6, label=f"{c} (AUC {roc_auc(yb, probs[:, i]):.3f})")
            ax_pr.step(rec, prec, where="post", color=colors[i], lw=1.6, label=f"{c} (AP {average_precision(yb, probs[:, i]):.3f})")
        else:
            ax_roc.plot(fpr, tpr, color="0.75", lw=0.6)
            ax_pr.step(rec, prec, where="post", color="0.75", lw=0.6)
    if n > 10 and tpr_all:
        ax_roc.plot(grid, np.mean(tpr_all, axis=0), color="tab:blue", lw=2.5, label="macro average")
        ax_pr.plot(grid, np.mean(prec_all, axis=0), color="tab:blue", lw=2.5, label="macro average")
    ax_roc.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02),
               title="ROC curves (one class vs the rest)" if not binary else f"ROC curve ({classes[1]} vs {classes[0]})")
    ax_pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
              title="Precision-recall curves" if not binary else f"Precision-recall ({classes[1]} as positive)")
    for ax in (ax_roc, ax_pr):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right" if ax is ax_roc else "lower left", framealpha=0.9)
    return save_fixed(fig, path)


def plot_reliability(cal: dict, path) -> Path:
    """Reliability diagram: accuracy against confidence per bin, with the bin counts below; 6 x 6.5 in.

    Example:
        >>> import json
        >>> plot_reliability(json.load(open("runs/leaves/metrics.json"))["calibration"], "reliability.png")
        PosixPath('reliability.png')
    """
    plt = pyplot()
    edges = np.asarray(cal["bin_edges"])
    acc, conf, count = (np.asarray(cal[k], dtype=float) for k in ("bin_accuracy", "bin_confidence", "bin_count"))
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(6, 6.5), height_ratios=(3, 1), sharex=True, layout="constrained")
    has = count > 0
    ax.bar(centres[has], acc[has], width=width[has], color="tab:blue", edgecolor="white", label="accuracy in the bin")
    # The bin's mean confidence as a marker: above the bar is over-confident, below is under-confident.
    ax.plot(centres[has], conf[has], "_", color="tab:red", ms=14, mew=2.5, label="mean confidence in the bin")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=f"Reliability diagram (ECE {cal['ece']:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    ax_n.bar(centres, count, width=width, color="0.5", edgecolor="white")
    ax_n.set(xlabel="confidence (top-1 probability)", ylabel="images")
    return save_fixed(fig, path)


def plot_embedding(projections: dict, y_true, y_pred, classes: list[str], path) -> Path:
    """Penultimate-layer embeddings in 2-D, one panel per method (PCA, t-SNE, UMAP), coloured by
    true class, misclassified images ringed in black; 5.5 in per panel wide, 5.5 in tall.

    Example:
        >>> pca = np.random.default_rng(0).normal(size=(6, 2))  # a real run: project(features)
        >>> plot_embedding({"pca": pca}, [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], ["a", "b", "c"], "embedding.png")
        PosixPath('embedding.png')
    """
    plt = pyplot()
    methods = [m for m in ("pca", "tsne", "umap") if m in projections]
    titles = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
    index = np.asarray(projections.get("index", np.arange(len(y_true))))
    y_true, y_pred = np.asarray(y_true)[index], np.asarray(y_pred)[index]
    colors = _class_colors(len(classes))
    panels = max(len(methods), 1)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 5.5), squeeze=False, layout="constrained")
    wrong = y_true != y_pred
    for ax, m in zip(axes[0], methods):
        xy = np.asarray(projections[m])
        for i, c in enumerate(classes):
            sel = y_true == i
            if sel.any():
                ax.scatter(xy[sel, 0], xy[sel, 1], s=14, color=colors[i], label=c, alpha=0.8, linewidths=0)
        if wrong.any():
            ax.scatter(xy[wrong, 0], xy[wrong, 1], s=40, facecolors="none", edgecolors="black", linewidths=1.0,
                       label="misclassified")
        ax.set_title(f"{titles[m]} of penultimate features")
        ax.set_xticks([])
        ax.set_yticks([])
    if not methods:
        axes[0][0].text(0.5, 0.5, "too few images to project", ha="center", va="center")
        axes[0][0].set_axis_off()
    elif len(classes) <= 20:
        axes[0][-1].legend(fontsize=7, loc="best", markerscale=1.2, framealpha=0.9)
    return save_fixed(fig, path)


def cluster_order(cm) -> np.ndarray:
    """Class order that puts classes confused with each other side by side (average-linkage clustering).

    The similarity of two classes is how often each is taken for the other
    (row-normalised, both directions); the distance is one minus it.

    Example:
        >>> cluster_order([[5, 0, 3], [0, 5, 0], [3, 0, 5]]).tolist()
        [1, 0, 2]
    """
    # lazy: SciPy loads only when needed
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform


    norm = row_normalize(cm)
    n = len(norm)
    if n < 3:
        return np.arange(n)
    sym = (norm + norm.T) / 2
    np.fill_diagonal(sym, 0)
    dist = 1.0 - sym / max(sym.max(), 1e-12)
    np.fill_diagonal(dist, 0)
    return leaves_list(linkage(squareform(dist, checks=False), method="average"))


def plot_confusion_clustered(cm, classes: list[str], path) -> Path:
    """Confusion matrix for many classes: row-normalised, classes reordered by `cluster_order`
    so that classes confused with each other sit together; 14 x 13 in.

    Example:
        >>> plot_confusion_clustered(np.eye(60, dtype=int) * 5, [f"c{i}" for i in range(60)], "confusion_matrix.png")
        PosixPath('confusion_matrix.png')
    """
    # lazy: Matplotlib loads only when a figure is drawn
    from matplotlib.colors import PowerNorm


    plt = pyplot()
    cm = np.asarray(cm)
    norm = row_normalize(cm)
    n = len(classes)
    order = cluster_order(cm)
    shown = norm[np.ix_(order, order)]
    fig, ax = plt.subplots(figsize=(14, 13), layout="constrained")
    # A power scale keeps small confusions visible next to the large diagonal.
    im = ax.imshow(shown, cmap="magma_r", norm=PowerNorm(0.4, vmin=0, vmax=1))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="share of true class")
    names = [classes[i] for i in order]
    size = max(3, min(7, 700 / max(n, 1)))
    ax.set_xticks(range(n), names, rotation=90, fontsize=size)
    ax.set_yticks(range(n), names, fontsize=size)
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"Confusion matrix, {n} classes clustered by confusion ({int(cm.sum())} images)")
    return save_fixed(fig, path)
