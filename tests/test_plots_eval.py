"""Every evaluation picture: a valid PNG of the documented pixel size, which changes when its input does."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from imgclf.evaluation.figures.charts import (
    DPI,
    cluster_order,
    per_class_height,
    plot_confusion_clustered,
    plot_embedding,
    plot_per_class,
    plot_reliability,
    plot_roc_pr,
)
from imgclf.evaluation.figures.grids import (
    grid_size,
    plot_gradcam,
    plot_label_issues,
    plot_sample_predictions,
    plot_top_losses,
)
from imgclf.evaluation.metrics import calibration, classification_metrics


def _case(n=90, k=3, seed=0, skill=2.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + skill * np.eye(k)[y]
    return y, np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def _check_png(path, size):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 3000
    img = Image.open(path)
    img.load()
    assert img.size == size
    # Not blank: a real figure has many distinct colours.
    assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 20
    return hashlib.sha1(data).hexdigest()


def _px(inches):
    return round(inches * DPI)


def test_number_plots_have_their_size_and_follow_their_input(tmp_path):
    classes = ["cat", "dog", "fox"]
    y, p = _case()
    y2, p2 = _case(seed=1, skill=0.5)
    m, m2 = classification_metrics(y, p, classes), classification_metrics(y2, p2, classes)
    digests = {}
    for tag, (yy, pp, mm) in {"a": (y, p, m), "b": (y2, p2, m2)}.items():
        digests[tag] = [
            _check_png(plot_per_class(mm, tmp_path / f"pc_{tag}.png"), (1000, _px(per_class_height(3)))),
            _check_png(plot_roc_pr(yy, pp, classes, tmp_path / f"roc_{tag}.png"), (1200, 500)),
            _check_png(plot_reliability(mm["calibration"], tmp_path / f"rel_{tag}.png"), (600, 650)),
        ]
    assert all(a != b for a, b in zip(digests["a"], digests["b"]))


def test_roc_pr_for_two_and_many_classes(tmp_path):
    y, p = _case(60, 2)
    _check_png(plot_roc_pr(y, p, ["ok", "defect"], tmp_path / "bin.png"), (1200, 500))
    y, p = _case(400, 25, skill=3)
    _check_png(plot_roc_pr(y, p, [f"c{i}" for i in range(25)], tmp_path / "many.png"), (1200, 500))


def test_clustered_confusion_matrix_groups_confused_classes(tmp_path):
    # 60 classes in pairs that are confused with each other; clustering must put partners side by side.
    k = 60
    rng = np.random.default_rng(0)
    cm = np.diag(rng.integers(20, 30, k))
    perm = rng.permutation(k)
    for a, b in zip(perm[::2], perm[1::2]):
        cm[a, b] = cm[b, a] = 10
    names = [f"class_{i:02d}" for i in range(k)]
    position = {c: i for i, c in enumerate(cluster_order(cm))}
    assert all(abs(position[a] - position[b]) == 1 for a, b in zip(perm[::2], perm[1::2]))
    path = plot_confusion_clustered(cm, names, tmp_path / "cm.png")
    first = _check_png(path, (1400, 1300))
    cm2 = cm.copy()
    cm2[0, 1] += 40
    assert _check_png(plot_confusion_clustered(cm2, names, tmp_path / "cm2.png"), (1400, 1300)) != first


def test_embedding_plot(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    pred = y.copy()
    pred[:3] = 1
    proj = {"index": np.arange(60), "pca": rng.normal(size=(60, 2)) + y[:, None] * 3, "tsne": rng.normal(size=(60, 2))}
    a = _check_png(plot_embedding(proj, y, pred, ["a", "b", "c"], tmp_path / "e.png"), (1100, 550))
    proj["pca"] = proj["pca"][::-1].copy()
    assert _check_png(plot_embedding(proj, y, pred, ["a", "b", "c"], tmp_path / "e2.png"), (1100, 550)) != a


def test_image_grids(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (8, 20, 20, 3), dtype=np.uint8)
    gray = rng.integers(0, 255, (8, 20, 20, 1), dtype=np.uint8)
    items = [{"path": f"/data/cat/img_{i}.png", "true": "cat", "predicted": "dog", "probability": 0.9, "loss": 2.3} for i in range(8)]
    size = tuple(_px(v) for v in grid_size(8))
    a = _check_png(plot_top_losses(imgs, items, tmp_path / "tl.png"), size)
    b = _check_png(plot_top_losses(imgs[::-1], items, tmp_path / "tl2.png"), size)
    assert a != b
    y, pred, conf = np.zeros(8, int), np.r_[np.zeros(4, int), np.ones(4, int)], np.full(8, 0.8)
    _check_png(plot_sample_predictions(gray, y, pred, conf, ["cat", "dog"], tmp_path / "s.png"), size)
    maps = np.zeros((8, 20, 20))
    maps[:, 5:10, 5:10] = 1
    c = _check_png(plot_gradcam(imgs, maps, y, pred, conf, ["cat", "dog"], tmp_path / "g.png"), size)
    d = _check_png(plot_gradcam(imgs, maps[:, ::-1], y, pred, conf, ["cat", "dog"], tmp_path / "g2.png"), size)
    assert c != d
    issues = [{"path": f"x/{i}.png", "given": "cat", "suggested": "dog", "confidence": 0.9} for i in range(3)]
    _check_png(plot_label_issues(imgs[:3], issues, tmp_path / "li.png"), tuple(_px(v) for v in grid_size(3)))


def test_confusion_matrix_up_to_50_classes_keeps_names_and_counts(tmp_path):
    from imgclf.evaluation.figures.curves import plot_confusion_matrix
    from imgclf.evaluation.metrics import confusion_matrix

    rng = np.random.default_rng(0)
    y = rng.integers(0, 50, 2000)
    pred = np.where(rng.random(2000) < 0.8, y, rng.integers(0, 50, 2000))
    names = [f"species_{i:02d}" for i in range(50)]
    path = plot_confusion_matrix(confusion_matrix(y, pred, 50), names, tmp_path / "cm.png")
    img = Image.open(path)
    assert img.format == "PNG" and img.size[0] > 2000 and img.size[1] > 1800  # big enough for 50 names
    pred[:100] = 0
    other = plot_confusion_matrix(confusion_matrix(y, pred, 50), names, tmp_path / "cm2.png")
    assert other.read_bytes() != path.read_bytes()
