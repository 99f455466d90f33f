"""Class imbalance: class weights, balanced sampling through tf.data, the macro-F1 monitor."""

import numpy as np
import pytest

from imgclf.data.balance import class_weights, imbalance_ratio
from imgclf.data.pipeline import DecodedSet, make_dataset


def test_class_weights_follow_inverse_class_size():
    labels = [0] * 30 + [1] * 10 + [2] * 20
    w = class_weights(labels, 3)
    assert w == {0: round(60 / 90, 4), 1: 2.0, 2: 1.0}
    assert np.mean([w[y] for y in labels]) == pytest.approx(1.0, abs=1e-3)  # the loss keeps its scale
    assert imbalance_ratio(labels, 3) == 3.0
    assert class_weights([0] * 14 + [1] * 10, 2) is None  # ratio 1.4: auto leaves it alone
    assert class_weights([0] * 14 + [1] * 10, 2, mode="balanced") == {0: round(24 / 28, 4), 1: 1.2}
    assert class_weights(labels, 3, mode="none") is None
    assert class_weights(labels, 3, sampling="balanced") is None  # never both remedies at once


def _labelled_by_index(n_major=90, n_minor=10):
    n = n_major + n_minor
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1)  # each image's pixel is its index
    labels = np.array([0] * n_major + [1] * n_minor, dtype=np.int32)
    return DecodedSet(images, labels, [f"{i}.png" for i in range(n)])


def _epoch(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy().reshape(-1).astype(int))
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def test_balanced_sampling_draws_each_class_equally_often():
    data = _labelled_by_index()
    ds = make_dataset(data, batch_size=10, shuffle=True, seed=1, balanced=True)
    epochs = [_epoch(ds) for _ in range(4)]
    for idx, y in epochs:
        assert len(y) == 100  # an epoch keeps its size
        assert (data.labels[idx] == y).all()  # images and labels stay paired
        assert 35 <= (y == 1).sum() <= 65
        minority = np.bincount(idx[y == 1], minlength=100)[90:]
        assert minority.min() >= 2  # every small-class image is used, not a few of them over and over
    total = sum((y == 1).sum() for _, y in epochs)
    assert 170 <= total <= 230  # 400 draws, half from the small class
    assert not np.array_equal(epochs[0][0], epochs[1][0])  # a fresh draw each epoch

    natural = _epoch(make_dataset(data, batch_size=10, shuffle=True, seed=1))
    assert sorted(natural[0].tolist()) == list(range(100))  # natural: every image once


@pytest.mark.slow
def test_balanced_training_with_macro_f1_checkpoint(tmp_path):
    import json

    from conftest import make_image_folder

    import imgclf

    data = make_image_folder(tmp_path / "data", per_class=12)
    for p in sorted((tmp_path / "data" / "stripes").iterdir())[3:]:
        p.unlink()  # 12, 12, 3 images: a 4x imbalance
    run = imgclf.train(data, out=str(tmp_path / "run"), epochs=2, batch_size=8, verbose=0, sampling="balanced",
                       monitor="val_balanced_accuracy", val_fraction=0.25, test_fraction=0.0)
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["sampling"] == "balanced" and summary["class_weight"] is None
    assert summary["imbalance_ratio"] == pytest.approx(12 * 0.75 / 2, rel=0.2)
    history = (run.path / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in history[1:]]
    best = max(float(r["val_balanced_accuracy"]) for r in rows)
    assert summary["best_val_balanced_accuracy"] == pytest.approx(best, abs=1e-5)
    assert all(0 <= float(r["val_macro_f1"]) <= 1 for r in rows)
