import numpy as np
import pytest
from PIL import Image

import imgclf
from imgclf.data.augment import PRESETS, make_train_map, mix_batch, resolve_flip
from imgclf.models.saving import load_keras_model


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "none"])
def test_presets_change_images_and_keep_labels(preset):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (16, 24, 24, 3)).astype("float32")
    y = np.arange(16, dtype="int32") % 4
    fn = make_train_map(preset, "horizontal", 4, one_hot=False, seed=1)
    ax, ay = fn(x, y)
    ax = np.asarray(ax)
    assert ax.shape == x.shape and ax.min() >= 0 and ax.max() <= 255
    assert np.abs(ax - x).mean() > 1.0
    assert np.asarray(ay).tolist() == y.tolist()


def test_translation_moves_images_by_whole_pixels():
    """No blur: every pixel of a shifted image is a pixel of the original, or the black fill."""
    rng = np.random.default_rng(0)
    x = rng.integers(1, 255, (16, 28, 28, 1)).astype("float32")
    ax = np.asarray(make_train_map("light", "none", 2, one_hot=False, seed=3)(x, np.zeros(16, "int32"))[0])
    moved = 0
    for original, shifted in zip(x, ax):
        assert set(np.unique(shifted)) <= set(np.unique(original)) | {0.0}
        moved += not np.array_equal(original, shifted)
    assert moved >= 12  # translation by up to 10%: most images move


def test_no_augmentation_means_no_map():
    assert make_train_map("none", "none", 3, one_hot=False) is None


def test_mixup_and_cutmix_mix_labels_consistently():
    import tensorflow as tf

    x = np.concatenate([np.zeros((8, 8, 8, 1)), np.full((8, 8, 8, 1), 255.0)]).astype("float32")
    y = tf.one_hot(np.array([0] * 8 + [1] * 8), 2)
    for kwargs in ({"mixup": 0.4}, {"cutmix": 1.0}):
        mx, my = mix_batch(tf.constant(x), y, **kwargs)
        mx, my = np.asarray(mx), np.asarray(my)
        assert np.allclose(my.sum(axis=1), 1.0, atol=1e-5)
        # the share of class 1 in the label equals the share of white in the image
        assert np.allclose(mx.mean(axis=(1, 2, 3)) / 255.0, my[:, 1], atol=0.02)


def test_flips_adapt_to_character_classes():
    assert resolve_flip("auto", [str(i) for i in range(10)]) == "none"
    assert resolve_flip("auto", ["a", "b", "Z"]) == "none"
    assert resolve_flip("auto", ["cat", "dog"]) == "horizontal"
    assert resolve_flip("both", ["0", "1"]) == "both"


def test_augmentation_is_not_in_the_saved_model(image_folder, tmp_path):
    run = imgclf.train(image_folder, out=str(tmp_path / "r"), epochs=1, augment="strong", mixup=0.2, verbose=0, img_size=16)
    model = load_keras_model(run.model_path)
    kinds = {layer.__class__.__name__ for layer in model.layers}
    assert not any(k.startswith("Random") or k in ("RandAugment", "MixUp", "CutMix") for k in kinds)
    assert run.config["augment"] == "strong"


def test_augment_preview_writes_a_grid(image_folder, tmp_path):
    from imgclf.evaluation.figures.augment_preview import preview

    out = preview(image_folder, "strong", out=str(tmp_path / "grid.png"), samples=3, variants=2)
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] > 200 and img.size[1] > 200


def test_lr_find_returns_a_finite_suggestion_and_a_plot(image_folder, tmp_path):
    from imgclf.training.api import lr_find

    found = lr_find(image_folder, out=tmp_path / "lr.png", steps=40, img_size=16, batch_size=8)
    assert 1e-6 < found["suggested_lr"] < 1.0 and np.isfinite(found["suggested_lr"])
    assert (tmp_path / "lr.png").stat().st_size > 5000


def test_lr_auto_records_the_rate_it_chose(image_folder, tmp_path):
    run = imgclf.train(image_folder, out=str(tmp_path / "r"), epochs=1, lr="auto", verbose=0, img_size=16, batch_size=8)
    assert isinstance(run.config["lr"], float) and run.config["lr"] > 0
    assert (run.path / "plots" / "lr_find.png").exists()
