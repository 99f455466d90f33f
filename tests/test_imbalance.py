"""Class imbalance: class weights, balanced sampling through tf.data, the macro-F1 monitor."""

import numpy as np
import pytest

from imgclf.data.balance import class_weights, imbalance_ratio, resolve_balance
from imgclf.data.pipeline import DecodedSet, make_dataset


def test_class_weights_follow_inverse_class_size():
    labels = [0] * 30 + [1] * 10 + [2] * 20
    w = class_weights(labels, 3)
    assert w == {0: round(60 / 90, 4), 1: 2.0, 2: 1.0}
    assert np.mean([w[y] for y in labels]) == pytest.approx(1.0, abs=1e-3)  # the loss keeps its scale
    assert imbalance_ratio(labels, 3) == 3.0
    sqrt = class_weights(labels, 3, "sqrt")
    assert np.mean([sqrt[y] for y in labels]) == pytest.approx(1.0, abs=1e-3)
    assert sqrt[1] / sqrt[0] == pytest.approx(3 ** 0.5, rel=1e-3)  # milder than 3x
    assert class_weights(labels, 3, mode="none") is None


def test_auto_weighting_is_said_and_never_inverse_size_for_accuracy(capsys):
    """Issue 20: inverse-size weights by default cost 15 points of accuracy on a 14:1 set."""
    labels = [0] * 140 + [1] * 10
    summary = {}
    assert resolve_balance(labels, ["ok", "bad"], "auto", "natural", summary, monitor="val_loss") == class_weights(labels, 2, "sqrt")
    assert summary["class_weighting"]["weighting"] == "sqrt"  # the middle course, never inverse size by rule
    assert "loss weighting sqrt" in capsys.readouterr().err
    assert resolve_balance(labels, ["ok", "bad"], "auto", "natural", monitor="val_macro_f1") == class_weights(labels, 2, "sqrt")
    assert resolve_balance(labels, ["ok", "bad"], "auto", "natural", summary, compare=True) is None
    assert summary["class_weighting"]["weighting"] == "auto"  # left to the head solve
    assert resolve_balance(labels, ["ok", "bad"], "balanced", "natural") == class_weights(labels, 2)
    assert resolve_balance(labels, ["ok", "bad"], "balanced", "balanced") is None  # never both remedies at once
    assert resolve_balance([0] * 14 + [1] * 10, ["a", "b"], "auto", "natural", monitor="val_macro_f1") is None


def test_the_solve_compares_weightings_by_the_monitored_metric(capsys):
    """Overlapping classes 10:1: no weighting wins on accuracy, a weighting on balanced accuracy; both are printed."""
    from imgclf.training.head_solver import fit_softmax_regression
    from imgclf.training.imbalance import choose_weighting

    rng = np.random.default_rng(0)

    def sample(n_major, n_minor):
        x = np.concatenate([rng.normal(0, 1, (n_major, 2)), rng.normal(1.2, 1, (n_minor, 2))])
        return x, np.array([0] * n_major + [1] * n_minor)

    (x, y), (xv, yv) = sample(400, 40), sample(400, 40)
    candidates = {name: class_weights(y, 2, name) for name in ("none", "sqrt", "balanced")}

    def solve(cw):
        w = None if cw is None else np.array([cw[int(c)] for c in y])
        return fit_softmax_regression(x, y, xv, yv, 2, w, grid=(0.1, 1.0))

    by_accuracy = choose_weighting(candidates, solve, "val_accuracy", 2)["weighting"]
    by_balanced = choose_weighting(candidates, solve, "val_balanced_accuracy", 2)["weighting"]
    assert by_accuracy["chosen"] == "none" and by_balanced["chosen"] != "none"
    figures = by_balanced["candidates"]
    assert figures["balanced"]["balanced_accuracy"] > figures["none"]["balanced_accuracy"] + 0.1
    assert figures["none"]["accuracy"] > figures["balanced"]["accuracy"]
    err = capsys.readouterr().err
    assert "Imbalance treatment (--class-weight auto): none, best val_accuracy" in err
    assert "accuracy / balanced accuracy" in err


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


@pytest.mark.slow
def test_train_chooses_the_weighting_in_the_head_solve_and_says_the_split(tmp_path, capsys):
    """Issue 20 items 1 and 3: on an imbalanced folder the run compares the weightings in the head solve, prints the
    choice and the split sizes (with the --test-fraction 0 hint), and config.yaml records the choice for a resume."""
    import json

    import keras
    import yaml

    from conftest import make_image_folder

    import imgclf

    data = make_image_folder(tmp_path / "data", per_class=20, size=16)
    for p in sorted((tmp_path / "data" / "stripes").iterdir())[4:]:
        p.unlink()  # 20, 20, 4 images: a 5x imbalance
    keras.utils.set_random_seed(0)
    donor = imgclf.create_model("small_cnn", num_classes=3, img_size=16, channels=3)  # random convolutions as backbone
    donor.save(tmp_path / "donor.keras")
    run = imgclf.train(data, model="small_cnn", weights=str(tmp_path / "donor.keras"), finetune="none", img_size=16,
                       epochs=1, val_fraction=0.2, test_fraction=0.1, out=str(tmp_path / "run"), verbose=0)
    err = capsys.readouterr().err
    assert "Imbalance treatment (--class-weight auto): " in err
    assert "Split: " in err and "--test-fraction 0" in err
    summary = json.loads((run.path / "summary.json").read_text())
    choice = summary["class_weighting"]
    assert set(choice["candidates"]) == {"none", "sqrt", "balanced"} and choice["weighting"] in choice["candidates"]
    assert yaml.safe_load((run.path / "config.yaml").read_text())["class_weight"] == choice["weighting"]
