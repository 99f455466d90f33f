"""Issue 14: the head solved on cached features, `--model auto`, and fine-tuning that never ends below the head."""

from __future__ import annotations

import json

import numpy as np
import pytest

import imgclf
from imgclf.core.manifest import read_manifest
from imgclf.training.auto_model import FEW_SHOT, choose_model
from imgclf.training.callbacks import read_state
from imgclf.training.head_solver import extra_views, fit_softmax_regression
from tests.conftest import make_image_folder

PHOTO = {"grayscale": False, "median_side": 300}


def _donor(tmp_path):
    """A small_cnn saved untrained: its random convolutions (seeded) are the 'pretrained' backbone."""
    import keras

    keras.utils.set_random_seed(0)
    donor = imgclf.create_model("small_cnn", num_classes=3, img_size=16, channels=3)
    donor.save(tmp_path / "donor.keras")
    return str(tmp_path / "donor.keras")


def _split_images(run, split):
    """(images, labels) of a run's split, decoded as the run decodes them."""
    from imgclf.data.pipeline import decode_all

    rows = [r for r in read_manifest(run.path / "manifest.csv") if r["split"] == split]
    classes = run.classes
    pre = json.loads((run.path / "preprocess.json").read_text())
    decoded = decode_all([r["path"] for r in rows], [classes.index(r["label"]) for r in rows], pre["img_size"],
                         pre["color_mode"], resize=pre["resize"], verbose=False)
    return decoded.images, np.asarray(decoded.labels)


def test_softmax_regression_folds_standardisation_into_the_layer():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(3 * i, 1.0, (30, 6)) * [1, 10, 100, 1, 1, 1] for i in range(3)])
    y = np.repeat([0, 1, 2], 30)
    fit = fit_softmax_regression(x, y, x[::3], y[::3], n_classes=3)
    logits = x @ fit["kernel"] + fit["bias"]
    assert (logits.argmax(1) == y).mean() == pytest.approx(fit["train_accuracy"])
    assert fit["train_accuracy"] > 0.9 and fit["selected_by"].endswith("cross-validation")
    # Two classes: one logistic regression becomes a 2-way softmax with the same probabilities.
    fit2 = fit_softmax_regression(x[:60], y[:60], x[:60:2], y[:60:2], n_classes=2)
    assert fit2["kernel"].shape == (6, 2) and fit2["train_accuracy"] > 0.8
    # A class missing from training is never predicted.
    fit4 = fit_softmax_regression(x, y, x[::3], y[::3], n_classes=4)
    assert ((x @ fit4["kernel"] + fit4["bias"]).argmax(1) != 3).all()


def test_a_feature_that_barely_varies_gets_no_huge_weight():
    """Digits on Lite0: near-constant pooled features got weights up to 16,000, and fine-tuning's first steps exploded them."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    signal = rng.normal(0, 1, (120, 4)) + y[:, None] * 2.0
    near_constant = 0.3 + 1e-5 * (rng.normal(0, 1, (120, 2)) + y[:, None])  # separates the classes, on a tiny scale
    x = np.concatenate([signal, near_constant], axis=1)
    fit = fit_softmax_regression(x[::2], y[::2], x[1::2], y[1::2], n_classes=3)
    assert fit["val_accuracy"] > 0.85
    assert np.abs(fit["kernel"]).max() < 100  # unfloored: about 6e4
    # The same features moved by a step the size of the others' spread: the logits stay bounded.
    moved = x + 0.05 * rng.normal(0, 1, x.shape)
    assert np.abs(moved @ fit["kernel"] + fit["bias"]).max() < 50  # unfloored: about 1e4


def test_extra_views_shrink_as_the_data_grows():
    assert extra_views(40, "light") == 2 and extra_views(600, "standard") == 1
    assert extra_views(4000, "light") == 0 and extra_views(40, "none") == 0


def test_the_solved_head_reaches_the_linear_probe(tmp_path):
    """The head phase, whatever the epochs, is the probe: as accurate as scikit-learn on the same features.
    Head only on few images: validation joins the fit, and the history's validation figures are out-of-fold."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from imgclf.models.saving import load_keras_model
    from imgclf.training.feature_cache import compute_features

    data = make_image_folder(tmp_path / "data", per_class=30, size=16)
    run = imgclf.train(data, model="small_cnn", weights=_donor(tmp_path), finetune="none", img_size=16, epochs=1,
                       val_fraction=0.2, test_fraction=0.3, out=str(tmp_path / "run"), verbose=0)
    history = read_state(run.path)["history"]
    assert [h["phase"] for h in history] == ["head"]  # one solved epoch, even with epochs=1
    solver = json.loads((run.path / "summary.json").read_text())["head_solver"]
    assert solver["val_in_fit"] and solver["selected_by"].endswith("cross-validation")
    assert history[0]["val_accuracy"] == pytest.approx(solver["held_out_accuracy"])
    model = load_keras_model(run.path / "model.keras")
    (x_tr, y_tr), (x_val, y_val) = _split_images(run, "train"), _split_images(run, "val")
    x_test, y_test = _split_images(run, "test")
    ours = float((model.predict(x_test, verbose=0).argmax(1) == y_test).mean())
    probe = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=10, max_iter=2000))
    probe.fit(compute_features(model, np.concatenate([x_tr, x_val])), np.concatenate([y_tr, y_val]))
    reference = float((probe.predict(compute_features(model, x_test)) == y_test).mean())
    assert ours >= reference - 0.04, (ours, reference)  # one test image of 27 at most


