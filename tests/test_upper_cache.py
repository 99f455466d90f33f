"""Issue 14: fine-tuning on cached lower-block activations is an optimisation, not another recipe."""

from __future__ import annotations

import numpy as np

import imgclf
from imgclf.core.config import make_config
from imgclf.training.recipe import freeze_for_phase
from imgclf.training.upper_cache import split_backbone, upper_cache_applies
from tests.conftest import make_image_folder


def _finetune_ready(name="efficientnet_lite0", size=64):
    model = imgclf.create_model(name, num_classes=3, img_size=size, weights="imagenet" if "lite" in name else None)
    freeze_for_phase(model, "finetune", make_config({"model": name, "weights": "imagenet", "finetune": "top"}))
    return model


def test_the_split_backbone_computes_the_same_model():
    import keras

    from imgclf.training.upper_cache import _lower_maps

    model = _finetune_ready()
    lower, upper = split_backbone(model)
    assert not lower.trainable_weights and upper.trainable_weights
    assert {id(w) for w in upper.trainable_weights} == {id(w) for w in model.get_layer("backbone").trainable_weights}
    x = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    inputs = keras.Input(upper.inputs[0].shape[1:])
    y = upper(inputs)
    for layer in model.layers[[layer.name for layer in model.layers].index("backbone") + 1:]:
        y = layer(y)
    rebuilt = keras.Model(inputs, y)
    np.testing.assert_allclose(rebuilt.predict(_lower_maps(model, lower, x), verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)


def test_the_cache_applies_only_where_the_lower_blocks_repeat():
    model = _finetune_ready()
    base = {"model": "efficientnet_lite0", "weights": "imagenet", "augment": "light"}
    assert upper_cache_applies(make_config(base), "finetune", model, n_images=100)
    assert not upper_cache_applies(make_config(base), "head", model, n_images=100)
    assert not upper_cache_applies(make_config(base), "finetune", model, n_images=10**9)  # would not fit in memory
    for change in ({"augment": "standard"}, {"mixup": 0.2}, {"cutmix": 1.0}, {"feature_cache": "off"}, {"ema": True},
                   {"sampling": "balanced"}, {"freeze_bn": False}):
        assert not upper_cache_applies(make_config({**base, **change}), "finetune", model, 100), change
    everything = imgclf.create_model("efficientnet_lite0", num_classes=3, img_size=64, weights="imagenet")
    freeze_for_phase(everything, "finetune", make_config({**base, "finetune": "all"}))
    assert split_backbone(everything) is None  # nothing frozen below: nothing to cache


def test_fine_tuning_on_the_cache_matches_plain_fine_tuning(tmp_path, capsys, monkeypatch):
    """One batch holds every training image and nothing is random (small_cnn has no dropout inside, the head
    none): cached and plain fine-tuning take the same steps, so they end with the same weights."""
    import keras

    from imgclf.models.saving import load_keras_model
    from imgclf.training import fit_loop

    keras.utils.set_random_seed(0)
    imgclf.create_model("small_cnn", num_classes=3, img_size=32, channels=3).save(tmp_path / "donor.keras")
    data = make_image_folder(tmp_path / "data", per_class=10, size=32)
    common = dict(model="small_cnn", weights=str(tmp_path / "donor.keras"), img_size=32, color_mode="rgb", epochs=2,
                  batch_size=64, dropout=0.0, augment="none", finetune_fraction=0.5, lr=0.01, seed=3,
                  val_fraction=0.2, test_fraction=0.0, verbose=0)
    cached = imgclf.train(data, out=str(tmp_path / "cached"), **common)
    assert "Fine-tuning cache: the frozen blocks ran once" in capsys.readouterr().err
    monkeypatch.setattr(fit_loop, "upper_cache_applies", lambda *a, **k: False)  # the same head, then plain fine-tuning
    plain = imgclf.train(data, out=str(tmp_path / "plain"), **common)
    assert "Fine-tuning cache" not in capsys.readouterr().err
    a = load_keras_model(cached.path / "checkpoints" / "last.keras")
    b = load_keras_model(plain.path / "checkpoints" / "last.keras")
    moved = False
    for wa, wb, w0 in zip(a.get_layer("backbone").get_weights(), b.get_layer("backbone").get_weights(),
                          load_keras_model(tmp_path / "donor.keras").get_layer("backbone").get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-4, rtol=1e-3)
        moved = moved or not np.allclose(wa, w0)
    assert moved  # fine-tuning did change the upper blocks
    np.testing.assert_allclose(a.get_layer("classifier").get_weights()[0], b.get_layer("classifier").get_weights()[0],
                               atol=1e-4, rtol=1e-3)


def test_map_augmentation_flips_and_shifts_whole_cells():
    """The 'light' preset on cached maps: each batch mirrored per image and shifted by whole cells, zero-filled."""
    from imgclf.training.upper_cache import _map_dataset

    maps = np.arange(4 * 10 * 10 * 2, dtype="float32").reshape(4, 10, 10, 2) + 1.0
    labels = np.array([0, 1, 2, 0])
    ds = _map_dataset(maps, labels, batch_size=4, augment="light", flip="horizontal", one_hot=3, seed=0, shuffle=True)
    seen_shift, batches = False, iter(ds.repeat())
    for _ in range(8):
        x, y = next(batches)
        x = x.numpy()
        assert x.shape == maps.shape and y.shape == (4, 3)
        rows = {tuple(np.sort(v[v > 0])) for v in x}  # the values kept, whatever the flip
        assert all(len(r) >= 0.8 * 0.8 * maps[0].size for r in rows)  # at most one cell in ten shifted out per side
        seen_shift |= bool((x == 0).any())
    assert seen_shift