def test_fine_tuning_that_hurts_falls_back_to_the_head(tmp_path, capsys):
    """A ruinous fine-tuning rate: model.keras stays the head, and the run says so."""
    data = make_image_folder(tmp_path / "data", per_class=16, size=16)
    run = imgclf.train(data, model="small_cnn", weights=_donor(tmp_path), finetune="all", img_size=16, epochs=3,
                       lr=2.0, finetune_lr_scale=1.0, val_fraction=0.25, test_fraction=0.0,
                       out=str(tmp_path / "run"), verbose=0)
    state = read_state(run.path)
    phases = [h["phase"] for h in state["history"]]
    assert phases[0] == "head" and set(phases[1:]) == {"finetune"}
    head_acc = state["history"][0]["val_accuracy"]
    finetuned = [h.get("val_accuracy", 0.0) for h in state["history"][1:]]
    summary = json.loads((run.path / "summary.json").read_text())
    if max(finetuned) <= head_acc:  # the usual case: the rate destroys the backbone
        assert state["best_epoch"] == 1 and summary["kept_phase"] == "head"
        assert "Kept the head (epoch 1)" in capsys.readouterr().err
    else:
        assert summary["kept_phase"] == "finetune"


def test_auto_picks_as_documented(monkeypatch):
    from imgclf.training import auto_model

    monkeypatch.setattr(auto_model, "installed_backbone", lambda: "efficientnet_lite0")
    many, few = {"a": 200, "b": 150}, {"a": 8, "b": 6}
    tiny = {"grayscale": True, "median_side": 28}
    assert (choose_model(PHOTO, many).model, choose_model(PHOTO, many).finetune) == ("efficientnet_lite0", "top")
    assert choose_model(PHOTO, many).weights == "imagenet"
    few_choice = choose_model(PHOTO, few)
    assert (few_choice.model, few_choice.finetune) == ("efficientnet_lite0", "none")
    assert "too few to fine-tune" in few_choice.reason and str(FEW_SHOT) in few_choice.reason
    assert choose_model(tiny, many).model == "small_cnn" and "tiny" in choose_model(tiny, many).reason
    assert choose_model(PHOTO, many, weights="none").model == "small_cnn"
    assert choose_model(PHOTO, many, finetune="all").finetune == "all"  # an explicit setting is kept
    assert choose_model(PHOTO, many, weights="w.keras").weights == "w.keras"
    monkeypatch.setattr(auto_model, "installed_backbone", lambda: None)
    assert "no pretrained backbone is installed" in choose_model(PHOTO, many).reason


def test_the_default_on_photos_is_a_pretrained_backbone_that_ships_like_any_model(tmp_path, capsys):
    """`imgclf train DIR` on a few 48 px photos: Lite0 (installed by the test extras), its head solved;
    the run predicts, exports with a passing parity check and serves like any other."""
    from fastapi.testclient import TestClient

    from imgclf.export.exporter import export
    from imgclf.serve.app import create_app

    data = make_image_folder(tmp_path / "data", per_class=8, size=48)
    run = imgclf.train(data, out=str(tmp_path / "run"), verbose=0)
    err = capsys.readouterr().err
    assert "Model (--model auto): efficientnet_lite0" in err and "Head solved" in err
    config = run.config
    assert (config["model"], config["weights"], config["finetune"]) == ("efficientnet_lite0", "imagenet", "none")
    assert config["auto_choice"].startswith("efficientnet_lite0") and config["img_size"] == 224
    clf = imgclf.load(run.path)
    first = sorted((tmp_path / "data" / "circle").iterdir())[0]
    assert clf.predict([str(first)])[0]["class"] in run.classes
    result = export(run, "tflite", out=tmp_path / "model.tflite")
    assert result.parity["agreement"] >= 0.99
    with TestClient(create_app(imgclf.load(result.path)), base_url="http://localhost") as client:  # an allowed Host
        answer = client.post("/predict", files={"file": ("a.png", first.read_bytes(), "image/png")})
    assert answer.status_code == 200 and answer.json()["class"] in run.classes
